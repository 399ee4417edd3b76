"""Load a projector once in a child process before this process loads it.

libmtmd refuses a projector with a missing key or an unknown type cleanly (a NULL
context), but tensors whose shapes do not fit together (a damaged or hand-made mmproj
GGUF) make ggml's graph builder fail a ``GGML_ASSERT`` during the warmup encode, which
aborts the whole process. Checking every projector type's tensor shapes by hand would
mirror much of ``clip.cpp``; instead the projector is loaded first in a child process, on
the CPU and without the text model, with its warmup encode: a child that dies tells us
the file would kill this process, and the assertion it printed says why. A file that
passed is remembered (by path, size and modification time) for the life of the process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import ModelLoadError

__all__ = ["PROBE_TIMEOUT", "probe_projector"]

#: seconds the child may take to load the projector and run its warmup encode on the CPU
PROBE_TIMEOUT = 600.0

_passed: set[tuple[str, int, int]] = set()
_lock = threading.Lock()
_CHILD = (
    "import sys\n"
    "from llama_binding import _backend, capi\n"
    "_backend.init_backends()\n"
    "p = capi.mtmd_context_params_default()\n"
    "p.use_gpu = False; p.warmup = True; p.n_threads = 1; p.print_timings = False\n"
    "ctx = capi.mtmd_init_from_file(sys.argv[1].encode(), None, p)\n"
    "sys.exit(0 if ctx else 3)\n"
)


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (os.fspath(path.resolve()), st.st_size, st.st_mtime_ns)


def _why(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    asserts = [ln for ln in lines if "GGML_ASSERT" in ln or "error" in ln.lower()]
    return (asserts or lines or ["no message"])[-1]


def probe_projector(path: Path) -> None:
    """Raise :class:`ModelLoadError` if loading ``path`` would abort the process."""
    key = _key(path)
    with _lock:
        if key in _passed:
            return
    env = dict(os.environ, GGML_NO_BACKTRACE="1")  # no debugger attached to print a backtrace
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, os.fspath(path)], capture_output=True,
                              timeout=PROBE_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"loading the projector {path} did not finish within {PROBE_TIMEOUT:.0f} s "
                             "in a test process") from None
    if proc.returncode < 0 or proc.returncode == 134:  # killed by a signal (SIGABRT from GGML_ASSERT)
        code = -proc.returncode if proc.returncode < 0 else int(signal.SIGABRT)
        try:
            name = signal.Signals(code).name
        except ValueError:
            name = f"signal {code}"
        raise ModelLoadError(f"the projector {path} is damaged: libmtmd would abort the process ({name}) "
                             f"loading it: {_why(proc.stderr)}")
    if proc.returncode == 0:
        with _lock:
            _passed.add(key)
    # any other code: a clean refusal, which the real load reports with libmtmd's own words
