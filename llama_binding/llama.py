"""The ``Llama`` facade: llama-cpp-python's constructor and methods over one
:class:`~llama_binding.generation.engine.Engine`.

It maps keywords to option dataclasses (``_params.py``), hands requests to the engine and
shapes the results (``shapes.py``); the logic lives below it. One ``Llama`` runs one
generation at a time: a call from another thread waits for the running one. A stream
holds the Llama only while it computes a chunk, so a stream left unread blocks nobody; a
call made while a stream is paused interrupts it, and the stream brings its sequence back
when it is read again (prefix reuse stays exact) or, where it cannot, raises
StreamInterruptedError. ``close()`` is safe from any thread (see :meth:`Llama.close`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import numpy as np
import numpy.typing as npt

from . import _dropin, _log, _params, shapes
from ._args import SAMPLING_ARGS, check_completion_args, grammar_fields, include_usage, is_multi_prompt
from ._llama_loop import LlamaLoop
from ._llama_states import LlamaStates
from ._multimodal import MediaPrompt, chat_prompt, load_projector, prompt_tokens
from ._params import DEFAULT_N_CTX
from ._progress import ProgressArg, progress_callback
from .core import Model
from .core.context import ContextParams, PoolingType
from .core.state import LlamaState
from .draft_model import DraftModelArg, as_drafter
from .errors import StateError
from .generation.engine import Engine, Request
from .generation.hooks import LogitsProcessor, StoppingCriteria, as_logits_hook, as_stop_hook
from .generation.sampling import CHAT_TEMPERATURE
from .generation.sampling import SamplingParams as _D
from .generation.speculative import SpeculativeStats
from .grammar import LlamaGrammar
from .llama_tokenizer import BaseLlamaTokenizer, LlamaTokenizer
from .llama_types import (
    ChatCompletionChunk,
    CompletionChunk,
    CreateChatCompletionResponse,
    CreateCompletionResponse,
    CreateEmbeddingResponse,
)

if TYPE_CHECKING:
    from .chat.request import ChatSetup

__all__ = ["DEFAULT_N_CTX", "Llama", "LlamaState"]

_PICKLED_FINGERPRINT = "__model_fingerprint__"  # the key of the model's fingerprint in a pickled Llama
Prompt = Union[str, Sequence[int]]
# the argument types of the stream overloads (the methods themselves spell them out)
_PromptArg = Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]], MediaPrompt]
_StopArg = Union[str, Sequence[str], None]
_CriteriaArg = Union[StoppingCriteria, Sequence[StoppingCriteria], None]
_ProcessorArg = Union[LogitsProcessor, Sequence[LogitsProcessor], None]
_GrammarArg = Union[str, LlamaGrammar, None]


ChatAnswer = Union[CreateChatCompletionResponse, Iterator[ChatCompletionChunk]]


def _chat_answer(result: Any, parser: Any, stream: bool, legacy: bool) -> ChatAnswer:
    """A chat completion's answer (its chunks with ``stream``) from the text completion ``result``."""
    if stream:
        return shapes.chat_chunks(result, parser)
    answer = shapes.chat_completion(result, parser)
    return _dropin.with_function_call(answer) if legacy else answer


class Llama(LlamaStates, LlamaLoop):
    """A model and a context, with llama-cpp-python's names. Every argument but ``model_path``
    is a keyword; None means llama.cpp's default (or the model's).

    Args:
      Model:
        model_path: the GGUF file (the first part of a split model).
        n_gpu_layers: layers on the GPU: -1 (default) all, when the build has a GPU; "auto" as
            many as fit the GPUs' free memory (or ``gpu_memory_budget`` bytes) with room for this
            context, sized by llama.cpp in a dry run (:mod:`llama_binding.gpu_fit`).
        split_mode, main_gpu, tensor_split: how the layers spread over several GPUs.
        rpc_servers: ``"host:port,host:port"``: llama.cpp RPC workers (``llama-binding
            rpc-server``) whose devices take layers too, before the local GPUs (:mod:`llama_binding.rpc`).
        vocab_only: the vocabulary only (tokenize and detokenize; no context).
        use_mmap, use_mlock: memory-map the weights (default) / lock them in RAM.
        kv_overrides: GGUF metadata values to override, ``{key: bool | int | float | str}``.
        check_tensors: validate the tensor data while loading.
        use_extra_bufts: False is llama.cpp's ``--no-repack``: weights keep the file's layout,
            not the CPU's repacked one (slower; for debugging a CPU kernel).
        lora_path, lora_scale, lora_adapters: LoRA adapters to apply (:meth:`load_lora`).
      Context:
        n_ctx: tokens it holds: 4096, or the model's training context if smaller; 0: that.
        n_batch, n_ubatch: logical and physical batch sizes (2048 and 512, llama.cpp's).
        n_seq_max: sequences decoded together (several prompts, ``n > 1``); 16 for embeddings.
        n_outputs_max_per_seq: outputs a sequence may have per decode with backend sampling.
        n_threads, n_threads_batch: CPU threads for generation / prompts (None, 0, -1: the
            physical cores, but 1 for generation when every layer is on a GPU; more than 4
            per CPU is lowered to that, with a warning).
        flash_attn: True, False or "auto" (default).
        type_k, type_v: KV cache types (ggml type numbers: 1 F16, 8 Q8_0, ...).
        offload_kqv, op_offload, swa_full, kv_unified: llama.cpp's context flags.
        rope_scaling_type, rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor,
            yarn_beta_fast, yarn_beta_slow, yarn_orig_ctx: RoPE / YaRN context extension.
        embedding: an embedding context (:meth:`embed`, :meth:`create_embedding`, :meth:`rank`),
            with ``pooling_type`` (RANK for rerankers) and ``attention_type``.
        logits_all: keep every evaluated token's logits in :attr:`scores` (``eval``, echo logprobs).
      Sampling:
        seed: the seed of calls that do not pass one (None: a random one each call).
        backend_sampling: sample inside the decode, on the device (None: when the output layer is
            on a GPU); calls that need the logits on the host (logprobs, hooks, grammars) do not.
        draft_model: speculative decoding (a draft ``Llama``, ``LlamaPromptLookupDecoding``, ...).
      Chat:
        chat_format: a built-in chat format by name, instead of the model's template.
        chat_template: a Jinja chat template of yours, instead of the model's.
        chat_handler: a callable that answers :meth:`create_chat_completion` itself.
        escape_special_tokens: special-token text inside messages is tokenized as plain text.
        tokenizer: a ``BaseLlamaTokenizer`` for tokenize/detokenize and text prompts.
        mmproj_path, clip_model_path (its llama-cpp-python name): a projector GGUF; chat messages may
            then hold ``image_url`` parts (data: URLs; local files with ``allow_local_media=True``).
      Other:
        verbose: llama.cpp's log on stderr, INFO and above (DEBUG once the ``llama_binding``
            logger's level is DEBUG); logging is process-wide: it applies to every ``Llama``.
        progress: True: a loading bar on a terminal; a callable gets the fraction loaded (False cancels).
        no_perf: turn llama.cpp's performance counters off.
        ignored: llama-cpp-python keywords that mean nothing now (warned about, then ignored).

    :attr:`engine` is the :class:`~llama_binding.generation.engine.Engine` underneath (for
    code that drives the model itself: the server, custom loops).
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike[str]],
        *,
        n_gpu_layers: Union[int, Literal["auto"]] = -1,
        gpu_memory_budget: int | None = None,
        split_mode: int | None = None,
        main_gpu: int | None = None,
        tensor_split: Sequence[float] | None = None,
        rpc_servers: Union[str, Sequence[str], None] = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: Mapping[str, Union[bool, int, float, str]] | None = None,
        check_tensors: bool | None = None,
        use_extra_bufts: bool | None = None,
        seed: int | None = None,
        n_ctx: int | None = None,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        n_seq_max: int | None = None,
        n_outputs_max_per_seq: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        rope_scaling_type: int | None = None,
        pooling_type: int | None = None,
        attention_type: int | None = None,
        rope_freq_base: float | None = None,
        rope_freq_scale: float | None = None,
        yarn_ext_factor: float | None = None,
        yarn_attn_factor: float | None = None,
        yarn_beta_fast: float | None = None,
        yarn_beta_slow: float | None = None,
        yarn_orig_ctx: int | None = None,
        flash_attn: Union[bool, Literal["auto"]] = "auto",
        type_k: int | None = None,
        type_v: int | None = None,
        offload_kqv: bool | None = None,
        op_offload: bool | None = None,
        swa_full: bool | None = None,
        kv_unified: bool | None = None,
        embedding: bool = False,
        lora_path: Union[str, os.PathLike[str], None] = None,
        lora_scale: float = 1.0,
        lora_adapters: Union[Mapping[str, float], Sequence[tuple[str, float]], None] = None,
        chat_format: str | None = None,
        chat_template: str | None = None,
        chat_handler: Callable[..., Any] | None = None,
        escape_special_tokens: bool = False,
        draft_model: DraftModelArg | None = None,
        mmproj_path: Union[str, os.PathLike[str], None] = None,
        clip_model_path: Union[str, os.PathLike[str], None] = None,
        allow_local_media: bool = False,
        logits_all: bool = False,
        backend_sampling: bool | None = None,
        no_perf: bool = False,
        verbose: bool = False,
        progress: ProgressArg = False,
        tokenizer: BaseLlamaTokenizer | None = None,
        **ignored: Any,
    ) -> None:
        given = dict(locals())
        _params.check_ignored(ignored)
        _params.check_types(model_path, seed)
        _params.check_chat_template(chat_template, chat_format)  # before loading anything
        adapters = _params.adapter_list(given)
        _log.set_verbose(verbose)
        self._init_kwargs = {k: v for k, v in given.items() if k not in ("self", "ignored", "__class__")}
        given["n_gpu_layers"] = _params.gpu_layers(model_path, given)  # "auto": dry runs decide now
        self.model_path, self.verbose = os.fspath(model_path), verbose
        self.chat_format, self.chat_template, self.chat_handler = chat_format, chat_template, chat_handler
        self.escape_special_tokens, self.draft_model = escape_special_tokens, draft_model
        on_progress = progress_callback(progress, f"loading {os.path.basename(self.model_path)}")
        model = Model(model_path, _params.model_params(given), progress=on_progress)
        offloaded, output_on_gpu = _params.offload(given["n_gpu_layers"], model.n_layer)
        ctx_params = None if vocab_only else _params.context_params(given, model.n_ctx_train, output_on_gpu)
        self.engine = Engine(model, ctx_params, seed=seed, logits_all=logits_all, lookahead=offloaded,
                             backend_sampling=output_on_gpu if backend_sampling is None else backend_sampling)
        self._attach(tokenizer, adapters, draft_model, given)

    def _attach(self, tokenizer: BaseLlamaTokenizer | None, adapters: Sequence[tuple[str, float]],
                draft_model: DraftModelArg | None, given: Mapping[str, Any]) -> None:
        """The constructor's last steps, once the engine is there."""
        self._chat: ChatSetup | None = None
        _params.track_workers(self.engine.model, given)  # rpc_servers: connected while it lives
        self.media = load_projector(self.engine, given)  # mmproj_path, allow_local_media
        self._tokenizer = tokenizer  # the caller's, for tokenize/detokenize and text prompts
        self.tokenizer_: BaseLlamaTokenizer = tokenizer if tokenizer is not None else LlamaTokenizer(self)
        if self.chat_format is not None or self.chat_template is not None:  # a bad one raises now
            _ = self.chat_setup
        for path, scale in adapters:
            self.load_lora(path, scale)
        if draft_model is not None:
            self.engine.drafter = as_drafter(draft_model, self.engine.vocab)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model now (idempotent; safe from any thread).

        New calls raise :class:`~llama_binding.errors.ClosedError` at once; a call running
        in another thread has its decode aborted and raises ClosedError; the native objects
        are freed once no thread uses them (close() waits for that, a few milliseconds on
        the CPU). A paused stream raises ClosedError when it is read next."""
        self.engine.close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """The constructor's arguments, and the model's fingerprint (see
        :meth:`model_fingerprint`): unpickling loads the model again from ``model_path``
        and refuses a file that is no longer the same model."""
        return {**self._init_kwargs, _PICKLED_FINGERPRINT: self.model_fingerprint()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        kwargs = dict(state)
        expected = kwargs.pop(_PICKLED_FINGERPRINT, None)  # absent from older pickles
        self.__init__(kwargs.pop("model_path"), **kwargs)  # type: ignore[misc]
        if expected is not None and self.model_fingerprint() != expected:
            self.close()
            raise StateError(f"cannot unpickle this Llama: the file at {self.model_path!r} is no longer the "
                             "model it was pickled with (model fingerprints differ)")

    @property
    def context_params(self) -> ContextParams | None:
        return self.engine.params

    @property
    def seed(self) -> int | None:
        """The seed of calls that do not pass one (None: a random one each call)."""
        return self.engine.seed

    @seed.setter
    def seed(self, seed: int | None) -> None:
        if seed is not None:
            self.set_seed(seed)
        else:
            self.engine.seed = None

    @property
    def logits_all(self) -> bool:
        return self.engine.logits_all

    @property
    def speculative_stats(self) -> SpeculativeStats | None:
        """The last speculative completion's statistics (with ``draft_model``)."""
        return self.engine.speculative_stats

    @property
    def chat_setup(self) -> ChatSetup:
        """How chats are rendered: ``chat_format``'s format, ``chat_template``, or the model's template."""
        if self._chat is None:
            from .chat.request import ChatSetup

            self._chat = ChatSetup(self.engine, self.chat_format, self.escape_special_tokens,
                                   self.chat_template)
        return self._chat

    # --- vocabulary and context ----------------------------------------------------------

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (bytes; a str is encoded as UTF-8). Invalid UTF-8 survives
        a round trip only with byte tokens (SPM byte fallback); a byte-level BPE vocabulary
        turns it into U+FFFD (see :meth:`Vocab.tokenize <llama_binding.core.Vocab.tokenize>`).
        With ``Llama(tokenizer=...)``, that tokenizer's answer."""
        if self._tokenizer is not None:
            return self._tokenizer.tokenize(text, add_bos, special)
        return self.engine.tokenize(text, add_special=add_bos, parse_special=special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """The bytes of ``tokens`` (raw: a token may hold part of a UTF-8 character);
        ``prev_tokens`` matter only to a ``Llama(tokenizer=...)`` that uses them."""
        if self._tokenizer is not None:
            return self._tokenizer.detokenize(tokens, prev_tokens=prev_tokens, special=special)
        return self.engine.detokenize(tokens, special=special)

    def tokenizer(self) -> LlamaTokenizer:
        """The model's own tokenizer (``tokenize``/``detokenize`` of bytes), as llama-cpp-python's."""
        return LlamaTokenizer(self)

    @property
    def model(self) -> Any:
        """The native ``llama_model *`` (a ``POINTER(capi.llama_model)``), for :mod:`llama_binding.capi`
        calls such as ``capi.llama_model_get_vocab(llm.model)``; valid while this Llama is open."""
        return self.engine.model.ptr

    @property
    def ctx(self) -> Any:
        """The native ``llama_context *`` (see :attr:`model`)."""
        return self.engine.context.ptr

    def token_bos(self) -> int:
        return self.engine.vocab.bos()

    def token_eos(self) -> int:
        return self.engine.vocab.eos()

    def token_nl(self) -> int:
        return self.engine.vocab.nl()

    def n_vocab(self) -> int:
        return self.engine.vocab.n_tokens

    def n_embd(self) -> int:
        return self.engine.model.n_embd

    def n_ctx(self) -> int:
        return self.engine.context.n_ctx

    def pooling_type(self) -> PoolingType:
        return self.engine.context.pooling_type

    logits_to_logprobs = staticmethod(_dropin.logits_to_logprobs)
    longest_token_prefix = staticmethod(_dropin.longest_token_prefix)

    @property
    def metadata(self) -> dict[str, Any]:
        """Every GGUF metadata key of the model file, arrays included (read once)."""
        return self.engine.metadata

    @property
    def n_tokens(self) -> int:
        """Tokens held in the context now (prompt and generated)."""
        return len(self.engine.tokens)

    @property
    def input_ids(self) -> npt.NDArray[np.intc]:
        return np.array(self.engine.tokens, dtype=np.intc)

    def cancel(self) -> None:
        """Abort the decode running now, from another thread (see ``Context.cancel``): the
        running call raises :class:`~llama_binding.errors.DecodeAbortedError` and this
        ``Llama`` stays usable."""
        self.engine.context.cancel()

    def reset(self) -> None:
        """Forget the context's contents (the next call evaluates its prompt from scratch);
        waits for a call running in another thread."""
        self.engine.reset()

    # --- completions ---------------------------------------------------------------------

    @overload
    def create_completion(self, prompt: _PromptArg, suffix: str | None = ..., max_tokens: int | None = ...,
            temperature: float = ..., top_p: float = ..., min_p: float = ..., typical_p: float = ...,
            logprobs: int | None = ..., echo: bool = ..., stop: _StopArg = ...,
            frequency_penalty: float = ..., presence_penalty: float = ..., repeat_penalty: float = ...,
            top_k: int = ..., stream: Literal[False] = ..., seed: int | None = ..., tfs_z: float | None = ...,
            mirostat_mode: int = ..., mirostat_tau: float = ..., mirostat_eta: float = ...,
            model: str | None = ..., stopping_criteria: _CriteriaArg = ...,
            logits_processor: _ProcessorArg = ..., grammar: _GrammarArg = ...,
            logit_bias: Mapping[int, float] | None = ..., n: int = ...,
            stream_options: Mapping[str, Any] | None = ..., **kwargs: Any) -> CreateCompletionResponse: ...
    @overload
    def create_completion(self, prompt: _PromptArg, suffix: str | None = ..., max_tokens: int | None = ...,
            temperature: float = ..., top_p: float = ..., min_p: float = ..., typical_p: float = ...,
            logprobs: int | None = ..., echo: bool = ..., stop: _StopArg = ...,
            frequency_penalty: float = ..., presence_penalty: float = ..., repeat_penalty: float = ...,
            top_k: int = ..., *, stream: Literal[True], seed: int | None = ..., tfs_z: float | None = ...,
            mirostat_mode: int = ..., mirostat_tau: float = ..., mirostat_eta: float = ...,
            model: str | None = ..., stopping_criteria: _CriteriaArg = ...,
            logits_processor: _ProcessorArg = ..., grammar: _GrammarArg = ...,
            logit_bias: Mapping[int, float] | None = ..., n: int = ...,
            stream_options: Mapping[str, Any] | None = ..., **kwargs: Any) -> Iterator[CompletionChunk]: ...
    @overload
    def create_completion(self, prompt: _PromptArg, suffix: str | None = ..., max_tokens: int | None = ...,
            temperature: float = ..., top_p: float = ..., min_p: float = ..., typical_p: float = ...,
            logprobs: int | None = ..., echo: bool = ..., stop: _StopArg = ...,
            frequency_penalty: float = ..., presence_penalty: float = ..., repeat_penalty: float = ...,
            top_k: int = ..., stream: bool = ..., seed: int | None = ..., tfs_z: float | None = ...,
            mirostat_mode: int = ..., mirostat_tau: float = ..., mirostat_eta: float = ...,
            model: str | None = ..., stopping_criteria: _CriteriaArg = ...,
            logits_processor: _ProcessorArg = ..., grammar: _GrammarArg = ...,
            logit_bias: Mapping[int, float] | None = ..., n: int = ...,
            stream_options: Mapping[str, Any] | None = ..., **kwargs: Any
    ) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]: ...

    def create_completion(
        self,
        prompt: _PromptArg,
        suffix: str | None = None,
        max_tokens: int | None = 16,
        temperature: float = _D.temperature,
        top_p: float = _D.top_p,
        min_p: float = _D.min_p,
        typical_p: float = _D.typical_p,
        logprobs: int | None = None,
        echo: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        frequency_penalty: float = _D.frequency_penalty,
        presence_penalty: float = _D.presence_penalty,
        repeat_penalty: float = _D.repeat_penalty,
        top_k: int = _D.top_k,
        stream: bool = False,
        seed: int | None = None,
        tfs_z: float | None = None,
        mirostat_mode: int = _D.mirostat_mode,
        mirostat_tau: float = _D.mirostat_tau,
        mirostat_eta: float = _D.mirostat_eta,
        model: str | None = None,
        stopping_criteria: StoppingCriteria | Sequence[StoppingCriteria] | None = None,
        logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        n: int = 1,
        stream_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]:
        """An OpenAI completion of ``prompt`` (or an iterator of chunks with ``stream=True``).

        A stream holds this Llama only while it computes a chunk: other calls (any thread)
        may run while it is paused, and it resumes afterwards, evaluating again the tokens
        those calls displaced (exactly on the CPU; on a GPU that batch's logits differ by
        kernel noise); a speculative or several-prompt stream, or one whose sampler chain
        runs on the GPU (backend sampling), cannot resume and raises
        :class:`~llama_binding.errors.StreamInterruptedError` instead.

        The positional order is llama-cpp-python's. ``suffix`` makes it a fill-in-the-middle
        completion (models with FIM tokens). ``max_tokens`` None or <= 0 generates until the
        context is full. ``logprobs=N`` adds the log-probability of each generated token and
        of its N most likely alternatives (from the model's raw logits); with ``echo`` the
        prompt's tokens get theirs too (the prompt is then evaluated again in full).
        ``logits_processor`` may rewrite each step's logits; ``stopping_criteria`` gets the
        token ids including the new token and that token's logits, and ends the completion
        (finish_reason "stop", the token dropped) when it returns True.
        ``stream_options={"include_usage": True}`` ends a stream with a chunk that has no
        choices and the usage, as OpenAI's.

        Several prompts (``prompt=["a", "b"]``, or lists of token ids) or ``n > 1`` samples
        give one choice each (``index``: prompt ``i``'s ``j``-th sample is ``i * n + j``,
        seeded ``seed + j``), decoded together in the context's ``n_seq_max`` sequences
        (create the ``Llama`` with ``n_seq_max=8, kv_unified=True`` to batch); they take no
        suffix, echo, logprobs or Python hooks. Other keywords are warned about and ignored.
        """
        _dropin.warn_unknown(kwargs, Llama.create_completion)
        options = {k: v for k, v in locals().items() if k in SAMPLING_ARGS}
        sampling = self.engine.sampling(dict(options, **grammar_fields(grammar)))
        check_completion_args(logprobs, max_tokens, n)
        limit = None if max_tokens is None or max_tokens <= 0 else int(max_tokens)
        usage = include_usage(stream_options)
        self.engine.require_decoder()  # an embedding model cannot complete
        meta = shapes.Meta.new(model or self.model_path)
        if n != 1 or is_multi_prompt(prompt):
            if suffix is not None or echo or logprobs is not None or logits_processor or stopping_criteria:
                raise ValueError("several prompts or n > 1 take no suffix, echo, logprobs, "
                                 "logits_processor or stopping_criteria")
            return self._complete_many(meta, prompt, n, sampling, limit, stop, stream, usage)
        if self._tokenizer is not None and isinstance(prompt, str) and suffix is None:  # Llama(tokenizer=)
            prompt = self.tokenize(prompt.encode("utf-8"), special=True) if prompt else [self.token_bos()]
        tokens, media = prompt_tokens(self.engine, prompt, suffix)  # media: a chat's prompt with images
        request = Request(tokens, sampling, limit, stop, logprobs, echo, as_logits_hook(logits_processor),
                          as_stop_hook(stopping_criteria), media)
        return self._complete_one(meta, request, echo, stream, usage)

    def _complete_one(self, meta: shapes.Meta, request: Request, echo: bool, stream: bool,
                      usage: bool) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]:
        tokens = request.tokens
        echo_text = self.engine.detokenize(tokens).decode("utf-8", "replace") if echo else ""
        if stream:
            chunker = shapes.CompletionChunker(meta, self.engine.token_text, len(tokens), echo_text)
            return shapes.completion_chunks(chunker, self.engine.stream(request), usage, one=True)
        result = self.engine.complete(request)
        return shapes.completion(meta, [result], len(tokens), self.engine.token_text, echo_text)

    def _complete_many(self, meta: shapes.Meta, prompt: Any, n: int, sampling: Any, limit: int | None,
                       stop: Union[str, Sequence[str], None], stream: bool,
                       usage: bool) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]:
        prompts = [self.engine.prompt_tokens(p) for p in (prompt if is_multi_prompt(prompt) else [prompt])]
        n_prompt = sum(map(len, prompts)) * n
        if stream:
            many = self.engine.stream_many(prompts, n, sampling, limit, stop)
            chunker = shapes.CompletionChunker(meta, self.engine.token_text, n_prompt)
            return shapes.completion_chunks(chunker, many, usage)
        results = self.engine.complete_many(prompts, n, sampling, limit, stop)
        return shapes.completion(meta, results, n_prompt, self.engine.token_text)

    @overload
    def __call__(self, prompt: Union[str, Sequence[int]], *, stream: Literal[False] = ...,
                 **kwargs: Any) -> CreateCompletionResponse: ...
    @overload
    def __call__(self, prompt: Union[str, Sequence[int]], *, stream: Literal[True],
                 **kwargs: Any) -> Iterator[CompletionChunk]: ...

    def __call__(self, prompt: Union[str, Sequence[int]], *args: Any, **kwargs: Any) -> Any:
        return self.create_completion(prompt, *args, **kwargs)

    @overload
    def create_chat_completion(self, messages: Sequence[Mapping[str, Any]], temperature: float = ...,
            top_p: float = ..., top_k: int = ..., min_p: float = ..., typical_p: float = ...,
            stream: Literal[False] = ..., stop: _StopArg = ..., seed: int | None = ...,
            response_format: Mapping[str, Any] | None = ..., max_tokens: int | None = ...,
            presence_penalty: float = ..., frequency_penalty: float = ..., repeat_penalty: float = ...,
            tfs_z: float | None = ..., mirostat_mode: int = ..., mirostat_tau: float = ...,
            mirostat_eta: float = ..., model: str | None = ..., logits_processor: _ProcessorArg = ...,
            grammar: _GrammarArg = ..., logit_bias: Mapping[int, float] | None = ...,
            logprobs: bool | None = ..., top_logprobs: int | None = ...,
            tools: Sequence[Mapping[str, Any]] | None = ...,
            tool_choice: Union[str, Mapping[str, Any], None] = ..., escape_special_tokens: bool | None = ...,
            n: int = ..., stream_options: Mapping[str, Any] | None = ...,
            functions: Sequence[Mapping[str, Any]] | None = ...,
            function_call: Union[str, Mapping[str, Any], None] = ..., **kwargs: Any
    ) -> CreateChatCompletionResponse: ...
    @overload
    def create_chat_completion(self, messages: Sequence[Mapping[str, Any]], temperature: float = ...,
            top_p: float = ..., top_k: int = ..., min_p: float = ..., typical_p: float = ..., *,
            stream: Literal[True], stop: _StopArg = ..., seed: int | None = ...,
            response_format: Mapping[str, Any] | None = ..., max_tokens: int | None = ...,
            presence_penalty: float = ..., frequency_penalty: float = ..., repeat_penalty: float = ...,
            tfs_z: float | None = ..., mirostat_mode: int = ..., mirostat_tau: float = ...,
            mirostat_eta: float = ..., model: str | None = ..., logits_processor: _ProcessorArg = ...,
            grammar: _GrammarArg = ..., logit_bias: Mapping[int, float] | None = ...,
            logprobs: bool | None = ..., top_logprobs: int | None = ...,
            tools: Sequence[Mapping[str, Any]] | None = ...,
            tool_choice: Union[str, Mapping[str, Any], None] = ..., escape_special_tokens: bool | None = ...,
            n: int = ..., stream_options: Mapping[str, Any] | None = ...,
            functions: Sequence[Mapping[str, Any]] | None = ...,
            function_call: Union[str, Mapping[str, Any], None] = ..., **kwargs: Any
    ) -> Iterator[ChatCompletionChunk]: ...
    @overload
    def create_chat_completion(self, messages: Sequence[Mapping[str, Any]], temperature: float = ...,
            top_p: float = ..., top_k: int = ..., min_p: float = ..., typical_p: float = ...,
            stream: bool = ..., stop: _StopArg = ..., seed: int | None = ...,
            response_format: Mapping[str, Any] | None = ..., max_tokens: int | None = ...,
            presence_penalty: float = ..., frequency_penalty: float = ..., repeat_penalty: float = ...,
            tfs_z: float | None = ..., mirostat_mode: int = ..., mirostat_tau: float = ...,
            mirostat_eta: float = ..., model: str | None = ..., logits_processor: _ProcessorArg = ...,
            grammar: _GrammarArg = ..., logit_bias: Mapping[int, float] | None = ...,
            logprobs: bool | None = ..., top_logprobs: int | None = ...,
            tools: Sequence[Mapping[str, Any]] | None = ...,
            tool_choice: Union[str, Mapping[str, Any], None] = ..., escape_special_tokens: bool | None = ...,
            n: int = ..., stream_options: Mapping[str, Any] | None = ...,
            functions: Sequence[Mapping[str, Any]] | None = ...,
            function_call: Union[str, Mapping[str, Any], None] = ..., **kwargs: Any
    ) -> Union[CreateChatCompletionResponse, Iterator[ChatCompletionChunk]]: ...

    def create_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        temperature: float = CHAT_TEMPERATURE,
        top_p: float = _D.top_p,
        top_k: int = _D.top_k,
        min_p: float = _D.min_p,
        typical_p: float = _D.typical_p,
        stream: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        presence_penalty: float = _D.presence_penalty,
        frequency_penalty: float = _D.frequency_penalty,
        repeat_penalty: float = _D.repeat_penalty,
        tfs_z: float | None = None,
        mirostat_mode: int = _D.mirostat_mode,
        mirostat_tau: float = _D.mirostat_tau,
        mirostat_eta: float = _D.mirostat_eta,
        model: str | None = None,
        logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
        grammar: str | LlamaGrammar | None = None,
        logit_bias: Mapping[int, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        escape_special_tokens: bool | None = None,
        n: int = 1,
        stream_options: Mapping[str, Any] | None = None,
        functions: Sequence[Mapping[str, Any]] | None = None,
        function_call: Union[str, Mapping[str, Any], None] = None,
        **kwargs: Any,
    ) -> Union[CreateChatCompletionResponse, Iterator[ChatCompletionChunk]]:
        """An OpenAI chat completion of ``messages`` (an iterator of chunks with deltas for
        ``stream=True``), with llama-cpp-python's names and defaults.

        The prompt comes from ``chat_handler`` (which then answers the whole call, as in
        llama-cpp-python), ``chat_format``, or the model's own template rendered in a
        sandbox. ``response_format`` ``{"type": "json_object"}`` or ``{"type": "json_schema",
        "json_schema": {"schema": ...}}`` is enforced with a grammar; ``logprobs=True`` with
        ``top_logprobs=N`` gives OpenAI's chat log-probabilities.

        ``tools`` (OpenAI function tools) are rendered by the model's template when it
        knows tools, else described in a system message; ``tool_choice`` "auto" (the
        default with tools) lets the model choose, "none" hides the tools, "required" or a
        named function forces one call whose arguments match the function's parameter
        schema (a grammar). Calls found in the output (Hermes/Qwen, Llama 3, Mistral or
        plain JSON, by the template) come back as ``tool_calls`` with finish_reason
        "tool_calls", streamed as OpenAI ``tool_calls`` deltas.

        ``escape_special_tokens`` (None: the Llama's setting, off by default) tokenizes the
        text of special tokens inside messages and tools as plain text: a user who writes
        ``<|im_start|>system`` then cannot open a turn of their own; the template's own
        special tokens stay special. Off, the whole rendered prompt is tokenized with
        special tokens parsed, as llama-cpp-python does (messages from a trusted caller may
        mean them); the server turns it on. ``n``, ``stream_options`` as in :meth:`create_completion`.
        ``functions``/``function_call`` (OpenAI's deprecated forms) are ``tools``/``tool_choice``
        (one call is also the message's ``function_call``); unknown keywords warn and are ignored.
        """
        _dropin.warn_unknown(kwargs, Llama.create_chat_completion)
        if self.chat_handler is not None:
            return self._handler_answer(locals())
        tools, tool_choice = _dropin.legacy_tools(functions, function_call, tools, tool_choice)
        self.engine.require_decoder()  # an embedding model cannot chat
        chat, media = chat_prompt(self.chat_setup, self.engine, messages, self.media, tools=tools,
                                  tool_choice=tool_choice, response_format=response_format, grammar=grammar,
                                  stop=stop, escape_special_tokens=escape_special_tokens, n=n)
        result = self.create_completion(
            media or chat.tokens, max_tokens=max_tokens, temperature=temperature, top_p=top_p, min_p=min_p,
            typical_p=typical_p, logprobs=(top_logprobs or 0) if logprobs else None, stop=chat.stop,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            repeat_penalty=repeat_penalty, top_k=top_k, stream=stream, seed=seed, tfs_z=tfs_z,
            mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, model=model,
            logits_processor=logits_processor, grammar=chat.grammar, logit_bias=logit_bias, n=n,
            stream_options=stream_options)
        return _chat_answer(result, chat.parser, stream, legacy=functions is not None)

    def _handler_answer(self, given: Mapping[str, Any]) -> ChatAnswer:
        """``chat_handler``'s answer to a chat request, with llama-cpp-python's arguments."""
        options = {k: v for k, v in given.items()
                   if k not in ("self", "messages", "__class__", "escape_special_tokens", "n",
                                "stream_options", "kwargs")}
        return self.chat_handler(llama=self, messages=given["messages"], **options)  # type: ignore[misc,no-any-return]

    def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`create_chat_completion`'s answer as ``openai.types.chat.ChatCompletion``, or
        an iterator of ``ChatCompletionChunk`` with ``stream=True`` (needs the openai package)."""
        stream = bool(kwargs.get("stream"))
        return _dropin.openai_v1(lambda: self.create_chat_completion(*args, **kwargs), stream)

    # --- embeddings and reranking --------------------------------------------------------

    def embed(self, input: Union[str, Sequence[str]], normalize: bool = True, truncate: bool = False,
              return_count: bool = False, *, numpy: bool = False) -> Any:
        """Embeddings of a text or a list of texts (the model's pooling, or ``pooling_type``):
        a vector per text with a pooling type, a row per token without one.

        ``normalize=True`` (the default, as OpenAI and sentence-transformers; llama-cpp-python
        defaults to False) scales each vector to unit length. A text longer than one batch
        raises :class:`~llama_binding.errors.ContextOverflowError` unless ``truncate=True``.
        Plain lists, or numpy arrays with ``numpy=True``; ``return_count=True`` also
        returns the number of tokens.
        """
        texts = [input] if isinstance(input, str) else list(input)
        vectors, counts = self.engine.embed(texts, normalize, truncate)
        result: Any = vectors if numpy else [v.tolist() for v in vectors]
        if isinstance(input, str):
            result = result[0]
        return (result, sum(counts)) if return_count else result

    def create_embedding(self, input: Union[str, Sequence[str]],
                         model: str | None = None) -> CreateEmbeddingResponse:
        """OpenAI's embeddings response for a text or a list of texts (normalized)."""
        vectors, counts = self.engine.embed([input] if isinstance(input, str) else list(input))
        return shapes.embeddings(model or self.model_path, vectors, sum(counts))

    def rank(self, query: str, documents: Sequence[str], truncate: bool = False) -> list[float]:
        """Relevance scores of ``documents`` for ``query`` from a reranker (a model with a
        classification head, ``pooling_type`` RANK): higher is more relevant. Each pair is
        one input, laid out as llama.cpp's rerank does: BOS query EOS SEP document EOS."""
        return self.engine.rank(query, documents, truncate)

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        filename: str | None,
        additional_files: Sequence[str] | None = None,
        local_dir: Union[str, os.PathLike[str], None] = None,
        local_dir_use_symlinks: Union[bool, Literal["auto"]] = "auto",
        cache_dir: Union[str, os.PathLike[str], None] = None,
        **kwargs: Any,
    ) -> Llama:
        """A Llama of a GGUF from the Hugging Face Hub, as llama-cpp-python's: ``filename`` is
        a glob (``fnmatch``) over the repository's paths that must match one file (None: the
        file ``llama-binding pull repo_id`` picks); ``additional_files``, globs of one file
        each, are downloaded too, as are the other parts of a split model. The files go to
        huggingface_hub's cache (``cache_dir``) or to ``local_dir``; offline
        (``HF_HUB_OFFLINE=1``) the cache alone is read. ``local_dir_use_symlinks`` is
        accepted and ignored (huggingface_hub no longer uses it). ``kwargs`` go to the
        constructor. See :mod:`llama_binding.hub`."""
        from .hub import pretrained_path

        del local_dir_use_symlinks
        path = pretrained_path(repo_id, filename, additional_files, local_dir=local_dir, cache_dir=cache_dir)
        return cls(model_path=path, **kwargs)
