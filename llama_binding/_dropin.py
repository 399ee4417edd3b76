"""llama-cpp-python's call forms that the ``Llama`` facade accepts beside its own, so that
code written for llama-cpp-python runs unchanged: unknown keywords (warned about, then
ignored), ``generate``'s ``stopping_criteria`` and ``reset``, the legacy ``functions`` /
``function_call`` chat arguments, results as ``openai`` objects, and two static helpers.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np
import numpy.typing as npt

from . import _params
from .generation.hooks import LogitsProcessor, StoppingCriteria, as_logits_hook, as_stop_hook
from .generation.sampling import SamplingParams

__all__ = ["SAMPLING_FIELDS", "generate_hooks", "legacy_tools", "logits_to_logprobs", "longest_token_prefix",
           "names_of", "openai_v1", "sampling_extras", "until", "warn_unknown", "with_function_call"]

Logits = npt.NDArray[np.single]
LogitsHook = Callable[[Sequence[int], Logits], None]

#: the names of every sampling option (``SamplingParams``' fields)
SAMPLING_FIELDS = frozenset(f.name for f in dataclasses.fields(SamplingParams))


@functools.cache
def names_of(function: Callable[..., Any]) -> frozenset[str]:
    """The keyword names ``function`` declares (for "did you mean" suggestions)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(function).parameters.items()
    return frozenset(n for n, p in params if p.kind in kinds) - {"self"}


def warn_unknown(kwargs: Mapping[str, Any], method: Callable[..., Any]) -> None:
    """Warn (UserWarning) about ``kwargs`` that ``method`` (of ``Llama``) does not know;
    they are then ignored."""
    _params.warn_unknown(f"Llama.{method.__name__}()", kwargs, names_of(method))


def sampling_extras(call: str, kwargs: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The ``kwargs`` that are sampling options (``generate(..., temperature=0.0, seed=1)``);
    the others are warned about as unknown (UserWarning), then ignored."""
    unknown = [k for k in kwargs if k not in SAMPLING_FIELDS]
    _params.warn_unknown(call, unknown, [*known, *SAMPLING_FIELDS])
    return {k: v for k, v in kwargs.items() if k in SAMPLING_FIELDS}


def generate_hooks(
    logits_processor: Union[LogitsProcessor, Sequence[LogitsProcessor], None],
    stopping_criteria: Union[StoppingCriteria, Sequence[StoppingCriteria], None],
) -> tuple[LogitsHook | None, Callable[[int], bool] | None]:
    """The engine's logits hook for ``generate``, and a check of a sampled token against
    ``stopping_criteria``: it gets the token ids including that token and the raw logits
    it was sampled from (as ``create_completion``'s criteria), True to stop."""
    process = as_logits_hook(logits_processor)
    stop = as_stop_hook(stopping_criteria)
    if stop is None:
        return process, None
    seen: list[Any] = [[], None]  # the tokens before the next one, the logits it is sampled from

    def hook(tokens: Sequence[int], logits: Logits) -> None:
        seen[:] = [list(tokens), logits.copy()]
        if process is not None:
            process(tokens, logits)

    def stops(token: int) -> bool:
        return stop([*seen[0], token], seen[1])

    return hook, stops


def until(tokens: Iterator[int], stops: Callable[[int], bool] | None) -> Iterator[int]:
    """``tokens`` up to the first that ``stops`` (which is not yielded)."""
    for token in tokens:
        if stops is not None and stops(token):
            return
        yield token


def legacy_tools(functions: Sequence[Mapping[str, Any]] | None, function_call: Any,
                 tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any) -> tuple[Any, Any]:
    """OpenAI's deprecated ``functions``/``function_call`` as ``tools``/``tool_choice``
    (as llama-cpp-python converts them); a ``tool_choice`` that is the name of one of the
    tools (LangChain's ``bind_tools(tool_choice="name")`` sends that) forces that function."""
    if functions is not None:
        if tools is not None:
            raise ValueError("give tools or functions (the deprecated form), not both")
        tools = [{"type": "function", "function": fn} for fn in functions]
    if function_call is not None:
        if tool_choice is not None:
            raise ValueError("give tool_choice or function_call (the deprecated form), not both")
        if function_call in ("none", "auto"):
            tool_choice = function_call
        elif isinstance(function_call, Mapping) and isinstance(function_call.get("name"), str):
            tool_choice = {"type": "function", "function": {"name": function_call["name"]}}
        else:
            raise ValueError(f'function_call must be "none", "auto" or {{"name": ...}}, '
                             f"not {function_call!r}")
    if isinstance(tool_choice, str) and tool_choice not in ("none", "auto", "required") and tools and any(
            isinstance(t, Mapping) and (t.get("function") or {}).get("name") == tool_choice for t in tools):
        tool_choice = {"type": "function", "function": {"name": tool_choice}}  # LangChain's bind_tools
    return tools, tool_choice


def with_function_call(response: Any) -> Any:
    """A chat completion answered to ``functions=``: a message with one tool call also
    gets it as the legacy ``function_call`` (as llama-cpp-python's answer has it)."""
    for choice in response["choices"]:
        calls = choice["message"].get("tool_calls") or []
        if len(calls) == 1:
            choice["message"]["function_call"] = dict(calls[0]["function"])
    return response


def openai_v1(complete: Callable[[], Any], stream: bool) -> Any:
    """The chat completion that ``complete()`` makes (or its chunks) as ``openai`` package
    objects (the package is looked for first: without it nothing is computed)."""
    try:
        from openai.types.chat import ChatCompletion, ChatCompletionChunk
    except ImportError:
        raise ImportError("create_chat_completion_openai_v1 needs the openai package (pip install openai)") \
            from None
    result = complete()
    if stream:
        return (ChatCompletionChunk(**chunk) for chunk in result)
    return ChatCompletion(**result)


def logits_to_logprobs(logits: Union[Logits, Sequence[float]], axis: int = -1) -> Logits:
    """Log-softmax of ``logits`` along ``axis`` (llama-cpp-python's ``Llama.logits_to_logprobs``;
    a -inf logit gets a -inf log-probability)."""
    maxs: Any = np.amax(logits, axis=axis, keepdims=True)
    if maxs.ndim > 0:
        maxs[~np.isfinite(maxs)] = 0
    elif not np.isfinite(maxs):
        maxs = 0
    shifted = np.subtract(logits, maxs, dtype=np.single)
    with np.errstate(divide="ignore"):
        log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return shifted - log_sum  # type: ignore[no-any-return]


def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
