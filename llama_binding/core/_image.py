"""Image headers read before any decoder sees the data.

libmtmd decodes images with stb_image, which allocates ``width * height * 3`` bytes for
whatever the header claims: a few hundred bytes of PNG that claim 100000 x 100000 pixels
would make it ask for 30 GB. So the dimensions are read here first, from the header of
each format stb_image reads that we accept (PNG, JPEG, GIF, BMP), and refused over the
limits; any other format is refused by name.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import MediaError

__all__ = ["MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "ImageHeader", "check_image", "read_header"]

#: default limits: about 8K x 4K pixels (100 MB of RGB once decoded), and no side over 16384
MAX_IMAGE_PIXELS = 8192 * 4096
MAX_IMAGE_SIDE = 16384

_PNG = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, ...; not DHT 0xC4, JPG 0xC8, DAC 0xCC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def _png(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise MediaError("the PNG image is truncated or has no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height)


def _gif(data: bytes) -> ImageHeader:
    if len(data) < 10:
        raise MediaError("the GIF image is truncated")
    width, height = struct.unpack("<HH", data[6:10])
    return ImageHeader("gif", width, height)


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise MediaError("the BMP image is truncated")
    size = struct.unpack("<I", data[14:18])[0]
    if size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))


def _jpeg(data: bytes) -> ImageHeader:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise MediaError("the JPEG image is corrupt (no marker where one was expected)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return ImageHeader("jpeg", width, height)
        if length < 2:
            break
        i += 2 + length
    raise MediaError("the JPEG image is truncated or has no frame header")


def read_header(data: bytes) -> ImageHeader:
    """The format and dimensions ``data``'s header claims; :class:`MediaError` for a format
    that is not accepted (PNG, JPEG, GIF and BMP are)."""
    if data.startswith(_PNG):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _gif(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    raise MediaError("unsupported or unrecognized image format (PNG, JPEG, GIF and BMP are accepted)")


def check_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS,
                max_side: int = MAX_IMAGE_SIDE) -> ImageHeader:
    """``data``'s header, once its dimensions are within the limits."""
    if not data:
        raise MediaError("the image is empty")
    head = read_header(data)
    if head.width <= 0 or head.height <= 0:
        raise MediaError(f"the {head.format.upper()} image claims no pixels ({head.width} x {head.height})")
    if head.width > max_side or head.height > max_side or head.width * head.height > max_pixels:
        raise MediaError(
            f"the {head.format.upper()} image is {head.width} x {head.height} pixels, over the limit "
            f"({max_pixels} pixels, {max_side} per side); scale it down first")
    return head
