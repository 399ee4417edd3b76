"""``python -m llama_binding ...``: the ``llama-binding`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
