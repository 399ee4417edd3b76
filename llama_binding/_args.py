"""Checks and conversions of request arguments, shared by the facades (``Llama``,
``AsyncLlama``) and the server, so that each argument means the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .grammar import LlamaGrammar

__all__ = ["SAMPLING_ARGS", "check_completion_args", "grammar_fields", "include_usage", "is_multi_prompt"]

#: the create_completion arguments that are sampling options (SamplingParams fields)
SAMPLING_ARGS = frozenset({
    "temperature", "top_p", "min_p", "typical_p", "top_k", "repeat_penalty", "frequency_penalty",
    "presence_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta", "seed", "logit_bias", "tfs_z"})


def check_completion_args(logprobs: object, max_tokens: object, n: object) -> None:
    """The checks of a completion's non-sampling arguments, shared by both facades."""
    if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool) or logprobs < 0):
        raise ValueError(f"logprobs must be an int >= 0, got {logprobs!r}")
    if max_tokens is not None and not isinstance(max_tokens, int):
        raise TypeError(f"max_tokens must be an int or None, not {type(max_tokens).__name__}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")


def include_usage(stream_options: Mapping[str, Any] | None) -> bool:
    """``stream_options={"include_usage": True}``: a stream ends with a usage chunk."""
    if stream_options is None:
        return False
    if not isinstance(stream_options, Mapping):
        raise TypeError(f"stream_options must be a dict, not {type(stream_options).__name__}")
    return bool(stream_options.get("include_usage", False))


def is_multi_prompt(prompt: object) -> bool:
    """A list of strings or of token lists (a list of ints is one tokenized prompt)."""
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(p, str) or (isinstance(p, (list, tuple)) and not isinstance(p, str)) for p in prompt)


def grammar_fields(grammar: str | LlamaGrammar | None) -> dict[str, Any]:
    """``grammar=`` as SamplingParams fields (a GBNF string or a :class:`LlamaGrammar`)."""
    if grammar is None:
        return {}
    if isinstance(grammar, str):
        return {"grammar": grammar}
    if isinstance(grammar, LlamaGrammar):
        return {"grammar": grammar.grammar, "grammar_root": grammar.root}
    raise TypeError(f"grammar must be a GBNF string or a LlamaGrammar, not {type(grammar).__name__}")
