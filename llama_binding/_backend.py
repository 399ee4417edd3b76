"""Process-wide backend initialisation and :func:`system_info`.

llama.cpp needs its backends registered once per process before a model loads. In a
default build the backends are linked into libggml and register themselves; in a
portable build (``-DGGML_BACKEND_DL=ON``, optionally ``-DGGML_CPU_ALL_VARIANTS=ON``) they
are modules beside the libraries and :func:`init_backends` loads them from that folder.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _log, capi
from .capi import _loader

#: the RPC workers' devices that models of this process use (set by llama_binding.rpc, which
#: imports this module: no import cycle)
rpc_devices: list[Any] = []

__all__ = ["DeviceInfo", "SystemInfo", "has_local_gpu", "init_backends", "local_gpus", "system_info"]

_init_lock = threading.Lock()
_initialised = False

_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


def init_backends() -> None:
    """Register llama.cpp's backends once per process (thread-safe, idempotent)."""
    global _initialised
    if _initialised:
        return
    with _init_lock:
        if _initialised:
            return
        folder = _loader.lib_dir()
        _log.install()
        if capi.ggml_backend_reg_count() == 0:
            # backends built as loadable modules (GGML_BACKEND_DL): load them from our folder
            capi.ggml_backend_load_all_from_path(str(folder).encode())
        capi.llama_backend_init()
        _initialised = True


def local_gpus() -> list[Any]:
    """The GPU and integrated-GPU devices (``ggml_backend_dev_t``) of ggml's registry: this
    machine's (RPC workers' devices are never registered, see :mod:`llama_binding.rpc`)."""
    init_backends()
    gpu = (capi.GGML_BACKEND_DEVICE_TYPE_GPU, capi.GGML_BACKEND_DEVICE_TYPE_IGPU)
    devices = (capi.ggml_backend_dev_get(i) for i in range(capi.ggml_backend_dev_count()))
    return [dev for dev in devices if capi.ggml_backend_dev_type(dev) in gpu]


def has_local_gpu() -> bool:
    """Whether this machine has a GPU llama.cpp can use. Unlike ``llama_supports_gpu_offload``,
    which is also true for any build with the RPC backend (whose devices are other machines',
    used only by the models that name them)."""
    return bool(local_gpus())


@dataclass(frozen=True)
class DeviceInfo:
    """One device from ggml's backend registry."""

    name: str
    description: str
    type: str
    memory_free: int
    memory_total: int


@dataclass(frozen=True)
class SystemInfo:
    """What this build of llama.cpp can use on this machine."""

    llama_cpp: str
    devices: list[DeviceInfo] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    supports_gpu_offload: bool = False
    lib_dir: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def system_info() -> SystemInfo:
    """llama.cpp's system info string and the devices of ggml's backend registry."""
    init_backends()
    devices = []
    for i in range(capi.ggml_backend_dev_count()):
        dev = capi.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        capi.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = int(capi.ggml_backend_dev_type(dev))
        devices.append(
            DeviceInfo(
                name=_text(capi.ggml_backend_dev_name(dev)),
                description=_text(capi.ggml_backend_dev_description(dev)),
                type=_DEVICE_TYPES.get(kind, str(kind)),
                memory_free=free.value,
                memory_total=total.value,
            )
        )
    devices += [DeviceInfo(d.name, d.description, "rpc", d.memory_free, d.memory_total) for d in rpc_devices]
    backends = [
        _text(capi.ggml_backend_reg_name(capi.ggml_backend_reg_get(i)))
        for i in range(capi.ggml_backend_reg_count())
    ]
    return SystemInfo(
        llama_cpp=_text(capi.llama_print_system_info()),
        devices=devices,
        backends=backends,
        supports_gpu_offload=has_local_gpu(),
        lib_dir=str(_loader.lib_dir()),
    )
