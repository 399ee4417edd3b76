"""The relay's picture of ggml-rpc's protocol (``native/rpc_relay.c``) against the pinned
llama.cpp source: the commands in their order, and which of them the worker answers. A
relay that waited for an answer that never comes would hang the client; one that did not
forward an answer would desynchronise the connection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RPC_CPP = ROOT / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-rpc" / "ggml-rpc.cpp"
RELAY_C = ROOT / "native" / "rpc_relay.c"


def _source() -> str:
    if not RPC_CPP.is_file():
        pytest.skip("vendor/llama.cpp is synced by the build; not here")
    return RPC_CPP.read_text()


def _upstream_commands(src: str) -> list[str]:
    body = re.search(r"enum rpc_cmd \{(.*?)\};", src, re.S)
    assert body
    names = re.findall(r"RPC_CMD_([A-Z_]+)", body.group(1))
    return [n for n in names if n not in ("NONE", "COUNT")]


def _upstream_answered(src: str) -> set[str]:
    """The commands whose case in the worker's loop sends a message back (HELLO: handled
    before the loop, answered)."""
    loop = src[src.index("static void rpc_serve_client"):]
    cases = re.split(r"\n\s*case RPC_CMD_", loop)[1:]
    answered = {"HELLO"}
    for case in cases:
        name = re.match(r"([A-Z_]+)", case).group(1)  # type: ignore[union-attr]
        if "send_msg(" in case.split("break;")[0]:
            answered.add(name)
    return answered


def _relay() -> tuple[list[str], set[str]]:
    text = RELAY_C.read_text()
    body = re.search(r"enum \{(.*?)\};", text, re.S)
    assert body
    commands = [n for n in re.findall(r"CMD_([A-Z_]+)", body.group(1)) if n != "COUNT"]
    sizes = text[text.index("static int64_t answer_size"):text.index("static void made_up_answer")]
    answered = set()
    for block in re.findall(r"((?:case CMD_[A-Z_]+:\s*)+)(?:return (?!NO_ANSWER)|\{)", sizes):
        answered.update(re.findall(r"CMD_([A-Z_]+)", block))
    return commands, answered


def test_the_relay_knows_the_commands_of_the_pinned_ggml_rpc() -> None:
    src = _source()
    commands, answered = _relay()
    assert commands == _upstream_commands(src)
    assert answered == _upstream_answered(src)


def test_the_relay_is_built_for_this_protocol_version() -> None:
    header = (ROOT / "vendor" / "llama.cpp" / "ggml" / "include" / "ggml-rpc.h")
    if not header.is_file():
        pytest.skip("vendor/llama.cpp is synced by the build; not here")
    major = re.search(r"#define RPC_PROTO_MAJOR_VERSION\s+(\d+)", header.read_text())
    assert major
    assert f"RPC_PROTO_MAJOR_VERSION != {major.group(1)}" in RELAY_C.read_text()


def test_the_relay_sizes_a_tensor_as_ggml_rpc_does() -> None:
    """``TENSOR_SIZE`` (the packed ``rpc_tensor``) sizes the answer to GET_TENSOR."""
    src = _source()
    ggml_h = (ROOT / "vendor" / "llama.cpp" / "ggml" / "include" / "ggml.h").read_text()
    consts = {m.group(1): int(m.group(2)) for m in re.finditer(r"#\s*define (GGML_MAX_\w+)\s+(\d+)", ggml_h)}
    body = re.search(r"struct rpc_tensor \{(.*?)\};", src, re.S)
    assert body
    width = {"uint64_t": 8, "int64_t": 8, "uint32_t": 4, "int32_t": 4, "char": 1}
    size = 0
    for kind, count in re.findall(r"(\w+)\s+\w+(?:\[([^\]]+)\])?;", body.group(1)):
        n = 1
        if count:  # GGML_MAX_X, or GGML_MAX_X / sizeof(type)
            m = re.fullmatch(r"(\w+)(?:\s*/\s*sizeof\((\w+)\))?", count.strip())
            assert m, count
            n = consts[m.group(1)] // (width[m.group(2)] if m.group(2) else 1)
        size += width[kind] * n
    assert size % 8 == 0
    assert f"#define TENSOR_SIZE {size} " in RELAY_C.read_text()
