"""ChatTemplate: Hugging Face's globals and filters, lazy compilation, errors that name the
template, and templates read from GGUF metadata. Model-free."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import pytest

from llama_binding.chat import ChatTemplate, templates_from_metadata
from llama_binding.errors import TemplateError

USER = [{"role": "user", "content": "Hi"}]


def render(source: str, messages: Any = USER, **kwargs: Any) -> str:
    return ChatTemplate(source).render(messages, **kwargs)


def test_variables_seen_by_the_template() -> None:
    template = ChatTemplate(
        "{{ bos_token }}|{{ eos_token }}|{{ messages[0].content }}|{{ add_generation_prompt }}|{{ tools }}",
        bos_token="<s>", eos_token="</s>",
    )
    assert template.render(USER) == "<s>|</s>|Hi|True|None"
    assert template.render(USER, add_generation_prompt=False, tools=[1]) == "<s>|</s>|Hi|False|[1]"


def test_extra_variables_and_token_override() -> None:
    template = ChatTemplate("{{ bos_token }}{{ documents | length }}{{ enable_thinking }}", bos_token="<s>")
    assert template.render(USER, documents=["a", "b"], enable_thinking=True) == "<s>2True"
    assert template.render(USER, bos_token="[BOS]", documents=[], enable_thinking=0) == "[BOS]00"


def test_undefined_variables_are_lenient_like_transformers() -> None:
    assert render("{% if messages[0].tool_calls %}T{% else %}no calls{% endif %}{{ nothing }}") == "no calls"


def test_trim_blocks_and_lstrip_blocks() -> None:
    source = "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n"
    assert render(source) == "[Hi]\n"


def test_loop_controls() -> None:
    source = ("{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}"
              "{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}")
    assert render(source) == "023"


def test_generation_block_renders_its_body() -> None:
    source = "{% for m in messages %}{% generation %}<{{ m.content }}>{% endgeneration %}{% endfor %}"
    assert render(source) == "<Hi>"


def test_raise_exception() -> None:
    source = "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}"
    template = ChatTemplate(source, name="strict")
    with pytest.raises(TemplateError, match=r"^chat template 'strict' raised an error: System first!$"):
        template.render(USER)


def test_strftime_now() -> None:
    before = datetime.now().strftime("%d %b %Y")
    rendered = render("{{ strftime_now('%d %b %Y') }}")
    assert rendered in (before, datetime.now().strftime("%d %b %Y"))


def test_tojson_has_hugging_face_semantics() -> None:
    value = {"b": "<é>", "a": [1, 2]}
    variables = {"value": value}
    assert render("{{ value | tojson }}", **variables) == json.dumps(value, ensure_ascii=False)
    indented = json.dumps(value, ensure_ascii=False, indent=2)
    assert render("{{ value | tojson(indent=2) }}", **variables) == indented
    assert render("{{ value | tojson(sort_keys=true) }}", **variables) == '{"a": [1, 2], "b": "<é>"}'
    assert render("{{ value | tojson(separators=(',', ':')) }}", **variables) == '{"b":"<é>","a":[1,2]}'
    assert render("{{ value | tojson(ensure_ascii=true) }}", **variables) == '{"b": "<\\u00e9>", "a": [1, 2]}'


def test_common_template_idioms() -> None:
    messages = [{"role": "system", "content": "  S  "}, *USER,
                {"role": "assistant", "content": "<think>x</think>answer"}]
    source = (
        "{% set ns = namespace(sys='') %}"
        "{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content | trim %}{% endif %}"
        "{% endfor %}{{ ns.sys }}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
        "|{{ messages[-1].content.split('</think>')[-1] }}|{{ '%s-%d' % ('a', 3) }}"
        "|{{ '{}:{}'.format(1, 'b') }}|{{ messages | map(attribute='role') | join(',') }}"
        "|{{ 'x' ~ 1 ~ none }}|{{ (messages | last).role | upper }}"
        "|{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}|{{ messages[1:] | length }}"
    )
    assert render(source, messages) == "S|1|answer|a-3|1:b|system,user,assistant|x1None|ASSISTANT|a=1|2"


def test_compiles_lazily_once_and_caches() -> None:
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not template.compiled
    assert template.render(USER) == "Hi"
    assert template.compiled
    compiled = template._compiled
    assert template.render(USER) == "Hi"
    assert template._compiled is compiled


def test_a_broken_template_fails_at_first_render_not_at_construction() -> None:
    template = ChatTemplate("{% for m in messages %}", name="tool_use")
    pattern = r"^chat template 'tool_use' failed to compile: .*endfor.* \(line 1\)$"
    with pytest.raises(TemplateError, match=pattern):
        template.render(USER)
    assert not template.compiled


def test_render_errors_name_the_template_and_the_cause() -> None:
    with pytest.raises(TemplateError, match=r"^chat template 'rag' failed to render: TypeError: .*str.*int"):
        ChatTemplate("{{ 'a' + 1 }}", name="rag").render(USER)
    with pytest.raises(TemplateError, match=r"^chat template 'default' failed to render: UndefinedError: "):
        ChatTemplate("{{ nothing.attr }}").render(USER)
    with pytest.raises(TemplateError, match=r"failed to render: TypeError: no loader"):
        ChatTemplate("{% include 'other.jinja' %}").render(USER)


def test_template_error_is_a_value_error_with_a_cause() -> None:
    with pytest.raises(ValueError) as info:
        ChatTemplate("{{ 1 // 0 }}").render(USER)
    assert isinstance(info.value, TemplateError)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_source_must_be_text() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        ChatTemplate(b"{{ x }}")  # type: ignore[arg-type]


def test_long_conversations_are_within_the_budget() -> None:
    """The output budget grows with the input: a long chat is never refused."""
    long = [{"role": "user", "content": "x" * 3_000_000}]
    template = ChatTemplate("{% for m in messages %}<{{ m.content }}>{% endfor %}", max_output=1000)
    assert len(template.render(long)) == 3_000_002


def test_renders_concurrently_from_threads() -> None:
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    results: list[str] = []

    def work(i: int) -> None:
        for _ in range(50):
            results.append(template.render([{"role": "user", "content": str(i)}]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(results)) == ["0", "1", "2", "3"] and len(results) == 200


def test_templates_from_metadata() -> None:
    metadata = {
        "general.name": "x",
        "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"],
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.chat_template": "{{ bos_token }}default{{ eos_token }}",
        "tokenizer.chat_template.tool_use": "{{ bos_token }}tools",
        "tokenizer.chat_templates": ["tool_use"],
    }
    templates = templates_from_metadata(metadata, time_limit=1.0)
    assert sorted(templates) == ["default", "tool_use"]
    assert templates["default"].render(USER) == "<s>default</s>"
    assert templates["tool_use"].name == "tool_use" and templates["tool_use"].render(USER) == "<s>tools"
    assert templates["tool_use"].time_limit == 1.0
    assert templates_from_metadata({"tokenizer.chat_template": "x"})["default"].bos_token == ""


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="time_limit > 0"):
        ChatTemplate("x", time_limit=0)
    with pytest.raises(ValueError, match="max_output must be >= 0"):
        ChatTemplate("x", max_output=-1)


def test_large_numbers_that_are_not_widths_are_fine() -> None:
    """Only widths and counts are limited, not every integer a template handles."""
    source = ("{{ '%d' % ts }}|{{ '{}'.format(ts) }}|{{ nothing | default(ts) }}|{{ ts | string }}"
              "|{{ 'a b'.split(' ', ts) | length }}|{{ '%s=%d' % ('t', ts) }}")
    assert render(source, ts=1_700_000_000) == "1700000000|1700000000|1700000000|1700000000|2|t=1700000000"
