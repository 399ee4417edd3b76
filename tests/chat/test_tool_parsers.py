"""Tool-call parsers (llama_binding.chat.tools): recorded-style outputs of each format, the
malformed ones that must stay content, and stream == parse for every case whatever the cuts.
Model-free."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from llama_binding.chat.tools import (
    Delta,
    ParsedOutput,
    ToolCall,
    _registry,
    assemble,
    detect,
    get_parser,
    names,
    register,
)
from llama_binding.chat.tools._engine import BlockEnd, MarkerParser

Calls = list[tuple[str, str]]

QWEN_TWO_CALLS = (
    "I'll look up the current weather in both cities for you.\n"
    "<tool_call>\n"
    '{"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}\n'
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "get_current_weather", "arguments": {"location": "東京", "unit": "celsius"}}\n'
    "</tool_call>"
)
WEATHER = [
    ("get_current_weather", '{"location":"Paris, France","unit":"celsius"}'),
    ("get_current_weather", '{"location":"東京","unit":"celsius"}'),
]
QWEN3_THINKING = (
    "<think>\nThe user wants 17 * 23. I should use the calculator tool.\n</think>\n\n"
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17 * 23"}}\n</tool_call>'
)
DEEP = "[" * 50_000 + "]" * 50_000

# (parser, completion text, expected content, expected (name, arguments) pairs)
CALLS: list[tuple[str, str, str | None, Calls]] = [
    # Hermes / Qwen
    ("hermes", QWEN_TWO_CALLS, "I'll look up the current weather in both cities for you.", WEATHER),
    (
        "hermes",
        QWEN3_THINKING,
        "<think>\nThe user wants 17 * 23. I should use the calculator tool.\n</think>",
        [("calculator", '{"expression":"17 * 23"}')],
    ),
    (
        "hermes",
        '<tool_call>\n{"arguments": {"symbol": "NVDA"}, "name": "get_stock_fundamentals"}\n</tool_call>',
        None,
        [("get_stock_fundamentals", '{"symbol":"NVDA"}')],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "search", "arguments": {"q": "llama"}}\n</tool_call>\n\nSearching now.',
        "Searching now.",
        [("search", '{"q":"llama"}')],
    ),
    (
        "hermes",
        '<tool_call>{"name": "f", "arguments": "{\\"x\\": [1, 2]}"}</tool_call>',
        None,
        [("f", '{"x": [1, 2]}')],
    ),
    ("hermes", '<tool_call>\n{"name": "get_time", "arguments": {}}\n', None, [("get_time", "{}")]),
    (
        "hermes",
        '<tool_call>\n```json\n{"name": "f", "arguments": {"a": 1}}\n```\n</tool_call>',
        None,
        [("f", '{"a":1}')],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "ok", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": bad}\n</tool_call>',
        '<tool_call>\n{"name": bad}\n</tool_call>',
        [("ok", "{}")],
    ),
    # Llama 3.1 / 3.2
    (
        "llama3",
        '{"name": "get_current_conditions", "parameters": '
        '{"location": "San Francisco, CA", "unit": "Fahrenheit"}}',
        None,
        [("get_current_conditions", '{"location":"San Francisco, CA","unit":"Fahrenheit"}')],
    ),
    (
        "llama3",
        '\n\n{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}\n'
        '{"name": "c", "arguments": {"y": [true, null]}}\n',
        None,
        [("a", '{"x":1}'), ("b", "{}"), ("c", '{"y":[true,null]}')],
    ),
    (
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        None,
        [("get_weather", '{"city":"Paris"}')],
    ),
    (
        "llama3",
        '<|python_tag|>brave_search.call(query="current weather in Menlo Park, CA")',
        None,
        [("brave_search", '{"query":"current weather in Menlo Park, CA"}')],
    ),
    (
        "llama3",
        'Let me check.\n<|python_tag|>wolfram_alpha.call(query="solve x^2 = 4", limit=2, exact=True)',
        "Let me check.",
        [("wolfram_alpha", '{"query":"solve x^2 = 4","limit":2,"exact":true}')],
    ),
    ("llama3", '<|python_tag|>f.call(q="\\d+")\n', None, [("f", '{"q":"\\\\d+"}')]),
    # Mistral
    (
        "mistral",
        '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", '
        '"format": "celsius"}, "id": "Kj3mN8pQ2"}]',
        None,
        [("get_current_weather", '{"location":"Paris, France","format":"celsius"}')],
    ),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "add", "arguments": {"a": 2, "b": 3}}, '
        '{"name": "multiply", "arguments": {"a": 4, "b": 5}}]</s>',
        "</s>",
        [("add", '{"a":2,"b":3}'), ("multiply", '{"a":4,"b":5}')],
    ),
    (
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
        '[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{"tz": "UTC"}',
        None,
        [("get_weather", '{"city":"Paris"}'), ("get_time", '{"tz":"UTC"}')],
    ),
    (
        "mistral",
        'Sure, let me check.[TOOL_CALLS][{"name": "f", "arguments": {"q": "[a] \\"b\\" {c}"}}]',
        "Sure, let me check.",
        [("f", '{"q":"[a] \\"b\\" {c}"}')],
    ),
    ("mistral", '[{"name": "add", "arguments": {"a": 1, "b": 2}}]', None, [("add", '{"a":1,"b":2}')]),
    # generic JSON
    (
        "json",
        '```json\n{"name": "get_weather", "arguments": {"city": "Berlin"}}\n```',
        None,
        [("get_weather", '{"city":"Berlin"}')],
    ),
    (
        "json",
        '  [{"name": "a", "parameters": {}}, {"name": "b", "arguments": {"k": "v"}}]  ',
        None,
        [("a", "{}"), ("b", '{"k":"v"}')],
    ),
    (
        "json",
        '{"tool_calls": [{"id": "x", "type": "function", '
        '"function": {"name": "f", "arguments": "{\\"n\\": 1}"}}]}',
        None,
        [("f", '{"n": 1}')],
    ),
    (
        "json",
        '```\n{"name": "f", "arguments": {"s": "naïve ünïcode"}}```',
        None,
        [("f", '{"s":"naïve ünïcode"}')],
    ),
    # llama-cpp-python's chatml-function-calling
    (
        "chatml-function-calling",
        'functions.UserDetail:\n{"name": "Jason", "age": 25}',
        None,
        [("UserDetail", '{"name":"Jason","age":25}')],
    ),
    (
        "chatml-function-calling",
        'functions.get_weather:\n{ "city": "Paris" }\nfunctions.get_time:\n{"tz": "CET"}\n',
        None,
        [("get_weather", '{"city":"Paris"}'), ("get_time", '{"tz":"CET"}')],
    ),
    ("chatml-function-calling", "message:\nHello! How can I help?", "Hello! How can I help?", []),
    ("chatml-function-calling", "  message: Hi", "Hi", []),
    (
        "chatml-function-calling",
        'Let me check.\nfunctions.get_weather:\n{"city": "Paris"}',
        "Let me check.",
        [("get_weather", '{"city":"Paris"}')],
    ),
]

# (parser, completion text): no calls, and the content is the text exactly as written
UNCHANGED: list[tuple[str, str]] = [
    # plain text that only looks like it might be a call
    ("hermes", "Wrap each call in a <tool_call> tag and close it with </tool_call>."),
    ("hermes", "The tag starts with <tool_"),
    ("hermes", 'Use a dict like {"a": 1} or a < b.\n'),
    ("json", "Here is {braces} and [brackets], with ``code``.  "),
    ("json", "``double backticks``"),
    ("json", '{"name": "Alice", "age": 30}'),
    ("json", "[]"),
    ("json", "```python\nprint({'name': 1})\n```"),
    ("json", " \n"),
    ("llama3", "The weather in Menlo Park is 68°F and sunny."),
    ("llama3", '{"temperature": 21, "unit": "celsius"}'),
    ("mistral", "The [TOOL_CALLS] token is special."),
    ("mistral", "[TOOL_CALLS] ! not a call"),
    ("chatml-function-calling", "The answer is 4."),
    ("chatml-function-calling", "messages: are welcome"),
    ("chatml-function-calling", "functions.get_weather: not json"),
    ("chatml-function-calling", 'functions.get_weather:\n{"city": "Par'),
    ("chatml-function-calling", "see functions.py"),
    # malformed or truncated: never raises
    (
        "hermes",
        'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>',
    ),
    ("hermes", 'Sure.\n<tool_call>\n{"name": "get_weather", "argu'),
    ("hermes", '<tool_call>\n{"name": "only_a_name"}\n</tool_call>'),
    ("hermes", '<tool_call>{"name": "f", "arguments": "not json"}</tool_call>'),
    ("hermes", f"<tool_call>{DEEP}</tool_call>"),
    ("llama3", "<|python_tag|>import math\nprint(math.sqrt(2))"),
    ("llama3", "<|python_tag|>brave_search.call(query=user_query)"),
    ("llama3", '<|python_tag|>f.call("positional")'),
    ("llama3", "<|python_tag|>f.call(x={1, 2})"),
    ("llama3", '{"name": "a", "parameters": {"x": 1}} and then some words'),
    ("mistral", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1,}}]'),
    ("mistral", '[TOOL_CALLS][{"name": "add", "argu'),
    ("mistral", "[TOOL_CALLS]get_weather[ARGS]{oops}"),
    ("json", '```json\n{"name": "f", "arguments": {\n```'),
    ("json", '{"name": "f", "arguments": {"x": NaN}}'),
    ("json", DEEP),
]

CASES = [*CALLS, *((parser, text, text, []) for parser, text in UNCHANGED), ("json", "", None, [])]


def _case_id(case: tuple[str, str, str | None, Calls]) -> str:
    return f"{case[0]}-{re.sub(r'[^A-Za-z0-9]+', '_', case[1][:32])}"


def _pieces(text: str, rng: random.Random, longest: int) -> Iterator[str]:
    at = 0
    while at < len(text):
        size = rng.randint(1, longest)
        yield text[at : at + size]
        at += size


def _without_made_ids(parsed: ParsedOutput) -> tuple[str | None, list[tuple[str, str, str | None]]]:
    """``parsed`` with the ids the parser made (random) left out; the model's own ids stay."""
    made = re.compile(r"call_[0-9a-f]{24}|[A-Za-z0-9]{9}")
    return parsed.content, [(c.name, c.arguments, None if made.fullmatch(c.id) else c.id)
                            for c in parsed.tool_calls]


def _stream(parser: str, pieces: Iterator[str]) -> list[Delta]:
    stream = get_parser(parser).stream()
    deltas = [delta for piece in pieces for delta in stream.feed(piece)]
    return deltas + stream.finish()


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES, ids=[_case_id(c) for c in CASES])
def test_parse(parser: str, text: str, content: str | None, calls: Calls) -> None:
    parsed = get_parser(parser).parse(text)
    assert parsed.content == content
    assert [(call.name, call.arguments) for call in parsed.tool_calls] == calls
    assert len({call.id for call in parsed.tool_calls}) == len(calls)
    # the ids of calls the model gave none are random (unique across responses): all else agrees
    assert _without_made_ids(get_parser(parser).parse(text)) == _without_made_ids(parsed)


@pytest.mark.parametrize(("parser", "text", "content", "calls"), CASES, ids=[_case_id(c) for c in CASES])
@pytest.mark.parametrize(("seed", "longest"), [(0, 1), (1, 2), (2, 3), (3, 5), (4, 8), (5, 16), (6, 40)])
def test_stream_reassembles_to_parse(
    parser: str, text: str, content: str | None, calls: Calls, seed: int, longest: int
) -> None:
    longest *= 1000 if len(text) > 10_000 else 1  # the huge input needs no 1-char cuts
    deltas = _stream(parser, _pieces(text, random.Random(seed), longest))
    assert _without_made_ids(assemble(deltas)) == _without_made_ids(get_parser(parser).parse(text))
    for delta in deltas:  # every delta is one well-formed OpenAI piece
        assert len(delta) == 1
        if "content" in delta:
            assert delta["content"]
        else:
            (part,) = delta["tool_calls"]
            assert set(part) in ({"index", "id", "type", "function"}, {"index", "function"})


def test_call_deltas_name_first_then_arguments() -> None:
    deltas = _stream("hermes", iter([QWEN_TWO_CALLS]))
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [c["index"] for c in calls] == [0, 0, 1, 1]
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"] == {"name": "get_current_weather", "arguments": ""}
    assert calls[1] == {"index": 0, "function": {"arguments": WEATHER[0][1]}}


def test_content_is_released_as_soon_as_it_cannot_start_a_marker() -> None:
    stream = get_parser("hermes").stream()
    assert stream.feed("Hello <tool_") == [{"content": "Hello"}]  # the space waits: it may precede a call
    assert stream.feed("cal") == []
    assert stream.feed("l> is a tag") == []  # inside a block now, until it closes or the output ends
    assert stream.finish() == [{"content": " <tool_call> is a tag"}]
    stream = get_parser("hermes").stream()
    assert stream.feed("a <tool_box> b") == [{"content": "a <tool_box> b"}]
    stream = get_parser("json").stream()
    assert stream.feed("Sure, {x}") == [{"content": "Sure, {x}"}]
    stream = get_parser("llama3").stream()
    assert stream.feed(' {"name"') == []  # may be a bare JSON call: held to the end
    assert stream.finish() == [{"content": ' {"name"'}]


def test_a_call_is_emitted_when_its_block_closes() -> None:
    stream = get_parser("hermes").stream()
    head = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call'
    assert stream.feed(head) == []
    assert [d["tool_calls"][0]["index"] for d in stream.feed(">\n<tool_call>")] == [0, 0]
    stream = get_parser("mistral").stream()
    assert stream.feed('[TOOL_CALLS][{"name": "f", "arguments": {"s": "]"}}') == []
    assert len(stream.feed("]")) == 2


def test_ids() -> None:
    mistral = get_parser("mistral").parse(
        '[TOOL_CALLS][{"name": "a", "arguments": {}, "id": "Kj3mN8pQ2"}, {"name": "b", "arguments": {}}]'
    )
    assert mistral.tool_calls[0].id == "Kj3mN8pQ2"
    assert re.fullmatch(r"[A-Za-z0-9]{9}", mistral.tool_calls[1].id)  # what Mistral's templates demand
    same_call_twice = get_parser("llama3").parse(
        '{"name": "f", "parameters": {}}; {"name": "f", "parameters": {}}'
    )
    first, second = same_call_twice.tool_calls
    assert re.fullmatch(r"call_[0-9a-f]{24}", first.id) and first.id != second.id
    again = get_parser("llama3").parse('{"name": "f", "parameters": {}}')
    assert again.tool_calls[0].id not in (first.id, second.id)  # random, not a hash of the call


def test_stream_refuses_use_after_finish() -> None:
    stream = get_parser("json").stream()
    stream.finish()
    with pytest.raises(ValueError, match="after finish"):
        stream.feed("x")
    with pytest.raises(ValueError, match="twice"):
        stream.finish()


def test_tool_call_to_dict_is_openai_shaped() -> None:
    call = ToolCall(name="f", arguments="{}", id="call_1")
    assert call.to_dict() == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    assert ParsedOutput("x").tool_calls == []


def test_registry() -> None:
    assert names() == ["chatml-function-calling", "hermes", "json", "llama3", "mistral"]
    with pytest.raises(ValueError, match="known: chatml-function-calling, hermes, json, llama3, mistral"):
        get_parser("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("hermes")(MarkerParser)
    try:

        @register("test-bracket")
        class _Bracket(MarkerParser):
            marker = "<<"

            def block_scanner(self) -> BlockEnd:
                return lambda body: body.find(">>") + 2 or None

            def parse_block(self, block: str) -> list[tuple[str, str, str | None]] | None:
                return [(block[:-2], "{}", None)] if block.endswith(">>") else None

        parsed = get_parser("test-bracket").parse("go <<ping>>")
        assert parsed.content == "go" and parsed.tool_calls[0].name == "ping"
    finally:
        _registry._PARSERS._items.pop("test-bracket", None)


TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "models" / "templates"


@pytest.mark.parametrize(
    ("snippet", "name"),
    [
        (
            '{{- "<tool_call>\\n{\\"name\\": <function-name>, '
            '\\"arguments\\": <args-json-object>}\\n</tool_call>" }}',
            "hermes",
        ),
        ("{%- if builtin_tools is defined %}{{- '<|python_tag|>' + tool_call.name + '.call(' }}", "llama3"),
        ("{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}", "llama3"),
        ('{{- "[TOOL_CALLS] [" }}{%- for tool_call in message.tool_calls %}', "mistral"),
        (
            "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>",
            "json",
        ),
        ("", "json"),
        (None, "json"),
    ],
)
def test_detect_on_snippets(snippet: str | None, name: str) -> None:
    assert detect(snippet) == name


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("Qwen-Qwen2.5-7B-Instruct", "hermes"),
        ("Qwen-Qwen3-0.6B", "hermes"),
        ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "hermes"),
        ("meta-llama-Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama-Llama-3.2-3B-Instruct", "llama3"),
        ("mistralai-Mistral-Nemo-Instruct-2407", "mistral"),
        ("Mistral-Small-3.2-24B-Instruct-2506", "mistral"),
        ("google-gemma-2-2b-it", "json"),
    ],
)
def test_detect_on_shipped_templates(template: str, name: str) -> None:
    path = TEMPLATE_DIR / f"{template}.jinja"
    if not path.is_file():
        pytest.skip("llama.cpp's models/templates not synced")
    assert detect(path.read_text(encoding="utf-8")) == name
