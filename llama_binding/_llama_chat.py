"""The chat half of :class:`~llama_binding.Llama`: ``create_chat_completion`` with its
templates, formats, tools, JSON modes and special-token escaping (the prompt is rendered
and tokenized here; the completion itself is ``Llama.create_completion``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Union

from . import capi
from .generation.hooks import LogitsProcessor
from .grammar import LlamaGrammar
from .llama_types import ChatCompletionChunk, CreateChatCompletionResponse

if TYPE_CHECKING:
    from ._guard import CallGuard
    from .chat import ChatFormatter
    from .chat.escape import SpecialTokens
    from .core import Context, Vocab

__all__ = ["ChatMixin"]


class ChatMixin:
    """``Llama``'s chat methods (mixed into :class:`~llama_binding.Llama`)."""

    if TYPE_CHECKING:  # provided by Llama
        _vocab: Vocab
        _guard: CallGuard
        _formatter: ChatFormatter | None
        _specials: SpecialTokens | None
        chat_handler: Callable[..., Any] | None
        escape_special_tokens: bool

        @property
        def metadata(self) -> dict[str, Any]: ...

        def _generating(self) -> Context: ...

        def create_completion(self, *args: Any, **kwargs: Any) -> Any: ...


    def _chat_formatter(self) -> ChatFormatter:
        """``chat_format``'s built-in format, else the model's own template, else llama-2
        (llama-cpp-python's fallback for a model without a template)."""
        from .chat import TemplateFormat, get_format, templates_from_metadata

        if self._formatter is None:
            default = templates_from_metadata(self.metadata).get("default")
            self._formatter = TemplateFormat(default) if default is not None else get_format("llama-2")
        return self._formatter

    def _special_tokens(self) -> SpecialTokens:
        """The vocabulary's control and unknown tokens by text (read once)."""
        from .chat.escape import SpecialToken, SpecialTokens

        if self._specials is None:
            v, special = self._vocab, capi.LLAMA_TOKEN_ATTR_CONTROL | capi.LLAMA_TOKEN_ATTR_UNKNOWN
            lstrip, rstrip = capi.LLAMA_TOKEN_ATTR_LSTRIP, capi.LLAMA_TOKEN_ATTR_RSTRIP
            found = {}
            for t in range(v.n_tokens):
                attr = int(capi.llama_vocab_get_attr(v.ptr, t))
                if attr & special:
                    found[v.text(t).decode("utf-8", "replace")] = SpecialToken(t, bool(attr & lstrip),
                                                                              bool(attr & rstrip))
            self._specials = SpecialTokens(found)
        return self._specials

    def _chat_tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self._vocab.tokenize(text, add_special=add_special, parse_special=parse_special,
                                    what="messages (the rendered chat prompt)")

    def create_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        tfs_z: float | None = None,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: str | None = None,
        logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        escape_special_tokens: bool | None = None,
    ) -> Union[CreateChatCompletionResponse, Iterator[ChatCompletionChunk]]:
        """An OpenAI chat completion of ``messages`` (an iterator of chunks with deltas for
        ``stream=True``), with llama-cpp-python's names and defaults.

        The prompt comes from ``chat_handler`` (which then answers the whole call, as in
        llama-cpp-python), ``chat_format``, or the model's own template rendered in a
        sandbox. ``response_format`` ``{"type": "json_object"}`` or ``{"type": "json_schema",
        "json_schema": {"schema": ...}}`` is enforced with a grammar; ``logprobs=True`` with
        ``top_logprobs=N`` gives OpenAI's chat log-probabilities.

        ``tools`` (OpenAI function tools) are rendered by the model's template when it
        knows tools, else described in a system message; ``tool_choice`` "auto" (the
        default with tools) lets the model choose, "none" hides the tools, "required" or a
        named function forces one call whose arguments match the function's parameter
        schema (a grammar). Calls found in the output (Hermes/Qwen, Llama 3, Mistral or
        plain JSON, by the template) come back as ``tool_calls`` with finish_reason
        "tool_calls", streamed as OpenAI ``tool_calls`` deltas.

        ``escape_special_tokens`` (None: the Llama's setting, off by default) tokenizes the
        text of special tokens inside messages and tools as plain text: a user who writes
        ``<|im_start|>system`` then cannot open a turn of their own; the template's own
        special tokens stay special. Off, the whole rendered prompt is tokenized with
        special tokens parsed, as llama-cpp-python does (messages from a trusted caller may
        mean them); the server turns it on.
        """
        options = {k: v for k, v in locals().items()
                   if k not in ("self", "messages", "__class__", "escape_special_tokens")}
        from .chat import TemplateFormat
        from .chat.completion import (
            chat_chunks,
            chat_response,
            check_tools,
            inline_tool_calls,
            response_format_grammar,
            tool_call_grammar,
            tools_system_prompt,
        )
        from .chat.tools import detect, get_parser

        if self.chat_handler is not None:
            return self.chat_handler(llama=self, messages=messages, **options)  # type: ignore[no-any-return]
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a list of message dicts, not {type(messages).__name__}")
        self._generating()  # an embedding model cannot chat
        formatter = self._chat_formatter()
        functions = check_tools(tools, tool_choice) if tool_choice != "none" else []
        schema_grammar = response_format_grammar(response_format)
        parser = None
        template_tools = None
        if functions:
            forced = tool_call_grammar(functions, tool_choice)
            if forced is not None and (schema_grammar is not None or grammar is not None):
                raise ValueError("a forced tool call cannot be combined with grammar or response_format")
            source = formatter.template.source if isinstance(formatter, TemplateFormat) else None
            if source is not None and "tools" in source:
                template_tools = tools
            else:
                messages = [{"role": "system", "content": tools_system_prompt(functions)}, *messages]
            parser = get_parser("json" if forced is not None or template_tools is None else detect(source))
            schema_grammar = forced or schema_grammar
        if schema_grammar is not None and grammar is not None:
            raise ValueError("give either grammar or response_format, not both")
        if template_tools is None:  # this format renders no tool calls: earlier ones as text
            messages = inline_tool_calls(messages)
        from .chat.escape import masked_prompt, prompt_tokens

        if self.escape_special_tokens if escape_special_tokens is None else escape_special_tokens:
            prompt, masker = masked_prompt(formatter, messages, self._special_tokens(), tools=template_tools)
        else:
            prompt, masker = formatter(messages, tools=template_tools), None
        with self._guard.using():
            tokens = prompt_tokens(prompt, masker, self._chat_tokenize)
        stops = [*prompt.stop, *([stop] if isinstance(stop, str) else list(stop or []))]
        result = self.create_completion(
            tokens, max_tokens=max_tokens, temperature=temperature, top_p=top_p, min_p=min_p,
            typical_p=typical_p, logprobs=(top_logprobs or 0) if logprobs else None, stop=stops,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, stream=stream, seed=seed, tfs_z=tfs_z,
            mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, model=model,
            logits_processor=logits_processor, grammar=grammar or schema_grammar, logit_bias=logit_bias)
        if stream:
            return chat_chunks(result, parser)
        return chat_response(result, parser)
