"""Tool calls through create_chat_completion: forced calls on SmolLM2 validate against the
function's schema and stream as OpenAI tool_calls deltas; recorded outputs of other formats
become the same result shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llama_binding import Llama
from llama_binding.chat.tools import get_parser
from llama_binding.shapes import chat_chunks
from llama_binding.shapes import chat_completion as chat_response

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                            "unit": {"enum": ["C", "F"]}}, "required": ["city"]}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def chat(smollm2: Path) -> Llama:
    llm = Llama(smollm2, n_ctx=1024)
    yield llm  # type: ignore[misc]
    llm.close()


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_call_matches_the_schema(chat: Llama, choice: Any) -> None:
    out = chat.create_chat_completion(ASK, tools=TOOLS, tool_choice=choice, temperature=0.0, max_tokens=96)
    c = out["choices"][0]
    assert c["finish_reason"] == "tool_calls"
    (call,) = c["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    params = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)
    jsonschema.validate(json.loads(call["function"]["arguments"]), params)
    if isinstance(choice, dict):
        assert call["function"]["name"] == "get_weather"


def test_streamed_calls_reassemble_to_the_result(chat: Llama) -> None:
    whole = chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", temperature=0.0,
                                        max_tokens=96)
    chunks = list(chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", temperature=0.0,
                                              max_tokens=96, stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for d in chunk["choices"][0]["delta"].get("tool_calls", []):
            entry = calls.setdefault(d["index"], {"id": "", "name": "", "arguments": ""})  # type: ignore[index,arg-type]
            entry["id"] = d.get("id", entry["id"])  # type: ignore[assignment,union-attr]
            entry["name"] += d["function"].get("name", "")  # type: ignore[index,union-attr]
            entry["arguments"] += d["function"].get("arguments", "")  # type: ignore[index,union-attr]
    expected = whole["choices"][0]["message"]["tool_calls"]
    assert [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in expected] == [{k: calls[i][k] for k in ("name", "arguments")} for i in sorted(calls)]
    # ids are random per response (unique across runs), each named once in its call's first delta
    assert all(calls[i]["id"].startswith("call_") for i in calls)
    assert {calls[i]["id"] for i in calls}.isdisjoint(c["id"] for c in expected)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_none_and_auto_answer_in_text(chat: Llama) -> None:
    out = chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="none", temperature=0.0, max_tokens=16)
    assert out["choices"][0]["message"]["content"] and "tool_calls" not in out["choices"][0]["message"]
    out = chat.create_chat_completion(ASK, tools=TOOLS, temperature=0.0, max_tokens=16)
    assert out["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


def test_bad_tool_requests(chat: Llama) -> None:
    with pytest.raises(ValueError, match="tools\\[0\\]"):
        chat.create_chat_completion(ASK, tools=[{"type": "retrieval"}], tool_choice="auto")
    with pytest.raises(ValueError, match="not among the tools"):
        chat.create_chat_completion(ASK, tools=TOOLS,
                                    tool_choice={"type": "function", "function": {"name": "x"}})
    with pytest.raises(ValueError, match="needs tools"):
        chat.create_chat_completion(ASK, tool_choice="required")
    with pytest.raises(ValueError, match="cannot be combined"):
        chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="required",
                                    response_format={"type": "json_object"})


RECORDED = {
    "hermes": ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
               "\n</tool_call>"),
    "mistral": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "json": '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
}


def _completion(text: str) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.parametrize("fmt", sorted(RECORDED))
def test_recorded_outputs_become_tool_calls(fmt: str) -> None:
    text = RECORDED[fmt]
    out = chat_response(_completion(text), get_parser(fmt))  # type: ignore[arg-type]
    (call,) = out["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    chunks = [{**_completion(p), "choices": [{"text": p, "index": 0, "logprobs": None,
                                             "finish_reason": "stop" if i == len(pieces) - 1 else None}]}
              for i, p in enumerate(pieces)]
    streamed = list(chat_chunks(iter(chunks), get_parser(fmt)))  # type: ignore[arg-type]
    args = "".join(d["function"].get("arguments", "") for c in streamed
                   for d in c["choices"][0]["delta"].get("tool_calls", []))  # type: ignore[index,union-attr,misc]
    assert args == call["function"]["arguments"]
    assert streamed[-1]["choices"][0]["finish_reason"] == "tool_calls"


FOLLOW_UP = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22 C and sunny"},
]


def test_a_conversation_with_earlier_calls_renders_on_a_template_without_tools(chat: Llama) -> None:
    # SmolLM2's template concatenates content and knows no tool_calls: they are inlined as JSON
    out = chat.create_chat_completion(FOLLOW_UP, temperature=0.0, max_tokens=8)
    assert out["choices"][0]["message"]["content"] is not None


def test_inline_tool_calls() -> None:
    from llama_binding.chat.request import inline_tool_calls

    inlined = inline_tool_calls(FOLLOW_UP)
    assert inlined[0] == FOLLOW_UP[0] and inlined[2] == FOLLOW_UP[2]
    assert "tool_calls" not in inlined[1]
    assert json.loads(inlined[1]["content"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
