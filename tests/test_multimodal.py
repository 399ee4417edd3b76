"""Multimodal (P13 groundwork): a tiny random LLaVA-style projector over the tiny Llama.

Random weights generate nothing meaningful, so what differs between images is checked on
the logits after the prompt (read through a logits processor), which is robust; exactness
of prefix reuse is checked by comparing logits bit for bit with a fresh Llama's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tinymmproj import (
    NGL,
    TinyProjectorSpec,
    make_png,
    png_claiming,
    png_header,
    same_logits,
    write_tiny_mmproj,
)

from llama_binding import Llama, MediaError, ModelLoadError, UnsupportedModelError
from llama_binding.core import Model
from llama_binding.core._image import check_image
from llama_binding.core.mtmd import Projector

PNG_A = make_png(40, 30, seed=1)
PNG_B = make_png(40, 30, seed=2)


@pytest.fixture(scope="module")
def vlm(tiny_spm: Path, mmproj: Path) -> Iterator[Llama]:
    with Llama(str(tiny_spm), mmproj_path=str(mmproj), n_ctx=512, n_gpu_layers=NGL, n_threads=2,
               chat_format="chatml", allow_local_media=False) as llm:
        yield llm


@pytest.fixture(scope="module")
def model(tiny_spm: Path) -> Iterator[Model]:
    with Model(tiny_spm) as m:
        yield m


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_chat(url: str, text: str = "What is in the picture?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                          {"type": "image_url", "image_url": {"url": url}}]}]


def first_logits(llm: Llama, messages: list[dict[str, Any]], **kw: Any) -> tuple[np.ndarray, str]:
    """The logits after the prompt (the first step's) and the greedy answer."""
    seen: list[np.ndarray] = []

    def grab(ids: Any, scores: np.ndarray) -> np.ndarray:
        if not seen:
            seen.append(np.array(scores, copy=True))
        return scores

    out = llm.create_chat_completion(messages, max_tokens=6, temperature=0.0, logits_processor=grab, **kw)
    return seen[0], out["choices"][0]["message"]["content"] or ""


# --- the projector (core) ------------------------------------------------------------------


def test_projector_loads_and_decodes(model: Model, mmproj: Path) -> None:
    with Projector(model, mmproj, use_gpu=NGL != 0, n_threads=2) as proj:
        assert proj.supports_vision and not proj.supports_audio and not proj.uses_mrope
        a, a2, b = proj.image(PNG_A), proj.image(PNG_A), proj.image(PNG_B)
        assert (a.width, a.height) == (40, 30)
        assert a.id == a2.id != b.id
        chunks = proj.tokenize(f"hello {proj.marker} world", [a])
        kinds = [c.kind for c in chunks.infos]
        assert kinds == ["text", "image", "text"]
        image = chunks.infos[1]
        assert image.n_tokens == image.n_pos == (32 // 8) ** 2 and image.id == a.id
    assert proj.closed and chunks.closed and a.closed  # children close with their parent


def test_projector_closes_with_its_model(tiny_spm: Path, mmproj: Path) -> None:
    m = Model(tiny_spm)
    proj = Projector(m, mmproj, use_gpu=NGL != 0, warmup=False)
    m.close()
    assert proj.closed


def test_projector_that_does_not_match_the_model(model: Model, tmp_path: Path) -> None:
    other = write_tiny_mmproj(tmp_path / "mm32.gguf", TinyProjectorSpec(n_embd_text=32))
    with pytest.raises(ModelLoadError, match="mismatch"):
        Projector(model, other, use_gpu=NGL != 0)


def test_projector_file_that_is_no_gguf(model: Model, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelLoadError):
        Projector(model, junk, use_gpu=NGL != 0)
    with pytest.raises(ModelLoadError):
        Projector(model, tmp_path / "missing.gguf", use_gpu=NGL != 0)


BAD_IMAGES = {
    "corrupt": PNG_A[:40] + b"\x00" * 50 + PNG_A[90:],
    "truncated": PNG_A[: len(PNG_A) // 2],
    "header only": png_header(10, 10),
    "claims more than it holds": png_claiming(1000, 1000),
    "random bytes": bytes(range(256)) * 4,
    "gif junk": b"GIF89a\x10\x00\x10\x00" + b"junk" * 10,
    "jpeg without frame": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 8,
    "empty": b"",
    "decompression bomb": png_claiming(100000, 100000),
    "zero width": png_claiming(0, 10),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_images_are_refused(model: Model, mmproj: Path, name: str) -> None:
    with Projector(model, mmproj, use_gpu=NGL != 0, warmup=False) as proj, pytest.raises(MediaError):
        proj.image(BAD_IMAGES[name])


def test_dimensions_are_checked_before_decoding() -> None:
    with pytest.raises(MediaError, match="100000 x 100000"):
        check_image(png_claiming(100000, 100000))
    with pytest.raises(MediaError, match="over the limit"):
        check_image(png_claiming(20000, 10), max_side=16384)
    assert check_image(PNG_A).width == 40


# --- the facade ----------------------------------------------------------------------------


def test_image_chat_generates(vlm: Llama) -> None:
    out = vlm.create_chat_completion(image_chat(data_url(PNG_A)), max_tokens=5, temperature=0.0)
    choice = out["choices"][0]
    assert choice["finish_reason"] in ("length", "stop")
    assert out["usage"]["prompt_tokens"] > 16  # the image's 16 positions and the text
    assert vlm.media.mmproj_path is not None and not vlm.media.allow_local_media


def test_stream_equals_non_stream(vlm: Llama) -> None:
    messages = image_chat(data_url(PNG_A))
    full = vlm.create_chat_completion(messages, max_tokens=6, temperature=0.0)["choices"][0]["message"]
    chunks = list(vlm.create_chat_completion(messages, max_tokens=6, temperature=0.0, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == (full["content"] or "")


def test_different_images_give_different_logits(vlm: Llama) -> None:
    a, _ = first_logits(vlm, image_chat(data_url(PNG_A)))
    b, _ = first_logits(vlm, image_chat(data_url(PNG_B)))
    assert not same_logits(a, b)
    assert np.abs(a - b).max() > 1e-3


def test_same_image_again_is_exact(vlm: Llama, tiny_spm: Path, mmproj: Path) -> None:
    a1, text1 = first_logits(vlm, image_chat(data_url(PNG_A)))
    first_logits(vlm, image_chat(data_url(PNG_B)))  # another image in between
    a2, text2 = first_logits(vlm, image_chat(data_url(PNG_A)))
    a3, text3 = first_logits(vlm, image_chat(data_url(PNG_A)))  # the whole prompt is reused
    assert same_logits(a1, a2) and same_logits(a1, a3)
    assert text1 == text2 == text3
    with Llama(str(tiny_spm), mmproj_path=str(mmproj), n_ctx=512, n_gpu_layers=NGL, n_threads=2,
               chat_format="chatml") as fresh:
        fresh_a, _ = first_logits(fresh, image_chat(data_url(PNG_A)))
    assert same_logits(a1, fresh_a)


def test_text_only_chat_is_unchanged(vlm: Llama, tiny_spm: Path) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    first_logits(vlm, image_chat(data_url(PNG_B), text="Hello there"))  # shares a text prefix
    with_projector, text = first_logits(vlm, messages)
    with Llama(str(tiny_spm), n_ctx=512, n_gpu_layers=NGL, n_threads=2, chat_format="chatml") as plain:
        without, plain_text = first_logits(plain, messages)
    assert same_logits(with_projector, without)
    assert text == plain_text or NGL != 0  # (on a GPU: a near tie may go either way)


def test_two_images_in_one_prompt(vlm: Llama) -> None:
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(PNG_A)}}, {"type": "text", "text": "and"},
        {"type": "image_url", "image_url": data_url(PNG_B)}]}]  # the bare-string form too
    out = vlm.create_chat_completion(messages, max_tokens=3, temperature=0.0)
    assert out["usage"]["prompt_tokens"] > 32


def test_image_to_a_model_without_projector(tiny_spm: Path) -> None:
    with Llama(str(tiny_spm), n_ctx=256, n_gpu_layers=NGL, chat_format="chatml") as llm:
        with pytest.raises(UnsupportedModelError, match="mmproj_path"):
            llm.create_chat_completion(image_chat(data_url(PNG_A)), max_tokens=2)
        assert isinstance(UnsupportedModelError("x"), ValueError)  # the server answers 400


@pytest.mark.parametrize("url", [
    "data:image/png;base64,@@@not-base64@@@",
    "data:image/png,raw-not-base64",
    "https://example.com/cat.png",
    "/etc/hostname",
    "file:///etc/hostname",
])
def test_bad_image_urls_are_refused(vlm: Llama, url: str) -> None:
    with pytest.raises(MediaError):
        vlm.create_chat_completion(image_chat(url), max_tokens=2)


@pytest.mark.parametrize("name", ["corrupt", "truncated", "decompression bomb", "random bytes"])
def test_bad_image_in_a_chat_then_a_good_one(vlm: Llama, name: str) -> None:
    with pytest.raises(MediaError):
        vlm.create_chat_completion(image_chat(data_url(BAD_IMAGES[name])), max_tokens=2)
    out = vlm.create_chat_completion(image_chat(data_url(PNG_A)), max_tokens=2, temperature=0.0)
    assert out["choices"][0]["finish_reason"] in ("length", "stop")


def test_local_files_need_opt_in(tiny_spm: Path, mmproj: Path, tmp_path: Path,
                                 vlm: Llama) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(PNG_A)
    with pytest.raises(MediaError, match="allow_local_media"):
        vlm.create_chat_completion(image_chat(str(png)), max_tokens=2)
    expected, _ = first_logits(vlm, image_chat(data_url(PNG_A)))
    with Llama(str(tiny_spm), clip_model_path=str(mmproj), n_ctx=512, n_gpu_layers=NGL, n_threads=2,
               chat_format="chatml", allow_local_media=True) as llm:
        by_path, _ = first_logits(llm, image_chat(str(png)))
        by_url, _ = first_logits(llm, image_chat(png.as_uri()))
    assert same_logits(expected, by_path) and same_logits(expected, by_url)


def test_projector_keywords(tiny_spm: Path, mmproj: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        Llama(str(tiny_spm), mmproj_path=str(mmproj), clip_model_path=str(tmp_path / "other.gguf"))
    with pytest.raises(ValueError, match="context"):
        Llama(str(tiny_spm), mmproj_path=str(mmproj), vocab_only=True)


def test_user_text_cannot_stand_for_an_image(vlm: Llama) -> None:
    """The marker is fresh per request: the default media marker in text stays text."""
    messages = image_chat(data_url(PNG_A), text="<__media__> <__image_0__>")
    out = vlm.create_chat_completion(messages, max_tokens=2, temperature=0.0)
    assert out["choices"][0]["finish_reason"] in ("length", "stop")


def test_prompt_cache_with_images_is_exact(tiny_spm: Path, mmproj: Path, vlm: Llama) -> None:
    from llama_binding import LlamaRAMCache

    expected_a, _ = first_logits(vlm, image_chat(data_url(PNG_A)))
    expected_b, _ = first_logits(vlm, image_chat(data_url(PNG_B)))
    with Llama(str(tiny_spm), mmproj_path=str(mmproj), n_ctx=512, n_gpu_layers=NGL, n_threads=2,
               chat_format="chatml") as llm:
        llm.set_cache(LlamaRAMCache(capacity_bytes=1 << 26))
        got = [first_logits(llm, image_chat(data_url(png)))[0] for png in (PNG_A, PNG_B, PNG_A, PNG_B)]
        text, _ = first_logits(llm, [{"role": "user", "content": "What is in the picture?"}])
    assert all(same_logits(g, e) for g, e in zip(got, [expected_a, expected_b] * 2))
    assert text.shape == expected_a.shape


def test_paused_image_stream_does_not_resume_wrongly(vlm: Llama) -> None:
    from llama_binding import StreamInterruptedError

    stream = vlm.create_chat_completion(image_chat(data_url(PNG_A)), max_tokens=8, temperature=0.0,
                                        stream=True)
    next(stream)
    vlm.create_chat_completion(image_chat(data_url(PNG_B)), max_tokens=2, temperature=0.0)
    with pytest.raises(StreamInterruptedError):
        list(stream)
    a, _ = first_logits(vlm, image_chat(data_url(PNG_A)))  # the Llama still answers right
    with_b, _ = first_logits(vlm, image_chat(data_url(PNG_B)))
    assert not same_logits(a, with_b)


def test_image_chat_options(vlm: Llama) -> None:
    messages = image_chat(data_url(PNG_A))
    with pytest.raises(ValueError, match="n > 1"):
        vlm.create_chat_completion(messages, max_tokens=2, n=2)
    out = vlm.create_chat_completion(messages, max_tokens=2, temperature=0.0, logprobs=True, top_logprobs=2)
    assert len(out["choices"][0]["logprobs"]["content"]) == 2  # type: ignore[index]
    plain, _ = first_logits(vlm, messages)
    escaped, _ = first_logits(vlm, messages, escape_special_tokens=True)  # as the server sends it
    assert same_logits(plain, escaped)


def test_damaged_projector_is_refused_not_fatal(model: Model, tmp_path: Path) -> None:
    """Tensors that do not fit together fail a GGML_ASSERT in the warmup encode, which
    aborts the process: the probe in a child process turns that into ModelLoadError."""
    import _tinymmproj

    spec = TinyProjectorSpec(seed=7)
    tensors = _tinymmproj._tensors(spec)
    tensors["mm.0.weight"] = np.zeros((spec.proj_hidden, spec.n_embd + 1), np.float32)
    path = tmp_path / "damaged.gguf"
    _tinymmproj.write_tensors(path, spec, tensors)
    with pytest.raises(ModelLoadError, match="GGML_ASSERT"):
        Projector(model, path, use_gpu=NGL != 0)


def _wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate))
    return buf.getvalue()


@pytest.mark.parametrize(("audio", "match"), [
    ({"data": base64.b64encode(_wav()).decode(), "format": "wav"}, "takes no audio"),
    ({"data": base64.b64encode(_wav()).decode(), "format": "ogg"}, "format must be one of"),
    ({"format": "wav"}, "an audio part needs"),
    ({"data": "@@@", "format": "wav"}, "not valid base64"),
])
def test_audio_parts_are_checked(vlm: Llama, audio: dict[str, Any], match: str) -> None:
    """input_audio parts reach the projector (this one is vision-only: a clear refusal) or
    are refused for their shape; the model answers the next request as before."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "Listen"},
                                              {"type": "input_audio", "input_audio": audio}]}]
    with pytest.raises(MediaError, match=match):
        vlm.create_chat_completion(messages, max_tokens=2)
    assert vlm.create_chat_completion(image_chat(data_url(PNG_A)), max_tokens=2)["choices"]


def test_audio_to_a_model_without_projector(tiny_spm: Path) -> None:
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(_wav()).decode(), "format": "wav"}}]}]
    with Llama(str(tiny_spm), n_ctx=128, n_gpu_layers=NGL) as llm, pytest.raises(UnsupportedModelError,
                                                                              match="mmproj_path"):
        llm.create_chat_completion(messages, max_tokens=2)
