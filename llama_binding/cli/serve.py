"""``llama-binding serve``: the OpenAI-compatible server (``llama_binding.server``).

Given no model (no ``--model``, ``--models-dir`` or ``--config``, nor their environment
variables), it serves the default model (:mod:`llama_binding.default_model`), fetched once.
"""

from __future__ import annotations

import os

from ..default_model import model_or_default
from .output import Output

__all__ = ["run"]

#: the flags and environment variables that name what to serve
_MODEL_FLAGS = ("--model", "--models-dir", "--models_dir", "--config", "--config-file", "--config_file")
_MODEL_ENV = ("LLAMA_BINDING_MODEL", "LLAMA_BINDING_MODELS", "LLAMA_BINDING_MODELS_DIR")


def _names_a_model(argv: list[str]) -> bool:
    """Whether ``argv`` or the environment says what to serve (or only help is asked)."""
    if any(a.split("=", 1)[0] in _MODEL_FLAGS or a in ("-h", "--help") for a in argv):
        return True
    return any(os.environ.get(name) for name in _MODEL_ENV)


def run(argv: list[str], out: Output | None = None) -> int:
    out = out or Output()
    try:
        from ..server import main
    except ImportError as exc:  # the server extra is not installed
        out.error(f"serve needs the server extra: pip install 'llama-binding[server]' ({exc})")
        return 1
    if not _names_a_model(argv):
        model = model_or_default(None, out)
        if model is None:
            return 1
        argv = [*argv, "--model", model]
    return main(argv, prog="llama-binding serve")
