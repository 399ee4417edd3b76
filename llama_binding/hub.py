"""Models from the Hugging Face Hub, through ``huggingface_hub`` and its cache: downloads
resume, the cache is the one other tools share, and ``HF_HUB_CACHE``, ``HF_HOME`` and
``HF_TOKEN`` apply.

A file is named in one of two ways:

- a reference ``user/repo[:quant]``, as llama.cpp's ``-hf`` takes it (:func:`resolve_ref`):
  among the repository's GGUF model files (sidecars such as ``mmproj`` and ``imatrix``
  left out), the first whose path holds the quant tag followed by ``.`` or ``-``, in any
  case; without a tag Q4_K_M, then Q8_0, then the first model file;
- a file pattern, as llama-cpp-python's ``Llama.from_pretrained`` takes it
  (:func:`pretrained_path`): an ``fnmatch`` glob over the repository's paths that must
  match exactly one of them.

A split model (``name-00001-of-00003.gguf``) is fetched whole and named by its first
part, the one llama.cpp loads. Offline (``offline=True`` or ``HF_HUB_OFFLINE=1``) only the
cache (or ``local_dir``) is read, and a file it lacks is a
:class:`~llama_binding.errors.DownloadError` that says so; when the hub cannot be reached
the cache is used as well. Progress bars (huggingface_hub's) show on a terminal only.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .errors import DownloadError, LlamaError, ModelNotFoundError

__all__ = ["DEFAULT_TAGS", "SIDECARS", "HubRef", "is_model_file", "is_offline", "list_files", "parse_ref",
           "pick_model_file", "pretrained_path", "resolve_ref", "split_parts"]

logger = logging.getLogger("llama_binding")

PathArg = Union[str, "os.PathLike[str]", None]

#: the quant tags tried, in order, when a reference names none (llama.cpp's)
DEFAULT_TAGS = ("Q4_K_M", "Q8_0")
#: GGUF files that are not a model to run: projectors, importance matrices, draft heads
SIDECARS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "on", "yes", "true"}
_LISTED = 20  # at most this many file names in a message


@dataclass(frozen=True)
class HubRef:
    """``user/repo[:quant]``, parsed."""

    repo_id: str
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.tag}" if self.tag else self.repo_id


def parse_ref(ref: str) -> HubRef:
    """``"user/repo:Q8_0"`` -> ``HubRef("user/repo", "Q8_0")``; ValueError for anything else."""
    repo_id, sep, tag = ref.strip().partition(":")
    if not _REPO_ID.match(repo_id) or (sep and not re.fullmatch(r"[\w.-]+", tag)):
        raise ValueError(f"{ref!r} is not a Hugging Face model reference: write user/repo or "
                         "user/repo:QUANT (for example bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0)")
    return HubRef(repo_id, tag or None)


def is_offline(offline: bool = False) -> bool:
    """``offline``, or ``HF_HUB_OFFLINE`` set to 1/on/yes/true (read at each call)."""
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _split_info(path: str) -> tuple[str, int, int]:
    """``(prefix, index, count)`` of a split GGUF's part; ``(stem, 1, 1)`` for a whole file."""
    stem = path[: -len(".gguf")] if path.endswith(".gguf") else path
    m = _SPLIT.match(stem)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else (stem, 1, 1)


def is_model_file(path: str) -> bool:
    """A GGUF whose file name names no sidecar (:data:`SIDECARS`)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".gguf") and not any(s in name.lower() for s in SIDECARS)


def pick_model_file(files: Sequence[str], tag: str | None = None) -> str | None:
    """The model file llama.cpp's ``-hf user/repo[:tag]`` takes among ``files`` (a split
    model: its first part), or None."""
    models = [f for f in files if is_model_file(f) and _split_info(f)[1] == 1]
    for t in [tag] if tag else DEFAULT_TAGS:
        pattern = re.compile(re.escape(t) + "[.-]", re.IGNORECASE)
        for f in models:
            if pattern.search(f):
                return f
    return models[0] if tag is None and models else None


def split_parts(files: Sequence[str], path: str) -> list[str]:
    """Every part of the split model whose part ``path`` is, first part first (``[path]``
    for a whole file)."""
    prefix, _, count = _split_info(path)
    if count <= 1:
        return [path]
    return sorted(f for f in files if _split_info(f)[::2] == (prefix, count))


def _listing(files: Sequence[str]) -> str:
    ggufs = [f for f in files if f.endswith(".gguf")] or list(files)
    shown = ", ".join(ggufs[:_LISTED]) or "none"
    return shown + (f" (and {len(ggufs) - _LISTED} more)" if len(ggufs) > _LISTED else "")


def _str(path: PathArg) -> str | None:
    return None if path is None else os.fspath(path)


def _where(cache_dir: PathArg, local_dir: PathArg) -> str:
    if local_dir is not None:
        return os.fspath(local_dir)
    if cache_dir is not None:
        return os.fspath(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _local_files(repo_id: str, cache_dir: PathArg, local_dir: PathArg) -> list[str]:
    """The files a repository has locally: those of ``local_dir``, else those of its cached
    snapshot of the main branch (huggingface_hub's layout: ``models--user--repo/refs/main``
    holds a commit, ``snapshots/<commit>/`` the files)."""
    if local_dir is not None:
        root = Path(local_dir)
    else:
        repo = Path(_where(cache_dir, None)) / ("models--" + repo_id.replace("/", "--"))
        ref = repo / "refs" / "main"
        if not ref.is_file():
            return []
        root = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".cache" not in p.relative_to(root).parts)


def list_files(repo_id: str, *, offline: bool = False, cache_dir: PathArg = None,
               local_dir: PathArg = None) -> tuple[list[str], bool]:
    """The paths of a repository's files, and whether they were read locally (offline, or
    the hub could not be reached and the cache had the repository) rather than from the hub."""
    if is_offline(offline):
        return _local_files(repo_id, cache_dir, local_dir), True
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return sorted(HfApi().list_repo_files(repo_id)), False
    except GatedRepoError as exc:
        raise DownloadError(f"{repo_id} is gated: accept its terms on the Hugging Face Hub and log in "
                            "(`hf auth login`, or HF_TOKEN)") from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"no repository {repo_id} on the Hugging Face Hub (or it is private: "
                                 "log in with `hf auth login`, or set HF_TOKEN)") from exc
    except Exception as exc:  # no network, a server error: the cache may have it (llama.cpp does the same)
        cached = _local_files(repo_id, cache_dir, local_dir)
        if not cached:
            where = _where(cache_dir, local_dir)
            raise DownloadError(f"could not list the files of {repo_id} on the Hugging Face Hub and it "
                                f"is not in the local cache ({where}): {exc}") from exc
        logger.warning("the Hugging Face Hub could not be reached (%s): using the cached files of %s",
                       exc, repo_id)
        return cached, True


def _not_found(what: str, repo_id: str, files: Sequence[str], local: bool, where: str) -> LlamaError:
    """The error for ``what`` missing among ``files``: a DownloadError (not in the cache) when
    the listing was local, since the hub may have it; a ModelNotFoundError otherwise."""
    if local and not files:
        return DownloadError(f"{repo_id} is not in the local cache ({where}) and the hub was not asked "
                             "(offline: --offline or HF_HUB_OFFLINE=1, or no network); fetch it once "
                             f"online: llama-binding pull {repo_id}")
    if local:
        return DownloadError(f"not in the local cache ({where}): {what} of {repo_id}; the hub was not "
                             f"asked (offline, or no network); cached files: {_listing(files)}")
    return ModelNotFoundError(f"{what} in {repo_id}; its files: {_listing(files)}")


def _one_match(repo_id: str, files: Sequence[str], pattern: str, local: bool, where: str) -> str:
    found = [f for f in files if fnmatch.fnmatch(f, pattern)]
    if len(found) > 1:
        raise ModelNotFoundError(f"{len(found)} files of {repo_id} match {pattern!r}, which must name one: "
                                 f"{_listing(found)}")
    if not found:
        raise _not_found(f"no file matching {pattern!r}", repo_id, files, local, where)
    return found[0]


@contextmanager
def _bars(progress: bool) -> Iterator[None]:
    """huggingface_hub's progress bars (on a terminal only) when ``progress``; none otherwise."""
    from huggingface_hub.utils.tqdm import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if progress or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def _download(repo_id: str, paths: Sequence[str], *, cache_dir: PathArg, local_dir: PathArg,
              local_only: bool, progress: bool) -> list[Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    got = []
    with _bars(progress):
        for path in paths:
            try:
                got.append(Path(hf_hub_download(repo_id, path, cache_dir=_str(cache_dir),
                                                local_dir=_str(local_dir), local_files_only=local_only)))
            except LocalEntryNotFoundError as exc:
                raise DownloadError(f"{repo_id}/{path} is not in the local cache "
                                    f"({_where(cache_dir, local_dir)}) and could not be fetched "
                                    f"(offline, or no network): {exc}") from exc
            except EntryNotFoundError as exc:
                raise ModelNotFoundError(f"{repo_id} has no file {path}") from exc
            except Exception as exc:  # the network, the hub, the disk: huggingface_hub's many kinds
                raise DownloadError(f"could not download {path} of {repo_id}: {exc}") from exc
    return got


def _fetch(repo_id: str, paths: Sequence[str], files: Sequence[str], local: bool, *, cache_dir: PathArg,
           local_dir: PathArg, progress: bool) -> Path:
    """Download ``paths`` (each with the other parts of its split model), return the first."""
    wanted: list[str] = []
    for path in paths:
        parts = split_parts(files, path)
        if len(parts) != _split_info(path)[2]:
            raise _not_found(f"not every part of the split model {path}", repo_id, files, local,
                             _where(cache_dir, local_dir))
        wanted += [p for p in parts if p not in wanted]
    got = _download(repo_id, wanted, cache_dir=cache_dir, local_dir=local_dir, local_only=local,
                    progress=progress)
    return got[wanted.index(paths[0])]


def resolve_ref(ref: str, *, offline: bool = False, cache_dir: PathArg = None, local_dir: PathArg = None,
                progress: bool = True) -> Path:
    """The local path of the model file ``user/repo[:quant]`` names (see the module
    docstring), downloaded into the cache (or ``local_dir``) unless it is there already."""
    hub_ref = parse_ref(ref)
    files, local = list_files(hub_ref.repo_id, offline=offline, cache_dir=cache_dir, local_dir=local_dir)
    choice = pick_model_file(files, hub_ref.tag)
    if choice is None:
        what = f"no GGUF model file matching {hub_ref.tag!r}" if hub_ref.tag else "no GGUF model file"
        raise _not_found(what, hub_ref.repo_id, files, local, _where(cache_dir, local_dir))
    return _fetch(hub_ref.repo_id, [choice], files, local, cache_dir=cache_dir, local_dir=local_dir,
                  progress=progress)


def pretrained_path(repo_id: str, filename: str | None, additional_files: Sequence[str] | None = None, *,
                    local_dir: PathArg = None, cache_dir: PathArg = None, offline: bool = False,
                    progress: bool = True) -> Path:
    """llama-cpp-python's ``Llama.from_pretrained`` lookup: the local path of the one file of
    ``repo_id`` that the glob ``filename`` matches (None: picked as :func:`resolve_ref`
    picks), downloaded with the files ``additional_files`` match (one each) and, for a
    split model, its other parts."""
    if ":" in repo_id:
        raise ValueError(f"{repo_id!r}: give the repository id alone; the file is the filename pattern")
    parse_ref(repo_id)
    files, local = list_files(repo_id, offline=offline, cache_dir=cache_dir, local_dir=local_dir)
    where = _where(cache_dir, local_dir)
    if filename is None:
        main = pick_model_file(files)
        if main is None:
            raise _not_found("no GGUF model file", repo_id, files, local, where)
    else:
        main = _one_match(repo_id, files, filename, local, where)
    extra = [_one_match(repo_id, files, p, local, where) for p in additional_files or ()]
    return _fetch(repo_id, [main, *extra], files, local, cache_dir=cache_dir, local_dir=local_dir,
                  progress=progress)
