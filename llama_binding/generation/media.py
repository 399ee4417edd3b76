"""Prompts with images, for the synchronous sequence.

A :class:`MediaPrompt` is a prompt's token ids with each image's chunks (made by the
projector) in place of a :data:`MEDIA_HOLE`, and the token list that stands for the whole
in the engine's bookkeeping: text runs give their token ids, an image run gives ``n_pos``
negative ids derived from the image's SHA-256 (:func:`media_ids`). No vocabulary id is
negative, so a text prompt never shares a position with an image; two prompts share an
image run only when they hold the same image at the same place after the same prefix,
where the KV memory is the same. So prefix reuse (``SequenceState.reuse``) and the prompt
cache stay exact with the same code.

:func:`prefill_media` brings all of the prompt but its last token into the sequence's
memory (text runs through our batch, images through the projector); the last token is a
text token (:func:`build_media_prompt` insists), which the usual prefill evaluates with
its logits, so generation goes on as for any prompt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.batch import Batch
from ..core.context import Context
from ..core.mtmd import Chunks, Media, Projector
from ..errors import ContextOverflowError, MediaError, UnsupportedModelError
from .steps import SequenceState, common_prefix, decode_in_step

__all__ = ["MEDIA_HOLE", "MediaPrompt", "Run", "build_media_prompt", "feed_runs", "media_end", "media_ids",
           "prefill_media"]

_ID_SPACE = 1 << 30


def media_ids(media_id: str, n: int) -> list[int]:
    """``n`` negative stand-in token ids for a media run whose content hash is ``media_id``
    (a fresh random run when there is no id: it then never matches another)."""
    digest = media_id or os.urandom(16).hex()
    base = int(hashlib.sha256(digest.encode()).hexdigest()[:15], 16)
    return [-1 - ((base + i) % _ID_SPACE) for i in range(n)]


MEDIA_HOLE = -(1 << 31)
"""The id that stands for one image in a token list given to :func:`build_media_prompt`."""


@dataclass(frozen=True)
class Run:
    """``[start, end)`` of :attr:`MediaPrompt.tokens`: text when ``chunks`` is None, else
    chunk ``index`` of ``chunks`` (an image's run, or a text run the projector adds around it)."""

    start: int
    end: int
    chunks: Chunks | None = None
    index: int = 0


@dataclass(frozen=True)
class MediaPrompt:
    """A prompt with images: the engine's token list and the runs that evaluate it."""

    projector: Projector
    tokens: list[int]
    runs: list[Run]
    chunks: list[Chunks] = field(default_factory=list)

    def close(self) -> None:
        for chunks in self.chunks:
            chunks.close()


def _image_runs(projector: Projector, media: Media, out: list[int], runs: list[Run]) -> Chunks:
    bitmap = projector.audio(media.data) if media.kind == "audio" else projector.image(media.data)
    try:
        chunks = projector.tokenize(projector.marker, [bitmap], add_special=False, parse_special=True)
    finally:
        bitmap.close()  # the chunks hold their own preprocessed copy
    for index, info in enumerate(chunks.infos):
        start = len(out)
        out.extend(info.tokens if info.kind == "text" else media_ids(info.id, info.n_pos))
        runs.append(Run(start, len(out), chunks, index))
    return chunks


def build_media_prompt(projector: Projector, tokens: Sequence[int], images: Sequence[Media]) -> MediaPrompt:
    """The prompt ``tokens`` with image (or audio clip) ``i`` in place of the ``i``-th
    :data:`MEDIA_HOLE`; :class:`MediaError` for a bad one or a count that does not match."""
    if projector.uses_mrope:
        raise UnsupportedModelError("this projector's model takes M-RoPE positions, which the engine "
                                    "does not track yet")
    holes = [i for i, tok in enumerate(tokens) if tok == MEDIA_HOLE]
    if len(holes) != len(images):
        raise MediaError(f"the rendered prompt has {len(holes)} places for images but {len(images)} "
                         "images were given (does the chat template drop a message that holds one?)")
    if not holes or holes[-1] == len(tokens) - 1:
        raise MediaError("the prompt must end with text after its last image (a chat template's "
                         "generation prompt does)")
    out: list[int] = []
    runs: list[Run] = []
    owned: list[Chunks] = []
    prev = 0
    try:
        for hole, data in zip(holes, images):
            if hole > prev:
                runs.append(Run(len(out), len(out) + hole - prev))
                out.extend(tokens[prev:hole])
            owned.append(_image_runs(projector, data, out, runs))
            prev = hole + 1
    except BaseException:
        for chunks in owned:
            chunks.close()
        raise
    runs.append(Run(len(out), len(out) + len(tokens) - prev))
    out.extend(tokens[prev:])
    return MediaPrompt(projector, out, runs, owned)


def _kept(media: MediaPrompt, seq: SequenceState) -> int:
    """How much of the sequence's memory the prompt can keep: the common prefix, but not
    the last token, and never part of an image run."""
    toks = media.tokens
    keep = min(common_prefix(seq.tokens, toks), len(toks) - 1)
    for run in media.runs:
        if run.chunks is not None and run.start < keep < run.end:
            keep = run.start
    return keep


def _decode_text(ctx: Context, batch: Batch, seq: SequenceState, tokens: list[int]) -> None:
    step = min(ctx.n_batch, batch.capacity)
    for i in range(0, len(tokens), step):
        chunk = tokens[i : i + step]
        batch.clear()
        batch.add_sequence(chunk, len(seq.tokens), seq.seq_id, logits_last=False)
        decode_in_step(ctx, batch, seq)
        seq.tokens.extend(chunk)


def prefill_media(ctx: Context, batch: Batch, seq: SequenceState, media: MediaPrompt) -> None:
    """Bring ``media.tokens[:-1]`` into sequence ``seq``'s memory, reusing what it holds."""
    toks = media.tokens
    if len(toks) > ctx.n_ctx_seq:
        raise ContextOverflowError(
            f"the prompt takes {len(toks)} positions (images included) but the context holds "
            f"{ctx.n_ctx_seq} per sequence")
    keep = _kept(media, seq)
    if keep < len(seq.tokens):
        if ctx.seq_rm(seq.seq_id, keep, -1):
            del seq.tokens[keep:]
        else:  # e.g. recurrent memory: all or nothing
            seq.reset()
    feed_runs(ctx, batch, seq, media, len(toks) - 1)


def media_end(media: MediaPrompt) -> int:
    """Where the prompt's last media run ends (the text after it is plain prompt)."""
    return max(run.end for run in media.runs if run.chunks is not None
               and run.chunks.infos[run.index].kind != "text")


def feed_runs(ctx: Context, batch: Batch, seq: SequenceState, media: MediaPrompt, target: int) -> None:
    """Evaluate ``media.tokens[len(seq.tokens):target]`` into the sequence (text runs through
    ``batch``, media runs through the projector), extending ``seq.tokens`` as they go in."""
    toks = media.tokens
    for run in media.runs:
        done = len(seq.tokens)
        if run.end <= done or run.start >= target:
            continue
        if run.chunks is None or run.chunks.infos[run.index].kind == "text":
            _decode_text(ctx, batch, seq, toks[done : min(run.end, target)])
            continue
        try:
            media.projector.eval_chunk(ctx, run.chunks, run.index, run.start, seq.seq_id, logits_last=False)
        except BaseException:
            ctx.seq_rm(seq.seq_id, len(seq.tokens), -1)
            raise
        seq.tokens.extend(toks[run.start : run.end])
