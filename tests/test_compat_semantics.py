"""Where llama-cpp-python's behaviour was wrong or noisy and ours differs on purpose (issue P17):

- ``response_format={"type": "json_object"}`` gives a JSON object, not any JSON value;
- a schema of ``json_object``, of a tool's ``parameters`` (forced calls) or of
  ``LlamaGrammar.from_json_schema`` allows no keys it does not declare, unless it says
  ``additionalProperties``;
- tool-call ids are random, unique across responses;
- an embedding-only model refuses to generate (a typed error; HTTP 400 in the server);
- Ctrl-C inside a native callback is raised as KeyboardInterrupt after the call, never
  printed as "Exception ignored on calling ctypes callback function";
- ``verbose=True`` shows llama.cpp's INFO lines and up, raw ``capi`` use prints nothing;
- the stream overloads type-check ``r["choices"]``, and ``help(Llama)`` documents every
  constructor argument.
"""

from __future__ import annotations

import inspect
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _grammar_accept import Acceptor

from llama_binding import Llama, ModelLoadError, UnsupportedModelError, _log
from llama_binding.chat.request import response_format_grammar, tool_call_grammar
from llama_binding.chat.tools import get_parser
from llama_binding.compat import _modules
from llama_binding.core import Model, ModelParams, Vocab
from llama_binding.grammar import JSON_OBJECT_GBNF, LlamaGrammar

ROOT = Path(__file__).resolve().parents[1]
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "unit": {"enum": ["c", "f"]}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def accepts(smollm2: Path) -> Iterator[Acceptor]:
    with Model(smollm2, ModelParams(vocab_only=True)) as model:
        yield Acceptor(Vocab(model))


@pytest.fixture(scope="module")
def chat(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=1024) as llm:
        yield llm


# --- JSON mode and closed schemas (model-free) -------------------------------------------


def test_json_object_is_an_object_not_any_value(accepts: Acceptor) -> None:
    gbnf = response_format_grammar({"type": "json_object"})
    assert gbnf == JSON_OBJECT_GBNF
    assert accepts(gbnf, '{"answer": 5}') and accepts(gbnf, "{}")
    for value in ("5", '"five"', "[5]", "true", "null"):  # llama-cpp-python's README got a bare number
        assert not accepts(gbnf, value), value
    assert not accepts(_modules.contents()[".llama_grammar"]["JSON_GBNF"], "5")  # the compat name too


def test_json_object_schema_has_no_undeclared_keys(accepts: Acceptor) -> None:
    gbnf = response_format_grammar({"type": "json_object", "schema": WEATHER})
    assert gbnf is not None
    assert accepts(gbnf, '{"city": "Paris", "unit": "c"}')
    assert not accepts(gbnf, '{"city": "Paris", "arguments_type": "x"}')
    open_schema = {**WEATHER, "additionalProperties": True}
    assert accepts(response_format_grammar({"type": "json_object", "schema": open_schema}) or "",
                   '{"city": "Paris", "extra": [1]}')
    typed = {**WEATHER, "additionalProperties": {"type": "integer"}}
    gbnf = response_format_grammar({"type": "json_object", "schema": typed}) or ""
    assert accepts(gbnf, '{"city": "Paris", "n": 3}') and not accepts(gbnf, '{"city": "Paris", "n": "x"}')
    # still lenient about keywords it cannot enforce (llama-cpp-python ignores them)
    assert response_format_grammar({"type": "json_object", "schema": {"type": "string", "format": "email"}})


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_call_grammar_has_only_declared_argument_keys(accepts: Acceptor, choice: Any) -> None:
    gbnf = tool_call_grammar([t["function"] for t in TOOLS], choice)
    assert gbnf is not None
    assert accepts(gbnf, '{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert not accepts(gbnf, '{"name": "get_weather", "arguments": {"city": "Paris", "arguments_type": 1}}')
    assert not accepts(gbnf, '{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "x"}')


def test_from_json_schema_forbids_extra_keys_by_default(accepts: Acceptor) -> None:
    """As llama-cpp-python's ``LlamaGrammar.from_json_schema`` (llama.cpp's converter)."""
    closed = LlamaGrammar.from_json_schema(json.dumps(WEATHER))
    assert accepts(closed.grammar, '{"city": "Paris"}')
    assert not accepts(closed.grammar, '{"city": "Paris", "zz": 1}')
    opened = LlamaGrammar.from_json_schema(WEATHER, extra_keys=True)
    assert accepts(opened.grammar, '{"city": "Paris", "zz": 1}')
    assert accepts(LlamaGrammar.from_json_schema({**WEATHER, "additionalProperties": True}).grammar,
                   '{"city": "Paris", "zz": 1}')
    LlamaGrammar.from_json_schema({"type": "string", "format": "email"})  # unknown formats: plain strings
    compat = LlamaGrammar(_modules.json_schema_to_gbnf(json.dumps(WEATHER)))
    assert not accepts(compat.grammar, '{"city": "Paris", "zz": 1}')


# --- tool-call ids ------------------------------------------------------------------------


def test_tool_call_ids_are_random_in_openai_shape() -> None:
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    ids = [get_parser("json").parse(text).tool_calls[0].id for _ in range(20)]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)  # not a hash of the call: each response gets its own


def test_tool_call_ids_unique_across_runs_and_consistent_in_a_stream(chat: Llama) -> None:
    runs = [chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", temperature=0.0,
                                        max_tokens=64) for _ in range(2)]
    calls = [r["choices"][0]["message"]["tool_calls"][0] for r in runs]
    assert calls[0]["function"] == calls[1]["function"]  # the same call (greedy) ...
    assert calls[0]["id"] != calls[1]["id"]  # ... with its own id each time
    chunks = chat.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", temperature=0.0,
                                         max_tokens=64, stream=True)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]  # type: ignore[union-attr]
    ids = [d["id"] for d in deltas if "id" in d]  # type: ignore[index]
    assert len(ids) == 1 and ids[0].startswith("call_")  # one id per call, in its first delta
    assert {d["index"] for d in deltas} == {0}  # type: ignore[index]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_call_arguments_have_only_declared_keys(chat: Llama, choice: Any) -> None:
    out = chat.create_chat_completion(ASK, tools=TOOLS, tool_choice=choice, temperature=0.0, max_tokens=64)
    (call,) = out["choices"][0]["message"]["tool_calls"]
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) <= set(WEATHER["properties"]) and "city" in arguments  # type: ignore[arg-type]


def test_json_object_reply_is_an_object(chat: Llama) -> None:
    """llama-cpp-python's README example (a JSON-mode answer)."""
    out = chat.create_chat_completion(
        [{"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
         {"role": "user", "content": "Who won the world series in 2020"}],
        response_format={"type": "json_object"}, temperature=0.0, max_tokens=96)
    content = out["choices"][0]["message"]["content"] or ""
    assert content.lstrip().startswith("{")
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(content), dict)


# --- embedding-only models ----------------------------------------------------------------


def test_embedding_model_refuses_to_generate_without_embedding_flag(minilm: Path) -> None:
    with Llama(minilm, n_ctx=128) as llm:
        calls = [lambda: llm.create_completion("hello", max_tokens=4),
                 lambda: llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4),
                 lambda: next(llm.generate(llm.tokenize(b"hello"))),
                 lambda: llm("hello", max_tokens=4)]
        for call in calls:
            with pytest.raises(UnsupportedModelError, match="embedding"):
                call()


def test_embedding_model_generation_is_http_400(minilm: Path) -> None:
    from starlette.testclient import TestClient

    from llama_binding.server import ServerSettings, create_app

    app = create_app(ServerSettings(model=str(minilm), model_alias="minilm", embedding=True, n_seq_max=2))
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)  # the model loads in the background
        r = client.post("/v1/completions", json={"model": "minilm", "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 400, r.text
        assert "embedding" in r.json()["error"]["message"]
        r = client.post("/v1/chat/completions", json={"model": "minilm", "max_tokens": 4,
                                                      "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400, r.text
        assert client.post("/v1/embeddings", json={"model": "minilm", "input": "hi"}).status_code == 200


# --- Ctrl-C inside native callbacks ---------------------------------------------------------

GENERATE = """
import logging, sys
logging.getLogger("llama_binding").setLevel(logging.DEBUG)  # a log callback in every decode
from llama_binding import Llama
llm = Llama(sys.argv[1], n_ctx=2048, verbose=True, n_threads=1)
print("READY", file=sys.stderr, flush=True)
while True:
    llm.create_completion("Once upon a time", max_tokens=1500, temperature=0.0)
"""

LOAD = """
import logging, sys, time
logging.getLogger("llama_binding").setLevel(logging.DEBUG)
from llama_binding import Llama
print("READY", file=sys.stderr, flush=True)
while True:  # a slow progress callback keeps the process inside the native load
    Llama(sys.argv[1], n_ctx=256, verbose=True, progress=lambda v: time.sleep(0.02)).close()
"""


def _interrupted(code: str, model: Path, after: float) -> tuple[int, str]:
    """Run ``code`` in a child, send SIGINT ``after`` seconds after it says READY; its exit
    code and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(model)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "".join(lines[-20:])
        time.sleep(after)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return rc, "".join(lines)


@pytest.mark.parametrize(("code", "after"), [(GENERATE, 1.0), (LOAD, 0.5)], ids=["generate", "load"])
def test_ctrl_c_in_a_callback_is_a_clean_keyboard_interrupt(smollm2: Path, code: str, after: float) -> None:
    rc, err = _interrupted(code, smollm2, after)
    assert "Exception ignored" not in err, err[-3000:]
    assert rc in (-signal.SIGINT, 130), (rc, err[-3000:])  # Python's exit for an unhandled KeyboardInterrupt
    tail = err[err.rfind("Traceback"):]
    assert re.search(r"^KeyboardInterrupt$", tail, re.M), tail  # (a destructor's log line may follow)
    assert "ModelLoadError" not in tail  # not turned into "cancelled by the progress callback"


def test_what_a_progress_callback_raises_comes_out_after_the_load(stories260k: Path) -> None:
    """A KeyboardInterrupt in the progress callback is raised as itself once the load is back
    (it used to become "cancelled by the progress callback"); an error cancels, with it as cause."""

    def interrupt(value: float) -> bool:
        raise KeyboardInterrupt

    def fail(value: float) -> bool:
        raise ValueError("no")

    with pytest.raises(KeyboardInterrupt):
        Model(stories260k, progress=interrupt)
    with pytest.raises(ModelLoadError, match="cancelled") as info:
        Model(stories260k, progress=fail)
    assert isinstance(info.value.__cause__, ValueError)


def test_keyboard_interrupt_at_a_callbacks_start_is_counted_not_printed(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A KeyboardInterrupt raised as the callback begins (before its ``try``) reaches
    ``sys.unraisablehook``: ours counts it for the caller to raise, and prints nothing."""
    unraisable = SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=KeyboardInterrupt(),
                                 exc_traceback=None, object=_log._callback,
                                 err_msg="Exception ignored on calling ctypes callback function")
    _log.install()  # (done by the first native call)
    before = _log.interrupts()
    _log._unraisable(unraisable)
    assert _log.interrupts() == before + 1
    assert capfd.readouterr().err == ""


# --- how much is printed ----------------------------------------------------------------------

RAW_CAPI = """
import sys
from llama_binding import capi
capi.llama_backend_init()
model = capi.llama_model_load_from_file(sys.argv[1].encode(), capi.llama_model_default_params())
assert model
ctx = capi.llama_init_from_model(model, capi.llama_context_default_params())
assert ctx
capi.llama_free(ctx)
capi.llama_model_free(model)
"""

VERBOSE = """
import logging, sys
if len(sys.argv) > 2:
    logging.getLogger("llama_binding").setLevel(logging.DEBUG)
from llama_binding import Llama
llm = Llama(sys.argv[1], n_ctx=512, verbose=True)
llm.create_completion("Hello", max_tokens=8)
"""


def _stderr(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_raw_capi_use_prints_nothing(stories260k: Path) -> None:
    """llama.cpp prints to stderr until a log callback is set: ours is set as the libraries load."""
    assert _stderr(RAW_CAPI, str(stories260k)) == ""


def test_verbose_shows_info_and_up_and_debug_only_when_asked(smollm2: Path) -> None:
    info = _stderr(VERBOSE, str(smollm2)).splitlines()
    assert any("llama_model_loader" in line for line in info)  # INFO lines, as llama.cpp's tools
    assert not any("create_tensor: loading tensor" in line for line in info)  # DEBUG: ~2,000 lines
    assert len(info) < 400, len(info)  # was ~2,300 with DEBUG
    debug = _stderr(VERBOSE, str(smollm2), "debug").splitlines()
    assert any("create_tensor: loading tensor" in line for line in debug)


# --- typing and documentation -------------------------------------------------------------------

TYPED_USE = """
from llama_binding import Llama

def use(llm: Llama, flag: bool) -> str:
    text: str = llm.create_completion("x")["choices"][0]["text"]
    for chunk in llm.create_completion("x", max_tokens=4, stream=True):
        text += chunk["choices"][0]["text"]
    reply = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4)
    text += reply["choices"][0]["message"]["content"] or ""
    for part in llm.create_chat_completion([], stream=True):
        text += part["choices"][0]["delta"].get("content") or ""
    either = llm.create_completion("x", stream=flag)  # a plain bool: the union
    text += llm("x")["choices"][0]["text"]
    return text if either else ""
"""


def test_stream_overloads_type_check(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    snippet = tmp_path / "typed_use.py"
    snippet.write_text(textwrap.dedent(TYPED_USE))
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary",
                           str(snippet)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_documents_every_constructor_argument() -> None:
    doc = inspect.getdoc(Llama) or ""
    args = doc[doc.index("Args:"):]
    missing = [name for name in inspect.signature(Llama.__init__).parameters
               if name != "self" and not re.search(rf"\b{name}\b", args)]
    assert not missing, f"Llama's docstring does not document {missing}"
    for group in ("Model:", "Context:", "Sampling:", "Chat:", "Other:"):
        assert group in args
