"""Remote images of chat requests: with ``--allow-remote-media``, each ``http(s)`` image URL
of a request's messages is fetched (httpx, bounded in size and time) and handed on as a
``data:`` URL, so that the library sees only the sources it accepts.

Off by default: a server that fetches what clients name can be pointed at addresses only
it reaches. The limits: ``remote_media_max_bytes`` per image (a larger ``Content-Length``
is refused before reading, a body that grows past it is cut off), ``remote_media_timeout``
seconds for all of a request's images together, at most :data:`MAX_REMOTE_IMAGES` of them,
three redirects. A failure is a :class:`~llama_binding.errors.MediaError` (a 400).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..errors import MediaError

__all__ = ["MAX_REMOTE_IMAGES", "fetch_remote_images"]

MAX_REMOTE_IMAGES = 16
_IMAGE_TYPES = ("image_url", "input_image")


def _image_parts(messages: Sequence[Any]) -> list[tuple[int, int, str]]:
    """(message index, part index, url) of each image part that names an http(s) URL."""
    found = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") not in _IMAGE_TYPES:
                continue
            value = part.get("image_url", part.get("url"))
            url = value.get("url") if isinstance(value, Mapping) else value
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                found.append((i, j, url))
    return found


async def _fetch(client: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[bytes, str]:
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise MediaError(f"fetching {url}: HTTP {response.status_code}")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise MediaError(f"{url}: the image is larger than {max_bytes} bytes")
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > max_bytes:
                raise MediaError(f"{url}: the image is larger than {max_bytes} bytes")
        kind = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        return bytes(body), kind


async def fetch_remote_images(messages: list[dict[str, Any]], *, max_bytes: int,
                              timeout: float) -> list[dict[str, Any]]:
    """``messages`` with each http(s) image URL replaced by a ``data:`` URL of its content
    (the input is not modified); the same list when there is none."""
    parts = _image_parts(messages)
    if not parts:
        return messages
    if len(parts) > MAX_REMOTE_IMAGES:
        raise MediaError(f"a request may name at most {MAX_REMOTE_IMAGES} remote images, not {len(parts)}")
    out = [dict(m) for m in messages]
    for i in {i for i, _, _ in parts}:
        out[i]["content"] = list(out[i]["content"])

    async def fetch_all() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True,
                                     max_redirects=3) as client:
            for i, j, url in parts:
                data, kind = await _fetch(client, url, max_bytes)
                encoded = base64.b64encode(data).decode("ascii")
                out[i]["content"][j] = {"type": "image_url",
                                        "image_url": {"url": f"data:{kind};base64,{encoded}"}}

    try:
        await asyncio.wait_for(fetch_all(), timeout)
    except asyncio.TimeoutError:
        raise MediaError(f"fetching the request's remote images took longer than {timeout} s") from None
    except httpx.HTTPError as exc:
        raise MediaError(f"fetching a remote image failed: {exc}") from None
    return out
