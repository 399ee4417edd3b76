"""The multimodal projector: one ``mtmd_context *`` (libmtmd) over a loaded text model.

A :class:`Projector` loads an ``mmproj`` GGUF for a :class:`~.model.Model`, turns image
bytes into :class:`Bitmap` objects (headers checked before decoding: see ``_image.py``),
tokenizes a prompt holding one media marker per image into :class:`Chunks` (text runs and
image runs), and evaluates chunks into a sequence of a :class:`~.context.Context`
(``mtmd_helper_eval_chunk_single``: the image is encoded, its embeddings decoded).

What llama.cpp would stop the process on is checked first: a file that is no GGUF, an
image whose header claims more pixels than the limits. A projector whose output width
does not match the text model is refused by libmtmd itself (a NULL context), and said so.
libmtmd's logs go to the ``llama_binding.native`` logger.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .. import _backend, _log, capi
from ..errors import DecodeError, MediaError, ModelLoadError, TokenizeError, check_decode
from ._handle import NativeHandle
from ._header import check_gguf_path
from ._image import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, check_image
from ._mmproj_probe import probe_projector
from .model import Model

if TYPE_CHECKING:
    from .context import Context

__all__ = ["MAX_AUDIO_BYTES", "MAX_AUDIO_SECONDS", "Bitmap", "ChunkInfo", "Chunks", "Media", "Projector"]

#: the longest audio clip accepted (decoded), in seconds, and the largest encoded one
MAX_AUDIO_SECONDS = 600.0
MAX_AUDIO_BYTES = 16 * 1024 * 1024


class Media(NamedTuple):
    """One image or audio clip of a request, encoded (PNG, JPEG, GIF, BMP; WAV, MP3, FLAC)."""

    kind: Literal["image", "audio"]
    data: bytes


_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_log_lock = threading.Lock()
_log_installed: list[Any] = []  # keeps the ctypes callback alive for the life of the process
_recent_errors: deque[str] = deque(maxlen=8)
_last_level = [logging.INFO]


def _on_log(level: int, text: bytes | None, _user: Any) -> None:
    try:
        lvl = _last_level[0] if level == 5 else _LEVELS.get(int(level), logging.INFO)  # 5: continuation
        _last_level[0] = lvl
        message = (text or b"").decode("utf-8", "replace").rstrip()
        if lvl >= logging.ERROR and message:
            _recent_errors.append(message)
        if message and _log.native_logger.isEnabledFor(lvl):
            _log.native_logger.log(lvl, "%s", message)
    except BaseException as exc:  # a callback must never raise into C
        _log.count_interrupt(exc)


def _install_log() -> None:
    """Route libmtmd's logs (clip, mtmd, the helpers) into ``logging`` (once per process)."""
    with _log_lock:
        if not _log_installed:
            cb = capi.ggml_log_callback(_log.quiet_callback(_on_log))
            capi.mtmd_helper_log_set(cb, None)
            _log_installed.append(cb)


def _errors_detail() -> str:
    detail = "; ".join(_recent_errors)
    _recent_errors.clear()
    return detail


class Bitmap(NativeHandle[Any]):
    """One decoded image (``mtmd_bitmap *``), RGB, ``width`` x ``height``."""

    _kind = "bitmap"

    def __init__(self, ptr: Any, parent: Projector) -> None:
        super().__init__(ptr, capi.mtmd_bitmap_free, parent)
        self.width = int(capi.mtmd_bitmap_get_nx(ptr))
        self.height = int(capi.mtmd_bitmap_get_ny(ptr))
        self.id = (capi.mtmd_bitmap_get_id(ptr) or b"").decode("ascii", "replace")
        """the SHA-256 of the encoded bytes (hex): equal images have equal ids"""


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk of a tokenized multimodal prompt."""

    kind: str
    """"text", "image" or "audio" """
    tokens: tuple[int, ...]
    """the token ids of a text chunk (empty for media)"""
    n_tokens: int
    n_pos: int
    """the positions the chunk takes in the sequence"""
    id: str
    """the media's id (the image's SHA-256); empty for text"""


_KINDS = {int(capi.MTMD_INPUT_CHUNK_TYPE_TEXT): "text", int(capi.MTMD_INPUT_CHUNK_TYPE_IMAGE): "image",
          int(capi.MTMD_INPUT_CHUNK_TYPE_AUDIO): "audio"}


def _chunk_info(chunk: Any) -> ChunkInfo:
    kind = _KINDS.get(int(capi.mtmd_input_chunk_get_type(chunk)), "unknown")
    tokens: tuple[int, ...] = ()
    if kind == "text":
        n = ctypes.c_size_t(0)
        arr = capi.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
        tokens = tuple(arr[i] for i in range(n.value)) if n.value else ()
    ident = b"" if kind == "text" else (capi.mtmd_input_chunk_get_id(chunk) or b"")
    return ChunkInfo(kind, tokens, int(capi.mtmd_input_chunk_get_n_tokens(chunk)),
                     int(capi.mtmd_input_chunk_get_n_pos(chunk)), ident.decode("ascii", "replace"))


class Chunks(NativeHandle[Any]):
    """A tokenized multimodal prompt (``mtmd_input_chunks *``): text and media chunks."""

    _kind = "chunk list"

    def __init__(self, ptr: Any, parent: Projector) -> None:
        super().__init__(ptr, capi.mtmd_input_chunks_free, parent)
        n = int(capi.mtmd_input_chunks_size(ptr))
        self.infos: list[ChunkInfo] = [_chunk_info(capi.mtmd_input_chunks_get(ptr, i)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.infos)

    def chunk_ptr(self, index: int) -> Any:
        if not 0 <= index < len(self.infos):
            raise IndexError(f"chunk {index} out of range ({len(self.infos)} chunks)")
        return capi.mtmd_input_chunks_get(self.ptr, index)


#: a folder that holds no ffmpeg: when stb_image cannot decode an image, the helper tries it
#: as a video with ffprobe/ffmpeg from this folder (else from PATH); pointing it here means an
#: image that does not decode is an error, never handed to another program
_NO_FFMPEG_DIR = os.fsencode(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_no_ffmpeg_here"))


def _no_video_opt() -> Any:
    opt = capi.mtmd_helper_init_opt_default()
    opt.video_params.ffmpeg_bin_dir = _NO_FFMPEG_DIR
    return opt


def _context_params(use_gpu: bool, n_threads: int | None, warmup: bool) -> Any:
    params = capi.mtmd_context_params_default()
    params.use_gpu = bool(use_gpu)
    if n_threads is not None and n_threads > 0:
        params.n_threads = int(n_threads)
    params.warmup = bool(warmup)
    params.print_timings = False
    return params


class Projector(NativeHandle[Any]):
    """A multimodal projector (``mmproj`` GGUF) for ``model``: ``Projector(model, path)``.

    ``use_gpu`` puts the vision encoder on the GPU when the build has one; ``n_threads``
    (None: libmtmd's default) runs it on the CPU. ``probe`` loads the file first in a child
    process (once per file and process, see ``_mmproj_probe``), so that a damaged projector
    raises :class:`ModelLoadError` instead of aborting this process. Images over
    ``max_pixels`` pixels or ``max_side`` per side are refused before decoding. Keeps
    ``model`` alive; closing the model closes the projector first.
    """

    _kind = "projector"

    def __init__(self, model: Model, path: str | os.PathLike[str], *, use_gpu: bool = True,
                 n_threads: int | None = None, warmup: bool = True, probe: bool = True,
                 max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = MAX_IMAGE_SIDE) -> None:
        p = check_gguf_path(path, "projector")
        if probe:  # a damaged projector aborts the process that loads it: try in a child first
            probe_projector(p)
        _backend.init_backends()
        _install_log()
        _recent_errors.clear()
        ptr = capi.mtmd_init_from_file(os.fsencode(p), model.ptr, _context_params(use_gpu, n_threads, warmup))
        if not ptr:
            detail = _errors_detail()
            raise ModelLoadError(f"libmtmd could not load the projector {p} for this model"
                                 + (f": {detail}" if detail else ""))
        super().__init__(ptr, capi.mtmd_free, model)
        self.path: Path = p
        self.model = model
        self.max_pixels = max_pixels
        self.max_side = max_side
        self.marker: str = (capi.mtmd_default_marker() or b"<__media__>").decode("utf-8")
        """the text that stands for one image in a prompt given to :meth:`tokenize`"""

    @property
    def supports_vision(self) -> bool:
        return bool(capi.mtmd_support_vision(self.ptr))

    @property
    def supports_audio(self) -> bool:
        return bool(capi.mtmd_support_audio(self.ptr))

    @property
    def uses_mrope(self) -> bool:
        """Whether the text model takes M-RoPE positions (an image's n_pos != n_tokens)."""
        return bool(capi.mtmd_decode_use_mrope(self.ptr))

    def image(self, data: bytes) -> Bitmap:
        """Decode the encoded image ``data`` (PNG, JPEG, GIF, BMP); :class:`MediaError` for
        a corrupt, truncated, unsupported or oversized one."""
        if not self.supports_vision:
            raise MediaError(f"the projector {self.path.name} takes no images")
        data = bytes(data)
        head = check_image(data, self.max_pixels, self.max_side)
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        _recent_errors.clear()
        wrapped = capi.mtmd_helper_bitmap_init_from_buf(self.ptr, buf, len(data), False, _no_video_opt())
        if wrapped.video_ctx:
            capi.mtmd_helper_video_free(wrapped.video_ctx)
        if not wrapped.bitmap:
            _recent_errors.clear()  # the helper's video fallback speaks of ffprobe: beside the point
            raise MediaError(f"the {head.format.upper()} image could not be decoded (corrupt, truncated, "
                             "or a variant of the format the decoder does not read)")
        bitmap = Bitmap(wrapped.bitmap, self)
        if (bitmap.width, bitmap.height) != (head.width, head.height) \
                or capi.mtmd_bitmap_is_audio(bitmap.ptr):
            bitmap.close()
            raise MediaError(f"the {head.format.upper()} image decoded to another size than its header says")
        return bitmap

    def audio(self, data: bytes) -> Bitmap:
        """Decode the encoded audio ``data`` (WAV, MP3, FLAC) to the projector's sample rate;
        :class:`MediaError` for a projector without audio, an unknown format, a clip that
        does not decode or one longer than :data:`MAX_AUDIO_SECONDS`."""
        if not self.supports_audio:
            raise MediaError(f"the projector {self.path.name} takes no audio")
        data = bytes(data)
        if len(data) > MAX_AUDIO_BYTES:  # decoded to float samples, an MP3 grows tenfold
            raise MediaError(f"the audio is larger than {MAX_AUDIO_BYTES} bytes")
        if not ((data[:4] == b"RIFF" and data[8:12] == b"WAVE") or data[:4] == b"fLaC" or data[:3] == b"ID3"
                or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)):
            raise MediaError("the audio is not WAV, MP3 or FLAC")
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        wrapped = capi.mtmd_helper_bitmap_init_from_buf(self.ptr, buf, len(data), False, _no_video_opt())
        if wrapped.video_ctx:
            capi.mtmd_helper_video_free(wrapped.video_ctx)
        if not wrapped.bitmap:
            _recent_errors.clear()
            raise MediaError("the audio could not be decoded (corrupt, truncated, or an unsupported variant)")
        bitmap = Bitmap(wrapped.bitmap, self)
        rate = int(capi.mtmd_get_audio_sample_rate(self.ptr))
        seconds = int(capi.mtmd_bitmap_get_n_bytes(bitmap.ptr)) / 4 / max(rate, 1)
        if not capi.mtmd_bitmap_is_audio(bitmap.ptr) or seconds > MAX_AUDIO_SECONDS:
            bitmap.close()
            too_long = seconds > MAX_AUDIO_SECONDS
            raise MediaError(f"the audio is longer than {MAX_AUDIO_SECONDS:.0f} s" if too_long
                             else "the data decoded to an image, not audio")
        return bitmap

    def tokenize(self, text: str, bitmaps: Sequence[Bitmap], *, add_special: bool = True,
                 parse_special: bool = True) -> Chunks:
        """``text`` with one :attr:`marker` per bitmap, as chunks (text and image runs)."""
        if text.count(self.marker) != len(bitmaps):
            raise MediaError(f"the prompt has {text.count(self.marker)} media markers for "
                             f"{len(bitmaps)} images")
        raw = text.encode("utf-8")
        inp = capi.mtmd_input_text()
        inp.text, inp.text_len = raw, len(raw)
        inp.add_special, inp.parse_special = bool(add_special), bool(parse_special)
        arr = (ctypes.POINTER(capi.mtmd_bitmap) * max(1, len(bitmaps)))(*(b.ptr for b in bitmaps))
        out = capi.mtmd_input_chunks_init()
        if not out:
            raise MemoryError("mtmd_input_chunks_init returned NULL")
        _recent_errors.clear()
        try:
            code = capi.mtmd_tokenize(self.ptr, out, ctypes.byref(inp), arr, len(bitmaps))
        except BaseException:
            capi.mtmd_input_chunks_free(out)
            raise
        if code != 0:
            capi.mtmd_input_chunks_free(out)
            detail = _errors_detail()
            what = ("the number of images does not match the markers" if code == 1
                    else "an image could not be preprocessed")
            raise TokenizeError(f"mtmd_tokenize failed ({code}): {what}" + (f": {detail}" if detail else ""))
        return Chunks(out, self)

    def eval_chunk(self, ctx: Context, chunks: Chunks, index: int, n_past: int, seq_id: int,
                   logits_last: bool = False) -> int:
        """Evaluate chunk ``index`` at position ``n_past`` of sequence ``seq_id``; return the
        position after it. On failure the caller drops what it may have left in memory."""
        if ctx.model is not self.model:
            raise ValueError("the context belongs to another model than this projector's")
        new_n_past = capi.llama_pos(n_past)  # the helper adds to it
        _recent_errors.clear()
        code = capi.mtmd_helper_eval_chunk_single(self.ptr, ctx.ptr, chunks.chunk_ptr(index), n_past, seq_id,
                                                  ctx.n_batch, logits_last, ctypes.byref(new_n_past))
        ctx.check_workers()
        if code != 0:
            detail = _errors_detail()
            if "failed to encode" in detail:  # the vision encoder, not the text model's decode
                raise DecodeError(f"the projector could not encode the image ({code}): {detail}", code)
            check_decode(code, "mtmd_helper_eval_chunk_single")
        return int(new_n_past.value)
