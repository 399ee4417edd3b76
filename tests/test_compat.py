"""Drop-in for llama-cpp-python 0.3.36 (P17): its keywords, methods and type names on the
``Llama`` facade itself, on real models (no import shim here: tests/test_compat_shim.py has
``llama_binding.compat``, tests/test_compat_clients.py the libraries written for it).

The names of llama-cpp-python are pinned below, read once from its 0.3.36 release with
``inspect``; it is not imported here (CI does not install it)."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llama_binding import (
    BaseLlamaCache,
    BaseLlamaTokenizer,
    Llama,
    LlamaCache,
    LlamaGrammar,
    LlamaRAMCache,
    LlamaTokenizer,
    MinTokensLogitsProcessor,
    _params,
    capi,
    llama_types,
)
from llama_binding.chat.formats import get_format
from llama_binding.chat.formats.chatml_function_calling import SOURCE
from llama_binding.chat.tools import detect
from llama_binding.errors import SamplerError
from llama_binding.generation.cache import StateCache

#: llama-cpp-python 0.3.36's ``Llama.__init__`` keywords and defaults (``verbose`` aside)
INIT_DEFAULTS: dict[str, Any] = {
    "n_gpu_layers": 0, "split_mode": 1, "main_gpu": 0, "tensor_split": None, "vocab_only": False,
    "use_mmap": True, "use_mlock": False, "kv_overrides": None, "seed": 4294967295, "n_ctx": 512,
    "n_batch": 512, "n_ubatch": 512, "n_threads": None, "n_threads_batch": None, "rope_scaling_type": -1,
    "pooling_type": -1, "attention_type": -1, "rope_freq_base": 0.0, "rope_freq_scale": 0.0,
    "yarn_ext_factor": -1.0, "yarn_attn_factor": 1.0, "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0,
    "yarn_orig_ctx": 0, "logits_all": False, "embedding": False, "offload_kqv": True, "flash_attn": False,
    "op_offload": None, "swa_full": None, "no_perf": False, "last_n_tokens_size": 64, "lora_base": None,
    "lora_scale": 1.0, "lora_path": None, "numa": False, "chat_format": None, "chat_handler": None,
    "draft_model": None, "tokenizer": None, "type_k": None, "type_v": None, "spm_infill": False,
    "verbose": False,
}

#: llama-cpp-python 0.3.36's parameter names of the methods (``self`` left out)
METHODS: dict[str, list[str]] = {
    "generate": ["tokens", "top_k", "top_p", "min_p", "typical_p", "temp", "repeat_penalty", "reset",
                 "frequency_penalty", "presence_penalty", "tfs_z", "mirostat_mode", "mirostat_tau",
                 "mirostat_eta", "penalize_nl", "logits_processor", "stopping_criteria", "grammar"],
    "create_completion": ["prompt", "suffix", "max_tokens", "temperature", "top_p", "min_p", "typical_p",
                          "logprobs", "echo", "stop", "frequency_penalty", "presence_penalty",
                          "repeat_penalty", "top_k", "stream", "seed", "tfs_z", "mirostat_mode",
                          "mirostat_tau", "mirostat_eta", "model", "stopping_criteria", "logits_processor",
                          "grammar", "logit_bias"],
    "create_chat_completion": ["messages", "functions", "function_call", "tools", "tool_choice",
                               "temperature", "top_p", "top_k", "min_p", "typical_p", "stream", "stop",
                               "seed",
                               "response_format", "max_tokens", "presence_penalty", "frequency_penalty",
                               "repeat_penalty", "tfs_z", "mirostat_mode", "mirostat_tau", "mirostat_eta",
                               "model", "logits_processor", "grammar", "logit_bias", "logprobs",
                               "top_logprobs"],
    "detokenize": ["tokens", "prev_tokens", "special"],
    "sample": ["idx", "logits_processor", "grammar"],  # the rest are sampling options (**sampling)
}

#: the 62 names of llama-cpp-python 0.3.36's ``llama_types`` (typing helpers left out)
LLAMA_TYPES = """
ChatCompletion ChatCompletionChoice ChatCompletionChunk ChatCompletionChunkChoice ChatCompletionChunkDelta
ChatCompletionChunkDeltaEmpty ChatCompletionFunction ChatCompletionFunctionCall
ChatCompletionFunctionCallOption ChatCompletionFunctionParameters ChatCompletionFunctions
ChatCompletionLogprobToken ChatCompletionLogprobs
ChatCompletionMessage ChatCompletionMessageToolCall ChatCompletionMessageToolCallChunk
ChatCompletionMessageToolCallChunkFunction ChatCompletionMessageToolCallFunction
ChatCompletionMessageToolCalls
ChatCompletionNamedToolChoice ChatCompletionNamedToolChoiceFunction ChatCompletionRequestAssistantMessage
ChatCompletionRequestAssistantMessageFunctionCall ChatCompletionRequestFunctionCall
ChatCompletionRequestFunctionCallOption ChatCompletionRequestFunctionMessage ChatCompletionRequestMessage
ChatCompletionRequestMessageContentPart ChatCompletionRequestMessageContentPartImage
ChatCompletionRequestMessageContentPartImageImageUrl ChatCompletionRequestMessageContentPartText
ChatCompletionRequestResponseFormat ChatCompletionRequestSystemMessage ChatCompletionRequestToolMessage
ChatCompletionRequestUserMessage ChatCompletionResponseChoice ChatCompletionResponseFunction
ChatCompletionResponseFunctionCall ChatCompletionResponseMessage ChatCompletionStreamResponse
ChatCompletionStreamResponseChoice ChatCompletionStreamResponseDelta ChatCompletionStreamResponseDeltaEmpty
ChatCompletionStreamResponseDeltaFunctionCall ChatCompletionTool ChatCompletionToolChoiceOption
ChatCompletionToolFunction ChatCompletionTopLogprobToken Completion CompletionChoice CompletionChunk
CompletionLogprobs CompletionUsage CreateChatCompletionResponse CreateChatCompletionStreamResponse
CreateCompletionResponse CreateCompletionStreamResponse CreateEmbeddingResponse Embedding EmbeddingData
EmbeddingUsage JsonType
""".split()

USER_DETAIL = {"type": "object", "title": "UserDetail",
               "properties": {"name": {"title": "Name", "type": "string"},
                              "age": {"title": "Age", "type": "integer"}},
               "required": ["name", "age"]}


@pytest.fixture(scope="module")
def llm(stories260k: Path) -> Iterator[Llama]:
    with Llama(stories260k, n_ctx=256, logits_all=True) as model:
        yield model


@pytest.fixture(scope="module")
def chat(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=1024, chat_format="chatml-function-calling") as model:
        yield model


def _parameters(method: Any) -> list[str]:
    """The names of ``method``'s parameters, in order (``**kwargs`` left out)."""
    return [n for n, p in inspect.signature(method).parameters.items() if p.kind is not p.VAR_KEYWORD]


# --- the names --------------------------------------------------------------------------------


def test_llama_types_has_every_name_of_llama_cpp_python() -> None:
    assert len(LLAMA_TYPES) == 62
    assert set(LLAMA_TYPES) <= set(llama_types.__all__)
    for name in llama_types.__all__:
        assert getattr(llama_types, name) is not None, name
    assert llama_types.ChatCompletion is llama_types.CreateChatCompletionResponse
    assert llama_types.ChatCompletionResponseMessage is llama_types.ChatCompletionMessage


def test_every_keyword_of_llama_cpp_python_is_known() -> None:
    assert set(INIT_DEFAULTS) <= {*_parameters(Llama.__init__), *_params.IGNORED}
    for method, names in METHODS.items():
        assert set(names) <= set(_parameters(getattr(Llama, method))), method
    # positional calls mean the same (``__call__`` forwards to create_completion)
    for method in ("generate", "create_completion", "detokenize"):
        assert _parameters(getattr(Llama, method))[1 : len(METHODS[method]) + 1] == METHODS[method], method


def test_llama_cpp_python_defaults_load_and_complete_without_a_warning(stories260k: Path) -> None:
    """Every keyword with llama-cpp-python's default value: nothing to warn about."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Llama(stories260k, **INIT_DEFAULTS) as model:
            out = model("Once upon a time", max_tokens=4, temperature=0.0)
    assert out["choices"][0]["text"].startswith(", there")


def test_langchains_constructor_keywords_are_accepted(stories260k: Path) -> None:
    """LangChain's LlamaCpp passes n_parts, f16_kv, ... with its own defaults (quiet), and
    LlamaCppEmbeddings ``device`` (unknown: a UserWarning that names it)."""
    quiet = {"n_parts": -1, "f16_kv": True, "last_n_tokens_size": 64, "lora_base": None, "seed": -1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Llama(stories260k, n_ctx=64, **quiet).close()
    with pytest.warns(DeprecationWarning, match="n_parts"):
        Llama(stories260k, n_ctx=64, n_parts=2).close()
    with pytest.warns(UserWarning, match=r"Llama\(\) got unknown keyword argument 'device': ignored"):
        Llama(stories260k, n_ctx=64, device=None).close()


@pytest.mark.parametrize(("call", "typo", "suggestion"), [
    ("create_completion", "temprature", "temperature"),
    ("__call__", "max_token", "max_tokens"),
    ("create_chat_completion", "tool_choise", "tool_choice"),
    ("generate", "top_kk", "top_k"),
])
def test_unknown_keywords_warn_with_the_closest_name(llm: Llama, call: str, typo: str,
                                                     suggestion: str) -> None:
    args: dict[str, Any] = {"create_chat_completion": {"messages": [{"role": "user", "content": "Hi"}]},
                            "generate": {"tokens": llm.tokenize(b"Once")}}.get(call, {"prompt": "Once"})
    with pytest.warns(UserWarning, match=f"'{typo}' \\(did you mean '{suggestion}'\\?\\): ignored") as seen:
        result = getattr(llm, call)(**args, max_tokens=2, **{typo: 1}) if call != "generate" \
            else list(llm.generate(**args, max_tokens=2, **{typo: 1}))
    assert result
    assert seen[0].filename == __file__  # the warning points at the caller


# --- tokenizer, native pointers, eval state ---------------------------------------------------


def test_tokenizer_object(llm: Llama, stories260k: Path) -> None:
    tok = llm.tokenizer()
    assert isinstance(tok, LlamaTokenizer) and isinstance(tok, BaseLlamaTokenizer)
    ids = tok.tokenize(b"Once upon a time")
    assert ids == llm.tokenize(b"Once upon a time", special=True)
    assert tok.detokenize(ids) == llm.detokenize(ids) and tok.decode(tok.encode("Hi there")) == " Hi there"
    assert LlamaTokenizer.from_ggml_file(stories260k).tokenize(b"Once upon a time") == ids
    assert llm.tokenizer_.tokenize(b"x") == tok.tokenize(b"x")


def test_native_pointers_work_with_capi(llm: Llama) -> None:
    vocab = capi.llama_model_get_vocab(llm.model)
    assert capi.llama_vocab_n_tokens(vocab) == llm.n_vocab()
    assert capi.llama_n_ctx(llm.ctx) == llm.n_ctx()


def test_eval_tokens_and_logits(llm: Llama) -> None:
    llm.reset()
    toks = llm.tokenize(b"Once upon")
    llm.eval(toks)
    assert list(llm.eval_tokens) == toks and llm.eval_tokens.maxlen == llm.n_ctx()
    logits = llm.eval_logits
    assert len(logits) == len(toks) and len(logits[0]) == llm.n_vocab()  # logits_all=True: every row
    assert np.allclose(np.array(logits[-1]), llm.scores[-1])


def test_static_helpers() -> None:
    rows = np.array([[1.0, 2.0, 3.0], [0.5, -np.inf, 0.5]], dtype=np.float32)
    out = Llama.logits_to_logprobs(rows)
    assert np.allclose(np.exp(out).sum(axis=-1), 1.0) and np.isneginf(out[1, 1])
    assert np.allclose(out[1, [0, 2]], np.log(0.5))
    assert Llama.longest_token_prefix([1, 2, 3], [1, 2, 4, 5]) == 2


class _CountingTokenizer(BaseLlamaTokenizer):
    """A tokenizer of the caller's: the model's own vocabulary, counting its calls."""

    def __init__(self, inner: BaseLlamaTokenizer) -> None:
        self.inner, self.calls = inner, 0

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        self.calls += 1
        return self.inner.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        self.calls += 1
        return self.inner.detokenize(tokens, prev_tokens, special)


def test_a_tokenizer_of_the_callers(stories260k: Path) -> None:
    mine = _CountingTokenizer(LlamaTokenizer.from_ggml_file(stories260k))
    with Llama(stories260k, n_ctx=64, tokenizer=mine) as model:
        assert model.tokenizer_ is mine
        assert model.detokenize(model.tokenize(b"Once upon")) == b" Once upon" and mine.calls == 2
        out = model("Once upon a time", max_tokens=4, temperature=0.0)
        assert mine.calls == 3 and out["choices"][0]["text"].startswith(", there")


# --- generate ---------------------------------------------------------------------------------


def test_generate_with_llama_cpp_pythons_arguments(llm: Llama) -> None:
    toks = llm.tokenize(b"Once upon a time")
    greedy = list(llm.generate(toks, temp=0.0, penalize_nl=False, max_tokens=6))
    want = llm(toks, max_tokens=6, temperature=0.0)["choices"][0]["text"]
    assert llm.detokenize(greedy).decode() == want and want.startswith(", there was")
    assert list(llm.generate(toks, max_tokens=6, temperature=0.0)) == greedy  # our name still works
    # positional, in llama-cpp-python's order: top_k, top_p, min_p, typical_p, temp
    assert list(llm.generate(toks, 40, 0.95, 0.05, 1.0, 0.0, max_tokens=6)) == greedy


def test_generate_stopping_criteria(llm: Llama) -> None:
    toks = llm.tokenize(b"Once upon a time")
    seen: list[tuple[int, int]] = []

    def three(ids: Any, logits: Any) -> bool:
        seen.append((len(ids), logits.shape[0]))
        return len(ids) >= len(toks) + 3

    out = list(llm.generate(toks, temp=0.0, stopping_criteria=[three]))
    assert len(out) == 2  # the third token is not yielded
    assert seen == [(len(toks) + i, llm.n_vocab()) for i in (1, 2, 3)]


def test_generate_reset_false_continues_the_context(llm: Llama) -> None:
    toks = llm.tokenize(b"Once upon a time")
    want = list(llm.generate(toks, temp=0.0, max_tokens=5))
    llm.reset()
    llm.eval(toks[:3])
    assert list(llm.generate(toks[3:], temp=0.0, reset=False, max_tokens=5)) == want


# --- chat: openai objects, legacy functions, chatml-function-calling ------------------------------


def test_create_chat_completion_openai_v1(chat: Llama) -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    messages = [{"role": "user", "content": "Say hi"}]
    done = chat.create_chat_completion_openai_v1(messages=messages, max_tokens=8, temperature=0.0)
    assert isinstance(done, ChatCompletion) and done.choices[0].message.role == "assistant"
    chunks = list(chat.create_chat_completion_openai_v1(messages=messages, max_tokens=8, temperature=0.0,
                                                        stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content


def test_legacy_functions_and_function_call(chat: Llama) -> None:
    out = chat.create_chat_completion(
        messages=[{"role": "user", "content": "Extract Jason is 25 years old"}],
        functions=[{"name": "UserDetail", "parameters": USER_DETAIL}], function_call={"name": "UserDetail"},
        temperature=0.0)
    message = out["choices"][0]["message"]
    call = message["tool_calls"][0]["function"]
    assert call["name"] == "UserDetail" and set(json.loads(call["arguments"])) == {"name", "age"}
    assert message["function_call"] == call
    with pytest.raises(ValueError, match="not both"):
        chat.create_chat_completion([{"role": "user", "content": "x"}], functions=[], tools=[])


def test_chatml_function_calling_prompt_lists_the_tools() -> None:
    tools = [{"type": "function", "function": {"name": "UserDetail", "parameters": USER_DETAIL}}]
    fmt = get_format("chatml-function-calling")
    prompt = fmt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tools=tools)
    assert prompt.prompt.startswith("<|im_start|>system\nBe brief.\n\nYou have access to the following "
                                    "functions:\n\nfunctions.UserDetail:\n{")
    assert prompt.prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    alone = fmt([{"role": "user", "content": "Hi"}], tools=tools).prompt  # no system message: one of its own
    assert alone.startswith("<|im_start|>system\nYou have access to the following functions:")
    history = fmt([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "UserDetail", "arguments": '{"age": 3}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}], tools=tools).prompt
    assert 'functions.UserDetail:\n{"age": 3}\n<|im_end|>\n<|im_start|>tool\nok<|im_end|>\n' in history
    assert detect(SOURCE) == "chatml-function-calling"


def test_readme_function_calling_answer(chat: Llama) -> None:
    """llama-cpp-python's README example (the model is far smaller than its example's)."""
    out = chat.create_chat_completion(
        messages=[{"role": "system", "content": "A chat between a curious user and an artificial "
                   "intelligence assistant. The assistant calls functions with appropriate input when "
                   "necessary"},
                  {"role": "user", "content": "Extract Jason is 25 years old"}],
        tools=[{"type": "function", "function": {"name": "UserDetail", "parameters": USER_DETAIL}}],
        tool_choice={"type": "function", "function": {"name": "UserDetail"}}, temperature=0.0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    args = json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])
    assert isinstance(args["name"], str) and isinstance(args["age"], int)
    auto = chat.create_chat_completion(
        messages=[{"role": "user", "content": "Hello"}], max_tokens=24, temperature=0.0,
        tools=[{"type": "function", "function": {"name": "UserDetail", "parameters": USER_DETAIL}}])
    message = auto["choices"][0]["message"]
    if message["content"] is None:
        assert message["tool_calls"]
    else:
        assert not message["content"].startswith("message:")


# --- grammar, processors, caches ------------------------------------------------------------------


def test_grammar_from_json_schema(chat: Llama) -> None:
    grammar = LlamaGrammar.from_json_schema(json.dumps(USER_DETAIL), verbose=False)
    assert grammar == LlamaGrammar.from_json_schema(USER_DETAIL)
    out = chat("Jason is 25 years old. As JSON:", grammar=grammar, max_tokens=100, temperature=0.0)
    value = json.loads(out["choices"][0]["text"])
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    with pytest.raises(SamplerError, match="not valid JSON"):
        LlamaGrammar.from_json_schema("{oops")


def test_min_tokens_logits_processor() -> None:
    proc = MinTokensLogitsProcessor(min_tokens=2, token_eos=1)
    prompt = np.array([5, 6, 7], dtype=np.intc)
    assert np.isneginf(proc(prompt, np.zeros(4, dtype=np.float32))[1])
    assert np.isneginf(proc(np.append(prompt, 3), np.zeros(4, dtype=np.float32))[1])
    assert proc(np.append(prompt, [3, 4]), np.zeros(4, dtype=np.float32))[1] == 0.0


def test_cache_names(llm: Llama) -> None:
    assert LlamaCache is LlamaRAMCache and BaseLlamaCache is StateCache
    llm.set_cache(LlamaCache(capacity_bytes=1 << 24))
    try:
        assert isinstance(llm.cache, BaseLlamaCache)
        llm("Once upon a time", max_tokens=2)
        assert len(llm.cache) > 0
    finally:
        llm.set_cache(None)
