"""``python -m llama_binding.server --model PATH ...`` (as ``python -m llama_cpp.server``)."""

from __future__ import annotations

from . import main

raise SystemExit(main())
