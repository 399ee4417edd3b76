"""Images through the continuous-batching engine (AsyncLlama): the same answers as one at a
time and as the synchronous Llama, concurrent image and text requests, bad images ending
only their own request, and the images' chunks freed when a request ends."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _tinymmproj import NGL, make_png, same_top

from llama_binding import AsyncLlama, Llama, MediaError, UnsupportedModelError

PNGS = [make_png(40, 30, seed=s) for s in range(1, 5)]
OPTS: dict[str, Any] = {"n_gpu_layers": NGL, "n_threads": 2, "chat_format": "chatml"}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_chat(png: bytes, text: str = "What is in the picture?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                          {"type": "image_url", "image_url": {"url": data_url(png)}}]}]


@pytest.fixture(scope="module")
def lm(tiny_model: Callable[..., Path]) -> Path:
    """The tiny Llama with unit-scale weights: its answers depend on the image (as in the
    oracle test), where the default scale answers every image alike."""
    return tiny_model(vocab="llama-spm", scale=1.0, tied_embeddings=False)


@pytest.fixture(scope="module")
def avlm(lm: Path, mmproj: Path) -> Iterator[AsyncLlama]:
    llm = AsyncLlama(str(lm), mmproj_path=str(mmproj), n_seq_max=4, n_ctx=2048, **OPTS)
    try:
        yield llm
    finally:
        llm.close()


Answer = tuple[str, dict[str, float]]
"""A greedy answer's text and its first token's top-5 log-probabilities."""


def _top(choice: Any) -> dict[str, float]:
    first = choice["logprobs"]["content"][0]
    return {t["token"]: t["logprob"] for t in first["top_logprobs"]}


def agree(got: list[Answer], want: list[Answer]) -> bool:
    """The same answers: on the CPU the same texts; everywhere the first tokens' top
    log-probabilities within tolerance (``same_top``: a GPU's kernels change with the batch)."""
    if len(got) != len(want) or not all(same_top(g[1], w[1]) for g, w in zip(got, want)):
        return False
    return NGL != 0 or [g[0] for g in got] == [w[0] for w in want]


async def _answer(llm: AsyncLlama, messages: list[dict[str, Any]], max_tokens: int = 8) -> Answer:
    out = await llm.acreate_chat_completion(messages, max_tokens=max_tokens, temperature=0.0, logprobs=True,
                                            top_logprobs=5)
    choice = out["choices"][0]  # type: ignore[index]
    return choice["message"]["content"] or "", _top(choice)


async def _streamed(llm: AsyncLlama, messages: list[dict[str, Any]], max_tokens: int = 8) -> Answer:
    parts, top = [], {}
    async for chunk in await llm.acreate_chat_completion(messages, max_tokens=max_tokens, temperature=0.0,
                                                          logprobs=True, top_logprobs=5,
                                                          stream=True):  # type: ignore[union-attr]
        choice = chunk["choices"][0]
        parts.append(choice["delta"].get("content") or "")
        if not top and choice.get("logprobs") and choice["logprobs"]["content"]:
            top = _top(choice)
    return "".join(parts), top


def test_async_image_answers_equal_the_synchronous_ones(avlm: AsyncLlama, lm: Path, mmproj: Path) -> None:
    with Llama(str(lm), mmproj_path=str(mmproj), n_ctx=512, **OPTS) as llm:
        outs = [llm.create_chat_completion(image_chat(p), max_tokens=8, temperature=0.0, logprobs=True,
                                           top_logprobs=5)["choices"][0] for p in PNGS]
    want = [(o["message"]["content"] or "", _top(o)) for o in outs]
    assert len({text for text, _ in want}) > 1, "different images should give different answers"

    async def main() -> tuple[list[Answer], list[Answer], list[Answer]]:
        one_by_one = [await _answer(avlm, image_chat(p)) for p in PNGS]
        together = list(await asyncio.gather(*(_answer(avlm, image_chat(p)) for p in PNGS)))
        streamed = list(await asyncio.gather(*(_streamed(avlm, image_chat(p)) for p in PNGS)))
        return one_by_one, together, streamed

    one_by_one, together, streamed = asyncio.run(main())
    assert agree(one_by_one, want)
    assert agree(together, want)
    assert agree(streamed, want)


def test_image_and_text_requests_share_the_engine(avlm: AsyncLlama) -> None:
    text_chat = [{"role": "user", "content": "Tell me a story about a cat."}]

    async def main() -> tuple[list[Answer], list[Answer]]:
        alone = [await _answer(avlm, text_chat), await _answer(avlm, image_chat(PNGS[0]))]
        mixed = await asyncio.gather(_answer(avlm, text_chat), _answer(avlm, image_chat(PNGS[0])),
                                     _answer(avlm, text_chat), _answer(avlm, image_chat(PNGS[0])))
        return alone, list(mixed)

    alone, mixed = asyncio.run(main())
    assert agree(mixed, alone + alone)
    # the same image at the same place: the prompt was evaluated with the image each time
    assert avlm.stats().prompt_tokens > 0


def test_a_bad_image_fails_only_its_request(avlm: AsyncLlama) -> None:
    bad = image_chat(PNGS[0][: len(PNGS[0]) // 2])  # truncated

    async def main() -> list[Any]:
        return list(await asyncio.gather(_answer(avlm, image_chat(PNGS[1])), _answer(avlm, bad),
                                         _answer(avlm, image_chat(PNGS[2])), return_exceptions=True))

    good1, error, good2 = asyncio.run(main())
    assert isinstance(error, MediaError)
    assert isinstance(good1, tuple) and isinstance(good2, tuple)
    assert avlm.n_outstanding == 0


def test_image_requests_refuse_what_they_cannot_do(avlm: AsyncLlama, lm: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="n > 1"):
            await avlm.acreate_chat_completion(image_chat(PNGS[0]), n=2, max_tokens=2)
        with pytest.raises(MediaError, match="remote"):
            await avlm.acreate_chat_completion(
                [{"role": "user", "content": [{"type": "image_url",
                                               "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}])

    asyncio.run(main())
    plain = AsyncLlama(str(lm), n_seq_max=2, n_ctx=512, **OPTS)
    try:
        with pytest.raises(UnsupportedModelError, match="mmproj_path"):
            asyncio.run(plain.acreate_chat_completion(image_chat(PNGS[0]), max_tokens=2))
    finally:
        plain.close()


def test_the_images_chunks_are_freed_when_requests_end(avlm: AsyncLlama) -> None:
    """The worker closes a request's image chunks once the request is done (also when its
    caller stops reading early), while the caller still holds the prompt."""
    from llama_binding._multimodal import chat_prompt

    def prompt(png: bytes) -> Any:
        _, media = chat_prompt(avlm._llama.chat_setup, avlm.engine, image_chat(png), avlm._llama.media)
        assert media is not None and not any(c.closed for c in media.chunks)
        return media

    async def main() -> list[Any]:
        whole = prompt(PNGS[0])
        await avlm.acreate_completion(whole, max_tokens=4, temperature=0.0)
        early = prompt(PNGS[1])
        stream = await avlm.acreate_completion(early, max_tokens=64, temperature=0.0, stream=True)
        async for _ in stream:  # type: ignore[union-attr]
            break
        await stream.aclose()  # type: ignore[union-attr]
        for _ in range(100):
            if not avlm.n_outstanding:
                break
            await asyncio.sleep(0.05)
        return [whole, early]

    for media in asyncio.run(main()):
        assert media.chunks and all(c.closed for c in media.chunks)
