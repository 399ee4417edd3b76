"""The server over raw HTTP (httpx): SSE framing, disconnects, bad input, limits, auth, CORS,
tokenize/detokenize and the Prometheus metrics. After each bad request a normal one still works."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import SMOLLM2_ALIAS, Running, parse_sse

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
# a prompt SmolLM2 continues for long; its special tokens (0 <|endoftext|>, 1 <|im_start|>,
# 2 <|im_end|>) banned so that it never stops early
LONG = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 1500, "temperature": 0.0,
        "logit_bias": {"0": -100, "1": -100, "2": -100}}


@pytest.fixture(scope="module")
def http(chat_server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chat_server.base_url, timeout=TIMEOUT) as c:
        yield c


def assert_error_shape(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert "param" in err and "code" in err
    assert err["param"] is None or isinstance(err["param"], str)
    if code is not None:
        assert err["code"] == code, err
    return err  # type: ignore[no-any-return]


def assert_serves(c: httpx.Client, **headers: str) -> None:
    r = c.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2, "temperature": 0.0},
               headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] is not None


# --- SSE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 8, "temperature": 0.0}),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.0}),
])
def test_sse_framing(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    with http.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("x-accel-buffering") == "no"
        raw = r.read().decode()
    for block in raw.replace("\r\n", "\n").split("\n\n")[:-1]:  # each event is one data line
        lines = [ln for ln in block.split("\n") if not ln.startswith(":")]
        assert len(lines) == 1 and lines[0].startswith("data: "), block
    events = parse_sse(raw)
    assert events[-1].data == "[DONE]"
    assert sum(e.data == "[DONE]" for e in events) == 1
    chunks = [e.json() for e in events[:-1]]
    assert chunks and all("choices" in c and not e.is_error for c, e in zip(chunks, events))
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c or c["usage"] is None for c in chunks)


def test_sse_include_usage_chunk(http: httpx.Client) -> None:
    body = {"messages": MESSAGES, "max_tokens": 5, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        events = parse_sse(r.read().decode())
    assert events[-1].data == "[DONE]"
    usage = events[-2].json()
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    assert events[-3].json()["choices"][0]["finish_reason"] == "length"


def test_client_disconnect_cancels_the_request(chat_server: Running, http: httpx.Client) -> None:
    chat_server.wait_idle()
    with http.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        got = 0
        for line in r.iter_lines():
            got += line.startswith("data: ")
            if got >= 3:
                break
        assert chat_server.llm.n_outstanding == 1
    # the response is closed: the request must be cancelled within about one engine step
    deadline = time.monotonic() + 3.0
    while chat_server.llm.n_outstanding and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat_server.llm.n_outstanding == 0
    steps = chat_server.llm.scheduler.steps
    time.sleep(0.5)
    assert chat_server.llm.scheduler.steps == steps, "the engine kept decoding after the disconnect"
    assert_serves(http)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("path, content", [
    ("/v1/chat/completions", b'{"messages": ['),
    ("/v1/chat/completions", b"not json"),
    ("/v1/completions", b'{"prompt": "hi",}'),
    ("/v1/chat/completions", b"\xff\xfe\x00"),
    ("/tokenize", b"{"),
])
def test_malformed_json_is_a_400(http: httpx.Client, path: str, content: bytes) -> None:
    r = http.post(path, content=content, headers={"content-type": "application/json"})
    err = assert_error_shape(r, 400)
    assert err["type"] == "invalid_request_error"
    assert_serves(http)


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": 3}),
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": "x"}),
    ("/v1/chat/completions", {}),
    ("/v1/chat/completions", {"messages": [{"role": "user"}], "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": [{"content": "hi"}], "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": MESSAGES, "temperature": "hot"}),
    ("/v1/chat/completions", {"messages": MESSAGES, "stop": 5}),
    ("/v1/chat/completions", {"messages": MESSAGES, "logit_bias": {"abc": 1.0}}),
    ("/v1/chat/completions", {"messages": MESSAGES, "response_format": {"type": "nope"}}),
    ("/v1/chat/completions", {"messages": MESSAGES, "n": 0}),
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2, "n": 99}),
    ("/v1/completions", {"prompt": 3.5}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": [1]}),
    ("/v1/completions", {"prompt": "hi", "logprobs": "many"}),
    ("/v1/completions", {"prompt": [-5, 99999999], "max_tokens": 2}),
    ("/tokenize", {"content": 5}),
    ("/detokenize", {"tokens": "abc"}),
    ("/v1/chat/completions", [1, 2]),
    ("/v1/completions", "a string"),
])
def test_wrong_types_are_a_400(http: httpx.Client, path: str, body: Any) -> None:
    assert_error_shape(http.post(path, json=body), 400)
    assert_serves(http)


@pytest.mark.parametrize("body", [
    {"input": 3.5}, {"input": "x", "encoding_format": "hex"}, {}, {"input": [[]]},
    {"input": "x", "dimensions": 7}, {"input": "x", "dimensions": "big"}])
def test_embeddings_bad_input_is_a_400(embed_server: Running, body: Any) -> None:
    with httpx.Client(base_url=embed_server.base_url, timeout=TIMEOUT) as c:
        assert_error_shape(c.post("/v1/embeddings", json=body), 400)
        r = c.post("/v1/embeddings", json={"input": "hello"})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


def test_grammar_and_context_errors(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions",
                  json={"messages": MESSAGES, "grammar": "root ::= (", "max_tokens": 2})
    assert_error_shape(r, 400)
    r = http.post("/v1/completions", json={"prompt": "hello " * 5000, "max_tokens": 2})
    assert_error_shape(r, 400, code="context_length_exceeded")
    r = http.post("/v1/completions", json={"prompt": "hello " * 5000, "max_tokens": 2, "stream": True})
    assert_error_shape(r, 400, code="context_length_exceeded")  # known before the stream starts
    assert_serves(http)


def test_unknown_path_and_model(http: httpx.Client) -> None:
    assert_error_shape(http.get("/v1/nothing-here"), 404)
    assert_error_shape(http.post("/v2/chat/completions", json={"messages": MESSAGES}), 404)
    r = http.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES, "max_tokens": 2})
    assert_error_shape(r, 404)
    r = http.post("/v1/chat/completions",
                  json={"model": SMOLLM2_ALIAS, "messages": MESSAGES, "max_tokens": 2})
    assert r.status_code == 200
    assert_serves(http)


def test_models_and_health(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        (SMOLLM2_ALIAS, "model", "llama-binding")]


# --- limits -----------------------------------------------------------------------------------


@pytest.fixture
def limits(limits_server: Running) -> Iterator[httpx.Client]:
    limits_server.wait_idle()
    with httpx.Client(base_url=limits_server.base_url, timeout=TIMEOUT) as c:
        yield c
    limits_server.wait_idle()


def test_body_over_the_limit_is_a_413(limits: httpx.Client) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 10_000}], "max_tokens": 2}
    assert_error_shape(limits.post("/v1/chat/completions", json=big), 413)

    def chunks() -> Iterator[bytes]:  # no content-length: the limit must hold on the stream too
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r = limits.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_error_shape(r, 413)
    assert_serves(limits)


def test_queue_full_is_a_503_with_retry_after(limits_server: Running, limits: httpx.Client) -> None:
    # one slot, no waiting room: one long stream holds the server
    start = time.monotonic()
    with limits.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                break
        assert not parse_sse(line + "\n\n")[0].is_error, line
        probes: list[tuple[str, dict[str, Any]]] = [
            ("/v1/completions", {"prompt": "Hello", "max_tokens": 2}),
            ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2, "stream": True}),
            ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2}),
        ]
        for path, body in probes:
            busy = limits_server.llm.n_outstanding
            assert busy == 1, f"the long stream ended early ({time.monotonic() - start:.2f} s)"
            t0 = time.monotonic()
            full = limits.post(path, json=body)
            took = time.monotonic() - t0
            where = f"{path} {body} {t0 - start:.2f} s after the long stream began, in flight before: {busy}"
            if full.status_code != 503:
                rest = list(lines)
                raise AssertionError(f"{where}: {full.status_code} {full.text[:300]}; the long stream: "
                                     f"{len(rest)} more lines, ending {rest[-5:]}")
            assert_error_shape(full, 503)
            assert took < 2.0, f"a full queue must answer at once, took {took:.2f} s"
            assert int(full.headers["retry-after"]) >= 1
    limits_server.wait_idle(5.0)
    assert_serves(limits)


def test_request_timeout_is_a_504(limits: httpx.Client) -> None:
    t0 = time.monotonic()
    r = limits.post("/v1/completions", json=LONG)
    took = time.monotonic() - t0
    assert_error_shape(r, 504)
    assert took < 15.0


def test_request_timeout_ends_a_stream_with_an_error_event(limits: httpx.Client) -> None:
    t0 = time.monotonic()
    with limits.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        events = parse_sse(r.read().decode())
    assert time.monotonic() - t0 < 15.0
    assert events[-1].data == "[DONE]"
    assert events[-2].is_error, events[-2]
    assert "error" in events[-2].json()


# --- auth -------------------------------------------------------------------------------------


@pytest.fixture
def anon(auth_server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_server.base_url, timeout=TIMEOUT) as c:
        yield c


def test_missing_or_wrong_key_is_a_401(anon: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "wrong"}, {"Authorization": "k"},
                    {"Authorization": "Bearer"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("POST", "/v1/completions"), ("POST", "/tokenize"), ("GET", "/metrics")):
            body = {"messages": MESSAGES, "prompt": "hi", "content": "hi", "max_tokens": 2}
            r = anon.request(method, path, headers=headers, json=body if method == "POST" else None)
            assert_error_shape(r, 401)


def test_both_key_headers_are_accepted(anon: httpx.Client) -> None:
    for headers in ({"Authorization": "Bearer k"}, {"X-Api-Key": "k"}, {"Authorization": "Bearer k2"},
                    {"x-api-key": "k2"}):
        assert anon.get("/v1/models", headers=headers).status_code == 200
        assert_serves(anon, **headers)
        r = anon.post("/tokenize", json={"content": "hi"}, headers=headers)
        assert r.status_code == 200


def test_health_is_public_and_metrics_need_the_key(anon: httpx.Client) -> None:
    r = anon.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert anon.get("/metrics").status_code == 401
    r = anon.get("/metrics", headers={"Authorization": "Bearer k"})
    assert r.status_code == 200 and "llamacpp:" in r.text


def test_cors_preflight(anon: httpx.Client, http: httpx.Client) -> None:
    for c in (anon, http):  # the preflight carries no key: it must not be refused for that
        r = c.options("/v1/chat/completions", headers={
            "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert r.status_code in (200, 204), r.text
        assert r.headers.get("access-control-allow-origin") in ("*", "http://example.com")
        assert "POST" in r.headers.get("access-control-allow-methods", "").upper() or \
            r.headers.get("access-control-allow-methods") == "*"
    r = http.get("/v1/models", headers={"Origin": "http://example.com"})
    assert r.headers.get("access-control-allow-origin") in ("*", "http://example.com")


# --- tokenize / detokenize --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Hello world", "The café costs 5€ — ok?", "  spaces\nand\ttabs  "])
def test_tokenize_detokenize_round_trip(http: httpx.Client, text: str) -> None:
    r = http.post("/tokenize", json={"content": text, "add_special": False})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    back = http.post("/detokenize", json={"tokens": tokens})
    assert back.status_code == 200 and back.json() == {"content": text}
    pieces = http.post("/tokenize", json={"content": text, "add_special": False, "with_pieces": True}).json()
    assert [p["id"] for p in pieces["tokens"]] == tokens
    assert all(isinstance(p["piece"], str) for p in pieces["tokens"])
    if text.isascii():
        assert "".join(p["piece"] for p in pieces["tokens"]) == text


def test_tokenize_default_and_detokenize_empty(http: httpx.Client) -> None:
    r = http.post("/tokenize", json={"content": "Hello"})
    assert r.status_code == 200 and r.json()["tokens"]
    r = http.post("/detokenize", json={"tokens": []})
    assert r.status_code == 200 and r.json() == {"content": ""}


# --- metrics ----------------------------------------------------------------------------------

METRICS = ["llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
           "llamacpp:prompt_tokens_seconds", "llamacpp:predicted_tokens_seconds",
           "llamacpp:requests_processing", "llamacpp:requests_deferred",
           "llamacpp:n_decode_total", "llamacpp:n_busy_slots_per_decode",
           "llama_binding_time_to_first_token_seconds", "llama_binding_inter_token_latency_seconds",
           "llama_binding_request_duration_seconds", "llama_binding_queue_wait_seconds",
           "llama_binding_kv_cache_usage_ratio", "llama_binding_engine_seconds",
           "llama_binding_pipelined_decodes"]


def metric(text: str, name: str) -> float:
    """The value of a sample without labels (or the sum over its labels)."""
    pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$"
    values = [float(m.group(2)) for m in re.finditer(pattern, text, re.M)]
    assert values, f"no sample {name} in the metrics"
    return sum(values)


def test_metrics_names_and_counters(http: httpx.Client) -> None:
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in METRICS:
        assert re.search(rf"^{re.escape(name)}(_bucket|_count|_sum|_total)?[{{ ]", r.text, re.M), name
    names = ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", "llamacpp:n_decode_total",
             "llama_binding_request_duration_seconds_count", "llama_binding_engine_seconds_total")
    before = {n: metric(r.text, n) for n in names}
    done = http.post("/v1/completions",
                     json={"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})
    assert done.status_code == 200
    usage = done.json()["usage"]
    after_text = http.get("/metrics").text
    after = {n: metric(after_text, n) for n in before}
    assert after["llamacpp:tokens_predicted_total"] >= before["llamacpp:tokens_predicted_total"] + 4
    assert after["llamacpp:prompt_tokens_total"] >= before["llamacpp:prompt_tokens_total"] + 1
    assert after["llamacpp:prompt_tokens_total"] <= \
        before["llamacpp:prompt_tokens_total"] + usage["prompt_tokens"]
    assert after["llamacpp:n_decode_total"] > before["llamacpp:n_decode_total"]
    assert after["llama_binding_engine_seconds_total"] > before["llama_binding_engine_seconds_total"]
    for phase in ("prepare", "decode", "collect"):  # where the engine's steps went, by phase
        pattern = rf'^llama_binding_engine_seconds_total\{{model="[^"]+",phase="{phase}"\}} '
        assert re.search(pattern, after_text, re.M), phase
    assert after["llama_binding_request_duration_seconds_count"] >= \
        before["llama_binding_request_duration_seconds_count"] + 1
    assert metric(after_text, "llamacpp:requests_processing") == 0
    # the CPU backend is synchronous: no step queues its decode ahead (BatchEngine.pipeline)
    assert metric(after_text, "llama_binding_pipelined_decodes_total") == 0
