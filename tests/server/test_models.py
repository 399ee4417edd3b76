"""Many models behind one server (P11): routing by name, loading on demand, LRU eviction
under ``max_models``, reference counting, failures that stay contained, the admin endpoints,
``keep_alive``, and llama-cpp-python's config file, with the official OpenAI SDK and httpx."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .conftest import Running, parse_sse, serve, serve_subprocess

TIMEOUT = 60.0


def statuses(server: Running) -> dict[str, str]:
    r = httpx.get(f"{server.base_url}/v1/models", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return {m["id"]: m["meta"]["status"] for m in r.json()["data"]}


def meta(server: Running, alias: str) -> dict[str, Any]:
    r = httpx.get(f"{server.base_url}/v1/models", timeout=TIMEOUT)
    return next(m["meta"] for m in r.json()["data"] if m["id"] == alias)


def complete(server: Running, model: str, max_tokens: int = 4) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/completions", timeout=TIMEOUT,
                      json={"model": model, "prompt": "Once upon a time", "max_tokens": max_tokens})


@pytest.fixture(scope="module")
def three(smollm2: Path, stories260k: Path, minilm: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Running]:
    """SmolLM2 (chat), stories260K (completions), MiniLM (embeddings), at most two loaded;
    and a fourth model whose file is not a GGUF."""
    bad = tmp_path_factory.mktemp("models") / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    models = [{"model": str(smollm2), "model_alias": "smol", "n_ctx": 2048, "n_seq_max": 2},
              {"model": str(stories260k), "model_alias": "stories", "n_ctx": 2048, "n_seq_max": 4},
              {"model": str(minilm), "model_alias": "minilm", "embedding": True, "n_seq_max": 2},
              {"model": str(bad), "model_alias": "broken"}]
    with serve(models=models, max_models=2) as s:
        yield s


def test_models_are_listed_and_load_on_demand_in_lru_order(three: Running) -> None:
    assert httpx.get(f"{three.base_url}/health", timeout=TIMEOUT).status_code == 200
    for alias in ("smol", "stories", "minilm"):
        httpx.post(f"{three.base_url}/models/unload", json={"model": alias}, timeout=TIMEOUT)
    assert set(statuses(three)) == {"smol", "stories", "minilm", "broken"}
    assert complete(three, "stories").status_code == 200
    assert complete(three, "smol").status_code == 200
    assert statuses(three)["stories"] == statuses(three)["smol"] == "loaded"
    r = httpx.post(f"{three.base_url}/v1/embeddings", json={"model": "minilm", "input": "hi"},
                   timeout=TIMEOUT)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    s = statuses(three)  # stories was the least recently used: it made room for minilm
    assert (s["stories"], s["smol"], s["minilm"]) == ("unloaded", "loaded", "loaded"), s
    assert complete(three, "smol").status_code == 200  # smol is now the most recent
    assert complete(three, "stories").status_code == 200  # evicts minilm, not smol
    s = statuses(three)
    assert (s["stories"], s["smol"], s["minilm"]) == ("loaded", "loaded", "unloaded"), s
    m = meta(three, "minilm")
    assert m["loads"] >= 1 and m["unloads"] >= 1 and m["load_seconds"] > 0


def test_an_unknown_model_is_404_naming_the_known_ones(three: Running) -> None:
    r = complete(three, "gpt-4")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["param"] == "model"
    for alias in ("smol", "stories", "minilm"):
        assert repr(alias) in err["message"]


def test_a_broken_model_fails_alone(three: Running) -> None:
    r = complete(three, "broken")
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "model_load_failed" and "broken" in err["message"]
    assert statuses(three)["broken"] == "failed"
    assert "error" in meta(three, "broken")
    assert complete(three, "stories").status_code == 200  # the others go on
    assert httpx.get(f"{three.base_url}/health", timeout=TIMEOUT).status_code == 200


def test_a_stream_survives_an_unload_request(three: Running) -> None:
    """Unloading a model with a stream in flight waits for the stream: it ends with a
    finish_reason and [DONE]; the model is unloaded after."""
    assert complete(three, "stories").status_code == 200
    events: list[Any] = []
    t = stream_in_thread(three, "stories", 300, events)
    r = httpx.post(f"{three.base_url}/models/unload", json={"model": "stories"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["status"] == "unloaded"
    t.join(TIMEOUT)
    assert events[-1].data == "[DONE]"
    last = json.loads(events[-2].data)
    assert last["choices"][0]["finish_reason"] == "length"
    assert sum(len(json.loads(e.data)["choices"][0]["text"]) > 0 for e in events[:-1]) > 100
    assert statuses(three)["stories"] == "unloaded"


def stream_in_thread(server: Running, model: str, max_tokens: int, out: list[Any]) -> threading.Thread:
    def run() -> None:
        with httpx.stream("POST", f"{server.base_url}/v1/completions", timeout=TIMEOUT,
                          json={"model": model, "prompt": "Once", "max_tokens": max_tokens, "stream": True,
                                "ignore_eos": True}) as r:
            out.extend(parse_sse(r.read().decode()))

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while meta(server, model)["in_flight"] == 0 and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return t


def test_busy_models_are_never_evicted(three: Running) -> None:
    """Both resident models streaming: a third model's first request waits for one of them
    to finish, then takes its place; no stream is cut."""
    assert complete(three, "stories").status_code == 200
    assert complete(three, "smol").status_code == 200
    a: list[Any] = []
    b: list[Any] = []
    ta = stream_in_thread(three, "stories", 400, a)
    tb = stream_in_thread(three, "smol", 24, b)
    r = httpx.post(f"{three.base_url}/v1/embeddings", json={"model": "minilm", "input": "hi"},
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    for t in (ta, tb):
        t.join(TIMEOUT)
    for events in (a, b):
        assert events[-1].data == "[DONE]"
        assert json.loads(events[-2].data)["choices"][0]["finish_reason"] == "length"
    s = statuses(three)
    assert s["minilm"] == "loaded" and [s["stories"], s["smol"]].count("loaded") == 1, s


def test_concurrent_first_requests_load_once(three: Running) -> None:
    httpx.post(f"{three.base_url}/models/unload", json={"model": "smol"}, timeout=TIMEOUT)
    before = meta(three, "smol")["loads"]
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(complete(three, "smol").status_code))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert codes == [200] * 5
    assert meta(three, "smol")["loads"] == before + 1


def test_openai_sdk_against_each_model(three: Running) -> None:
    client = openai.OpenAI(base_url=f"{three.base_url}/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"smol", "stories", "minilm", "broken"} <= ids
    chat = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi!"}],
                                          max_tokens=8)
    assert chat.model == "smol" and chat.choices[0].message.content
    text = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=8)
    assert text.model == "stories" and text.choices[0].text
    emb = client.embeddings.create(model="minilm", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError):  # stories computes no embeddings
        client.embeddings.create(model="stories", input="x")


def test_metrics_carry_the_model(three: Running) -> None:
    assert complete(three, "stories").status_code == 200
    text = httpx.get(f"{three.base_url}/metrics", timeout=TIMEOUT).text
    assert 'llamacpp:tokens_predicted_total{model="stories"}' in text
    assert 'llama_binding_model_loads_total{model="minilm"}' in text
    assert 'llama_binding_model_loaded{model="broken"} 0.0' in text


def test_keep_alive_unloads_an_idle_model(stories260k: Path) -> None:
    with serve(models=[{"model": str(stories260k), "model_alias": "s", "keep_alive": 0.5}]) as s:
        assert complete(s, "s").status_code == 200
        assert statuses(s)["s"] == "loaded"
        deadline = time.monotonic() + 10
        while statuses(s)["s"] == "loaded" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert statuses(s)["s"] == "unloaded"
        assert complete(s, "s").status_code == 200  # and loads again when asked


def test_admin_key_guards_load_and_unload(stories260k: Path) -> None:
    """With admin keys, only they load and unload models (an admin key is also an API key)."""
    with serve(models=[{"model": str(stories260k), "model_alias": "s"}], api_key=["user"],
               admin_api_key=["root"]) as s:
        user, root = {"Authorization": "Bearer user"}, {"X-Api-Key": "root"}
        for path in ("/models/load", "/models/unload"):
            r = httpx.post(f"{s.base_url}{path}", json={"model": "s"}, headers=user, timeout=TIMEOUT)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
        r = httpx.post(f"{s.base_url}/models/load", json={"model": "s"}, headers=root, timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["status"] == "loaded"
        r = httpx.post(f"{s.base_url}/v1/completions", headers=root, timeout=TIMEOUT,
                       json={"model": "s", "prompt": "Once", "max_tokens": 2})
        assert r.status_code == 200
        r = httpx.post(f"{s.base_url}/models/unload", json={"model": "s"}, headers=root, timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["status"] == "unloaded"
        r = httpx.post(f"{s.base_url}/models/load", json={"model": "s"}, timeout=TIMEOUT)
        assert r.status_code == 401  # no key at all: the API key check answers


def test_models_dir_serves_each_file(stories260k: Path, minilm: Path, tmp_path: Path) -> None:
    for src, name in ((stories260k, "tales.gguf"), (minilm, "vectors.gguf")):
        (tmp_path / name).symlink_to(src)
    with serve(models_dir=str(tmp_path), n_ctx=1024) as s:
        assert set(statuses(s)) == {"tales", "vectors"}
        assert complete(s, "tales").status_code == 200
        assert complete(s, "tales.gguf").status_code == 200  # the file name routes too


def test_llama_cpp_python_config_file_loads_unchanged(stories260k: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "host": "127.0.0.1", "port": 8000, "interrupt_requests": True,
        "models": [{"model": str(stories260k), "model_alias": "gpt-3.5-turbo", "chat_format": "chatml",
                    "n_gpu_layers": 0, "offload_kqv": True, "n_threads": 1, "n_batch": 512, "n_ctx": 1024,
                    "verbose": False, "draft_model": "prompt-lookup-decoding",
                    "draft_model_num_pred_tokens": 10}]}))
    with serve_subprocess(["--config_file", str(cfg), "--log-level", "warning"]) as child:
        r = httpx.post(f"{child.base_url}/v1/chat/completions", timeout=TIMEOUT,
                       json={"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "gpt-3.5-turbo"


def test_memory_budget_evicts_and_refuses(smollm2: Path, stories260k: Path, minilm: Path) -> None:
    """The loaded models' estimates (file + KV cache) stay under --memory-budget-mb: a model
    that does not fit unloads the least recently used idle one; one larger than the budget
    is refused with the numbers."""
    from llama_binding.server.pool import estimate
    from llama_binding.server.settings import ModelSettings

    models = [{"model": str(smollm2), "model_alias": "smol", "n_ctx": 2048},
              {"model": str(stories260k), "model_alias": "stories", "n_ctx": 2048},
              {"model": str(minilm), "model_alias": "minilm", "embedding": True}]
    est = {m["model_alias"]: estimate(ModelSettings(**m)).host / 2**20 for m in models}
    assert est["smol"] > est["minilm"] > est["stories"] > 1.0
    budget = est["smol"] + est["stories"] + 1.0  # smol and stories fit together; minilm then does not
    with serve(models=models, memory_budget_mb=budget) as s:
        assert complete(s, "smol").status_code == 200
        assert complete(s, "stories").status_code == 200
        assert statuses(s) == {"smol": "loaded", "stories": "loaded", "minilm": "unloaded"}
        assert complete(s, "stories").status_code == 200  # smol is now the least recently used
        r = httpx.post(f"{s.base_url}/v1/embeddings", json={"model": "minilm", "input": "x"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        assert statuses(s) == {"smol": "unloaded", "stories": "loaded", "minilm": "loaded"}
        assert abs(meta(s, "minilm")["estimated_mib"]["host"] - est["minilm"]) < 0.2
    with serve(models=models[:1], memory_budget_mb=est["smol"] / 2) as s:
        r = complete(s, "smol")
        assert r.status_code == 503 and "budget" in r.json()["error"]["message"], r.text
        assert statuses(s)["smol"] == "failed"


def test_footprint_splits_with_the_offloaded_layers(smollm2: Path) -> None:
    """The estimate puts the offloaded layers' share of the weights and the KV cache on
    the GPU, the rest on the host (here without a GPU, and as if there were one)."""
    from llama_binding.server.pool import estimate
    from llama_binding.server.settings import ModelSettings

    size = smollm2.stat().st_size
    cpu = estimate(ModelSettings(model=str(smollm2), n_ctx=1024), gpu=False)
    assert cpu.gpu == 0 and cpu.host > size
    kv = cpu.host - size
    full = estimate(ModelSettings(model=str(smollm2), n_ctx=1024, n_gpu_layers=-1), gpu=True)
    assert full.host == 0 and full.gpu == size + kv
    half = estimate(ModelSettings(model=str(smollm2), n_ctx=1024, n_gpu_layers=15), gpu=True)
    assert 0 < half.gpu < full.gpu and half.host + half.gpu == size + kv
    assert estimate(ModelSettings(model=str(smollm2), n_ctx=2048), gpu=False).host == size + 2 * kv


def test_reload_swaps_the_engine_under_a_stream(three: Running) -> None:
    """POST /models/reload: the stream in flight finishes on the old engine; new requests
    go to the new one."""
    assert complete(three, "stories").status_code == 200
    before = meta(three, "stories")["loads"]
    events: list[Any] = []
    t = stream_in_thread(three, "stories", 400, events)
    r = httpx.post(f"{three.base_url}/models/reload", json={"model": "stories"}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["status"] == "loaded", r.text
    assert complete(three, "stories").status_code == 200
    t.join(TIMEOUT)
    assert events[-1].data == "[DONE]"
    assert json.loads(events[-2].data)["choices"][0]["finish_reason"] == "length"
    assert meta(three, "stories")["loads"] == before + 1


LONG = "Once upon a time " * 80  # about 320 stories260K tokens


def test_sighup_applies_a_changed_config(stories260k: Path, tmp_path: Path) -> None:
    """SIGHUP reads the config file again: a changed model is swapped (here a larger
    context), a new one is added, a removed one goes."""
    import signal

    cfg = tmp_path / "models.json"

    def write(n_ctx: int, extra: bool) -> None:
        models = [{"model": str(stories260k), "model_alias": "s", "n_ctx": n_ctx, "n_seq_max": 1}]
        if extra:
            models.append({"model": str(stories260k), "model_alias": "t", "n_ctx": 512})
        cfg.write_text(json.dumps({"models": models}))

    write(256, extra=False)
    with serve_subprocess(["--config", str(cfg), "--log-level", "warning"]) as child:
        url = child.base_url
        r = httpx.post(f"{url}/v1/completions", json={"model": "s", "prompt": LONG, "max_tokens": 2},
                       timeout=TIMEOUT)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        write(2048, extra=True)
        child.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ids = {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=TIMEOUT).json()["data"]}
            if "t" in ids:
                break
            time.sleep(0.1)
        assert ids == {"s", "t"}
        r = httpx.post(f"{url}/v1/completions", json={"model": "s", "prompt": LONG, "max_tokens": 2},
                       timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        write(2048, extra=False)
        child.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "t" in ids and time.monotonic() < deadline:
            ids = {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=TIMEOUT).json()["data"]}
            time.sleep(0.1)
        assert ids == {"s"}
        assert child.proc.poll() is None  # SIGHUP does not stop the server


def test_requests_waiting_for_a_load_are_bounded(smollm2: Path) -> None:
    """While a model loads, at most its slots + max_waiting requests wait for it; the rest
    get 503 queue_full with Retry-After at once."""
    with serve(models=[{"model": str(smollm2), "model_alias": "smol", "n_seq_max": 1, "n_ctx": 512}],
               max_waiting=0) as s:
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(complete(s, "smol", 2))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        codes = sorted(r.status_code for r in results)
        assert len(codes) == 6 and codes[0] == 200, codes
        refused = [r for r in results if r.status_code == 503]
        assert refused, codes
        assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
        assert all("retry-after" in r.headers for r in refused)
        assert complete(s, "smol").status_code == 200


def test_a_model_with_its_own_chat_template(stories260k: Path) -> None:
    template = "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}\n{% endfor %}<<assistant>>"
    with serve(models=[{"model": str(stories260k), "model_alias": "s", "chat_template": template}]) as s:
        r = httpx.post(f"{s.base_url}/v1/chat/completions", timeout=TIMEOUT,
                       json={"model": "s", "messages": [{"role": "user", "content": "Hello"}],
                             "max_tokens": 2})
        assert r.status_code == 200, r.text
        t = httpx.post(f"{s.base_url}/tokenize", timeout=TIMEOUT,
                       json={"model": "s", "content": "<<user>>Hello\n<<assistant>>"})
        assert r.json()["usage"]["prompt_tokens"] == len(t.json()["tokens"])


def test_per_model_lora_and_prompt_lookup(tiny_spm: Path, smollm2: Path,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """A config's per-model options reach each engine: the same base with and without a
    LoRA adapter answers differently; a model with llama-cpp-python's
    draft_model="prompt-lookup-decoding" drafts its greedy requests (its metrics count them)
    and answers as the same model without it."""
    from _tinylora import write_tiny_lora
    from _tinymodel import TinySpec

    adapter = write_tiny_lora(tmp_path_factory.mktemp("lora") / "a.gguf", TinySpec(), seed=1)
    models = [{"model": str(tiny_spm), "model_alias": "base", "n_ctx": 512},
              {"model": str(tiny_spm), "model_alias": "tuned", "n_ctx": 512, "lora_path": str(adapter)},
              {"model": str(smollm2), "model_alias": "plain", "n_ctx": 1024},
              {"model": str(smollm2), "model_alias": "lookup", "n_ctx": 1024,
               "draft_model": "prompt-lookup-decoding", "draft_model_num_pred_tokens": 6}]
    prompt = "Count from 1 to 40, separated by commas: 1, 2, 3, 4,"
    with serve(models=models, max_models=4) as s:
        def text(model: str, p: str = "Once upon a time") -> str:
            r = httpx.post(f"{s.base_url}/v1/completions", timeout=TIMEOUT,
                           json={"model": model, "prompt": p, "max_tokens": 48, "temperature": 0})
            assert r.status_code == 200, r.text
            return str(r.json()["choices"][0]["text"])

        def logprob(model: str) -> float:  # a random tiny model's greedy text hardly changes: its logits do
            r = httpx.post(f"{s.base_url}/v1/completions", timeout=TIMEOUT,
                           json={"model": model, "prompt": "Once upon a time", "max_tokens": 1,
                                 "logprobs": 1})
            assert r.status_code == 200, r.text
            return float(r.json()["choices"][0]["logprobs"]["token_logprobs"][0])

        assert logprob("base") != pytest.approx(logprob("tuned"), rel=0.5)  # (both near 0: confident)
        assert logprob("base") == pytest.approx(logprob("base"), rel=1e-3)
        assert text("lookup", prompt) == text("plain", prompt)
        metrics = httpx.get(f"{s.base_url}/metrics", timeout=TIMEOUT).text
        drafted = [line for line in metrics.splitlines() if line.startswith("llamacpp:n_drafted_total")]
        accepted = [line for line in metrics.splitlines()
                    if line.startswith("llamacpp:n_drafted_accepted_total")]
        assert any('model="lookup"' in d and float(d.split()[-1]) > 0 for d in drafted), drafted
        assert any('model="lookup"' in a and float(a.split()[-1]) > 0 for a in accepted), accepted
        assert all(float(d.split()[-1]) == 0 for d in drafted if 'model="plain"' in d)
