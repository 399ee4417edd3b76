"""A served model on llama.cpp RPC workers (``rpc_servers`` in its config): it answers as the
same model loaded locally; a model whose worker cannot be reached fails to load with the
reason (a 503), and the server goes on serving its other models."""

from __future__ import annotations

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
