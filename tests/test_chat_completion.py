"""create_chat_completion on SmolLM2 (its own ChatML template), streaming, structured
output through response_format, chat formats and handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llama_binding import Llama, SamplerError

MATH = [{"role": "user", "content": "What is 2 + 2?"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def chat(smollm2: Path) -> Llama:
    llm = Llama(smollm2, n_ctx=1024)
    yield llm  # type: ignore[misc]
    llm.close()


def test_answers_and_stops_at_im_end(chat: Llama) -> None:
    out = chat.create_chat_completion(MATH, temperature=0.0, max_tokens=64)
    choice = out["choices"][0]
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    assert choice["message"]["role"] == "assistant" and "4" in (choice["message"]["content"] or "")
    assert choice["finish_reason"] == "stop" and "<|im_end|>" not in (choice["message"]["content"] or "")
    assert out["usage"]["completion_tokens"] < 64
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]


def test_stream_reassembles_to_the_message(chat: Llama) -> None:
    whole = chat.create_chat_completion(MATH, temperature=0.0, max_tokens=64)
    chunks = list(chat.create_chat_completion(MATH, temperature=0.0, max_tokens=64, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}


def test_max_tokens_and_stop(chat: Llama) -> None:
    out = chat.create_chat_completion(MATH, temperature=0.0, max_tokens=3)
    assert out["choices"][0]["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 3
    out = chat.create_chat_completion(MATH, temperature=0.0, max_tokens=64, stop=["4"])
    assert "4" not in (out["choices"][0]["message"]["content"] or "")


def test_json_schema_response_format_validates(chat: Llama) -> None:
    fmt: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                                  "strict": True}}
    for seed in range(3):
        out = chat.create_chat_completion(
            [{"role": "user", "content": "Describe a person as JSON with name and age."}],
            temperature=0.8, seed=seed, max_tokens=128, response_format=fmt)
        assert out["choices"][0]["finish_reason"] == "stop"
        jsonschema.validate(json.loads(out["choices"][0]["message"]["content"] or ""), PERSON)


def test_json_object_response_format(chat: Llama) -> None:
    out = chat.create_chat_completion([{"role": "user", "content": "Reply with a JSON object."}],
                                      temperature=0.0, max_tokens=96, response_format={"type": "json_object"})
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(out["choices"][0]["message"]["content"] or ""), dict)


def test_bad_requests_raise(chat: Llama) -> None:
    with pytest.raises(ValueError, match="not both"):
        chat.create_chat_completion(MATH, grammar='root ::= "x"', response_format={"type": "json_object"})
    with pytest.raises(ValueError, match="response_format"):
        chat.create_chat_completion(MATH, response_format={"type": "yaml"})
    with pytest.raises(SamplerError):
        chat.create_chat_completion(MATH, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "string", "pattern": "(?=a)"}}})
    with pytest.raises(ValueError, match="image_url"):
        chat.create_chat_completion([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])
    with pytest.raises((TypeError, ValueError)):
        chat.create_chat_completion("hello")  # type: ignore[arg-type]


def test_logprobs_have_the_chat_shape(chat: Llama) -> None:
    out = chat.create_chat_completion(MATH, temperature=0.0, max_tokens=4, logprobs=True, top_logprobs=2)
    content = out["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert len(content) == 4  # type: ignore[arg-type]
    first = content[0]  # type: ignore[index]
    assert set(first) == {"token", "logprob", "bytes", "top_logprobs"} and len(first["top_logprobs"]) == 2


def test_chat_format_and_handler(smollm2: Path) -> None:
    with pytest.raises(ValueError, match="chatml"):
        Llama(smollm2, vocab_only=True, chat_format="no-such-format")
    seen: dict[str, Any] = {}

    def handler(*, llama: Llama, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        seen.update(kwargs, messages=messages, llama=llama)
        return {"handled": True}

    with Llama(smollm2, n_ctx=256, chat_handler=handler) as llm:
        assert llm.create_chat_completion(MATH, temperature=0.5) == {"handled": True}
        assert seen["llama"] is llm and seen["messages"] == MATH and seen["temperature"] == 0.5
    with Llama(smollm2, n_ctx=512, chat_format="chatml") as llm:
        out = llm.create_chat_completion(MATH, temperature=0.0, max_tokens=32)
        assert out["choices"][0]["message"]["content"]
