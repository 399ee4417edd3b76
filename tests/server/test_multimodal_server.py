"""Image chat through the server: OpenAI ``image_url`` parts with the openai SDK (streamed
or not, the same answer as the library's), bad images and disallowed sources as 400s that
leave the server serving, remote images fetched only with ``allow_remote_media`` and within
its limits (from an HTTP server of this test on loopback)."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from _tinymmproj import make_png

from llama_binding import Llama

from .conftest import Running, serve

PNG = make_png(40, 30, seed=1)
PNG2 = make_png(40, 30, seed=2)
OPTS: dict[str, Any] = {"n_gpu_layers": 0, "n_threads": 2, "chat_format": "chatml"}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_chat(url: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is in the picture?"},
                                          {"type": "image_url", "image_url": {"url": url}}]}]


class _Images(http.server.BaseHTTPRequestHandler):
    """/a.png, /b.png; /big (a Content-Length over any limit), /slow (no answer for 5 s),
    /chunked-big (a body that grows past the limit without a length), /missing (404)."""

    def do_GET(self) -> None:
        if self.path in ("/a.png", "/b.png"):
            body = PNG if self.path == "/a.png" else PNG2
            self._send(200, body, {"Content-Type": "image/png", "Content-Length": str(len(body))})
        elif self.path == "/big":
            self._send(200, b"", {"Content-Length": str(1 << 30)})
        elif self.path == "/chunked-big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b"\x00" * 65536
            try:
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client stopped reading at its limit
                pass
        elif self.path == "/slow":
            time.sleep(5)
            self._send(200, PNG, {"Content-Type": "image/png"})
        else:
            self._send(404, b"no", {"Content-Length": "2"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lm(tiny_model: Callable[..., Path]) -> Path:
    return tiny_model(vocab="llama-spm", scale=1.0, tied_embeddings=False)


@pytest.fixture(scope="module")
def vlm_server(lm: Path, mmproj: Path) -> Iterator[Running]:
    with serve(model=str(lm), model_alias="vlm", mmproj=str(mmproj), n_seq_max=4, n_ctx=2048,
               allow_remote_media=True, remote_media_max_bytes=1 << 20, remote_media_timeout=2.0,
               **OPTS) as s:
        yield s


def _client(s: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url + "/v1", api_key="none", max_retries=0, timeout=60)


def _post(s: Running, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(s.base_url + "/v1/chat/completions", timeout=60,
                      json={"model": "vlm", "messages": messages, "max_tokens": 8, "temperature": 0, **extra})


def test_image_chat_through_the_openai_sdk(vlm_server: Running, lm: Path, mmproj: Path) -> None:
    with Llama(str(lm), mmproj_path=str(mmproj), n_ctx=512, **OPTS) as llm:
        want = [llm.create_chat_completion(image_chat(data_url(p)), max_tokens=8, temperature=0.0)
                ["choices"][0]["message"]["content"] for p in (PNG, PNG2)]
    assert want[0] != want[1]
    client = _client(vlm_server)
    for png, expected in zip((PNG, PNG2), want):
        out = client.chat.completions.create(model="vlm", messages=image_chat(data_url(png)),  # type: ignore[arg-type]
                                             max_tokens=8, temperature=0)
        assert out.choices[0].message.content == expected
        assert out.usage is not None and out.usage.prompt_tokens > 16  # the image's 16 positions count
        stream = client.chat.completions.create(model="vlm", messages=image_chat(data_url(png)),  # type: ignore[arg-type]
                                                max_tokens=8, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected


@pytest.mark.parametrize(("make_url", "match"), [
    (lambda host: data_url(PNG[: len(PNG) // 2]), "could not be decoded"),
    (lambda host: "data:image/png;base64,@@@", "base64"),
    (lambda host: "/etc/hostname", "local image files"),
    (lambda host: "file:///etc/hostname", "local image files"),
    (lambda host: host + "/missing", "HTTP 404"),
    (lambda host: host + "/big", "larger than"),
    (lambda host: host + "/chunked-big", "larger than"),
    (lambda host: host + "/slow", "longer than"),
    (lambda host: "http://127.0.0.1:9/closed.png", "fetching a remote image failed"),
])
def test_bad_images_are_400s(vlm_server: Running, image_host: str, make_url: Callable[[str], str],
                             match: str) -> None:
    r = _post(vlm_server, image_chat(make_url(image_host)))
    assert r.status_code == 400, r.text
    assert match in r.json()["error"]["message"]
    vlm_server.wait_idle()
    assert _post(vlm_server, image_chat(data_url(PNG))).status_code == 200  # still serving


def test_at_most_so_many_remote_images(vlm_server: Running, image_host: str) -> None:
    from llama_binding.server.media import MAX_REMOTE_IMAGES

    parts = [{"type": "image_url", "image_url": {"url": f"{image_host}/a.png"}}] * (MAX_REMOTE_IMAGES + 1)
    r = _post(vlm_server, [{"role": "user", "content": parts}])
    assert r.status_code == 400 and "at most" in r.json()["error"]["message"]


def test_remote_images_are_fetched_when_allowed(vlm_server: Running, image_host: str) -> None:
    local = _post(vlm_server, image_chat(data_url(PNG2))).json()["choices"][0]["message"]["content"]
    remote = _post(vlm_server, image_chat(image_host + "/b.png"))
    assert remote.status_code == 200, remote.text
    assert remote.json()["choices"][0]["message"]["content"] == local


def test_remote_images_are_refused_by_default(lm: Path, mmproj: Path, image_host: str,
                                              stories260k: Path) -> None:
    models = [{"model": str(lm), "model_alias": "vlm", "mmproj": str(mmproj), "n_ctx": 1024, **OPTS},
              {"model": str(stories260k), "model_alias": "stories", "n_ctx": 256, "n_gpu_layers": 0}]
    with serve(models=models) as s:
        r = _post(s, image_chat(image_host + "/a.png"))
        assert r.status_code == 400 and "--allow-remote-media" in r.json()["error"]["message"]
        assert _post(s, image_chat(data_url(PNG))).status_code == 200
        # a model without a projector takes no images: a 400 that says how to give it one
        r = _post(s, image_chat(data_url(PNG)), model="stories")
        assert r.status_code == 400 and "mmproj" in r.json()["error"]["message"]


def test_the_memory_estimate_counts_the_projector(lm: Path, mmproj: Path) -> None:
    from llama_binding.server.pool import estimate
    from llama_binding.server.settings import ModelSettings

    plain = estimate(ModelSettings(model=str(lm), n_gpu_layers=0))
    for spec in (ModelSettings(model=str(lm), n_gpu_layers=0, mmproj=str(mmproj)),
                 ModelSettings(model=str(lm), n_gpu_layers=0, clip_model_path=str(mmproj))):
        assert estimate(spec).host - plain.host == mmproj.stat().st_size
