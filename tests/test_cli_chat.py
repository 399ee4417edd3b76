"""``llama-binding chat`` as a user drives it: the real command in a pseudo-terminal (the
terminal is its controlling terminal, so Ctrl-C is a real SIGINT from the line discipline),
typing lines and reading the screen, with a real chat model (SmolLM2, greedy).

Every read has a timeout and each session a deadline (:data:`SESSION_SECONDS`): a test
fails with what the screen showed, it never hangs.
"""

from __future__ import annotations

import codecs
import errno
import fcntl
import importlib.util
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                                reason="needs a POSIX pseudo-terminal")

#: the most a session may take, start to end (generous: a loaded 2-core machine)
SESSION_SECONDS = 60.0
#: the child makes the terminal its controlling one (as a terminal emulator's shell does),
#: then becomes ``python -m llama_binding``
LAUNCH = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
          "os.execv(sys.executable, [sys.executable, '-m', 'llama_binding', *sys.argv[1:]])")
#: terminal control sequences (readline's bracketed paste, cursor moves) and carriage returns
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[=>()][0-9A-Za-z]?|\r|\x07")
PROMPT = r"(?:^|\n)> "
#: the command edits lines with readline where Python has it (the child runs this Python)
READLINE = importlib.util.find_spec("readline") is not None
#: a system message that keeps SmolLM2's greedy answers short and to the point
BRIEF = "Be brief."


class Terminal:
    """One ``llama-binding`` session in a pseudo-terminal: :meth:`line` types a line,
    :meth:`expect` waits (bounded) for a pattern on the screen after the last match."""

    def __init__(self, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = {**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, env=env)
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self.screen = ""  # all output so far, control sequences removed
        self.pos = 0  # where the next expect looks from
        self.eof = False
        self.deadline = time.monotonic() + SESSION_SECONDS
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def _left(self, timeout: float) -> float:
        return min(timeout, self.deadline - time.monotonic())

    def _read(self, timeout: float) -> None:
        if self.eof or not select.select([self.fd], [], [], max(timeout, 0))[0]:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: every copy of the terminal's other side is closed
            if exc.errno != errno.EIO:
                raise
            data = b""
        self.eof = not data
        self.screen += _CONTROL.sub("", self._decoder.decode(data, final=self.eof))

    def expect(self, pattern: str, timeout: float = SESSION_SECONDS) -> re.Match[str]:
        rx = re.compile(pattern, re.DOTALL)
        end = time.monotonic() + self._left(timeout)
        while True:
            m = rx.search(self.screen, self.pos)
            if m:
                self.pos = m.end()
                return m
            if self.eof or time.monotonic() >= end:
                pytest.fail(f"{pattern!r} did not show (exit code {self.proc.poll()}); the screen after "
                            f"the last match:\n{self.screen[self.pos:]!r}")
            self._read(min(end - time.monotonic(), 0.5))

    def reading(self) -> None:
        """Wait until the command waits for a line (readline has the terminal: no canonical
        mode), as a user who sees the prompt does: a Ctrl-C drops the keys not read yet."""
        while READLINE and termios.tcgetattr(self.fd)[3] & termios.ICANON:
            if self.eof or time.monotonic() >= self.deadline:
                pytest.fail(f"the command does not read; screen:\n{self.screen[self.pos:]!r}")
            self._read(0.02)

    def send(self, text: str, reading: bool = True) -> None:
        """Type ``text`` once the command reads (``reading=False``: at once, as while an answer
        streams), reading the screen meanwhile (a full echo buffer would block both sides)."""
        if reading:
            self.reading()
        data = text.encode()
        while data:
            if time.monotonic() >= self.deadline:
                pytest.fail(f"the terminal took no more input; screen:\n{self.screen[self.pos:]!r}")
            if select.select([], [self.fd], [], 0.1)[1]:
                try:
                    data = data[os.write(self.fd, data[:256]):]
                except BlockingIOError:
                    pass
            self._read(0)

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def prompt(self) -> None:
        self.expect(PROMPT)

    def ask(self, question: str) -> str:
        """Type a question at the prompt; the streamed answer, once the prompt is back."""
        self.line(question)
        return self.expect(re.escape(question) + r"\n(.*?)\n> ").group(1).strip()

    def wait(self, timeout: float = 30) -> int:
        """The exit code, once the command has ended (its output read to the end)."""
        end = time.monotonic() + self._left(timeout)
        while not self.eof and time.monotonic() < end:
            self._read(min(end - time.monotonic(), 0.5))
        try:
            return self.proc.wait(max(end - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the command did not end; screen:\n{self.screen[self.pos:]!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


@pytest.fixture
def chat() -> Iterator[Callable[..., Terminal]]:
    """Factory: ``chat(MODEL, *flags)`` -> a Terminal running ``llama-binding chat``."""
    started: list[Terminal] = []

    def start(*args: Any) -> Terminal:
        t = Terminal("chat", *map(str, args))
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


def saved(t: Terminal, path: Path) -> list[dict[str, str]]:
    """``/save PATH`` at the prompt, and what the file holds."""
    t.line(f"/save {path}")
    t.prompt()
    messages: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return messages


def test_two_turns_keep_the_history(chat: Callable[..., Terminal], smollm2: Path, tmp_path: Path) -> None:
    t = chat(smollm2, "--temperature", "0", "-n", "12", "--system", BRIEF, "--quiet")
    t.prompt()
    first = t.ask("What is the capital of France?")
    assert "Paris" in first
    second = t.ask("And of Germany?")
    assert second
    system, *messages = saved(t, tmp_path / "chat.json")
    assert system == {"role": "system", "content": BRIEF}
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m["content"].strip() for m in messages[1::2]] == [first, second]
    assert messages[2]["content"] == "And of Germany?"
    t.line("/exit")
    assert t.wait() == 0
    assert "Traceback" not in t.screen


def test_ctrl_c_stops_the_answer_not_the_program(chat: Callable[..., Terminal], smollm2: Path,
                                                 tmp_path: Path) -> None:
    t = chat(smollm2, "--temperature", "0", "-n", "3000", "--system", BRIEF)
    t.expect("/help lists the commands")
    t.prompt()
    t.line("Write a very long story about a brave dragon.")
    shown_from = t.expect(r"dragon\.\n").end()
    t.expect(r"\S")  # the first words of the answer
    t.send("\x03", reading=False)
    shown = t.screen[shown_from:t.expect(r"\n\(stopped\)").start()]
    t.prompt()
    messages = saved(t, tmp_path / "stopped.json")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    # the part shown is kept: the text before the key's echo (the terminal drops the output
    # it holds when Ctrl-C comes, so what follows the echo may lack a piece)
    assert messages[2]["content"].strip().startswith(shown.split("^C")[0].strip())
    assert "Paris" in t.ask("What is the capital of France?")  # the model goes on answering

    t.send("half a line")
    t.expect("half a line")  # on the screen: readline has it (a Ctrl-C drops unread keys)
    t.send("\x03")  # at the prompt: the line is dropped
    t.expect(r"Ctrl-C again or Ctrl-D leaves")
    t.prompt()
    t.line("/help")
    t.expect(r"/reset .*?/exit ")
    t.prompt()
    assert len(saved(t, tmp_path / "after.json")) == 5  # "half a line" was never sent
    t.send("\x03")
    t.expect(r"Ctrl-C again or Ctrl-D leaves")
    t.prompt()
    t.send("\x03")  # twice in a row: leave
    assert t.wait() == 0
    assert "Traceback" not in t.screen


def test_commands(chat: Callable[..., Terminal], smollm2: Path, tmp_path: Path) -> None:
    t = chat(smollm2, "--temperature", "0", "-n", "4", "--system", BRIEF, "--quiet")
    t.prompt()
    t.line("/help")
    t.expect(r"/system TEXT .*?/save FILE .*?\n> ")
    assert t.ask("Hi!")
    t.line("/reset")
    t.prompt()
    assert saved(t, tmp_path / "reset.json") == [{"role": "system", "content": BRIEF}]
    assert t.ask("Hi!")
    t.line("/system You are a pirate.")
    t.prompt()
    assert saved(t, tmp_path / "system.json") == [{"role": "system", "content": "You are a pirate."}]
    t.line("/system")
    t.prompt()
    assert saved(t, tmp_path / "none.json") == []
    t.line("/bogus")
    t.expect(r"unknown command /bogus: /help lists them")
    t.prompt()
    t.line(f"/save {tmp_path / 'no' / 'such' / 'folder.json'}")
    t.expect(r"could not save to .*folder\.json")
    t.prompt()
    t.send("\x04")  # Ctrl-D at the prompt: leave
    assert t.wait() == 0
    assert "Traceback" not in t.screen


def test_multi_line_turns_are_one_message(chat: Callable[..., Terminal], smollm2: Path,
                                          tmp_path: Path) -> None:
    t = chat(smollm2, "--temperature", "0", "-n", "2", "--quiet")
    t.prompt()
    for line in ('"""', "/not a command", "but a message"):
        t.line(line)
        t.expect(r"\n\.\.\. ")
    t.line('"""')
    t.expect(r'"""\n(.+?)\n> ')
    t.line("first \\")
    t.expect(r"\n\.\.\. ")
    t.line("second")
    t.expect(r"second\n(.+?)\n> ")
    messages = saved(t, tmp_path / "multi.json")
    assert [m["content"] for m in messages[::2]] == ["/not a command\nbut a message", "first \nsecond"]
    t.line("/exit")
    assert t.wait() == 0


def test_a_conversation_past_the_context_is_refused_and_the_chat_goes_on(
        chat: Callable[..., Terminal], smollm2: Path, tmp_path: Path) -> None:
    t = chat(smollm2, "--temperature", "0", "-n", "200", "--n-ctx", "256", "--system", BRIEF)
    t.prompt()
    # 242 tokens with the template: the model repeats them (greedy) and fills the last 14 cells
    t.line("Count on: " + " ".join(str(i) for i in range(1, 78)))
    t.expect(r"the context is full: /reset starts the conversation over")
    t.prompt()
    t.line("Go on.")
    t.expect(r"error: the conversation does not fit in the context: .*?/reset starts the conversation over")
    t.prompt()
    assert len(saved(t, tmp_path / "full.json")) == 3  # the turn that did not fit is not kept
    t.line("/reset")
    t.prompt()
    assert "Paris" in t.ask("What is the capital of France?")
    t.line("/exit")
    assert t.wait() == 0
    assert "Traceback" not in t.screen


def test_without_a_terminal_every_line_is_a_turn(smollm2: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "llama_binding", "chat", str(smollm2), "--temperature", "0",
                        "-n", "12", "--system", BRIEF, "--quiet"], input="What is the capital of France?\n",
                       capture_output=True, text=True, timeout=SESSION_SECONDS)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout and not r.stdout.startswith(">") and r.stderr == ""


def test_refusals_exit_1_with_a_message(chat: Callable[..., Terminal], stories260k: Path,
                                        tmp_path: Path) -> None:
    t = chat(stories260k)
    t.expect(rf"{re.escape(str(stories260k))} has no chat template; use `llama-binding run --raw`")
    assert t.wait() == 1
    t = chat(tmp_path / "missing.gguf")
    t.expect("no such file")
    assert t.wait() == 1
    assert "Traceback" not in t.screen
