"""OpenAI-shaped result types (the names of llama-cpp-python's ``llama_types``)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from typing_extensions import TypedDict

__all__ = [
    "CompletionChoice",
    "CompletionChunk",
    "CompletionUsage",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingUsage",
]

FinishReason = Literal["stop", "length"]


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: Optional[dict[str, object]]
    finish_reason: Optional[FinishReason]


class CreateCompletionResponse(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class CompletionChunk(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class Embedding(TypedDict):
    index: int
    object: Literal["embedding"]
    embedding: Union[list[float], list[list[float]]]


class CreateEmbeddingResponse(TypedDict):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage
