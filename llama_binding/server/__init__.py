"""An OpenAI-compatible HTTP server over one continuous-batching engine.

    llama-binding serve --model model.gguf           # or: python -m llama_binding.server ...

``create_app(ServerSettings(model=...))`` gives the FastAPI app (tests, embedding it in
another app); :func:`serve` runs it with uvicorn. Needs the ``server`` extra
(``pip install llama-binding[server]``).
"""

from __future__ import annotations

from .app import create_app, serve
from .settings import ServerSettings, settings_from_args

__all__ = ["ServerSettings", "create_app", "main", "serve", "settings_from_args"]


def main(argv: list[str] | None = None, prog: str = "python -m llama_binding.server") -> int:
    """Parse the flags (environment, ``--config``) and serve; the exit code."""
    from pydantic import ValidationError

    try:
        settings = settings_from_args(argv, prog)
    except (ValidationError, ValueError) as exc:
        import sys

        sys.stderr.write(f"{prog}: {exc}\n")
        return 2
    return serve(settings)
