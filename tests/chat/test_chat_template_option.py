"""``Llama(chat_template=...)``: a Jinja template of the caller's instead of the model's,
checked at construction, rendered in the same sandbox; and per model in the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_binding import Llama
from llama_binding.errors import TemplateError

TEMPLATE = "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}\n{% endfor %}<<assistant>>"


def test_the_callers_template_renders_the_prompt(stories260k: Path) -> None:
    llm = Llama(str(stories260k), chat_template=TEMPLATE, n_ctx=256)
    chat = llm.chat_setup.prompt([{"role": "user", "content": "Hello"}])
    text = llm.detokenize(chat.tokens).decode()
    assert text.endswith("<<user>>Hello\n<<assistant>>"), text
    out = llm.create_chat_completion([{"role": "user", "content": "Hello"}], max_tokens=4)
    assert out["choices"][0]["finish_reason"] in ("stop", "length")
    llm.close()


def test_a_broken_template_raises_at_construction(stories260k: Path) -> None:
    with pytest.raises(TemplateError, match="failed to compile"):
        Llama(str(stories260k), chat_template="{% for m in messages %}", n_ctx=256)
    with pytest.raises(ValueError, match="not both"):
        Llama(str(stories260k), chat_template=TEMPLATE, chat_format="chatml", n_ctx=256)
