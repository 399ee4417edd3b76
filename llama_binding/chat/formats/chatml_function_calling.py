"""llama-cpp-python's ``chatml-function-calling``: ChatML whose system turn lists the tools
and asks for either ``message:`` and text, or ``functions.<name>:`` lines each followed by
the arguments as JSON (its README's function-calling example uses it).

The prompt is llama-cpp-python's template, with two repairs: the tools are listed in a
system turn of their own when the conversation has no system message (llama-cpp-python
then lists them nowhere), and tool results are rendered as ``tool`` turns. The answer is
read by the ``chatml-function-calling`` tool-call parser; a forced call (``tool_choice``
"required" or a named function) is generated under a grammar as every format's is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..template import ChatTemplate
from ..types import ChatPrompt
from ._registry import register
from .template import TemplateFormat

__all__ = ["ChatmlFunctionCalling", "chatml_function_calling"]

# (``+%}`` keeps the newline after a tag that the sandbox's ``trim_blocks`` would drop)
_TOOLS = (
    "{% macro tools_text() +%}"
    "\n\nYou have access to the following functions:\n"
    "{% for tool in tools +%}"
    "\nfunctions.{{ tool.function.name }}:\n"
    "{{ tool.function.parameters | tojson }}"
    "\n{% endfor +%}"
    "\n\nYou can respond to users messages with either a single message or one or more function calls."
    "\n\nTo respond with a message begin the message with 'message:', use the following format:"
    "\n\nmessage:"
    "\n<message>"
    "\n\nTo respond with one or more function calls begin the message with 'functions.<function_name>:', "
    "use the following format:"
    "\n\nfunctions.<function_name>:"
    '\n{ "arg1": "value1", "arg2": "value2" }'
    "\nfunctions.<function_name>:"
    '\n{ "arg1": "value1", "arg2": "value2" }'
    "{% endmacro %}"
)

#: llama-cpp-python's template (``tool_calls`` there is ``tools`` here), repaired as the module says
SOURCE = _TOOLS + (
    "{% if tools and (not messages or messages[0].role != 'system') %}"
    "<|im_start|>system\n{{ tools_text() | trim }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'system' %}"
    "{{ message.content or '' }}{% if tools %}{{ tools_text() }}{% endif %}<|im_end|>\n"
    "{% elif message.role == 'assistant' %}"
    "{% if message.content %}{% if tools %}message:\n{% endif %}{{ message.content }}<|im_end|>\n{% endif %}"
    "{% if message.tool_calls %}"
    "{% for call in message.tool_calls %}"
    "functions.{{ call.function.name }}:\n"
    "{% if call.function.arguments is string %}{{ call.function.arguments }}"
    "{% else %}{{ call.function.arguments | tojson }}{% endif +%}\n"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% else %}"
    "{{ message.content or '' }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatmlFunctionCalling(TemplateFormat):
    """The format, a :class:`TemplateFormat` of :data:`SOURCE` that stops at ``<|im_end|>``
    and lets the tokenizer add BOS, as llama-cpp-python's text prompt does."""

    def __init__(self) -> None:
        super().__init__(ChatTemplate(SOURCE, name="chatml-function-calling"))

    def __call__(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True,
                 tools: Optional[Sequence[Mapping[str, Any]]] = None, **extra: Any) -> ChatPrompt:
        rendered = super().__call__(messages, add_generation_prompt=add_generation_prompt, tools=tools,
                                    **extra)
        return ChatPrompt(rendered.prompt, rendered.stop, add_bos=True)


chatml_function_calling = register("chatml-function-calling")(ChatmlFunctionCalling())
