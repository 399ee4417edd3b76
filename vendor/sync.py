#!/usr/bin/env python3
"""Sync the pinned llama.cpp source tree into ``vendor/llama.cpp/``.

The llama.cpp source is not tracked in git. ``vendor/pin.json`` names a source
archive on the package registry that carries a known llama.cpp commit (the
sdist of llama-cpp-python ships one under ``vendor/llama.cpp/``). This script:

1. obtains that archive with the package client (``python -m pip download``),
   or takes a local copy given with ``--archive``;
2. checks its sha256 against the pin and refuses any other bytes;
3. extracts only the llama.cpp tree, without absolute or escaping paths, into a
   temporary folder and moves it into place, so an interrupted sync never leaves
   a half tree behind;
4. writes a stamp (``.llama-binding-pin``) so that a later run with the same pin
   does nothing.

It uses the standard library only and runs on Python 3.9+, because the CMake
build calls it when the tree is missing (``pip install .`` from a fresh clone).

Exit codes: 0 synced or already in place, 2 a problem the message explains.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
STAMP = ".llama-binding-pin"


class SyncError(Exception):
    """A sync step failed; the message says what to do."""


def load_pin(path: Path) -> dict[str, str]:
    try:
        pin = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SyncError(f"cannot read the pin file {path}: {exc}") from exc
    missing = [k for k in ("package", "version", "archive", "sha256", "tree") if k not in pin]
    if missing:
        raise SyncError(f"pin file {path} lacks {', '.join(missing)}")
    return pin


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(pin: dict[str, str], cache: Path) -> Path:
    """Fetch the pinned source archive with pip into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{pin['package']}=={pin['version']}"
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "-d", str(cache), spec]
    # pip prepares the sdist's metadata after downloading it. Without build
    # isolation that reuses the scikit-build-core we already run under instead
    # of building the archive's build requirements from source; fall back to
    # isolation if that is not possible.
    attempts = [base[:4] + ["--no-build-isolation"] + base[4:], base]
    errors = []
    for cmd in attempts:
        print(f"llama-binding: downloading {spec} (source archive) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        target = cache / pin["archive"]
        if target.is_file():
            return target
        errors.append(proc.stdout[-2000:])
    raise SyncError(
        f"could not download {spec} with pip.\n{errors[-1]}\n"
        "Check that the package index is reachable (pip config list), or download "
        f"{pin['archive']} yourself and run: python vendor/sync.py --archive PATH"
    )


def safe_members(tar: tarfile.TarFile, prefix: str) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Members under ``prefix``, with their path relative to it; refuses escapes."""
    root = PurePosixPath(prefix)
    chosen = []
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        if path.is_absolute() or ".." in rel.parts:
            raise SyncError(f"archive member {member.name!r} escapes the tree; refusing it")
        if member.issym() or member.islnk():
            link = PurePosixPath(member.linkname)
            if link.is_absolute() or ".." in (rel.parent / link).parts[: len(rel.parts)]:
                continue  # links outside the tree are not needed to build
        if not (member.isfile() or member.isdir() or member.issym()):
            continue
        chosen.append((member, rel))
    if not chosen:
        raise SyncError(f"the archive holds nothing under {prefix!r}; is the pin's 'tree' right?")
    return chosen


def extract(archive: Path, prefix: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sync-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member, rel in safe_members(tar, prefix):
                out = tmp.joinpath(*rel.parts) if rel.parts else tmp
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(member.linkname, out)
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, out.open("wb") as fh:
                        shutil.copyfileobj(src, fh)
                    if member.mode & 0o111:
                        out.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sync(pin_path: Path, dest: Path, archive: Path | None, force: bool) -> Path:
    pin = load_pin(pin_path)
    stamp = dest / STAMP
    if not force and stamp.is_file() and stamp.read_text().strip() == pin["sha256"]:
        return dest
    if archive is None:
        cached = HERE / ".cache" / pin["archive"]
        if cached.is_file() and sha256_of(cached) == pin["sha256"]:
            archive = cached
        else:
            archive = download(pin, HERE / ".cache")
    if not archive.is_file():
        raise SyncError(f"archive {archive} does not exist")
    got = sha256_of(archive)
    if got != pin["sha256"]:
        raise SyncError(
            f"sha256 mismatch for {archive}:\n  expected {pin['sha256']}\n  got      {got}\n"
            "The archive is not the pinned one. Delete it and run the sync again; if the "
            f"pin itself should change, update 'sha256' in {pin_path} deliberately."
        )
    print(f"llama-binding: extracting llama.cpp {pin.get('llama_cpp_commit', '')[:9]} "
          f"into {dest}", file=sys.stderr, flush=True)
    extract(archive, pin["tree"], dest)
    (dest / STAMP).write_text(pin["sha256"] + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=Path, default=HERE / "pin.json")
    parser.add_argument("--dest", type=Path, default=HERE / "llama.cpp")
    parser.add_argument("--archive", type=Path, help="use this local archive instead of downloading")
    parser.add_argument("--force", action="store_true", help="extract again even if the stamp matches")
    args = parser.parse_args(argv)
    try:
        sync(args.pin, args.dest, args.archive, args.force)
    except SyncError as exc:
        print(f"llama-binding sync failed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
