"""``llama_binding.compat``: ``import llama_cpp`` answered by this package, and
llama-cpp-python's README examples run through it unchanged (on much smaller models).

Each test runs a child interpreter (tests/_shim.py says why and how it hides the real
llama-cpp-python of the dev venv)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _shim import filtered_site, run_shimmed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filtered_site(tmp_path_factory.mktemp("site"))


def test_install_refuses_to_hide_an_importable_llama_cpp_python(site: Path, tmp_path: Path) -> None:
    (tmp_path / "llama_cpp").mkdir()
    (tmp_path / "llama_cpp" / "__init__.py").write_text("REAL = True\n")
    code = r'''
sys.path.insert(0, sys.argv[2])
import llama_binding
from llama_binding import compat
out = {}
try:
    compat.install()
except ImportError as exc:
    out["refused"] = [type(exc).__name__, isinstance(exc, llama_binding.LlamaError), str(exc)]
out["installed_after_refusal"] = compat.installed()
compat.install(allow_shadowing=True)
import llama_cpp
out["shadowed"] = llama_cpp.Llama is llama_binding.Llama and not hasattr(llama_cpp, "REAL")
compat.uninstall()
import llama_cpp
out["restored"] = llama_cpp.REAL
emit(out)
'''
    out = run_shimmed(site, code, str(tmp_path), install=False)
    name, is_llama_error, message = out["refused"]
    assert name == "ShadowingError" and is_llama_error and str(tmp_path) in message
    assert "allow_shadowing=True" in message
    assert out == {**out, "installed_after_refusal": False, "shadowed": True, "restored": True}


MODULES_CODE = r'''
import ctypes, importlib
import llama_binding
from llama_binding import capi, compat
out = {}
import llama_cpp
out["same_llama"] = llama_cpp.Llama is llama_binding.Llama
out["version"] = llama_cpp.__version__
out["modules"] = {name: importlib.import_module(name).__name__ for name in compat.MODULES}
from llama_cpp.llama import (Llama, LlamaState, LogitsProcessorList, StoppingCriteriaList,
                             MinTokensLogitsProcessor)
from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateChatCompletionResponse
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf, LLAMA_GRAMMAR_DEFAULT_ROOT
from llama_cpp.llama_cache import BaseLlamaCache, LlamaCache, LlamaDiskCache, LlamaRAMCache
from llama_cpp.llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding
from llama_cpp.llama_tokenizer import BaseLlamaTokenizer, LlamaHFTokenizer, LlamaTokenizer
from llama_cpp.llama_chat_format import ChatFormatterResponse, format_chatml, register_chat_format
out["grammar"] = LlamaGrammar.from_string(json_schema_to_gbnf('{"type": "integer"}')).root
out["low_level"] = [llama_cpp.llama_model_get_vocab is capi.llama_model_get_vocab,
                    llama_cpp.llama_cpp.llama_token_to_piece is capi.llama_token_to_piece,
                    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL == capi.LLAMA_TOKEN_ATTR_CONTROL,
                    llama_cpp.llama_model_p is ctypes.POINTER(capi.llama_model)]
try:
    llama_cpp.no_such_name
except AttributeError as exc:
    out["missing_name"] = str(exc)
try:
    import llama_cpp.server
except ModuleNotFoundError as exc:
    out["missing_module"] = str(exc)
out["spec"] = importlib.util.find_spec("llama_cpp").name
del sys.modules["llama_cpp.llama"]
import llama_cpp.llama as again  # the finder answers it again
out["found_again"] = again.Llama is llama_binding.Llama
compat.install()  # idempotent
compat.uninstall()
try:
    import llama_cpp
except ModuleNotFoundError:
    out["gone"] = True
compat.install()
import llama_cpp
out["back"] = llama_cpp.Llama is llama_binding.Llama

llm = Llama(sys.argv[2], n_ctx=128, verbose=False)
vocab = llama_cpp.llama_model_get_vocab(llm.model)  # as outlines reads the vocabulary
buf = (ctypes.c_char * 32)()
tok = llm.tokenize(b"Once", add_bos=False)[0]
n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 32, 0, True)
out["piece"] = [buf[:n].decode(), llm.detokenize([tok]).decode()]

@register_chat_format("shouty")
def shouty(messages, **kwargs):
    text = " ".join(m["content"].upper() for m in messages) + " ->"
    return ChatFormatterResponse(prompt=text, stop=["\n"])

out["formatted"] = [format_chatml(messages=[{"role": "user", "content": "Hi"}]).prompt,
                    Llama(sys.argv[2], n_ctx=128, chat_format="shouty", verbose=False).create_chat_completion(
                        [{"role": "user", "content": "once upon"}], max_tokens=3)["object"]]
emit(out)
'''


def test_the_shim_modules(site: Path, stories260k: Path) -> None:
    out = run_shimmed(site, MODULES_CODE, str(stories260k))
    assert out["same_llama"] and out["version"] == "0.3.36"
    assert out["modules"] == {name: name for name in out["modules"]} and len(out["modules"]) == 9
    assert out["grammar"] == "root" and all(out["low_level"])
    assert "no_such_name" in out["missing_name"] and "llama_cpp.server" in out["missing_module"]
    assert out["spec"] == "llama_cpp" and out["found_again"] and out["gone"] and out["back"]
    assert out["piece"] == ["Once", " Once"] or out["piece"][0].strip() == out["piece"][1].strip()
    prompt, kind = out["formatted"]
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert kind == "chat.completion"


# --- llama-cpp-python's README, as written there (model paths aside) ------------------------------

README_CODE = r'''
import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
CHAT, EMBED = sys.argv[2], sys.argv[3]
out = {}

def example(name, fn):
    try:
        out[name] = fn()
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}

def high_level():
    llm = Llama(model_path=CHAT, seed=1337, n_ctx=2048)
    return llm("Q: Name the planets in the solar system? A: ", max_tokens=32, stop=["Q:", "\n"], echo=True)

def chat_completion():
    llm = Llama(model_path=CHAT, chat_format="llama-2")
    return llm.create_chat_completion(messages=[
        {"role": "system", "content": "You are an assistant who perfectly describes images."},
        {"role": "user", "content": "Describe this image in detail please."}], max_tokens=16)

def json_mode():
    llm = Llama(model_path=CHAT, chat_format="chatml", seed=1337)
    return llm.create_chat_completion(messages=[
        {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
        {"role": "user", "content": "Who won the world series in 2020"}],
        response_format={"type": "json_object"}, temperature=0.7)

def json_schema_mode():
    llm = Llama(model_path=CHAT, chat_format="chatml", seed=1337)
    return llm.create_chat_completion(messages=[
        {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
        {"role": "user", "content": "Who won the world series in 2020"}],
        response_format={"type": "json_object", "schema": {
            "type": "object", "properties": {"team_name": {"type": "string"}}, "required": ["team_name"]}},
        temperature=0.7)

def function_calling():
    llm = Llama(model_path=CHAT, chat_format="chatml-function-calling")
    return llm.create_chat_completion(
        messages=[{"role": "system", "content": "A chat between a curious user and an artificial "
                   "intelligence assistant. The assistant gives helpful, detailed, and polite answers to the "
                   "user's questions. The assistant calls functions with appropriate input when necessary"},
                  {"role": "user", "content": "Extract Jason is 25 years old"}],
        tools=[{"type": "function", "function": {"name": "UserDetail", "parameters": {
            "type": "object", "title": "UserDetail",
            "properties": {"name": {"title": "Name", "type": "string"},
                           "age": {"title": "Age", "type": "integer"}},
            "required": ["name", "age"]}}}],
        tool_choice={"type": "function", "function": {"name": "UserDetail"}})

def embeddings():
    llm = llama_cpp.Llama(model_path=EMBED, embedding=True)
    return [llm.create_embedding("Hello, world!"), llm.create_embedding(["Hello, world!", "Goodbye, world!"])]

def speculative():
    llama = Llama(model_path=CHAT, draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))
    return llama("The quick brown fox", max_tokens=8, temperature=0.0)

for name, fn in [("high_level", high_level), ("chat_completion", chat_completion), ("json_mode", json_mode),
                 ("json_schema_mode", json_schema_mode), ("function_calling", function_calling),
                 ("embeddings", embeddings), ("speculative", speculative)]:
    example(name, fn)
emit(out)
'''


@pytest.fixture(scope="module")
def readme(site: Path, smollm2: Path, minilm: Path) -> dict[str, Any]:
    return run_shimmed(site, README_CODE, str(smollm2), str(minilm))  # type: ignore[no-any-return]


def _ok(readme: dict[str, Any], name: str) -> Any:
    value = readme[name]
    assert not (isinstance(value, dict) and "error" in value), value
    return value


def test_readme_high_level_completion(readme: dict[str, Any]) -> None:
    out = _ok(readme, "high_level")
    text = out["choices"][0]["text"]
    assert out["object"] == "text_completion"
    assert text.startswith("Q: Name the planets in the solar system? A: ")
    assert "\n" not in text and out["choices"][0]["finish_reason"] in ("stop", "length")


def test_readme_chat_completion(readme: dict[str, Any]) -> None:
    out = _ok(readme, "chat_completion")
    assert out["object"] == "chat.completion" and out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["completion_tokens"] <= 16


@pytest.mark.parametrize("mode", ["json_mode", "json_schema_mode"])
def test_readme_json_modes(readme: dict[str, Any], mode: str) -> None:
    value = json.loads(_ok(readme, mode)["choices"][0]["message"]["content"])
    assert isinstance(value, dict)
    if mode == "json_schema_mode":
        assert isinstance(value["team_name"], str)


def test_readme_function_calling(readme: dict[str, Any]) -> None:
    choice = _ok(readme, "function_calling")["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls" and call["function"]["name"] == "UserDetail"
    args = json.loads(call["function"]["arguments"])
    assert isinstance(args["name"], str) and isinstance(args["age"], int)


def test_readme_embeddings(readme: dict[str, Any]) -> None:
    one, two = _ok(readme, "embeddings")
    assert one["object"] == "list" and len(one["data"]) == 1 and len(one["data"][0]["embedding"]) == 384
    assert [d["index"] for d in two["data"]] == [0, 1]


def test_readme_speculative_decoding(readme: dict[str, Any]) -> None:
    assert _ok(readme, "speculative")["usage"]["completion_tokens"] == 8
