"""The server's life: many concurrent streaming clients, SIGTERM while a stream is in flight
(drain, exit 0, the port closed afterwards), and the command line (flag spellings, environment
variables, a config file)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Child, Running, parse_sse, serve_subprocess

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
ROUNDS = 6  # 16 clients x 6 streams x 160 tokens: about 5-15 s of stories260K on 2 cores
DRAIN_S = 10.0
LONG_PROMPT = "Once upon a time " * 80  # about 320 stories260K tokens: over a 256-token context


# --- concurrency ------------------------------------------------------------------------------


def test_sixteen_streaming_clients(stories_server: Running) -> None:
    prompts = ["Once upon a time", "The little dog", "One day, Lily", "Tom had a big"]

    async def client(i: int, c: httpx.AsyncClient) -> list[tuple[str, str]]:
        out = []
        for round_ in range(ROUNDS):
            body: dict[str, Any] = {"prompt": prompts[i % 4], "max_tokens": 160, "temperature": 0.8,
                                    "seed": 100 * i + round_, "stream": True}
            async with c.stream("POST", "/v1/completions", json=body) as r:
                assert r.status_code == 200, (await r.aread()).decode()
                events = parse_sse((await r.aread()).decode())
            assert events[-1].data == "[DONE]"
            assert not any(e.is_error for e in events), [e.data for e in events if e.is_error]
            chunks = [e.json() for e in events[:-1]]
            reasons = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]]
            assert reasons[-1] in ("stop", "length") and all(x is None for x in reasons[:-1])
            text = "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"])
            out.append((text, reasons[-1]))
        return out

    async def main() -> list[Any]:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=stories_server.base_url, timeout=TIMEOUT, limits=limits) as c:
            return await asyncio.wait_for(
                asyncio.gather(*[client(i, c) for i in range(16)], return_exceptions=True), 120.0)

    t0 = time.monotonic()
    results = asyncio.run(main())
    took = time.monotonic() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert sum(len(r) for r in results) == 16 * ROUNDS
    assert took < 120.0
    stories_server.wait_idle(5.0)
    metrics = httpx.get(f"{stories_server.base_url}/metrics", timeout=10.0).text
    assert re.search(r'^llamacpp:requests_processing\{model="stories"\} 0(\.0)?$', metrics, re.M), metrics
    busy = re.search(r'^llamacpp:n_busy_slots_per_decode\{model="stories"\} (\S+)$', metrics, re.M)
    assert busy and float(busy.group(1)) > 1.5  # the streams shared the decodes


# --- SIGTERM ----------------------------------------------------------------------------------


def assert_refused(child: Child) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{child.base_url}/health", timeout=3.0)


def test_sigterm_drains_the_stream_and_exits_0(smollm2: Path) -> None:
    args = ["--model", str(smollm2), "--n-ctx", "2048", "--n-seq-max", "2",
            "--drain-timeout", str(DRAIN_S), "--log-level", "warning"]
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 150, "temperature": 0.0, "stream": True,
            "logit_bias": {"0": -100, "1": -100, "2": -100}}
    with serve_subprocess(args) as child, httpx.Client(base_url=child.base_url, timeout=TIMEOUT) as c:
        with c.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            raw = ""
            for line in lines:
                raw += line + "\n"
                if line.startswith("data: "):
                    break
            t0 = time.monotonic()
            child.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # a new request while draining: refused at the socket, or a 503
            try:
                late = httpx.post(f"{child.base_url}/v1/completions", timeout=5.0,
                                  json={"prompt": "Hello", "max_tokens": 2})
                assert late.status_code == 503, late.text
            except httpx.TransportError:
                pass
            try:
                for line in lines:
                    raw += line + "\n"
            except httpx.TransportError as e:
                raise AssertionError(f"the stream was cut during the drain: {e!r}\n{raw[-500:]}") from e
        events = parse_sse(raw.strip("\n") + "\n\n")
        assert events[-1].data == "[DONE]", f"no [DONE] at the end of the stream: {raw[-300:]!r}"
        last = events[-2]
        if not last.is_error:
            assert last.json()["choices"][0]["finish_reason"] in ("stop", "length")
        try:
            rc = child.proc.wait(DRAIN_S + 15.0)
        except Exception as e:
            raise AssertionError(f"no exit {DRAIN_S + 15} s after SIGTERM\n{child.output()}") from e
        took = time.monotonic() - t0
        assert rc == 0, child.output()
        assert took < DRAIN_S + 15.0
        assert_refused(child)


def test_sigterm_on_an_idle_server_exits_at_once(stories260k: Path) -> None:
    with serve_subprocess(["--model", str(stories260k), "--log-level", "warning"]) as child:
        assert httpx.post(f"{child.base_url}/v1/completions", timeout=30.0,
                          json={"prompt": "Once", "max_tokens": 4}).status_code == 200
        t0 = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        rc = child.proc.wait(15.0)
        assert rc == 0, child.output()
        assert time.monotonic() - t0 < 10.0
        assert_refused(child)


# --- the command line -------------------------------------------------------------------------


def context_of(child: Child, headers: dict[str, str] | None = None) -> str:
    """ "small" when a ~320-token prompt is refused with context_length_exceeded, "large" when served."""
    with httpx.Client(base_url=child.base_url, timeout=TIMEOUT, headers=headers or {}) as c:
        short = c.post("/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 4})
        assert short.status_code == 200, short.text
        r = c.post("/v1/completions", json={"prompt": LONG_PROMPT, "max_tokens": 4})
        if r.status_code == 200:
            return "large"
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "context_length_exceeded", r.text
        return "small"


@pytest.mark.parametrize("flag", ["--n_ctx", "--n-ctx"])
def test_n_ctx_flag_spellings(stories260k: Path, flag: str) -> None:
    # the flag wins over the environment
    env = {"LLAMA_BINDING_N_CTX": "2048"}
    with serve_subprocess(["--model", str(stories260k), flag, "256", "--n-seq-max", "1",
                           "--log-level", "warning"], env=env) as child:
        assert context_of(child) == "small"


@pytest.mark.parametrize(("flag", "context"), [("--kv-unified", "large"), ("--no-kv-unified", "small")])
def test_kv_cache_per_slot(stories260k: Path, flag: str, context: str) -> None:
    """1024 cells for 4 slots: shared, a 320-token prompt fits; split, 256 per slot, it does not."""
    with serve_subprocess(["--model", str(stories260k), "--n-ctx", "1024", "--n-seq-max", "4", flag,
                           "--log-level", "warning"]) as child:
        assert context_of(child) == context


def test_n_ctx_from_the_environment(stories260k: Path) -> None:
    env = {"LLAMA_BINDING_N_CTX": "256", "LLAMA_BINDING_N_SEQ_MAX": "1"}
    with serve_subprocess(["--model", str(stories260k), "--log-level", "warning"], env=env) as child:
        assert context_of(child) == "small"


def test_config_file_through_the_cli_module(stories260k: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps({"n_ctx": 256, "n_seq_max": 1, "model_alias": "from-config"}))
    args = ["serve", "--model", str(stories260k), "--config", str(cfg), "--log-level", "warning"]
    with serve_subprocess(args, module=("-m", "llama_binding.cli")) as child:
        ids = [m["id"] for m in httpx.get(f"{child.base_url}/v1/models", timeout=10.0).json()["data"]]
        assert ids == ["from-config"]
        assert context_of(child) == "small"


def test_defaults_keys_and_public_metrics(stories260k: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("file-key\n\n")
    args = ["--model", str(stories260k), "--api-key", "k1", "--api-key", "k2", "--api-key-file", str(keys),
            "--metrics-public", "--log-level", "warning"]
    with serve_subprocess(args) as child:
        assert context_of(child, {"Authorization": "Bearer file-key"}) == "large"  # no n_ctx flag
        for key in ("k1", "k2", "file-key"):
            r = httpx.get(f"{child.base_url}/v1/models", headers={"X-Api-Key": key}, timeout=10.0)
            assert r.status_code == 200
            assert [m["id"] for m in r.json()["data"]] == ["stories260K"]  # the file's stem
        assert httpx.get(f"{child.base_url}/v1/models", timeout=10.0).status_code == 401
        metrics = httpx.get(f"{child.base_url}/metrics", timeout=10.0)
        assert metrics.status_code == 200 and "llamacpp:prompt_tokens_total" in metrics.text


def test_env_api_key_comma_list(stories260k: Path) -> None:
    env = {"LLAMA_BINDING_API_KEY": "a1,a2", "LLAMA_BINDING_MODEL_ALIAS": "env-alias"}
    with serve_subprocess(["--model", str(stories260k), "--log-level", "warning"], env=env) as child:
        for key, status in (("a1", 200), ("a2", 200), ("a1,a2", 401), ("", 401)):
            r = httpx.get(f"{child.base_url}/v1/models", headers={"Authorization": f"Bearer {key}".strip()},
                          timeout=10.0)
            assert r.status_code == status, key
        r = httpx.get(f"{child.base_url}/v1/models", headers={"Authorization": "Bearer a1"}, timeout=10.0)
        assert [m["id"] for m in r.json()["data"]] == ["env-alias"]


def test_cli_serve_without_a_model_serves_the_default_one(smollm2: Path, tmp_path: Path) -> None:
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    try:  # the default model already in the cache (fetching it is tests/test_hub.py's)
        os.link(smollm2, models / smollm2.name)
    except OSError:
        shutil.copyfile(smollm2, models / smollm2.name)
    env = {"LLAMA_BINDING_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1"}
    with serve_subprocess(["--n-ctx", "512"], env=env, module=("-m", "llama_binding", "serve")) as child:
        ids = [m["id"] for m in httpx.get(f"{child.base_url}/v1/models", timeout=10).json()["data"]]
        assert ids == [smollm2.stem]
        r = httpx.post(f"{child.base_url}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
