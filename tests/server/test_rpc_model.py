"""A served model on llama.cpp RPC workers (``rpc_servers`` in its config): it answers as the
same model loaded locally; a model whose worker cannot be reached fails to load with the
reason (a 503), and the server goes on serving its other models."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
from _rpc_workers import HOSTS, needs_rpc, worker

from .conftest import serve


def _answer(base_url: str, model: str) -> httpx.Response:
    return httpx.post(base_url + "/v1/completions", timeout=60, json={
        "model": model, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0})


@needs_rpc
def test_served_model_on_a_worker_and_one_whose_worker_is_gone(stories260k: Path) -> None:
    with socket.socket() as s:
        s.bind((HOSTS[1], 0))
        closed = f"{HOSTS[1]}:{s.getsockname()[1]}"  # nothing listens there once closed
    with worker(HOSTS[0]) as (endpoint, _):
        models = [{"model": str(stories260k), "model_alias": "local", "n_ctx": 256, "n_gpu_layers": 0},
                  {"model": str(stories260k), "model_alias": "remote", "n_ctx": 256, "n_gpu_layers": -1,
                   "rpc_servers": endpoint},
                  {"model": str(stories260k), "model_alias": "gone", "n_ctx": 256, "n_gpu_layers": -1,
                   "rpc_servers": closed}]
        with serve(models=models) as s:
            local, remote = _answer(s.base_url, "local"), _answer(s.base_url, "remote")
            assert local.status_code == remote.status_code == 200, remote.text
            assert remote.json()["choices"][0]["text"] == local.json()["choices"][0]["text"]
            gone = _answer(s.base_url, "gone")
            assert gone.status_code == 503 and "cannot reach" in gone.json()["error"]["message"]
            assert _answer(s.base_url, "local").status_code == 200  # the others go on


@needs_rpc
def test_a_worker_lost_mid_stream_ends_that_stream_and_the_server_goes_on(stories260k: Path) -> None:
    """The worker of a served model is killed while it streams: that stream ends with an
    error event and [DONE]; the model is unloaded (its next request tries to load it again,
    a 503 while the worker is gone); the other models keep serving."""
    with worker(HOSTS[0]) as (endpoint, proc):
        models = [{"model": str(stories260k), "model_alias": "local", "n_ctx": 256, "n_gpu_layers": 0},
                  {"model": str(stories260k), "model_alias": "remote", "n_ctx": 512, "n_gpu_layers": -1,
                   "rpc_servers": endpoint}]
        with serve(models=models) as s:
            assert _answer(s.base_url, "remote").status_code == 200
            events = []
            with httpx.stream("POST", s.base_url + "/v1/completions", timeout=60, json={
                    "model": "remote", "prompt": "Once upon a time", "max_tokens": 400, "temperature": 0,
                    "ignore_eos": True, "stream": True}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    events.append(line[6:])
                    if len(events) == 1:
                        proc.kill()
                        proc.wait(10)
            assert events[-1] == "[DONE]"
            error = json.loads(events[-2])["error"]
            assert error["code"] == "rpc_worker_lost" and endpoint in error["message"]
            again = _answer(s.base_url, "remote")
            assert again.status_code == 503 and "cannot reach" in again.json()["error"]["message"]
            assert _answer(s.base_url, "local").status_code == 200
