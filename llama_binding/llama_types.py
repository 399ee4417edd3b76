"""OpenAI-shaped result types (the names of llama-cpp-python's ``llama_types``)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionChunkChoice",
    "ChatCompletionDelta",
    "ChatCompletionFunctionCall",
    "ChatCompletionMessage",
    "ChatCompletionToolCall",
    "ChatFinishReason",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionUsage",
    "CreateChatCompletionResponse",
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


ChatFinishReason = Literal["stop", "length", "tool_calls"]


class ChatCompletionFunctionCall(TypedDict):
    name: str
    arguments: str


class ChatCompletionToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: ChatCompletionFunctionCall


class ChatCompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: Optional[str]
    tool_calls: NotRequired[list[ChatCompletionToolCall]]


class ChatCompletionChoice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: Optional[dict[str, object]]
    finish_reason: Optional[ChatFinishReason]


class CreateChatCompletionResponse(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage


class ChatCompletionDelta(TypedDict, total=False):
    role: Literal["assistant"]
    content: str
    tool_calls: list[dict[str, object]]


class ChatCompletionChunkChoice(TypedDict):
    index: int
    delta: ChatCompletionDelta
    logprobs: Optional[dict[str, object]]
    finish_reason: Optional[ChatFinishReason]


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
