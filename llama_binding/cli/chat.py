"""``llama-binding chat MODEL``: an interactive chat in the terminal, answers streamed.

The model's own chat template renders the conversation (``Llama.create_chat_completion``);
a model without one is refused (``llama-binding run --raw`` completes plain text). The
whole conversation is sent each turn, so the model sees the history; when it no longer
fits in the context (``--n-ctx``), the turn fails with a message and ``/reset`` starts over.

On a terminal the prompt is ``> `` (``... `` for a continued line) and lines are edited
with readline where Python has it; the prompt is handed to ``input()`` so that readline
can redraw it. Without a terminal (stdin a pipe or a file) no prompt is shown and every
line is a turn. Ctrl-C while an answer streams stops that answer at the next token (the
text shown so far stays in the conversation; an answer stopped before its first word is
dropped with its question); Ctrl-C at the prompt clears the line, a second one in a row
leaves, as do Ctrl-D and ``/exit`` (exit code 0).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable, Iterator, Optional

from ..core.metadata import read_metadata
from ..errors import ContextOverflowError, LlamaError
from .output import Output
from .run import add_generation_flags, load_model, sampling_options

__all__ = ["Conversation", "CtrlC", "build_parser", "run"]

PROMPT = "> "
CONTINUED = "... "
BLOCK = '"""'

HELP = f'''commands (at the start of a turn):
  /reset        forget the conversation (the system message stays)
  /system TEXT  a new system message (without TEXT: none); the conversation starts over
  /save FILE    write the conversation to FILE, a JSON list of messages (system first)
  /exit         leave (so do Ctrl-D, and Ctrl-C twice at the prompt)
  /help         this text

multi-line input: end a line with \\ to go on on the next line, or put {BLOCK} on a line
of its own before and after the text (a message that starts with / goes in such a block).
Ctrl-C while an answer streams stops it; the part shown stays in the conversation.'''


@dataclass
class Conversation:
    """The system message and the turns since, as OpenAI chat messages."""

    system: Optional[str] = None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.messages(), fh, indent=2, ensure_ascii=False)
            fh.write("\n")


@dataclass(frozen=True)
class Entry:
    """What the user typed: one line, or several (``literal``: a block, never a command)."""

    text: str
    literal: bool = False


class Reader:
    """Reads entries from stdin: prompts and readline on a terminal, bare lines otherwise.
    ``read`` raises EOFError at the end of input and KeyboardInterrupt on Ctrl-C."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        if interactive:
            try:  # importing it gives input() line editing and history
                importlib.import_module("readline")
            except ImportError:
                pass

    def _line(self, prompt: str) -> str:
        return input(prompt if self.interactive else "")

    def read(self) -> Entry:
        line = self._line(PROMPT)
        if line.strip() == BLOCK:
            lines = []
            while (line := self._line(CONTINUED)).strip() != BLOCK:
                lines.append(line)
            return Entry("\n".join(lines), literal=True)
        lines = []
        while line.endswith("\\"):
            lines.append(line[:-1])
            line = self._line(CONTINUED)
        return Entry("\n".join([*lines, line]))


class CtrlC:
    """Where Ctrl-C (SIGINT) goes during a chat session (a context manager).

    While an answer streams (:meth:`streaming`), a handler only sets :attr:`hit`, which the
    loop reads between tokens: no exception lands inside the library. At the prompt
    (:meth:`prompt`), Python's own handler raises KeyboardInterrupt out of ``input()``.

    That needs the signal in the main thread: readline waits in ``select()`` there and looks
    at signals only when the wait is interrupted. The kernel may hand SIGINT to any thread
    (numpy's OpenBLAS and ggml start some), whose C handler only marks it; so a watcher
    thread, woken through the signal module's wakeup fd, interrupts the main thread's wait
    with SIGUSR1 (a no-op handler) and the marked SIGINT then raises (POSIX only).
    """

    def __init__(self) -> None:
        self.hit = False
        self._main = threading.current_thread() is threading.main_thread()  # signal handlers: only there
        self._at_prompt = threading.Event()
        self._turn = 0  # prompts so far: a Ctrl-C pokes the main thread until its prompt ends
        self._undo = contextlib.ExitStack()

    def __enter__(self) -> CtrlC:
        if self._main and hasattr(signal, "pthread_kill"):
            read_end, write_end = os.pipe()
            os.set_blocking(write_end, False)
            self._undo.callback(os.close, write_end)  # last: the watcher reads the pipe's end and stops
            self._undo.callback(signal.signal, signal.SIGUSR1, signal.signal(signal.SIGUSR1, _ignore))
            old_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
            self._undo.callback(signal.set_wakeup_fd, old_fd)
            threading.Thread(target=self._watch, args=(read_end, threading.get_ident()), daemon=True,
                             name="llama-binding chat: Ctrl-C").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._undo.close()

    def _watch(self, read_end: int, main: int) -> None:
        try:
            while data := os.read(read_end, 64):  # the numbers of the signals caught
                if signal.SIGINT in data:
                    self._poke(main)
        finally:
            os.close(read_end)

    def _poke(self, main: int) -> None:
        """Interrupt the main thread's wait until this prompt has ended. Again and again: a
        signal that comes just before readline's select() begins interrupts nothing."""
        turn = self._turn
        while self._at_prompt.is_set() and self._turn == turn:
            signal.pthread_kill(main, signal.SIGUSR1)
            time.sleep(0.05)

    @contextlib.contextmanager
    def prompt(self) -> Iterator[None]:
        """While the user types: Ctrl-C raises KeyboardInterrupt."""
        self._turn += 1
        self._at_prompt.set()
        try:
            yield
        finally:
            self._at_prompt.clear()

    @contextlib.contextmanager
    def streaming(self) -> Iterator[None]:
        """While an answer streams: Ctrl-C only sets :attr:`hit`."""
        self.hit = False
        previous = signal.signal(signal.SIGINT, self._on_sigint) if self._main else None
        try:
            yield
        finally:
            if self._main:  # None: a handler not set from Python; Python's own then
                signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)

    def _on_sigint(self, signum: int, frame: Optional[FrameType]) -> None:
        self.hit = True


def _ignore(signum: int, frame: Optional[FrameType]) -> None:
    """A handler that only interrupts what the main thread waits for."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding chat", description=__doc__.split("\n\n")[0],
                                epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="path of a GGUF file with a chat template (default: the "
                   "default model, SmolLM2-135M-Instruct, fetched once)")
    add_generation_flags(p, max_tokens=1024)
    return p


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output(quiet=args.quiet)
    try:
        if args.model is not None and os.path.isfile(args.model) and not _has_template(args.model):
            out.error(f"{args.model} has no chat template; use `llama-binding run --raw`")
            return 1
        llm = load_model(args, out)
        if llm is None:
            return 1
        try:
            with CtrlC() as ctrl_c:
                return _session(llm, out, args, ctrl_c)
        finally:
            llm.close()
    except KeyboardInterrupt:  # while loading
        out.line()
        out.note("stopped")
        return 130


def _has_template(path: str) -> bool:
    try:
        return "tokenizer.chat_template" in read_metadata(path)
    except LlamaError:
        return True  # not a readable GGUF: loading it says so


def _session(llm: Any, out: Output, args: argparse.Namespace, ctrl_c: CtrlC) -> int:
    reader = Reader(sys.stdin.isatty())
    convo = Conversation(args.system or None)
    out.note(f"chatting with {os.path.basename(llm.model_path)} ({llm.n_ctx()} tokens of context): "
             "/help lists the commands, Ctrl-D leaves")
    interrupted = False  # the last thing at the prompt was a Ctrl-C
    while True:
        try:
            with ctrl_c.prompt():
                entry = reader.read()
            interrupted = False
            if not entry.literal and entry.text.startswith("/"):
                if _command(entry.text, convo, out):
                    return 0
            elif entry.text.strip():
                _answer(llm, out, convo, entry.text, args, ctrl_c)
        except EOFError:
            if reader.interactive:
                out.line()
            return 0
        except KeyboardInterrupt:
            out.line()
            if interrupted:
                return 0
            interrupted = True
            out.note("(Ctrl-C again or Ctrl-D leaves)")


def _answer(llm: Any, out: Output, convo: Conversation, text: str, args: argparse.Namespace,
            ctrl_c: CtrlC) -> None:
    """Stream the answer to ``text`` and add the turn to ``convo`` (or nothing, on an error)."""
    convo.turns.append({"role": "user", "content": text})
    parts: list[str] = []
    finish = None
    with ctrl_c.streaming():
        try:
            stream = llm.create_chat_completion(convo.messages(), stream=True, max_tokens=args.max_tokens,
                                                **sampling_options(args))
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content") or ""
                    out.text(piece)
                    parts.append(piece)
                    finish = choice.get("finish_reason") or finish
                    if ctrl_c.hit:
                        break
            finally:
                stream.close()
        except LlamaError as exc:
            convo.turns.pop()
            if parts:
                out.line()
            what = "the conversation does not fit in the context" if isinstance(exc, ContextOverflowError) \
                else "no answer"
            out.error(f"{what}: {exc}\n(this turn is not kept; /reset starts the conversation over)")
            return
    stopped = ctrl_c.hit
    answer = "".join(parts)
    if answer and not answer.endswith("\n"):
        out.line()
    if stopped:
        out.note("(stopped)")
    if answer:
        convo.turns.append({"role": "assistant", "content": answer})
    else:
        convo.turns.pop()  # nothing to answer with: the question goes too
    if finish == "length" and not stopped:
        full = llm.n_tokens >= llm.n_ctx() - 1  # one free cell: no answer fits either
        out.note("(the context is full: /reset starts the conversation over)" if full
                 else f"(cut at {args.max_tokens} tokens: -n sets the limit)")


# --- commands ------------------------------------------------------------------------------

#: a command's handler: (conversation, output, the text after the command) -> leave now
Command = Callable[[Conversation, Output, str], bool]


def _exit(convo: Conversation, out: Output, arg: str) -> bool:
    return True


def _help(convo: Conversation, out: Output, arg: str) -> bool:
    out.line(HELP)
    return False


def _reset(convo: Conversation, out: Output, arg: str) -> bool:
    convo.turns.clear()
    out.note("(a new conversation" + (", with the same system message)" if convo.system else ")"))
    return False


def _system(convo: Conversation, out: Output, arg: str) -> bool:
    convo.system = arg or None
    convo.turns.clear()
    out.note("(a new conversation, " + ("with this system message)" if arg else "without a system message)"))
    return False


def _save(convo: Conversation, out: Output, arg: str) -> bool:
    if not arg:
        out.error("/save needs a file name: /save FILE")
        return False
    path = os.path.expanduser(arg)
    try:
        convo.save(path)
    except OSError as exc:
        out.error(f"could not save to {path}: {exc.strerror or exc}")
        return False
    n = len(convo.messages())
    out.note(f"(saved {n} message{'' if n == 1 else 's'} to {path})")
    return False


COMMANDS: dict[str, Command] = {"/exit": _exit, "/quit": _exit, "/help": _help, "/reset": _reset,
                                "/system": _system, "/save": _save}


def _command(line: str, convo: Conversation, out: Output) -> bool:
    """Run the command ``line``; True: leave the chat."""
    name, _, arg = line.strip().partition(" ")
    handler = COMMANDS.get(name)
    if handler is None:
        out.error(f"unknown command {name}: /help lists them")
        return False
    return handler(convo, out, arg.strip())
