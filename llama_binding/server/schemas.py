"""The request bodies, as pydantic models with OpenAI's names.

Sampling defaults are the library's own (:class:`~llama_binding.generation.sampling.SamplingParams`,
``CHAT_TEMPERATURE`` for chat), so a request means the same through HTTP as through
``Llama``; ``tests/test_seams.py`` holds them together. Unknown fields (``user``,
``parallel_tool_calls``, ...) are accepted and ignored, as OpenAI clients send them.
:meth:`to_kwargs` gives the keywords of the matching ``AsyncLlama`` method.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..generation.sampling import CHAT_TEMPERATURE
from ..generation.sampling import SamplingParams as _D

__all__ = ["ChatCompletionRequest", "CompletionRequest", "DetokenizeRequest", "EmbeddingRequest",
           "ModelRequest", "TokenizeRequest"]

Stop = Union[str, list[str], None]
TokenIds = list[int]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: Optional[str] = None


class _Sampled(_Request):
    """What completions and chat completions share."""

    top_p: float = _D.top_p
    top_k: int = _D.top_k
    min_p: float = _D.min_p
    typical_p: float = _D.typical_p
    repeat_penalty: float = _D.repeat_penalty
    frequency_penalty: float = _D.frequency_penalty
    presence_penalty: float = _D.presence_penalty
    mirostat_mode: int = _D.mirostat_mode
    mirostat_tau: float = _D.mirostat_tau
    mirostat_eta: float = _D.mirostat_eta
    seed: Optional[int] = None
    stop: Stop = None
    logit_bias: Optional[dict[str, float]] = None
    grammar: Optional[str] = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    ignore_eos: bool = False
    cache_prompt: bool = True  # llama-server's: reuse a prefix of the prompt a slot's memory holds

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, bias: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        if bias is not None:
            _token_bias(bias)  # a key that is no token id is a 400 naming it
        return bias

    def _common(self) -> dict[str, Any]:
        kw = self.model_dump(exclude={"model", "logit_bias", "n", "stream_options"})
        kw["logit_bias"] = None if self.logit_bias is None else _token_bias(self.logit_bias)
        kw["n"] = self.n
        kw["stream_options"] = self.stream_options if self.stream else None
        return kw


class CompletionRequest(_Sampled):
    """``POST /v1/completions``."""

    prompt: Union[str, list[str], TokenIds, list[TokenIds]] = ""
    suffix: Optional[str] = None
    max_tokens: Optional[int] = 16
    temperature: float = _D.temperature
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=20)

    def to_kwargs(self) -> dict[str, Any]:
        kw = self._common()
        kw.update(prompt=self.prompt, suffix=self.suffix, max_tokens=self.max_tokens, echo=self.echo,
                  logprobs=self.logprobs)
        return kw


class ChatCompletionRequest(_Sampled):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    temperature: float = CHAT_TEMPERATURE
    response_format: Optional[dict[str, Any]] = None
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Union[str, dict[str, Any], None] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)

    def to_kwargs(self) -> dict[str, Any]:
        kw = self._common()
        kw.pop("max_completion_tokens", None)
        kw.update(messages=self.messages, response_format=self.response_format, tools=self.tools,
                  tool_choice=self.tool_choice, logprobs=self.logprobs, top_logprobs=self.top_logprobs,
                  max_tokens=self.max_completion_tokens if self.max_completion_tokens is not None
                  else self.max_tokens)
        return kw


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings``."""

    input: Union[str, list[str], TokenIds, list[TokenIds]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1)


class TokenizeRequest(BaseModel):
    """llama-server's ``POST /tokenize``."""

    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False
    model: Optional[str] = None


class ModelRequest(BaseModel):
    """``POST /models/load`` and ``/models/unload`` (llama-server's router)."""

    model: str


class DetokenizeRequest(BaseModel):
    """llama-server's ``POST /detokenize``."""

    tokens: TokenIds
    model: Optional[str] = None


def _token_bias(bias: dict[str, float]) -> dict[int, float]:
    """OpenAI's ``logit_bias`` (token ids as JSON object keys) with int keys."""
    out = {}
    for key, value in bias.items():
        try:
            out[int(key)] = value
        except ValueError:
            raise ValueError(f"logit_bias keys must be token ids, not {key!r}") from None
    return out
