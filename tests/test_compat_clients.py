"""Libraries written for llama-cpp-python, unchanged, on this package through
``llama_binding.compat``: LangChain (``LlamaCpp``, ``ChatLlamaCpp`` with tools and
structured output, ``LlamaCppEmbeddings``), llama-index (``LlamaCPP``) and outlines
(``from_llamacpp`` with a JSON schema and a regex), offline on SmolLM2 and MiniLM.

They come with the ``compat-test`` extra (in ``dev``, so CI runs these); a test skips only
where its library is not installed. Each library runs in a child interpreter (tests/_shim.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _shim import filtered_site, run_shimmed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filtered_site(tmp_path_factory.mktemp("site"))


def _require(*modules: str) -> None:
    """Skip unless ``modules`` are installed; they are looked for, not imported (llama-index's
    would import llama_cpp: the real one in the dev venv, none in CI's)."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            pytest.skip(f"{name} is not installed (pip install -e '.[compat-test]')")


def _run(site: Path, code: str, *args: str) -> dict[str, Any]:
    """The child's results: one entry per step, ``{"error": ...}`` for a step that raised."""
    prelude = r'''
out = {}

def step(name, fn):
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out[name] = fn()
        out[name + ":warnings"] = [f"{w.category.__name__}: {w.message}" for w in seen
                                   if "llama_binding" in str(w.message) or w.category is UserWarning]
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
'''
    return run_shimmed(site, prelude + code + "\nemit(out)\n", *args)  # type: ignore[no-any-return]


def _ok(results: dict[str, Any], name: str) -> Any:
    value = results[name]
    assert not (isinstance(value, dict) and "error" in value), value
    return value


# --- LangChain ---------------------------------------------------------------------------------

LANGCHAIN = r'''
CHAT, EMBED = sys.argv[2], sys.argv[3]
from langchain_community.llms import LlamaCpp
from langchain_community.chat_models import ChatLlamaCpp
from langchain_community.embeddings import LlamaCppEmbeddings
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

class Weather(BaseModel):
    """Get the current weather of a city."""
    city: str = Field(description="the city")

class User(BaseModel):
    """A person."""
    name: str
    age: int

llm = chat = None

def make_llm():
    global llm
    llm = LlamaCpp(model_path=CHAT, n_ctx=512, n_batch=256, temperature=0, max_tokens=12, verbose=False)
    return type(llm.client).__module__

def make_chat():
    global chat
    chat = ChatLlamaCpp(model_path=CHAT, n_ctx=1024, n_batch=256, temperature=0, max_tokens=48, verbose=False)
    return type(chat.client).__module__

step("llm", make_llm)
step("llm.invoke", lambda: llm.invoke("The capital of France is"))
step("llm.stream", lambda: list(llm.stream("The capital of France is")))
step("llm.tokens", lambda: llm.get_num_tokens("hello world"))
step("chat", make_chat)
step("chat.invoke", lambda: chat.invoke([SystemMessage("Be brief."), HumanMessage("Say hi")]).content)
step("chat.stream", lambda: [c.content for c in chat.stream("Say hi")])
step("bind_tools", lambda: chat.bind_tools(
    [Weather], tool_choice={"type": "function", "function": {"name": "Weather"}}).invoke(
    "What is the weather in Paris?").tool_calls)
step("bind_tools.by_name", lambda: chat.bind_tools([Weather], tool_choice="Weather").invoke(
    "What is the weather in Paris?").tool_calls)
step("structured", lambda: chat.with_structured_output(User).invoke("Jason is 25 years old.").model_dump())
step("structured.dict", lambda: chat.with_structured_output(
    {"type": "object", "title": "user", "description": "A person.",
     "properties": {"name": {"type": "string"}}, "required": ["name"]}).invoke("Jason is 25 years old."))
embeddings = None

def make_embeddings():
    global embeddings
    embeddings = LlamaCppEmbeddings(model_path=EMBED, n_batch=512, verbose=False)
    return type(embeddings.client).__module__

step("embeddings", make_embeddings)
step("embed_documents", lambda: [len(v) for v in embeddings.embed_documents(["hello", "world", "again"])])
step("embed_query", lambda: embeddings.embed_query("hello"))
'''


@pytest.fixture(scope="module")
def langchain(site: Path, smollm2: Path, minilm: Path) -> dict[str, Any]:
    _require("langchain_community")
    return _run(site, LANGCHAIN, str(smollm2), str(minilm))


def test_langchain_llamacpp(langchain: dict[str, Any]) -> None:
    assert _ok(langchain, "llm") == "llama_binding.llama"  # LangChain's client is our Llama
    assert langchain["llm:warnings"] == []  # n_parts, f16_kv, ... at LangChain's defaults: quiet
    assert "Paris" in _ok(langchain, "llm.invoke")
    assert "".join(_ok(langchain, "llm.stream")) == langchain["llm.invoke"]
    assert _ok(langchain, "llm.tokens") == 2


def test_langchain_chat(langchain: dict[str, Any]) -> None:
    assert _ok(langchain, "chat") == "llama_binding.llama"
    text = _ok(langchain, "chat.invoke")
    assert isinstance(text, str) and text
    assert "".join(_ok(langchain, "chat.stream"))


@pytest.mark.parametrize("step", ["bind_tools", "bind_tools.by_name"])
def test_langchain_bind_tools(langchain: dict[str, Any], step: str) -> None:
    calls = _ok(langchain, step)
    assert len(calls) == 1 and calls[0]["name"] == "Weather"
    assert isinstance(calls[0]["args"]["city"], str) and calls[0]["id"]


def test_langchain_with_structured_output(langchain: dict[str, Any]) -> None:
    user = _ok(langchain, "structured")
    assert isinstance(user["name"], str) and isinstance(user["age"], int)
    assert isinstance(_ok(langchain, "structured.dict")["name"], str)


def test_langchain_embeddings(langchain: dict[str, Any]) -> None:
    assert _ok(langchain, "embeddings") == "llama_binding.llama"
    # LangChain passes ``device``, which neither llama-cpp-python nor this package knows
    assert any("'device'" in w for w in langchain["embeddings:warnings"])
    assert _ok(langchain, "embed_documents") == [384, 384, 384]
    query = _ok(langchain, "embed_query")
    assert len(query) == 384 and abs(sum(v * v for v in query) - 1.0) < 1e-3


# --- llama-index -----------------------------------------------------------------------------------

LLAMA_INDEX = r'''
CHAT = sys.argv[2]
from llama_index.llms.llama_cpp import LlamaCPP
from llama_index.core.llms import ChatMessage
llm = None

def make():
    global llm
    llm = LlamaCPP(model_path=CHAT, temperature=0.0, max_new_tokens=12, context_window=512, verbose=False,
                   model_kwargs={"n_batch": 256})
    return [type(llm._model).__module__, llm.metadata.context_window]

step("make", make)
step("complete", lambda: llm.complete("The capital of France is").text)
step("stream_complete", lambda: [r.delta for r in llm.stream_complete("The capital of France is")])
step("chat", lambda: llm.chat([ChatMessage(role="system", content="Be brief."),
                               ChatMessage(role="user", content="Say hi")]).message.content)
step("stream_chat", lambda: [r.delta for r in llm.stream_chat([ChatMessage(role="user", content="Say hi")])])
'''


@pytest.fixture(scope="module")
def llama_index(site: Path, smollm2: Path) -> dict[str, Any]:
    _require("llama_index.core", "llama_index.llms.llama_cpp")
    return _run(site, LLAMA_INDEX, str(smollm2))


def test_llama_index_complete(llama_index: dict[str, Any]) -> None:
    assert _ok(llama_index, "make") == ["llama_binding.llama", 512]
    text = _ok(llama_index, "complete")
    assert "Paris" in text and "".join(_ok(llama_index, "stream_complete")) == text


def test_llama_index_chat(llama_index: dict[str, Any]) -> None:
    assert isinstance(_ok(llama_index, "chat"), str) and _ok(llama_index, "chat")
    assert "".join(_ok(llama_index, "stream_chat"))


# --- outlines -----------------------------------------------------------------------------------------

OUTLINES = r'''
CHAT = sys.argv[2]
import outlines
from outlines.types import Regex
from pydantic import BaseModel
from llama_cpp import Llama

class User(BaseModel):
    name: str
    age: int

model = None

def make():
    global model
    model = outlines.from_llamacpp(Llama(CHAT, n_ctx=1024, verbose=False))
    return len(model.tokenizer.vocabulary)

step("make", make)
step("json", lambda: model("Jason is 25 years old. Give his name and age as JSON.", User, max_tokens=80,
                           temperature=0.0))
step("regex", lambda: model("What is 2 + 2? Answer:", Regex(r"[0-9]{1,2}"), max_tokens=4, temperature=0.0))
step("text", lambda: model("Say hi", max_tokens=8, temperature=0.0))
step("stream", lambda: list(model.stream("Count: 1, 2,", Regex(r" [0-9]"), max_tokens=4, temperature=0.0)))
'''


@pytest.fixture(scope="module")
def outlines_results(site: Path, smollm2: Path) -> dict[str, Any]:
    _require("outlines", "numba")  # numba: outlines' numpy kernels, that constrain llama.cpp's logits
    return _run(site, OUTLINES, str(smollm2))


def test_outlines_reads_the_vocabulary(outlines_results: dict[str, Any]) -> None:
    assert _ok(outlines_results, "make") > 40_000  # through Llama.tokenizer(), Llama.model and the C API


def test_outlines_json_schema(outlines_results: dict[str, Any]) -> None:
    user = json.loads(_ok(outlines_results, "json"))
    assert isinstance(user["name"], str) and isinstance(user["age"], int)


def test_outlines_regex(outlines_results: dict[str, Any]) -> None:
    assert re.fullmatch(r"[0-9]{1,2}", _ok(outlines_results, "regex"))
    assert isinstance(_ok(outlines_results, "text"), str)
    assert re.fullmatch(r" [0-9]", "".join(_ok(outlines_results, "stream")))
