"""The ``llama-binding`` command as a user drives it: subprocesses, real models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 120


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_binding", *args], input=stdin, capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_usage_and_unknown_commands() -> None:
    r = cli()
    assert r.returncode == 2 and "run [MODEL]" in r.stdout and "info MODEL" in r.stdout
    assert cli("--help").returncode == 0
    r = cli("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_info_summarises_a_chat_model(smollm2: Path) -> None:
    r = cli("info", str(smollm2))
    assert r.returncode == 0, r.stderr
    for text in ("architecture      llama", "134.5 M", "Q4_1", "8192", "chat template     yes", "q4_1",
                 "CPU"):
        assert text in r.stdout, (text, r.stdout)
    d = json.loads(cli("info", str(smollm2), "--json", "--n-ctx", "8192").stdout)
    assert d["parameters"] == 134515008 and d["layers"] == 30 and d["kv_heads"] == 3
    assert d["tensors_by_type"]["q4_1"]["tensors"] == 210
    small = json.loads(cli("info", str(smollm2), "--json", "--n-ctx", "1024").stdout)
    # the KV cache: 30 layers x 3 KV heads x (64 + 64) x 2 bytes a cell
    kv = 7168 * 30 * 3 * 128 * 2 / 2**20
    assert d["memory"]["host_mib"] - small["memory"]["host_mib"] == pytest.approx(kv, abs=0.2)


def test_info_of_an_embedding_model_and_bad_files(minilm: Path, tmp_path: Path) -> None:
    d = json.loads(cli("info", str(minilm), "--json").stdout)
    assert d["architecture"] == "bert" and not d["chat_template"]
    assert d["memory"]["host_mib"] == d["size_mib"]  # no KV cache
    r = cli("info", str(tmp_path / "missing.gguf"))
    assert r.returncode == 1 and "no such file" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    r = cli("info", str(bad))
    assert r.returncode == 1 and "not a readable GGUF file" in r.stderr and "Traceback" not in r.stderr


def test_run_chats_with_the_models_template(smollm2: Path) -> None:
    r = cli("run", str(smollm2), "What is the capital of France?", "-n", "16", "--temperature", "0",
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and r.stderr == ""
    j = cli("run", str(smollm2), "--json", "-n", "4", "Hi", "--quiet")
    out = json.loads(j.stdout)
    assert out["object"] == "chat.completion" and out["usage"]["completion_tokens"] <= 4


def test_run_completes_a_prompt_from_stdin(stories260k: Path) -> None:
    a = cli("run", str(stories260k), "--raw", "-n", "12", "--seed", "7", "--quiet", stdin="Once upon a time")
    b = cli("run", str(stories260k), "--raw", "-n", "12", "--seed", "7", "--quiet", stdin="Once upon a time")
    assert a.returncode == 0 and a.stdout.strip() and a.stdout == b.stdout  # seeded: the same text
    j = json.loads(cli("run", str(stories260k), "--raw", "--json", "-n", "3", "Once", "--quiet").stdout)
    assert j["object"] == "text_completion" and j["choices"][0]["finish_reason"] == "length"


def test_run_refuses_bad_input(stories260k: Path, tmp_path: Path) -> None:
    r = cli("run", str(tmp_path / "nope.gguf"), "hi")
    assert r.returncode == 1 and "no such file" in r.stderr
    r = cli("run", str(stories260k), stdin="   ")
    assert r.returncode == 2 and "empty" in r.stderr
    r = cli("run", str(stories260k), "hi", "--temperature", "warm")
    assert r.returncode == 2 and "invalid float value" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 40)
    r = cli("run", str(bad), "hi", "--quiet")
    assert r.returncode == 1 and "could not load" in r.stderr and "Traceback" not in r.stderr
