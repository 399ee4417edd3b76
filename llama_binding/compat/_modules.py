"""The contents of the ``llama_cpp`` modules that :func:`llama_binding.compat.install` puts
in ``sys.modules``: each module name of llama-cpp-python with the names it offers from
this package."""

from __future__ import annotations

import ctypes
import json
from typing import Any, Optional

from .. import (
    BaseLlamaCache,
    BaseLlamaTokenizer,
    Llama,
    LlamaCache,
    LlamaDiskCache,
    LlamaDraftModel,
    LlamaGrammar,
    LlamaHFTokenizer,
    LlamaPromptLookupDecoding,
    LlamaRAMCache,
    LlamaState,
    LlamaTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    MinTokensLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    capi,
    llama_types,
)
from ..grammar import DEFAULT_ROOT, JSON_OBJECT_GBNF, schema_to_gbnf
from . import _chat_format

__all__ = ["LLAMA_CPP_VERSION", "contents", "low_level"]

#: the llama-cpp-python release whose API the shim mirrors (``llama_cpp.__version__``)
LLAMA_CPP_VERSION = "0.3.36"


def json_schema_to_gbnf(schema: str, prop_order: Optional[list[str]] = None) -> str:
    """llama-cpp-python's ``llama_grammar.json_schema_to_gbnf``: the GBNF of a JSON schema
    given as JSON text, with only the keys each object declares (as there; ``prop_order`` is
    not supported: properties keep the schema's order)."""
    if prop_order:
        raise ValueError("json_schema_to_gbnf(prop_order=...) is not supported: properties keep "
                         "the schema's order")
    return schema_to_gbnf(json.loads(schema), strict=False, extra_keys=False)


def low_level() -> dict[str, Any]:
    """llama-cpp-python's pointer type names, for code that annotates or casts with them;
    every C name itself comes from :mod:`llama_binding.capi` (looked up when used)."""
    names: dict[str, Any] = {}
    for handle in ("model", "context", "vocab", "sampler", "adapter_lora", "memory_i"):
        kind = getattr(capi, f"llama_{handle}", None)
        if isinstance(kind, type) and issubclass(kind, ctypes.Structure):
            names[f"llama_{handle}_p"] = names[f"llama_{handle}_p_ctypes"] = ctypes.POINTER(kind)
    names["llama_token_p"] = ctypes.POINTER(capi.llama_token)
    return names


def contents() -> dict[str, dict[str, Any]]:
    """Module suffix (``""`` for ``llama_cpp`` itself) -> the names that module holds."""
    types = {name: getattr(llama_types, name) for name in llama_types.__all__}
    cache = {"BaseLlamaCache": BaseLlamaCache, "LlamaCache": LlamaCache, "LlamaRAMCache": LlamaRAMCache,
             "LlamaDiskCache": LlamaDiskCache}
    tokenizer = {"BaseLlamaTokenizer": BaseLlamaTokenizer, "LlamaTokenizer": LlamaTokenizer,
                 "LlamaHFTokenizer": LlamaHFTokenizer}
    speculative = {"LlamaDraftModel": LlamaDraftModel, "LlamaPromptLookupDecoding": LlamaPromptLookupDecoding}
    grammar = {"LlamaGrammar": LlamaGrammar, "LLAMA_GRAMMAR_DEFAULT_ROOT": DEFAULT_ROOT,
               # llama-cpp-python's JSON_GBNF is one JSON object (its root rule is "object")
               "JSON_GBNF": JSON_OBJECT_GBNF, "json_schema_to_gbnf": json_schema_to_gbnf}
    high = {"Llama": Llama, "LlamaState": LlamaState, "LogitsProcessor": LogitsProcessor,
            "LogitsProcessorList": LogitsProcessorList, "StoppingCriteria": StoppingCriteria,
            "StoppingCriteriaList": StoppingCriteriaList, "LlamaGrammar": LlamaGrammar,
            "MinTokensLogitsProcessor": MinTokensLogitsProcessor, "LlamaDraftModel": LlamaDraftModel,
            **cache, **tokenizer, **types}
    chat_format = {name: getattr(_chat_format, name) for name in _chat_format.__all__
                   if name != "format_functions"}
    return {
        "": {**low_level(), **high, "__version__": LLAMA_CPP_VERSION},
        ".llama_cpp": low_level(),
        ".llama": high,
        ".llama_types": types,
        ".llama_grammar": grammar,
        ".llama_cache": cache,
        ".llama_speculative": speculative,
        ".llama_tokenizer": tokenizer,
        ".llama_chat_format": {**chat_format, **_chat_format.format_functions()},
    }
