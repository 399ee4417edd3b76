"""Validation and normalization of OpenAI chat messages (llama_binding.chat.messages)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llama_binding.chat import normalize_messages


def test_plain_messages_come_back_equal_but_new() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U", "name": "bob"}]
    normalized = normalize_messages(messages)
    assert normalized == messages
    assert normalized[0] is not messages[0]


def test_developer_becomes_system() -> None:
    assert normalize_messages([{"role": "developer", "content": "S"}]) == [{"role": "system", "content": "S"}]


def test_text_parts_are_joined_with_newlines_and_input_is_not_modified() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    before = copy.deepcopy(messages)
    assert normalize_messages(messages) == [{"role": "user", "content": "a\nb"}]
    assert messages == before


def test_a_tuple_of_messages_is_accepted() -> None:
    assert normalize_messages(({"role": "user", "content": "x"},)) == [{"role": "user", "content": "x"}]


def test_tool_calls_and_tool_results_pass_through() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "assistant", "tool_calls": calls},
    ]
    normalized = normalize_messages(messages)
    assert normalized[1] == {"role": "assistant", "content": None, "tool_calls": calls}
    assert normalized[1]["tool_calls"] is calls
    assert normalized[2] == {"role": "tool", "content": "42", "tool_call_id": "call_1"}
    assert normalized[3] == {"role": "assistant", "content": None, "tool_calls": calls}


@pytest.mark.parametrize("kind", ["image_url", "input_audio", "file", "refusal"])
def test_non_text_parts_are_refused(kind: str) -> None:
    messages = [{"role": "user", "content": "x"},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": kind, kind: {}}]}]
    with pytest.raises(ValueError, match=rf"^messages\[1\]\.content\[1\]: {kind} content parts are not "
                                         r"supported yet \(multimodal support is not there\)"):
        normalize_messages(messages)


@pytest.mark.parametrize(
    ("messages", "error", "pattern"),
    [
        ("hello", TypeError, r"messages must be a list of message objects, got str"),
        ({"role": "user", "content": "x"}, TypeError, r"messages must be a list .* got dict"),
        (None, TypeError, r"got NoneType"),
        ([], ValueError, r"messages is empty"),
        ([{"role": "user", "content": "x"}, "hi"], TypeError, r"messages\[1\] must be a message object"),
        ([{"content": "x"}], ValueError, r"messages\[0\] has no 'role'"),
        ([{"role": 3, "content": "x"}], TypeError, r"messages\[0\]\.role must be a string, got int"),
        ([{"role": "function", "content": "x"}], ValueError,
         r"messages\[0\] has an unknown role 'function' "
         r"\(known roles: assistant, developer, system, tool, user\)"),
        ([{"role": "user"}], ValueError, r"messages\[0\] \(user\) has no content"),
        ([{"role": "system", "content": None}], ValueError, r"messages\[0\] \(system\) has no content"),
        ([{"role": "user", "content": 5}], TypeError,
         r"messages\[0\]\.content must be a string or a list of content parts, got int"),
        ([{"role": "user", "content": b"x"}], TypeError, r"got bytes"),
        ([{"role": "user", "content": ["x"]}], TypeError,
         r"messages\[0\]\.content\[0\] must be a content part"),
        ([{"role": "user", "content": [{"text": "x"}]}], ValueError,
         r"messages\[0\]\.content\[0\] has no 'type'"),
        ([{"role": "user", "content": [{"type": "text", "text": 1}]}], TypeError,
         r"messages\[0\]\.content\[0\]\.text must be a string, got int"),
        ([{"role": "user", "content": "x", "tool_calls": []}], ValueError,
         r"messages\[0\] \(user\) has tool_calls; only assistant messages make tool calls"),
        ([{"role": "assistant", "content": "x", "tool_calls": "f()"}], TypeError,
         r"messages\[0\]\.tool_calls must be a list, got str"),
        ([{"role": "tool", "content": "x", "tool_call_id": 7}], TypeError,
         r"messages\[0\]\.tool_call_id must be a string, got int"),
    ],
)
def test_bad_shapes_name_the_message(messages: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        normalize_messages(messages)
