"""The real chat template of SmolLM2-135M-Instruct, read from its GGUF metadata.

SmolLM2's template is ChatML that inserts a default system message when the conversation
has none; these tests pin the exact text it renders to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_binding.chat import ChatPrompt, ChatTemplate, TemplateFormat, templates_from_metadata
from llama_binding.core.metadata import read_metadata

DEFAULT_SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)
SYSTEM = {"role": "system", "content": "You are terse."}
TURNS = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3?"},
]


@pytest.fixture(scope="module")
def template(smollm2: Path) -> ChatTemplate:
    templates = templates_from_metadata(read_metadata(smollm2))
    assert sorted(templates) == ["default"]
    return templates["default"]


def test_special_tokens_come_from_the_vocabulary(template: ChatTemplate) -> None:
    assert (template.bos_token, template.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert "<|im_start|>" in template.source and not template.compiled


def test_one_user_message_gets_the_default_system_message(template: ChatTemplate) -> None:
    assert template.render(TURNS[:1]) == (
        DEFAULT_SYSTEM + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_system_message_replaces_the_default(template: ChatTemplate) -> None:
    assert template.render([SYSTEM, TURNS[0]]) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_multi_turn_without_system(template: ChatTemplate) -> None:
    assert template.render(TURNS) == (
        DEFAULT_SYSTEM
        + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_multi_turn_with_system_and_no_generation_prompt(template: ChatTemplate) -> None:
    assert template.render([SYSTEM, *TURNS[:2]], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n"
    )


def test_as_a_chat_format(template: ChatTemplate) -> None:
    fmt = TemplateFormat(template)
    wide = [{"role": "developer", "content": [{"type": "text", "text": "You are terse."}]}, TURNS[0]]
    assert fmt(wide) == ChatPrompt(
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n",
        ["<|im_end|>"],
        add_bos=False,
    )
