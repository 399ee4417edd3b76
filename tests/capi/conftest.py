"""Fixtures of the capi tests.

The generator tests (drift, ABI, coverage) need only the headers, libclang and a C compiler.
Tests that call into the native library take the ``lib_dir`` fixture, which fails (never
skips) when the libraries cannot be loaded, so a broken build cannot pass CI silently.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # tools/ is not installed: import the generator from the checkout
    sys.path.insert(0, str(REPO))

from tools.bindgen import config  # noqa: E402
from tools.bindgen.model import Module  # noqa: E402


@pytest.fixture(scope="session")
def generated_modules() -> list[Module]:
    """The parsed and selected declarations (one libclang parse per test session)."""
    from tools.bindgen.generate import modules

    return modules(config.LLAMA_CPP)


@pytest.fixture(scope="session")
def lib_dir() -> Path:
    """The folder the native libraries are loaded from; fails if they cannot be loaded."""
    from llama_binding.capi import _loader
    from llama_binding.errors import LibraryLoadError

    try:
        return _loader.lib_dir()
    except LibraryLoadError as exc:
        pytest.fail(f"the native libraries could not be loaded (build them, or set "
                    f"{_loader.ENV_LIB_DIR}):\n{exc}")
