"""A child interpreter where llama-cpp-python is not importable, with
``llama_binding.compat.install()`` in effect: how the compat tests run code written for
llama-cpp-python (LangChain, llama-index, outlines, its README's examples).

Why a child, and why this one: ``compat.install()`` changes the import system of its
process, so it runs in a process of its own; and the dev venv has llama-cpp-python
installed (as a reference for its signatures) where CI's has not, so the child must not
see it, else ``install()`` rightly refuses (passing ``allow_shadowing=True`` would test
another path than the one users and CI take). The child runs ``python -S`` (no automatic
``site``) and adds with ``site.addsitedir`` a folder of links to every entry of this
interpreter's site-packages except ``llama_cpp`` and its ``.dist-info``: it sees what
CI's venv holds, ``.pth`` files included (the editable install of llama_binding). In CI the
folder links everything, so the child is the same environment there. The child checks
that ``importlib.util.find_spec("llama_cpp")`` finds nothing before it installs the shim.

Its code prints one JSON document on its last line (``emit(value)``), which
:func:`run_shimmed` returns.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

__all__ = ["filtered_site", "run_shimmed"]

TIMEOUT = 300

_HIDDEN = ("llama_cpp", "llama_cpp_python-")

BOOT = r'''
import importlib.util, json, site, sys, warnings
site.addsitedir(sys.argv[1])
assert importlib.util.find_spec("llama_cpp") is None, "llama-cpp-python is visible to the child"

def emit(value):
    print("\n@@RESULT " + json.dumps(value, default=repr), flush=True)
'''
INSTALL = """
from llama_binding import compat
compat.install()
"""


def _site_dirs() -> list[Path]:
    """The site-packages folders this interpreter uses (the user's only where it is on sys.path)."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [Path(d) for d in dict.fromkeys(dirs) if d in sys.path and Path(d).is_dir()]


def filtered_site(folder: Path) -> Path:
    """``folder`` filled with links to the entries of the site-packages folders, less
    llama-cpp-python's (the first folder that has an entry wins, as on ``sys.path``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in _site_dirs():
        for entry in directory.iterdir():
            link = folder / entry.name
            if entry.name.startswith(_HIDDEN) or link.exists() or link.is_symlink():
                continue
            link.symlink_to(entry, target_is_directory=entry.is_dir())
    return folder


def run_shimmed(site_folder: Path, code: str, *args: str, install: bool = True,
                timeout: float = TIMEOUT) -> Any:
    """Run ``code`` after :data:`BOOT` (and ``compat.install()`` unless ``install`` is False)
    in a child that sees ``site_folder``; its ``emit``-ed value (``args`` from ``sys.argv[2]`` on)."""
    env = {**os.environ, "GGML_NO_BACKTRACE": "1", "PYTHONWARNINGS": "default"}
    env.pop("PYTHONPATH", None)
    source = BOOT + (INSTALL if install else "") + code
    proc = subprocess.run([sys.executable, "-S", "-c", source, str(site_folder), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"the child failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}")
    return json.loads(lines[-1][len("@@RESULT "):])
