"""Built-in chat formats: exact prompts and stops (llama-cpp-python's shapes), the registry,
and TemplateFormat. Model-free."""

from __future__ import annotations

from typing import Any

import pytest

from llama_binding.chat import ChatPrompt, ChatTemplate, TemplateFormat, get_format, names, register
from llama_binding.chat.formats import _registry
from llama_binding.errors import TemplateError

SYSTEM = {"role": "system", "content": "You are terse."}
TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Tell me a joke."},
]
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# name -> (prompt with the system message, prompt without it, stop strings)
EXPECTED: dict[str, tuple[str, str, list[str]]] = {
    # without tools it is ChatML, except that no system message means no system turn (as
    # llama-cpp-python's template); tests/test_compat.py has it with tools
    "chatml-function-calling": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        ["<|im_end|>"],
    ),
    "chatml": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>system\n<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        ["<|im_end|>"],
    ),
    "qwen": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n",
        ["<|endoftext|>"],
    ),
    "llama-2": (
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>> Hi [/INST]Hello! How can I help? </s>"
        "<s>[INST]Tell me a joke.  [/INST]",
        " <s>[INST]Hi  [/INST]Hello! How can I help? </s><s>[INST]Tell me a joke.  [/INST]",
        [],
    ),
    "llama-3": (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ["<|eot_id|>"],
    ),
    "mistral-instruct": (
        "[INST] Hi [/INST]Hello! How can I help?</s>[INST] Tell me a joke. [/INST]",
        "[INST] Hi [/INST]Hello! How can I help?</s>[INST] Tell me a joke. [/INST]",
        ["</s>"],
    ),
    "gemma": (
        "<start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nTell me a joke.<end_of_turn>\n"
        "<start_of_turn>model\n",
        "<start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nTell me a joke.<end_of_turn>\n"
        "<start_of_turn>model\n",
        ["<end_of_turn>\n"],
    ),
    "phi-3": (
        "<|system|>\nYou are terse.<|end|>\n"
        "<|user|>\nHi<|end|>\n"
        "<|assistant|>\nHello! How can I help?<|end|>\n"
        "<|user|>\nTell me a joke.<|end|>\n"
        "<|assistant|>\n",
        "<|user|>\nHi<|end|>\n"
        "<|assistant|>\nHello! How can I help?<|end|>\n"
        "<|user|>\nTell me a joke.<|end|>\n"
        "<|assistant|>\n",
        ["<|end|>", "<|endoftext|>"],
    ),
    "zephyr": (
        "<|system|>\nYou are terse.</s>\n"
        "<|user|>\n\nHi</s>\n"
        "<|assistant|>\n\nHello! How can I help?</s>\n"
        "<|user|>\n\nTell me a joke.</s>\n"
        "<|assistant|>\n\n",
        "<|system|>\n</s>\n"
        "<|user|>\n\nHi</s>\n"
        "<|assistant|>\n\nHello! How can I help?</s>\n"
        "<|user|>\n\nTell me a joke.</s>\n"
        "<|assistant|>\n\n",
        ["</s>"],
    ),
    "vicuna": (
        VICUNA_SYSTEM + " USER: Hi ASSISTANT: Hello! How can I help?</s>USER: Tell me a joke. ASSISTANT:",
        VICUNA_SYSTEM + " USER: Hi ASSISTANT: Hello! How can I help?</s>USER: Tell me a joke. ASSISTANT:",
        [],
    ),
    "alpaca": (
        "You are terse.\n\n### Instruction: Hi\n\n### Response: Hello! How can I help?</s>"
        "### Instruction: Tell me a joke.\n\n",
        "\n\n### Instruction: Hi\n\n### Response: Hello! How can I help?</s>"
        "### Instruction: Tell me a joke.\n\n",
        [],
    ),
}


def test_every_built_in_format_is_registered() -> None:
    assert names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_with_system_message(name: str) -> None:
    with_system, _, stop = EXPECTED[name]
    assert get_format(name)([SYSTEM, *TURNS]) == ChatPrompt(with_system, stop, add_bos=True)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_without_system_message(name: str) -> None:
    _, without_system, stop = EXPECTED[name]
    assert get_format(name)(TURNS) == ChatPrompt(without_system, stop, add_bos=True)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_normalizes_messages(name: str) -> None:
    """developer -> system and text parts -> one string, before the format sees them."""
    wide = [
        {"role": "developer", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        *TURNS[1:],
    ]
    assert get_format(name)(wide) == get_format(name)([SYSTEM, *TURNS])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_rejects_bad_messages(name: str) -> None:
    with pytest.raises(ValueError, match=r"messages\[0\].*image_url content parts are not supported yet"):
        get_format(name)([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(TypeError):
        get_format(name)("hello")


def test_formats_ignore_tool_messages_like_llama_cpp_python() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    conversation = [
        TURNS[0],
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        TURNS[2],
    ]
    assert get_format("chatml")(conversation).prompt == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown chat format 'chatml2'; known: alpaca, chatml, "):
        get_format("chatml2")


def test_register_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="'chatml' is already registered"):
        register("chatml")(lambda messages, **kwargs: ChatPrompt(""))


def test_register_adds_a_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry._FORMATS, "_items", dict(_registry._FORMATS._items))  # undone later
    name = "test-echo-format"

    @register(name)
    def echo(messages: Any, **kwargs: Any) -> ChatPrompt:
        return ChatPrompt(" ".join(m["content"] for m in messages), ["\n"], add_bos=False)

    assert get_format(name) is echo
    assert name in names()
    assert echo(TURNS) == ChatPrompt("Hi Hello! How can I help? Tell me a joke.", ["\n"], add_bos=False)


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_template_format_renders_and_stops_at_eos_and_im_end() -> None:
    fmt = TemplateFormat(ChatTemplate(CHATML_TEMPLATE, bos_token="<s>", eos_token="</s>"))
    result = fmt([{"role": "developer", "content": "Sys"}, {"role": "user", "content": "Hi"}])
    assert result == ChatPrompt(
        "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ["</s>", "<|im_end|>"],
        add_bos=False,
    )
    assert fmt(TURNS[:1], add_generation_prompt=False).prompt == "<|im_start|>user\nHi<|im_end|>\n"


def test_template_format_stop_without_chatml() -> None:
    llama3 = ("{{ bos_token }}{% for m in messages %}"
              "<|start_header_id|>{{ m.role }}<|end_header_id|>{% endfor %}")
    fmt = TemplateFormat(ChatTemplate(llama3, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"))
    assert fmt(TURNS[:1]).stop == ["<|eot_id|>"]
    assert TemplateFormat(ChatTemplate(CHATML_TEMPLATE, eos_token="<|im_end|>"))(TURNS).stop == ["<|im_end|>"]
    assert TemplateFormat(ChatTemplate("x"))(TURNS).stop == []


def test_template_format_passes_tools_and_extra_variables() -> None:
    source = "{{ tools | tojson }}|{{ enable_thinking }}|{{ messages | length }}"
    fmt = TemplateFormat(ChatTemplate(source))
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert fmt(TURNS, tools=tools, enable_thinking=False).prompt == (
        '[{"type": "function", "function": {"name": "f"}}]|False|3'
    )


def test_template_format_errors_are_template_errors() -> None:
    fmt = TemplateFormat(ChatTemplate("{{ raise_exception('only user turns') }}", name="tool_use"))
    with pytest.raises(TemplateError, match="chat template 'tool_use' raised an error: only user turns"):
        fmt(TURNS)
