"""The one mapping from llama-cpp-python's ``Llama(...)`` keywords to our option dataclasses.

``tests/test_llama.py::test_signature_table_and_dataclasses_agree`` keeps the
``Llama`` signature, these tables and the fields of :class:`~llama_binding.core.ModelParams`
/ :class:`~llama_binding.core.ContextParams` in step.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

from . import _backend
from .core import ContextParams, ModelParams
from .core.context import FlashAttnType
from .core.model import LoadMode

__all__ = ["CONTEXT_FIELDS", "CONVERTED", "DEFAULT_N_CTX", "EMBEDDING_SEQ_MAX", "IGNORED", "MODEL_FIELDS",
           "QUIET_DEFAULTS",
           "adapter_list", "check_ignored", "check_types", "context_params",
           "flash_attn_type", "gpu_layers", "load_mode", "model_params", "offload", "warn_unknown"]

_HERE = os.path.dirname(os.path.abspath(__file__))

#: context size when ``n_ctx`` is not given (or the model's training context if smaller)
DEFAULT_N_CTX = 4096
#: sequences per decode for ``embedding=True`` (when ``n_seq_max`` is not given)
EMBEDDING_SEQ_MAX = 16

#: ``Llama`` keyword -> ModelParams field (same meaning, maybe another name)
MODEL_FIELDS: dict[str, str] = {
    "n_gpu_layers": "n_gpu_layers",
    "split_mode": "split_mode",
    "main_gpu": "main_gpu",
    "tensor_split": "tensor_split",
    "vocab_only": "vocab_only",
    "kv_overrides": "kv_overrides",
    "check_tensors": "check_tensors",
    "use_extra_bufts": "use_extra_bufts",
}

#: ``Llama`` keyword -> ContextParams field
CONTEXT_FIELDS: dict[str, str] = {
    "n_ctx": "n_ctx",
    "n_batch": "n_batch",
    "n_ubatch": "n_ubatch",
    "n_seq_max": "n_seq_max",
    "n_outputs_max_per_seq": "n_outputs_max_per_seq",
    "n_threads": "n_threads",
    "n_threads_batch": "n_threads_batch",
    "rope_scaling_type": "rope_scaling_type",
    "pooling_type": "pooling_type",
    "attention_type": "attention_type",
    "rope_freq_base": "rope_freq_base",
    "rope_freq_scale": "rope_freq_scale",
    "yarn_ext_factor": "yarn_ext_factor",
    "yarn_attn_factor": "yarn_attn_factor",
    "yarn_beta_fast": "yarn_beta_fast",
    "yarn_beta_slow": "yarn_beta_slow",
    "yarn_orig_ctx": "yarn_orig_ctx",
    "type_k": "type_k",
    "type_v": "type_v",
    "offload_kqv": "offload_kqv",
    "op_offload": "op_offload",
    "swa_full": "swa_full",
    "kv_unified": "kv_unified",
    "embedding": "embeddings",
    "no_perf": "no_perf",
}

#: ``Llama`` keywords with no C field of that name, and where they go
CONVERTED: dict[str, str] = {
    "use_mmap": "ModelParams.load_mode",
    "use_mlock": "ModelParams.load_mode",
    "flash_attn": "ContextParams.flash_attn_type",
    "seed": "the sampler chain's seed",
    "verbose": "logging (llama_binding._log.set_verbose)",
    "logits_all": "an output flag on every evaluated token (Llama.scores)",
    "backend_sampling": "llama_set_sampler: the sequence's chain runs inside the decode",
    "progress": "ModelParams' progress callback (a terminal bar for True)",
    "lora_path": "core.adapter.LoraAdapter, applied with set_adapters (Llama.load_lora)",
    "lora_scale": "the scale of lora_path's adapter (Llama.set_lora)",
    "lora_adapters": "more LoraAdapters with their scales (Llama.load_lora)",
    "chat_format": "a built-in chat format by name (chat.formats), instead of the model's template",
    "chat_template": "a Jinja chat template of the caller's, instead of the model's (chat.request.ChatSetup)",
    "chat_handler": "a callable that answers create_chat_completion itself (llama-cpp-python's)",
    "escape_special_tokens": "chat: special-token text in messages is tokenized as text (chat/escape.py)",
    "draft_model": "speculative decoding: a drafter (draft.as_drafter) for generation.speculative",
    "gpu_memory_budget": "the room n_gpu_layers='auto' fits the layers in (gpu_fit.fit_gpu_layers)",
    "tokenizer": "a llama_tokenizer.BaseLlamaTokenizer for Llama.tokenize/detokenize and text prompts",
    "rpc_servers": "ModelParams.devices: the RPC workers' devices, then the local GPUs (llama_binding.rpc)",
    "mmproj_path": "core.mtmd.Projector: the multimodal projector (mmproj GGUF) for image content parts",
    "clip_model_path": "mmproj_path under llama-cpp-python's name (its Llava15ChatHandler's)",
    "allow_local_media": "chat: image parts may name local files (paths, file:// URLs), not only data: URLs",
}

#: llama-cpp-python keywords (of 0.3.36 or older) that mean nothing with this llama.cpp:
#: accepted, with a DeprecationWarning unless the value is the one of :data:`QUIET_DEFAULTS`
IGNORED: frozenset[str] = frozenset({
    "numa", "mul_mat_q", "f16_kv", "low_vram", "tfs_z", "last_n_tokens_size",
    "lora_base", "spm_infill", "type_v_quant", "n_parts",
})

#: the values of :data:`IGNORED` keywords that clients pass on their own (LangChain's
#: ``LlamaCpp`` passes ``n_parts=-1, f16_kv=True, last_n_tokens_size=64, lora_base=None``
#: whatever the user set): these say nothing, so they do not warn
QUIET_DEFAULTS: dict[str, object] = {
    "n_parts": -1, "f16_kv": True, "last_n_tokens_size": 64, "lora_base": None, "numa": False,
    "spm_infill": False, "low_vram": False,
}


def load_mode(use_mmap: bool, use_mlock: bool) -> LoadMode:
    """llama-cpp-python's two booleans as this llama.cpp's ``load_mode``."""
    if use_mmap:
        return LoadMode.MMAP_MLOCK if use_mlock else LoadMode.MMAP
    return LoadMode.MLOCK if use_mlock else LoadMode.NONE


def flash_attn_type(flash_attn: Union[bool, Literal["auto"], Any]) -> FlashAttnType:
    """``flash_attn=True/False/"auto"`` as ``flash_attn_type``."""
    if flash_attn == "auto" or flash_attn is None:
        return FlashAttnType.AUTO
    if isinstance(flash_attn, bool):
        return FlashAttnType.ENABLED if flash_attn else FlashAttnType.DISABLED
    raise ValueError(f"flash_attn must be True, False or 'auto', not {flash_attn!r}")


def check_ignored(given: Mapping[str, Any]) -> None:
    """``Llama(**kwargs)``'s keywords that are not in its signature, accepted as
    llama-cpp-python accepts them: one of :data:`IGNORED` warns (DeprecationWarning) that
    it has no effect, unless it has its :data:`QUIET_DEFAULTS` value; any other is unknown
    (see :func:`warn_unknown`)."""
    unknown = []
    for name, value in given.items():
        if name not in IGNORED:
            unknown.append(name)
        elif name not in QUIET_DEFAULTS or not _same(value, QUIET_DEFAULTS[name]):
            warnings.warn(f"Llama({name}=...) has no effect with this llama.cpp and is ignored",
                          DeprecationWarning, stacklevel=3)
    warn_unknown("Llama()", unknown, {"model_path", *MODEL_FIELDS, *CONTEXT_FIELDS, *CONVERTED, *IGNORED})


def warn_unknown(call: str, names: Iterable[str], known: Iterable[str]) -> None:
    """Warn (UserWarning) that ``call`` got keywords it does not know and ignores, naming
    each with the closest known name (llama-cpp-python's ``Llama()`` swallows unknown
    keywords through ``**kwargs``; its clients, LangChain's for one, pass some). The
    warning points at the first caller outside this package."""
    names = list(names)
    if not names:
        return
    known = sorted(set(known))
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    warnings.warn(f"{call} got unknown keyword argument{'s' if len(parts) > 1 else ''} "
                  f"{', '.join(parts)}: ignored", UserWarning, stacklevel=_outside_level())


def _outside_level() -> int:
    """The ``stacklevel`` of the innermost frame outside this package, for a warning raised
    by the function that calls this one."""
    here = inspect.currentframe()
    level, frame = 1, here.f_back if here is not None else None  # level 1: the warning's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_HERE + os.sep):
        level, frame = level + 1, frame.f_back
    return level


def _same(value: object, default: object) -> bool:
    return type(value) is type(default) and value == default


def model_params(given: Mapping[str, Any]) -> ModelParams:
    """``Llama``'s keywords (all of them, by name) as :class:`ModelParams`."""
    kw = {f: given[k] for k, f in MODEL_FIELDS.items()}
    kw["load_mode"] = load_mode(given["use_mmap"], given["use_mlock"])
    if given.get("rpc_servers"):  # the workers' devices first, as llama.cpp orders them
        from . import rpc

        kw["devices"] = rpc.remote_devices(given["rpc_servers"]) + rpc.local_offload_devices()
    return ModelParams(**kw)


def track_workers(model: Any, given: Mapping[str, Any]) -> None:
    """Note the RPC workers ``model`` is connected to (``rpc_servers``), while it lives."""
    if given.get("rpc_servers"):
        from . import rpc

        rpc.track(model, given["rpc_servers"])


def context_params(given: Mapping[str, Any], n_ctx_train: int, all_on_gpu: bool = False) -> ContextParams:
    """``Llama``'s keywords as :class:`ContextParams`: ``n_ctx`` None is 4096 or the
    training context if smaller, 0 the training context; ``embedding=True`` packs
    :data:`EMBEDDING_SEQ_MAX` inputs per decode in a unified cache unless told otherwise.
    ``all_on_gpu`` (every layer and the output on a GPU): ``n_threads`` not given is 1."""
    kw = {f: given[k] for k, f in CONTEXT_FIELDS.items()}
    if all_on_gpu and given["n_threads"] in (None, 0, -1):
        # a single-token decode then leaves the CPU only the token's embedding row: waking
        # the pool's threads for it costs more than it saves (llama-bench -t 1 against its
        # default, on an H100: 1,146 against 1,162 us a token; our decode 9-15 us faster)
        kw["n_threads"] = 1
    if given["n_ctx"] == 0:
        kw["n_ctx"] = n_ctx_train
    elif given["n_ctx"] is None:
        kw["n_ctx"] = min(DEFAULT_N_CTX, n_ctx_train) or DEFAULT_N_CTX
    kw["flash_attn_type"] = flash_attn_type(given["flash_attn"])
    if given["embedding"]:  # room to pack many inputs into one decode (generation/embedding.py)
        if given["n_seq_max"] is None:
            kw["n_seq_max"] = EMBEDDING_SEQ_MAX
        if given["kv_unified"] is None:
            kw["kv_unified"] = True
    return ContextParams(**kw)


def gpu_layers(model_path: Union[str, os.PathLike[str]], given: Mapping[str, Any]) -> int:
    """``n_gpu_layers`` as a number: ``'auto'`` resolved for these keywords (the most layers
    whose weights, KV cache and compute buffers fit the GPUs' free memory or
    ``gpu_memory_budget``; dry runs of llama.cpp, before anything loads)."""
    from .gpu_fit import fit_gpu_layers

    if given["n_gpu_layers"] != "auto":
        if given["gpu_memory_budget"] is not None:
            raise ValueError("gpu_memory_budget needs n_gpu_layers='auto'")
        return given["n_gpu_layers"]  # type: ignore[no-any-return]  # (a wrong type: refused later)
    if given["vocab_only"]:
        return 0
    fit = fit_gpu_layers(model_path, model_params(given), lambda n_train: context_params(given, n_train),
                         budget=given["gpu_memory_budget"])
    return fit.n_gpu_layers


def offload(n_gpu_layers: int, n_layer: int) -> tuple[bool, bool]:
    """(any layer on a GPU, the output layer on a GPU) for ``n_gpu_layers`` of this build."""
    offloaded = _backend.has_local_gpu() and n_gpu_layers != 0
    return offloaded, offloaded and (n_gpu_layers < 0 or n_gpu_layers > n_layer)


def check_types(model_path: object, seed: object) -> None:
    if not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"model_path must be a str or os.PathLike, not {type(model_path).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")


def check_chat_template(chat_template: str | None, chat_format: str | None) -> None:
    """Refuse ``chat_template`` beside ``chat_format``, or one that does not compile (before loading)."""
    if chat_template is not None:
        from .chat.request import check_chat_template as check

        check(chat_template, chat_format)


def adapter_list(given: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``lora_path``/``lora_scale`` and ``lora_adapters`` as one list of (path, scale)."""
    lora_path, lora_adapters = given["lora_path"], given["lora_adapters"]
    if given["vocab_only"] and (lora_path is not None or lora_adapters):
        raise ValueError("a vocab_only Llama has no weights to apply LoRA adapters to")
    adapters = list(lora_adapters.items() if isinstance(lora_adapters, Mapping) else lora_adapters or ())
    if lora_path is not None:
        adapters.insert(0, (os.fspath(lora_path), given["lora_scale"]))
    return adapters
