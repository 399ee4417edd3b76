"""Run a script against another checkout of llama_binding (before/after comparisons).

    python bench/with_tree.py TREE SCRIPT [ARGS...]

TREE holds an older ``llama_binding/`` (and its ``bench/``, ``tests/``); it is put first on
``sys.path`` and an editable install's import hook is bypassed, so ``import llama_binding``
finds TREE's Python code. The native libraries stay this environment's
(``LLAMA_BINDING_LIB_DIR`` or TREE's own ``llama_binding/lib``): the comparison is of the
Python layer over one build.
"""

from __future__ import annotations

import runpy
import sys

tree, script, *args = sys.argv[1:]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, tree)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
