"""tools/bindgen: generate ``llama_binding/capi/{ggml,gguf,llama,mtmd}.py`` from the C headers.

Not shipped in the wheel. Run ``python -m tools.bindgen`` from the repository root after
syncing a new llama.cpp (``--check`` only reports drift, ``--stats`` prints coverage).

Requirement: ``libclang==18.1.1`` (the PyPI wheel bundles libclang.so; nothing else to install).
The exact pin keeps the output byte-for-byte stable, which the drift test relies on.

Why libclang and not pycparser
------------------------------
* It parses the headers as they are. pycparser needs the headers preprocessed first and
  chokes on what the preprocessor leaves (``__attribute__((visibility))`` from ``LLAMA_API``,
  ``__attribute__((deprecated(...)))`` from ``DEPRECATED``), so it needs a fake libc, a list of
  macros to blank out and a C preprocessor on every developer machine.
* It evaluates what a C compiler evaluates: enumerator values written as expressions
  (``1 << 3``, ``GGML_ROPE_TYPE_NEOX``, ``LLAMA_ROPE_SCALING_TYPE_LONGROPE``), array bounds
  written with macros (``GGML_MAX_N_THREADS``), anonymous unions and unnamed nested structs.
* It knows the ``deprecated("use X instead")`` attribute with its message (through
  ``clang_getCursorPlatformAvailability``), so deprecated functions come with the replacement
  the header names.
* It keeps the preprocessing record: the ``#define`` constants come with their source tokens.
* Comments are taken from the header text by line (see ``comments.py``), which needs only
  the source locations that libclang gives.

The parse is hermetic: a fixed target triple and tiny stub C library headers (``include/``),
so the output does not depend on the machine. The machine's real ABI is checked separately
by the C probe (``probe.py``), compiled at test time with the real headers and C library.

Modules
-------
``config``      what is read and where each declaration goes (the only project knowledge)
``parser``      libclang -> ``model.Api`` (the only module that imports clang)
``comments``    header comments attached to declarations
``model``       the parsed API as plain dataclasses
``selection``   closure of the used types, split into modules, Python names
``ctypes_map``  C type -> ctypes expression / annotation (the mapping table is its docstring)
``emit_python`` ``model.Module`` -> Python source
``probe``       the C ABI probe and its ctypes counterpart
``headerscan``  an independent regex reading of the headers, for the coverage checks
``stats``       generated vs declared counts (``--stats``)
"""

REQUIREMENTS = ("libclang==18.1.1",)
