"""A child interpreter for cases that may crash: a native crash (SIGSEGV, a ``GGML_ASSERT``
abort, SIGFPE) shows there as a negative return code instead of killing pytest, and a hang
as a timeout. The child reports each case on one line (``@@label<TAB>exception
class<TAB>its MRO<TAB>message``, or ``OK``); ``raised`` checks the class and that the
message names the problem.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

__all__ = ["PRELUDE", "Child", "Outcome", "raised"]

TIMEOUT = 60  # seconds per child: a load that tries a huge allocation or loops fails here
# ggml attaches gdb to print a backtrace on GGML_ASSERT: slow, and it buries the assert line
CHILD_ENV = {**os.environ, "GGML_NO_BACKTRACE": "1"}

PRELUDE = r'''
import json, sys
from llama_binding import Llama

def report(label, fn):
    print(f"@@{label}\tBEGIN", flush=True)
    try:
        value = fn()
    except Exception as e:
        mro = ",".join(c.__name__ for c in type(e).__mro__)
        msg = " ".join(str(e).split())
        print(f"@@{label}\t{type(e).__name__}\t{mro}\t{msg}", flush=True)
    else:
        print(f"@@{label}\tOK\t\t{' '.join(repr(value).split())[:300]}", flush=True)
'''


@dataclass(frozen=True)
class Outcome:
    name: str  # the exception's class name, or "OK"
    lineage: tuple[str, ...]  # the class names of its MRO
    message: str  # the exception's message, or repr() of the returned value

    def is_a(self, *names: str) -> bool:
        return any(n in self.lineage for n in names)


class Child:
    """One child interpreter's run and the outcome of each labelled case."""

    def __init__(self, code: str, *args: str, timeout: float = 0) -> None:
        self.timeout = timeout or TIMEOUT
        try:
            proc = subprocess.run([sys.executable, "-c", PRELUDE + code, *args], capture_output=True,
                                  text=True, timeout=self.timeout, stdin=subprocess.DEVNULL, env=CHILD_ENV)
            self.returncode: int | None = proc.returncode
            stdout, self.stderr = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            self.returncode = None
            stdout = _text(exc.stdout)
            self.stderr = _text(exc.stderr)
        self.outcomes: dict[str, Outcome] = {}
        self.started: list[str] = []
        for line in stdout.splitlines():
            if not line.startswith("@@"):
                continue
            label, name, *rest = line[2:].split("\t", 3)
            if name == "BEGIN":
                self.started.append(label)
            else:
                mro, message = rest
                self.outcomes[label] = Outcome(name, tuple(mro.split(",")) if mro else (), message)

    def __getitem__(self, label: str) -> Outcome:
        if self.returncode != 0:
            pytest.fail(self._death(), pytrace=False)
        assert label in self.outcomes, f"the child never reported {label!r}"
        return self.outcomes[label]

    def _death(self) -> str:
        if self.returncode is None:
            how = f"hung (killed after {self.timeout} s)"
        elif self.returncode < 0:
            how = f"was killed by {signal.Signals(-self.returncode).name}"
        else:
            how = f"exited with {self.returncode}"
        unfinished = [label for label in self.started if label not in self.outcomes]
        where = f" during case {unfinished[0]!r}" if unfinished else ""
        return f"the child interpreter {how}{where}; its stderr ends with:\n{self.stderr[-3000:]}"


def _text(out: bytes | str | None) -> str:
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")


def raised(outcome: Outcome, *classes: str, naming: tuple[str, ...] = ()) -> None:
    """``outcome`` is an exception that is one of ``classes`` and whose message holds every
    fragment of ``naming`` (case-insensitive)."""
    wanted = " or ".join(classes)
    if outcome.name == "OK":
        pytest.fail(f"expected {wanted}, but it returned {outcome.message}", pytrace=False)
    if not outcome.is_a(*classes):
        pytest.fail(f"expected {wanted}, got {outcome.name} ({' <- '.join(outcome.lineage)}): "
                    f"{outcome.message}", pytrace=False)
    missing = [f for f in naming if f.lower() not in outcome.message.lower()]
    if missing:
        pytest.fail(f"the {outcome.name} does not name {missing}: {outcome.message}", pytrace=False)


