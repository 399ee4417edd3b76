"""OpenAI-shaped request and result types, with every name of llama-cpp-python's ``llama_types``.

The results this package makes are typed by the classes of the first part (the ones
``Llama`` returns). The second part holds llama-cpp-python's other names: request shapes
(messages, tools, response formats), log-probabilities, and its aliases. Where
llama-cpp-python has two names for one shape (``ChatCompletionMessage`` and
``ChatCompletionResponseMessage``), both name the same class here.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from typing_extensions import NotRequired, TypedDict

__all__ = [
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionChunkChoice",
    "ChatCompletionChunkDelta",
    "ChatCompletionChunkDeltaEmpty",
    "ChatCompletionDelta",
    "ChatCompletionFunction",
    "ChatCompletionFunctionCall",
    "ChatCompletionFunctionCallOption",
    "ChatCompletionFunctionParameters",
    "ChatCompletionFunctions",
    "ChatCompletionLogprobToken",
    "ChatCompletionLogprobs",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionMessageToolCallChunk",
    "ChatCompletionMessageToolCallChunkFunction",
    "ChatCompletionMessageToolCallFunction",
    "ChatCompletionMessageToolCalls",
    "ChatCompletionNamedToolChoice",
    "ChatCompletionNamedToolChoiceFunction",
    "ChatCompletionRequestAssistantMessage",
    "ChatCompletionRequestAssistantMessageFunctionCall",
    "ChatCompletionRequestFunctionCall",
    "ChatCompletionRequestFunctionCallOption",
    "ChatCompletionRequestFunctionMessage",
    "ChatCompletionRequestMessage",
    "ChatCompletionRequestMessageContentPart",
    "ChatCompletionRequestMessageContentPartImage",
    "ChatCompletionRequestMessageContentPartImageImageUrl",
    "ChatCompletionRequestMessageContentPartText",
    "ChatCompletionRequestResponseFormat",
    "ChatCompletionRequestSystemMessage",
    "ChatCompletionRequestToolMessage",
    "ChatCompletionRequestUserMessage",
    "ChatCompletionResponseChoice",
    "ChatCompletionResponseFunction",
    "ChatCompletionResponseFunctionCall",
    "ChatCompletionResponseMessage",
    "ChatCompletionStreamResponse",
    "ChatCompletionStreamResponseChoice",
    "ChatCompletionStreamResponseDelta",
    "ChatCompletionStreamResponseDeltaEmpty",
    "ChatCompletionStreamResponseDeltaFunctionCall",
    "ChatCompletionTool",
    "ChatCompletionToolCall",
    "ChatCompletionToolChoiceOption",
    "ChatCompletionToolFunction",
    "ChatCompletionTopLogprobToken",
    "ChatFinishReason",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "CompletionUsage",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingData",
    "EmbeddingUsage",
    "JsonType",
]

#: a JSON value (llama-cpp-python's loose definition, which pydantic can validate)
JsonType = Union[None, int, str, bool, list[Any], dict[str, Any]]

# --- the results of Llama's methods --------------------------------------------------------

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
    #: the legacy form of one call, for requests made with ``functions=``
    function_call: NotRequired[ChatCompletionFunctionCall]


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


# --- llama-cpp-python's other shapes (requests, log-probabilities) --------------------------


class CompletionLogprobs(TypedDict):
    text_offset: list[int]
    token_logprobs: list[Optional[float]]
    tokens: list[str]
    top_logprobs: list[Optional[dict[str, float]]]


ChatCompletionFunctionParameters = dict[str, JsonType]


class ChatCompletionFunction(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: dict[str, JsonType]


class ChatCompletionTopLogprobToken(TypedDict):
    token: str
    logprob: float
    bytes: Optional[list[int]]


class ChatCompletionLogprobToken(ChatCompletionTopLogprobToken):
    top_logprobs: list[ChatCompletionTopLogprobToken]


class ChatCompletionLogprobs(TypedDict):
    content: Optional[list[ChatCompletionLogprobToken]]
    refusal: Optional[list[ChatCompletionLogprobToken]]


class ChatCompletionMessageToolCallChunkFunction(TypedDict):
    name: Optional[str]
    arguments: str


class ChatCompletionMessageToolCallChunk(TypedDict):
    index: int
    id: NotRequired[str]
    type: Literal["function"]
    function: ChatCompletionMessageToolCallChunkFunction


class ChatCompletionStreamResponseDeltaEmpty(TypedDict):
    pass


class ChatCompletionStreamResponseDeltaFunctionCall(TypedDict):
    name: str
    arguments: str


class ChatCompletionFunctionCallOption(TypedDict):
    name: str


class ChatCompletionRequestResponseFormat(TypedDict):
    #: "json_schema" (OpenAI's structured outputs) is this package's addition
    type: Literal["text", "json_object", "json_schema"]
    schema: NotRequired[JsonType]
    json_schema: NotRequired[dict[str, JsonType]]


class ChatCompletionRequestMessageContentPartText(TypedDict):
    type: Literal["text"]
    text: str


class ChatCompletionRequestMessageContentPartImageImageUrl(TypedDict):
    url: str
    detail: NotRequired[Literal["auto", "low", "high"]]


class ChatCompletionRequestMessageContentPartImage(TypedDict):
    type: Literal["image_url"]
    image_url: Union[str, ChatCompletionRequestMessageContentPartImageImageUrl]


ChatCompletionRequestMessageContentPart = Union[
    ChatCompletionRequestMessageContentPartText, ChatCompletionRequestMessageContentPartImage]


class ChatCompletionRequestSystemMessage(TypedDict):
    role: Literal["system"]
    content: Optional[str]


class ChatCompletionRequestUserMessage(TypedDict):
    role: Literal["user"]
    content: Optional[Union[str, list[ChatCompletionRequestMessageContentPart]]]


ChatCompletionMessageToolCallFunction = ChatCompletionFunctionCall
ChatCompletionMessageToolCall = ChatCompletionToolCall
ChatCompletionMessageToolCalls = list[ChatCompletionToolCall]
ChatCompletionRequestAssistantMessageFunctionCall = ChatCompletionFunctionCall


class ChatCompletionRequestAssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: NotRequired[str]
    tool_calls: NotRequired[list[ChatCompletionToolCall]]
    function_call: NotRequired[ChatCompletionFunctionCall]  # deprecated by OpenAI


class ChatCompletionRequestToolMessage(TypedDict):
    role: Literal["tool"]
    content: Optional[str]
    tool_call_id: str


class ChatCompletionRequestFunctionMessage(TypedDict):
    role: Literal["function"]
    content: Optional[str]
    name: str


ChatCompletionRequestMessage = Union[
    ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage,
    ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestToolMessage,
    ChatCompletionRequestFunctionMessage,
]


class ChatCompletionRequestFunctionCallOption(TypedDict):
    name: str


ChatCompletionRequestFunctionCall = Union[Literal["none", "auto"], ChatCompletionRequestFunctionCallOption]


class ChatCompletionToolFunction(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: ChatCompletionFunctionParameters


class ChatCompletionTool(TypedDict):
    type: Literal["function"]
    function: ChatCompletionToolFunction


class ChatCompletionNamedToolChoiceFunction(TypedDict):
    name: str


class ChatCompletionNamedToolChoice(TypedDict):
    type: Literal["function"]
    function: ChatCompletionNamedToolChoiceFunction


ChatCompletionToolChoiceOption = Union[Literal["none", "auto", "required"], ChatCompletionNamedToolChoice]

# --- llama-cpp-python's second names for the shapes above -----------------------------------

ChatCompletionFunctions = ChatCompletionFunction
ChatCompletionResponseFunction = ChatCompletionFunction
ChatCompletionResponseFunctionCall = ChatCompletionFunctionCall
ChatCompletionResponseMessage = ChatCompletionMessage
ChatCompletionResponseChoice = ChatCompletionChoice
ChatCompletion = CreateChatCompletionResponse
ChatCompletionStreamResponseDelta = ChatCompletionDelta
ChatCompletionChunkDelta = ChatCompletionDelta
ChatCompletionChunkDeltaEmpty = ChatCompletionStreamResponseDeltaEmpty
ChatCompletionStreamResponseChoice = ChatCompletionChunkChoice
CreateChatCompletionStreamResponse = ChatCompletionChunk
ChatCompletionStreamResponse = ChatCompletionChunk
EmbeddingData = Embedding
Completion = CreateCompletionResponse
CreateCompletionStreamResponse = CompletionChunk
