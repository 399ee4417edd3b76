"""``python -m llama_binding.cli ...`` (the ``llama-binding`` command)."""

from __future__ import annotations

from . import main

raise SystemExit(main())
