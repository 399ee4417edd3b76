"""The facade's multimodal steps: loading a projector for ``Llama(mmproj_path=...)`` and
turning a chat request with image parts into a :class:`~.generation.media.MediaPrompt`.

Text-only requests do not come here: :func:`chat_prompt` hands them to the chat setup
unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedModelError
from .generation.media import MEDIA_HOLE, MediaPrompt, build_media_prompt

if TYPE_CHECKING:
    from .chat.request import ChatSetup, PreparedChat
    from .generation.engine import Engine

__all__ = ["MediaOptions", "MediaPrompt", "chat_prompt", "load_projector", "prompt_tokens"]

NO_PROJECTOR = ("this model was loaded without a multimodal projector and takes no images (image_url "
                "content parts): load it with Llama(..., mmproj_path='mmproj.gguf')")


@dataclass(frozen=True)
class MediaOptions:
    """A ``Llama``'s multimodal settings."""

    mmproj_path: str | None = None
    """the projector loaded (None: the model takes no images)"""
    allow_local_media: bool = False
    """image parts may name local files (paths, ``file://`` URLs), not only ``data:`` URLs"""


def load_projector(engine: Engine, given: Mapping[str, Any]) -> MediaOptions:
    """Load the projector that ``mmproj_path`` (or llama-cpp-python's ``clip_model_path``)
    names into ``engine``; return the settings."""
    local = bool(given.get("allow_local_media", False))
    mmproj, clip = given.get("mmproj_path"), given.get("clip_model_path")
    if mmproj is not None and clip is not None and os.fspath(mmproj) != os.fspath(clip):
        raise ValueError("give mmproj_path or clip_model_path (its llama-cpp-python name), not both")
    path = mmproj if mmproj is not None else clip
    if path is None:
        return MediaOptions(None, local)
    if not engine.has_context:
        raise ValueError("a multimodal projector needs a context (vocab_only=False)")
    from .core.mtmd import Projector

    use_gpu = given.get("n_gpu_layers", -1) != 0
    threads = given.get("n_threads_batch") or given.get("n_threads")
    engine.projector = Projector(engine.model, path, use_gpu=use_gpu,
                                 n_threads=threads if isinstance(threads, int) and threads > 0 else None)
    return MediaOptions(str(os.fspath(path)), local)


def prompt_tokens(engine: Engine, prompt: Any,
                  suffix: str | None = None) -> tuple[list[int], MediaPrompt | None]:
    """A completion prompt's tokens, and the prompt itself when it is a :class:`MediaPrompt`
    (which :func:`chat_prompt` makes for a chat with images)."""
    if isinstance(prompt, MediaPrompt):
        if suffix is not None:
            raise ValueError("a prompt with images takes no suffix")
        return prompt.tokens, prompt
    return engine.prompt_tokens(prompt, suffix), None


def chat_prompt(setup: ChatSetup, engine: Engine, messages: Sequence[Mapping[str, Any]], media: MediaOptions,
                n: int = 1, **options: Any) -> tuple[PreparedChat, MediaPrompt | None]:
    """The prepared chat request, and its :class:`MediaPrompt` when the messages hold images
    (then ``PreparedChat.tokens`` holds ``MEDIA_HOLE`` ids and the MediaPrompt is the prompt)."""
    from .chat.media import has_images, media_prompt

    if not has_images(messages):
        return setup.prompt(messages, **options), None
    projector = engine.projector
    if projector is None:
        raise UnsupportedModelError(NO_PROJECTOR)
    if n != 1:
        raise ValueError("n > 1 is not supported yet for a chat with images")
    chat, images = media_prompt(setup, messages, MEDIA_HOLE, allow_local=media.allow_local_media, **options)
    return chat, build_media_prompt(projector, chat.tokens, images)
