"""Images and audio in OpenAI chat messages: content parts ``{"type": "image_url",
"image_url": {"url": ...}}`` and ``{"type": "input_audio", "input_audio": {"data": base64,
"format": "wav"}}`` taken out of the messages, and the chat prompt tokenized around them.

:func:`take_images` returns the messages with each media part replaced by a text part that
holds a marker (a fresh random string per request, so no text a user writes can stand for
an image), and the media in order, each as :class:`Media` (its kind and encoded bytes).
:func:`media_prompt` then renders and tokenizes the chat the usual way (template, escaping,
tools) except that each marker becomes one ``MEDIA_HOLE`` id, where the engine puts the
image's runs.

Sources: ``data:`` URLs with base64 content; a local path or ``file://`` URL only when the
caller opted in (``allow_local_media``); remote ``http(s)`` URLs are not fetched.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..core.mtmd import Media
from ..errors import MediaError

if TYPE_CHECKING:
    from .request import ChatSetup, PreparedChat

__all__ = ["MAX_MEDIA_BYTES", "Media", "has_images", "load_image_url", "media_prompt", "take_images"]

#: the largest encoded image or audio clip accepted (bytes)
MAX_MEDIA_BYTES = 64 * 1024 * 1024
_IMAGE_TYPES = ("image_url", "input_image")
_MEDIA_TYPES = (*_IMAGE_TYPES, "input_audio")
_AUDIO_FORMATS = ("wav", "mp3", "flac")


def _parts(message: object) -> Sequence[Any]:
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes, bytearray)):
        return content
    return ()


def has_images(messages: object) -> bool:
    """Whether any message holds an image (or audio) content part."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return False
    return any(isinstance(part, Mapping) and part.get("type") in _MEDIA_TYPES
               for message in messages for part in _parts(message))


def _url_of(part: Mapping[str, Any], where: str) -> str:
    value = part.get("image_url", part.get("url"))
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise MediaError(f'{where}: an image part needs '
                         '{"image_url": {"url": "data:image/png;base64,..."}}')
    return value


def _base64(payload: str, where: str, what: str) -> bytes:
    if len(payload) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise MediaError(f"{where}: the {what} is larger than {MAX_MEDIA_BYTES} bytes")
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{where}: the {what} is not valid base64 ({exc})") from None


def _data_url(url: str, where: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaError(f"{where}: a data: URL must carry base64 content (data:image/png;base64,...)")
    return _base64(payload, where, "data: URL")


def _audio(part: Mapping[str, Any], where: str) -> bytes:
    audio = part.get("input_audio")
    data = audio.get("data") if isinstance(audio, Mapping) else None
    kind = audio.get("format") if isinstance(audio, Mapping) else None
    if not isinstance(data, str) or not data:
        raise MediaError(f'{where}: an audio part needs '
                         '{"input_audio": {"data": base64, "format": "wav"}}')
    if kind not in _AUDIO_FORMATS:
        raise MediaError(f"{where}: input_audio.format must be one of {', '.join(_AUDIO_FORMATS)}, "
                         f"not {kind!r}")
    return _base64(data, where, "audio")


def _local_file(url: str, where: str) -> bytes:
    path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
    try:
        size = os.stat(path).st_size
        if size > MAX_MEDIA_BYTES:
            raise MediaError(f"{where}: {path} is larger than {MAX_MEDIA_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None


def load_image_url(url: str, *, allow_local: bool = False, where: str = "image") -> bytes:
    """The encoded bytes an image URL names (see the module docstring for the sources)."""
    if url.startswith("data:"):
        return _data_url(url, where)
    if url.startswith(("http://", "https://")):
        raise MediaError(f"{where}: remote image URLs are not fetched here (a server started with "
                         "--allow-remote-media fetches them); send the image as a data: URL")
    if not allow_local:
        raise MediaError(f"{where}: local image files are read only with allow_local_media=True; "
                         "send the image as a data: URL")
    return _local_file(url, where)


def _media_of(part: Mapping[str, Any], where: str, allow_local: bool) -> Media:
    if part.get("type") == "input_audio":
        return Media("audio", _audio(part, where))
    return Media("image", load_image_url(_url_of(part, where), allow_local=allow_local, where=where))


def take_images(messages: Sequence[Mapping[str, Any]], marker: str, *,
                allow_local: bool = False) -> tuple[list[Mapping[str, Any]], list[Media]]:
    """``messages`` with each image or audio part replaced by the text part ``marker``, and
    the media in the order of the parts (the input is not modified)."""
    out: list[Mapping[str, Any]] = []
    images: list[Media] = []
    for i, message in enumerate(messages):
        parts = _parts(message)
        if not any(isinstance(p, Mapping) and p.get("type") in _MEDIA_TYPES for p in parts):
            out.append(message)
            continue
        new_parts: list[Any] = []
        for j, part in enumerate(parts):
            if isinstance(part, Mapping) and part.get("type") in _MEDIA_TYPES:
                images.append(_media_of(part, f"messages[{i}].content[{j}]", allow_local))
                new_parts.append({"type": "text", "text": marker})
            else:
                new_parts.append(part)
        out.append({**message, "content": new_parts})
    return out, images


def media_prompt(setup: ChatSetup, messages: Sequence[Mapping[str, Any]], hole: int, *,
                 allow_local: bool = False, **options: Any) -> tuple[PreparedChat, list[Media]]:
    """The chat request prepared by ``setup`` (``options`` as ``ChatSetup.prompt``'s), its
    tokens holding ``hole`` where each image (or audio clip) goes, and the media."""
    marker = f"<__image_{secrets.token_hex(8)}__>"
    plain, images = take_images(messages, marker, allow_local=allow_local)
    tokenize = setup.tokenize

    def split_tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        pieces = text.split(marker)
        out = tokenize(pieces[0], add_special, parse_special) if pieces[0] or add_special else []
        for piece in pieces[1:]:
            out.append(hole)
            if piece:
                out.extend(tokenize(piece, False, parse_special))
        return out

    view = copy.copy(setup)  # the same formatter and caches, with a tokenizer that knows the marker
    view.tokenize = split_tokenize  # type: ignore[method-assign]
    return view.prompt(plain, **options), images
