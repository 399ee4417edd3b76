"""AsyncLlama's chat, tools, JSON, log-probabilities, options and embeddings against their
synchronous twins (SmolLM2; MiniLM for embeddings): same greedy text, same tool calls,
same JSON, same deltas. Both sides use the same context shape (4 sequences, a unified
KV cache), and the synchronous side is reset before each call: the asynchronous side
evaluates every prompt from scratch, and a prompt evaluated after a reused prefix (other
batch splits) may flip a near-tie."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from llama_binding import AsyncLlama, Llama, SamplerError

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
MESSAGES = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150}},
          "required": ["name", "age"], "additionalProperties": False}


class FreshLlama(Llama):
    """A Llama whose completions evaluate their prompt from scratch, as AsyncLlama's do."""

    def create_completion(self, *args: Any, **kwargs: Any) -> Any:
        self.reset()
        return super().create_completion(*args, **kwargs)


@pytest.fixture(scope="module")
def sync(smollm2: Path) -> Iterator[Llama]:
    with FreshLlama(smollm2, n_ctx=2048, n_seq_max=4, kv_unified=True) as llm:
        yield llm


@pytest.fixture(scope="module")
def allm(smollm2: Path) -> Iterator[AsyncLlama]:
    a = AsyncLlama(smollm2, n_seq_max=4, n_ctx=2048)
    yield a
    a.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def drain(stream: Any) -> list[Any]:
    it: AsyncIterator[Any] = await stream
    return [c async for c in it]


def test_chat_gives_the_sync_greedy_message(sync: Llama, allm: AsyncLlama) -> None:
    want = sync.create_chat_completion(MESSAGES, temperature=0.0, max_tokens=24)
    got = run(allm.acreate_chat_completion(MESSAGES, temperature=0.0, max_tokens=24))
    assert got["object"] == "chat.completion" and got["id"].startswith("chatcmpl-")
    assert got["choices"][0]["message"] == want["choices"][0]["message"]
    assert got["choices"][0]["finish_reason"] == want["choices"][0]["finish_reason"]
    assert got["usage"] == want["usage"]
    assert "Paris" in got["choices"][0]["message"]["content"]


def test_chat_stream_has_the_sync_deltas(sync: Llama, allm: AsyncLlama) -> None:
    want = list(sync.create_chat_completion(MESSAGES, temperature=0.0, max_tokens=24, stream=True))
    got = run(drain(allm.acreate_chat_completion(MESSAGES, temperature=0.0, max_tokens=24, stream=True)))
    assert [c["choices"][0]["delta"] for c in got] == [c["choices"][0]["delta"] for c in want]
    assert [c["choices"][0]["finish_reason"] for c in got] == [c["choices"][0]["finish_reason"] for c in want]
    assert all(c["object"] == "chat.completion.chunk" for c in got)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_forced_tool_call_equals_the_sync_one(sync: Llama, allm: AsyncLlama, choice: Any) -> None:
    kw: dict[str, Any] = {"tools": TOOLS, "tool_choice": choice, "temperature": 0.0, "max_tokens": 96}
    want = sync.create_chat_completion(ASK, **kw)["choices"][0]
    got = run(allm.acreate_chat_completion(ASK, **kw))["choices"][0]
    assert got["finish_reason"] == want["finish_reason"] == "tool_calls"

    def calls(message: Any) -> list[tuple[str, Any]]:
        return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in message["tool_calls"]]

    assert calls(got["message"]) == calls(want["message"]) and calls(got["message"])


def test_streamed_tool_call_deltas_equal_the_sync_ones(sync: Llama, allm: AsyncLlama) -> None:
    kw: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required", "temperature": 0.0, "max_tokens": 96,
                          "stream": True}

    def shape(chunks: list[Any]) -> list[Any]:  # call ids are fresh per call
        out = []
        for c in chunks:
            delta = json.loads(json.dumps(c["choices"][0]["delta"]))
            for call in delta.get("tool_calls", []):
                call.pop("id", None)
            out.append((delta, c["choices"][0]["finish_reason"]))
        return out

    want = shape(list(sync.create_chat_completion(ASK, **kw)))
    got = shape(run(drain(allm.acreate_chat_completion(ASK, **kw))))
    assert got == want and want[-1][1] == "tool_calls"
    assert any("tool_calls" in d for d, _ in got)


def test_json_schema_equals_the_sync_json(sync: Llama, allm: AsyncLlama) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    ask = [{"role": "user", "content": "Describe a person as JSON."}]
    for seed in (1, 2):
        kw: dict[str, Any] = {"temperature": 0.8, "seed": seed, "max_tokens": 96, "response_format": fmt}
        want = sync.create_chat_completion(ask, **kw)["choices"][0]["message"]["content"]
        got = run(allm.acreate_chat_completion(ask, **kw))["choices"][0]["message"]["content"]
        assert got == want
        jsonschema.validate(json.loads(got), PERSON)
    kw = {"temperature": 0.0, "max_tokens": 200, "response_format": {"type": "json_object"}}
    want = sync.create_chat_completion(ask, **kw)["choices"][0]
    got = run(allm.acreate_chat_completion(ask, **kw))["choices"][0]
    assert got["message"] == want["message"] and got["finish_reason"] == want["finish_reason"]
    assert got["message"]["content"].lstrip().startswith("{")
    if got["finish_reason"] == "stop":
        assert isinstance(json.loads(got["message"]["content"]), dict)


def test_chat_logprobs_equal_the_sync_ones(sync: Llama, allm: AsyncLlama) -> None:
    kw: dict[str, Any] = {"temperature": 0.0, "max_tokens": 8, "logprobs": True, "top_logprobs": 3}
    want = sync.create_chat_completion(MESSAGES, **kw)["choices"][0]["logprobs"]["content"]
    got = run(allm.acreate_chat_completion(MESSAGES, **kw))["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in got] == [e["token"] for e in want] and len(got) == 8
    for g, w in zip(got, want):
        assert g["logprob"] == pytest.approx(w["logprob"], abs=1e-3)
        assert [t["token"] for t in g["top_logprobs"]] == [t["token"] for t in w["top_logprobs"]]
    streamed = run(drain(allm.acreate_completion("The capital of France is", max_tokens=6, temperature=0.0,
                                                 logprobs=2, stream=True)))
    whole = sync.create_completion("The capital of France is", max_tokens=6, temperature=0.0, logprobs=2)
    tokens = [t for c in streamed for t in (c["choices"][0]["logprobs"] or {}).get("tokens", [])]
    assert tokens == whole["choices"][0]["logprobs"]["tokens"]


def test_completion_options_match_the_sync_call(sync: Llama, allm: AsyncLlama) -> None:
    prompt = "Once upon a time"
    first = sync.create_completion(prompt, max_tokens=1, temperature=0.0)["choices"][0]["text"]
    banned = sync.tokenize(first.encode(), add_bos=False)[0]
    cases: list[dict[str, Any]] = [
        {"max_tokens": 12, "temperature": 0.0, "stop": [" a "]},
        {"max_tokens": 6, "temperature": 0.0, "logit_bias": {banned: -100.0}},
        {"max_tokens": 4, "grammar": 'root ::= " yes" | " no"', "temperature": 0.7, "seed": 3},
        {"max_tokens": 10, "temperature": 0.9, "seed": 11, "n": 2, "repeat_penalty": 1.3},
        {"max_tokens": 8, "temperature": 0.0, "echo": True},
        {"max_tokens": 8, "temperature": 0.8, "top_k": 5, "mirostat_mode": 2, "seed": 4},
    ]
    for kw in cases:
        want = sync.create_completion(prompt, **kw)
        got = run(allm.acreate_completion(prompt, **kw))
        assert [c["text"] for c in got["choices"]] == [c["text"] for c in want["choices"]], kw
        assert [c["finish_reason"] for c in got["choices"]] == [c["finish_reason"] for c in want["choices"]]
        assert got["usage"] == want["usage"]
    n2 = run(allm.acreate_completion(prompt, max_tokens=10, temperature=0.9, seed=11, n=2))
    assert [c["index"] for c in n2["choices"]] == [0, 1]
    assert n2["choices"][0]["text"] != n2["choices"][1]["text"]


def test_stream_options_include_usage(sync: Llama, allm: AsyncLlama) -> None:
    whole = run(allm.acreate_completion("Once upon a time", max_tokens=10, temperature=0.0))
    usage = {"include_usage": True}
    chunks = run(drain(allm.acreate_completion("Once upon a time", max_tokens=10, temperature=0.0,
                                               stream=True, stream_options=usage)))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == whole["choices"][0]["text"]
    chat = run(drain(allm.acreate_chat_completion(MESSAGES, max_tokens=6, temperature=0.0, stream=True,
                                                  stream_options=usage)))
    assert chat[-1]["choices"] == [] and chat[-1]["usage"]["completion_tokens"] == 6
    sync_chunks = list(sync.create_completion("Once upon a time", max_tokens=10, temperature=0.0, stream=True,
                                              stream_options=usage))
    assert sync_chunks[-1]["usage"] == whole["usage"]


def test_requests_with_their_own_chains_share_the_decodes(allm: AsyncLlama) -> None:
    """Grammars, logit bias and penalties sample on the host from the same batched decodes."""
    async def main() -> list[Any]:
        return await asyncio.gather(
            allm.acreate_completion("The capital of France is", max_tokens=16, temperature=0.0),
            allm.acreate_completion("Once upon a time", max_tokens=16, repeat_penalty=1.2, temperature=0.0),
            allm.acreate_completion("Count:", max_tokens=16, grammar='root ::= (" " [0-9])+', temperature=0),
            allm.acreate_completion("Hello", max_tokens=16, temperature=0.0, logit_bias={0: -5.0}),
            allm.acreate_completion("def f():", max_tokens=16, temperature=0.7, seed=1))

    before = allm.scheduler.steps
    results = run(main())
    assert all(r["usage"]["completion_tokens"] >= 1 for r in results)
    # 4 slots: five 16-token requests one at a time would take >= 80 steps
    assert allm.scheduler.steps - before < 50


def test_tokenize_and_detokenize(sync: Llama, allm: AsyncLlama) -> None:
    toks = run(allm.atokenize(b"Hello world"))
    assert toks == sync.tokenize(b"Hello world")
    assert run(allm.adetokenize(toks)) == sync.detokenize(toks) and b"Hello world" in sync.detokenize(toks)


def test_bad_requests_raise_and_leave_it_usable(allm: AsyncLlama) -> None:
    with pytest.raises(SamplerError):
        run(allm.acreate_completion("Hi", grammar="root ::= (", max_tokens=4))
    with pytest.raises(ValueError, match="logprobs"):
        run(allm.acreate_completion("Hi", logprobs=-1))
    with pytest.raises(ValueError, match="n must be"):
        run(allm.acreate_completion("Hi", n=0))
    with pytest.raises(TypeError, match="stream_options"):
        run(allm.acreate_completion("Hi", stream_options="yes"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="echo"):
        run(allm.acreate_completion("Hi", echo=True, logprobs=1))
    with pytest.raises(TypeError, match="messages"):
        run(allm.acreate_chat_completion("Hi"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_choice"):
        run(allm.acreate_chat_completion(ASK, tool_choice="required"))
    with pytest.raises(ValueError, match="response_format"):
        run(allm.acreate_chat_completion(ASK, response_format={"type": "xml"}))
    out = run(allm.acreate_completion("Hi", max_tokens=2, temperature=0.0))
    assert out["usage"]["completion_tokens"] == 2 and allm.n_outstanding == 0


def test_embeddings_equal_the_sync_ones(minilm: Path) -> None:
    texts = ["a cat sits on the mat", "stock markets fell today", "the kitten is on the rug"]
    with Llama(minilm, embedding=True) as sync:
        want = sync.create_embedding(texts)
        want_one = sync.embed(texts[0], numpy=True)
    allm = AsyncLlama(minilm, embedding=True, n_seq_max=4, n_ctx=2048)
    try:
        got = run(allm.acreate_embedding(texts))
        one, n = run(allm.aembed(texts[0], numpy=True, return_count=True))

        async def concurrent() -> list[Any]:
            return await asyncio.gather(*[allm.aembed(t) for t in texts])

        many = run(concurrent())
    finally:
        allm.close()
    assert got["usage"] == want["usage"] and got["object"] == "list"
    for g, w in zip(got["data"], want["data"]):
        np.testing.assert_allclose(g["embedding"], w["embedding"], atol=1e-4)
    np.testing.assert_allclose(one, want_one, atol=1e-4)
    with Llama(minilm, vocab_only=True) as vocab:
        assert n == len(vocab.tokenize(texts[0].encode()))
    for v, w in zip(many, want["data"]):
        np.testing.assert_allclose(v, w["embedding"], atol=1e-4)
