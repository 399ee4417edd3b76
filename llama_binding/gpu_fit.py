"""``n_gpu_layers="auto"``: as many layers on the GPU(s) as fit, decided before loading.

What a number of offloaded layers takes on the devices is asked of llama.cpp itself, as its
``--fit`` does: the model is "loaded" with ``no_alloc`` (metadata only, buffers sized but
not allocated, nothing read from the weights) and a context of the requested options is
created on it, so the KV cache and the compute buffers of that context count too; its
:meth:`~llama_binding.core.Context.memory_use` is then what loading for real allocates.
A first guess from two such dry runs (no layer, every layer) is corrected one layer at a
time, so the answer is the largest count whose dry run fits (a handful of dry runs, each a
few milliseconds to a second for a large file).

The room is the devices' free memory less a margin (llama.cpp's ``--fit-target``, 1 GiB)
for what others allocate meanwhile, or ``budget`` bytes when that is smaller. On a build
without GPU offload the answer is 0, with no dry run and no warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Union

from . import _backend
from ._backend import system_info
from .core import Context, ContextParams, LoadMode, Model, ModelParams

__all__ = ["MARGIN", "GpuFit", "device_memory_free", "fit_gpu_layers"]

logger = logging.getLogger("llama_binding")

#: bytes left free on the devices (llama.cpp's --fit-target default)
MARGIN = 1024 * 2**20


@dataclass(frozen=True)
class GpuFit:
    """The layer count chosen, and what it was chosen from."""

    #: what to pass as ``n_gpu_layers``: -1 every layer (and the output layer), else a count
    n_gpu_layers: int
    #: the model's layers (the output layer is one more)
    n_layer: int
    #: bytes the chosen count takes on the devices (weights, KV cache, compute buffers)
    device_bytes: int
    #: bytes there were room for
    room: int


def device_memory_free() -> int:
    """Free bytes of this build's GPUs together (0 without any)."""
    return sum(d.memory_free for d in system_info().devices if d.type.lower() in ("gpu", "igpu"))


def fit_gpu_layers(path: Union[str, os.PathLike[str]], model_params: ModelParams | None = None,
                   context_params: Union[ContextParams, Callable[[int], ContextParams], None] = None, *,
                   budget: int | None = None, margin: int = MARGIN) -> GpuFit:
    """The :class:`GpuFit` for the model at ``path`` with these options (their
    ``n_gpu_layers`` is what is chosen here, whatever it was; ``context_params`` may be a
    function of the model's training context); see the module docstring."""
    model_params = model_params or ModelParams()
    context_of = context_params if callable(context_params) else lambda _: context_params or ContextParams()
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise ValueError(f"gpu_memory_budget must be a number of bytes >= 0, not {budget!r}")
    if not _backend.has_local_gpu():
        return GpuFit(0, 0, 0, 0)
    free = device_memory_free()
    room = max(0, free - margin) if budget is None else min(budget, max(0, free - margin))
    sizes: dict[int, int] = {}
    n_layer = 0

    def use(n: int) -> int:  # bytes on the devices with n layers offloaded (-1: all)
        nonlocal n_layer
        if n not in sizes:
            dry = replace(model_params, n_gpu_layers=n, no_alloc=True, load_mode=LoadMode.NONE)
            with Model(path, dry) as model, Context(model, context_of(model.n_ctx_train)) as ctx:
                n_layer = model.n_layer
                sizes[n] = ctx.memory_use().device
        return sizes[n]

    if use(-1) <= room:
        return GpuFit(-1, n_layer, sizes[-1], room)
    if use(0) > room:
        return GpuFit(0, n_layer, sizes[0], room)
    per_layer = max(1, (sizes[-1] - sizes[0]) // (n_layer + 1))
    n = min(n_layer, (room - sizes[0]) // per_layer)
    while n > 0 and use(n) > room:
        n -= 1
    while n < n_layer and use(n + 1) <= room:
        n += 1
    logger.info("n_gpu_layers='auto': %d of %d layers fit in %.0f MiB (%.0f MiB on the GPU)", n, n_layer + 1,
                room / 2**20, use(n) / 2**20)
    return GpuFit(n, n_layer, use(n), room)
