"""The server's settings: one definition gives the CLI flags, the environment variables and
the config file.

:class:`ServerSettings` is a pydantic-settings model. Its fields are the flags
(``--n-ctx`` and llama-cpp-python's ``--n_ctx`` both), the environment variables
(``LLAMA_BINDING_N_CTX``; lists comma separated) and the keys of a JSON, TOML or YAML
config file (``--config``). Precedence: flags, then environment, then the file, then the
defaults. The model options keep ``Llama``'s names (llama-cpp-python's server's, where it
has one).
"""

from __future__ import annotations

import argparse
import logging
import os
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from ..generation.drafters import LlamaPromptLookupDecoding

__all__ = ["ModelSettings", "ServerSettings", "build_parser", "settings_from_args"]

ENV_PREFIX = "LLAMA_BINDING_"
#: llama-cpp-python's server settings with no counterpart here (its streams always end on a
#: disconnect, pings are SSE comments, TLS belongs to a proxy)
LLAMA_CPP_PYTHON_ONLY = frozenset({"interrupt_requests", "disable_ping_events", "root_path", "ssl_keyfile",
                                   "ssl_certfile"})
#: llama-cpp-python's names of settings that have another name here
LLAMA_CPP_PYTHON_NAMES = {"clip_model_path": "mmproj"}
logger = logging.getLogger("llama_binding.server")
KeyList = Annotated[list[str], NoDecode]


class ModelOptions(BaseModel):
    """A model's options, the same for a single model (flags) and each entry of ``models``."""

    model_alias: Optional[str] = Field(None, description="the model's id in /v1/models (default: file name)")
    n_ctx: Optional[int] = Field(None, description="context shared by the slots (default 4096 per 4 slots)")
    n_seq_max: int = Field(4, ge=1, le=256, description="sequence slots: requests decoded together")
    kv_unified: bool = Field(True, description="one KV cache shared by the slots (off: each slot "
                             "its own n_ctx / n_seq_max cells, llama-server's default: faster with "
                             "many busy slots, shorter requests)")
    n_gpu_layers: Union[int, Literal["auto"]] = Field(
        "auto", description="layers on the GPU (-1: all; auto: as many as fit, with room for the context)")
    n_batch: int = Field(2048, ge=1)
    n_ubatch: int = Field(512, ge=1)
    n_threads: Optional[int] = None
    n_threads_batch: Optional[int] = None
    flash_attn: Union[Literal["auto", "on", "off"], bool] = "auto"
    embedding: bool = Field(False, description="compute embeddings (/v1/embeddings)")
    chat_format: Optional[str] = Field(None, description="a built-in chat format, not the model's template")
    chat_template: Optional[str] = Field(None, description="a Jinja chat template, not the model's")
    seed: Optional[int] = Field(None, description="the seed of requests that give none")
    keep_alive: Optional[float] = Field(None, ge=0, description="seconds a model stays loaded unused "
                                        "(default: until evicted)")
    draft_model: Optional[Literal["prompt-lookup-decoding"]] = Field(
        None, description="speculative decoding of greedy requests (llama-cpp-python's name): prompt lookup")
    draft_model_num_pred_tokens: int = Field(10, ge=1, le=64, description="tokens a draft proposes at most")
    mmproj: Optional[str] = Field(None, description="a multimodal projector GGUF for the model (llama-server"
                                  "'s --mmproj; llama-cpp-python's clip_model_path): image and audio parts")
    rpc_servers: Optional[str] = Field(None, description="llama.cpp RPC workers (host:port,...: "
                                       "llama-binding rpc-server) whose devices take layers too")
    allow_local_media: bool = Field(False, description="image parts may name files on the server's disk "
                                    "(paths, file:// URLs)")


class ModelSettings(ModelOptions):
    """One entry of a config file's ``models`` (llama-cpp-python's shape: its other keys are
    ``Llama`` keywords, passed on when ``Llama`` takes them)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(description="path of the GGUF model file")

    @property
    def alias(self) -> str:
        return self.model_alias or Path(self.model).stem

    def llama_kwargs(self, max_waiting: int) -> dict[str, Any]:
        """The keywords of ``AsyncLlama``/``Llama`` for this model."""
        flash: Union[str, bool] = self.flash_attn
        if flash in ("on", "off"):
            flash = flash == "on"
        kw: dict[str, Any] = dict(self.model_extra or {})
        kw.update({
            "n_seq_max": self.n_seq_max, "n_ctx": self.n_ctx, "kv_unified": self.kv_unified,
            "n_gpu_layers": self.n_gpu_layers, "n_batch": self.n_batch, "n_ubatch": self.n_ubatch,
            "n_threads": self.n_threads, "n_threads_batch": self.n_threads_batch, "flash_attn": flash,
            "embedding": self.embedding, "chat_format": self.chat_format,
            "chat_template": self.chat_template, "seed": self.seed,
            "max_waiting": max_waiting,
            "mmproj_path": self.mmproj, "allow_local_media": self.allow_local_media,
            "rpc_servers": self.rpc_servers,
            "draft_model": LlamaPromptLookupDecoding(num_pred_tokens=self.draft_model_num_pred_tokens)
            if self.draft_model else None,
            # messages come from the network: their text never becomes a special token
            "escape_special_tokens": True,
        })
        return kw


class ServerSettings(BaseSettings, ModelOptions):
    """What ``llama-binding serve`` / ``python -m llama_binding.server`` takes: one model
    (``model`` and the model options as flags), or many (``models`` in a config file, or
    every GGUF file of ``models_dir``, each with the model options given here)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", protected_namespaces=())

    _reload: Optional[Callable[[], ServerSettings]] = PrivateAttr(default=None)

    model: Optional[str] = Field(None, description="path of the GGUF model file")
    models: list[ModelSettings] = Field(default_factory=list, description="models (config file only)")
    models_dir: Optional[Path] = Field(None, description="serve every .gguf file of this folder")
    max_models: int = Field(0, ge=0, description="models loaded at once (0: no limit); the least "
                            "recently used idle one is unloaded for another")
    admin_api_key: KeyList = Field(default_factory=list, description="keys for /models/load, "
                                   "/models/unload and /models/reload (default: any API key)")
    memory_budget_mb: Optional[float] = Field(None, gt=0, description="MiB of host memory the loaded models "
                                              "may take (estimated from each file and KV cache); the least "
                                              "recently used idle model is unloaded for another")
    gpu_memory_budget_mb: Optional[float] = Field(None, gt=0, description="the same for GPU memory (the "
                                                  "offloaded layers' share)")
    # --- serving -------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="address to bind (loopback by default)")
    port: int = Field(8000, ge=0, le=65535)
    api_key: KeyList = Field(default_factory=list, description="accepted API keys (repeat the flag)")
    api_key_file: Optional[Path] = Field(None, description="a file of API keys, one per line")
    max_waiting: int = Field(64, ge=0, description="requests waiting beyond the slots before 503")
    request_timeout: float = Field(600.0, gt=0, description="seconds a request may take (504 after)")
    max_body_bytes: int = Field(8 << 20, ge=1024, description="largest request body (413 beyond)")
    cors_origins: KeyList = Field(default_factory=lambda: ["*"], description="allowed CORS origins")
    metrics_public: bool = Field(False, description="serve /metrics without the API key")
    drain_timeout: float = Field(30.0, ge=0, description="seconds in-flight requests get on SIGTERM")
    sse_keepalive: float = Field(15.0, gt=0, description="seconds between SSE keep-alive comments")
    allow_remote_media: bool = Field(False, description="fetch http(s) image URLs of chat requests (off: "
                                     "images come as data: URLs); the server then reaches any address a "
                                     "client names: enable it only where that is safe")
    remote_media_max_bytes: int = Field(16 << 20, ge=1024, description="largest remote image (bytes)")
    remote_media_timeout: float = Field(10.0, gt=0, description="seconds to fetch a request's remote images")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    switch_interval: float = Field(0.0005, gt=0, le=0.1, description="Python's thread switch interval "
                                   "(s): the longest the engine's thread waits for the GIL while the "
                                   "event loop's thread runs")

    @field_validator("api_key", "cors_origins", "admin_api_key", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """A comma-separated string (environment variables) or a list."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        config = settings_cls.model_config
        if config.get("json_file"):
            sources.append(JsonConfigSettingsSource(settings_cls))
        if config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        if config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Union[str, os.PathLike[str], None] = None, **values: Any) -> ServerSettings:
        """Settings from ``values`` (flags), the environment and ``config_file``."""
        if config_file is None:
            return cls(**values)
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        kind = {".json": "json_file", ".toml": "toml_file", ".yaml": "yaml_file", ".yml": "yaml_file"}.get(
            path.suffix.lower())
        if kind is None:
            raise ValueError(f"config file {str(path)!r}: use a .json, .toml or .yaml file")
        with_file = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, kind: path}})
        settings: ServerSettings = with_file(**values)
        settings._reload = lambda: cls.load(config_file, **values)
        return settings

    def reloaded(self) -> Optional[ServerSettings]:
        """The settings read again (the config file may have changed; flags and environment
        as before); None without a config file."""
        return self._reload() if self._reload is not None else None

    def api_keys(self) -> list[str]:
        """``api_key`` and the lines of ``api_key_file``."""
        keys = list(self.api_key)
        if self.api_key_file is not None:
            keys += [k.strip() for k in self.api_key_file.read_text().splitlines() if k.strip()]
        return keys

    @model_validator(mode="before")
    @classmethod
    def _llama_cpp_python_keys(cls, data: Any) -> Any:
        """llama-cpp-python's server settings that mean nothing here load and are dropped
        (its config files load as they are); anything else unknown is still an error."""
        if isinstance(data, dict):
            dropped = sorted(k for k in LLAMA_CPP_PYTHON_ONLY if k in data)
            if dropped:
                logger.warning("ignoring llama-cpp-python server settings: %s", ", ".join(dropped))
                data = {k: v for k, v in data.items() if k not in LLAMA_CPP_PYTHON_ONLY}
            for theirs, ours in LLAMA_CPP_PYTHON_NAMES.items():
                if theirs in data and ours not in data:
                    data = {**data, ours: data[theirs]}
                data = {k: v for k, v in data.items() if k != theirs}
        return data

    def model_specs(self) -> list[ModelSettings]:
        """The models this server serves, in order (the first answers requests that name none)."""
        if self.models:
            return list(self.models)
        options = self.model_dump(include=set(ModelOptions.model_fields))
        if self.models_dir is not None:
            files = sorted(p for p in self.models_dir.glob("*.gguf") if p.is_file())
            return [ModelSettings(model=str(p), **{**options, "model_alias": p.stem}) for p in files]
        assert self.model is not None
        return [ModelSettings(model=self.model, **options)]

    @model_validator(mode="after")
    def _one_source(self) -> ServerSettings:
        given = [n for n in ("model", "models", "models_dir") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give one of --model, models (in a config file) or --models-dir"
                             + (f", not {' and '.join(given)}" if given else ""))
        if self.models_dir is not None and not self.models_dir.is_dir():
            raise ValueError(f"models_dir {str(self.models_dir)!r} is not a folder")
        aliases = [m.alias for m in self.model_specs()]
        twice = sorted({a for a in aliases if aliases.count(a) > 1})
        if twice:
            raise ValueError(f"two models are named {', '.join(map(repr, twice))}: set model_alias")
        return self


# --- the command line, derived from the fields ---------------------------------------------


def _kind(annotation: Any) -> tuple[str, Any]:
    """("bool" | "list" | "value", the converter) of a field's type."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool", None
    if origin is Annotated:
        return _kind(args[0])
    if origin in (list, Sequence):
        return "list", str
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if origin is Literal:
        return "value", str
    return "value", annotation if annotation in (int, float, str) else str


def build_parser(prog: str = "llama-binding serve") -> argparse.ArgumentParser:
    """An argparse parser with a flag per setting (dashed and underscore spellings)."""
    parser = argparse.ArgumentParser(prog=prog, description="An OpenAI-compatible server for a GGUF model.",
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", "--config_file", "--config-file", dest="config",
                        help="a JSON, TOML or YAML file of settings (flags and environment win); "
                             "llama-cpp-python's server config files load as they are")
    hints = typing.get_type_hints(ServerSettings, include_extras=True)
    for name, field in ServerSettings.model_fields.items():
        if name == "models":  # a list of objects: config files only
            continue
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        flags += [f"--{theirs}" for theirs, ours in LLAMA_CPP_PYTHON_NAMES.items() if ours == name]
        kind, convert = _kind(hints[name])
        env = f"{ENV_PREFIX}{name.upper()}"
        help_text = f"{field.description or ''} [env {env}]".strip()
        if kind == "bool":
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        elif kind == "list":
            parser.add_argument(*flags, dest=name, action="append", help=help_text + " (repeatable)")
        else:
            choices = typing.get_args(hints[name]) if typing.get_origin(hints[name]) is Literal else None
            parser.add_argument(*flags, dest=name, type=convert, choices=choices, help=help_text)
    return parser


def settings_from_args(argv: Sequence[str] | None = None,
                       prog: str = "llama-binding serve") -> ServerSettings:
    """Parse ``argv`` into :class:`ServerSettings` (environment and ``--config`` included)."""
    values = vars(build_parser(prog).parse_args(argv))
    config = values.pop("config", None)
    for name in ("api_key", "cors_origins", "admin_api_key"):  # repeated flags, each possibly a comma list
        if name in values:
            values[name] = [v.strip() for item in values[name] for v in item.split(",") if v.strip()]
    return ServerSettings.load(config, **values)
