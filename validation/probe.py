"""Image probing with Pillow: real format, real size, EXIF orientation, truncation.

Pillow reads the header (format, size, EXIF orientation); the end marker is
found from the last bytes, or, when they hold none, by walking the segments
(a JPEG padded after its end is complete; one cut short is not). Then every
image's compressed data is decoded once (:mod:`validation.pixels`: everything
TensorFlow, the decoder training uses, refuses), so a file whose header and
end are intact but whose pixel data is corrupt (random bytes mid-scan, a PNG
with no image data) is refused here rather than failing in
``create_input_fn`` mid-training (``--pixel-check header`` skips this
decode, and such a file then fails in training instead).
Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is kept, and its warning is treated as an error.

EXIF orientation: TensorFlow's ``decode_jpeg`` ignores EXIF, while annotation
tools (labelImg, CVAT, Roboflow) draw boxes on the upright, displayed image.
So when a JPEG carries an orientation other than 1, the pixels are rotated
upright and re-encoded, and the boxes are kept: pixels and boxes then agree
in the frame TensorFlow sees. The one exception: when the annotation's
declared size equals the stored (unrotated) size but not the displayed one,
the annotator saw the raw frame, and the bytes pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from typing import BinaryIO

from PIL import Image

from schemas.reasons import RejectReason
from validation import pixels

_FORMATS = {"JPEG": "jpeg", "PNG": "png", "MPO": "jpeg"}  # MPO: phones' multi-frame JPEG; decoders read frame 1
_TAIL = 64
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


class ProbeError(Exception):
    """An image that cannot be used; carries the quarantine reason."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    orientation: int = 1
    stored_width: int = 0
    stored_height: int = 0
    trailing_bytes: int = 0  # after the end-of-image marker or IEND chunk (phones pad JPEGs); kept as they are
    multi_frame: bool = False  # an MPO: the record keeps the file, decoders read its first frame
    exif_unreadable: bool = False  # an EXIF block Pillow cannot parse: the stored frame is taken as shown


def probe(data: bytes, name: str, decode: bool = True) -> ImageInfo:
    """Identify an image from its bytes and check that its pixels decode.

    Args:
        data: the file's bytes.
        name: for error messages.
        decode: decode the pixels (``--pixel-check decode``); False checks the header and end only.

    Returns:
        Format ('jpeg' or 'png'), the displayed size (after EXIF orientation)
        and the stored size.

    Raises:
        ProbeError: unreadable, truncated, unsupported or too large.
    """
    return probe_stream(io.BytesIO(data), len(data), name, decode)


def probe_stream(f: BinaryIO, size: int, name: str, decode: bool = True) -> ImageInfo:
    """:func:`probe` on a seekable file of ``size`` bytes.

    Pillow parses the markers up to the frame header (a few KB), the tail is
    read with one seek (a file cut short is refused before any decoding),
    then the pixels are decoded once (see the module docstring).
    """
    if size <= 0:
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(f)
            fmt = img.format or ""
            width, height = img.size
            orientation, exif_unreadable = _orientation(img) if fmt in ("JPEG", "MPO") else (1, False)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ProbeError(RejectReason.IMAGE_TOO_LARGE, f"{name}: {exc}") from None
    except Exception as exc:  # Pillow's parsers raise many types on hostile headers; each is a bad file, not a bad job
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: not a readable image: {exc.__class__.__name__}: {exc}") from None
    if fmt not in _FORMATS:
        raise ProbeError(
            RejectReason.IMAGE_FORMAT_UNSUPPORTED,
            f"{name}: format {fmt or 'unknown'!r}; records hold JPEG or PNG only",
        )
    if width <= 0 or height <= 0:
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: size {width}x{height}")
    try:
        f.seek(max(0, size - _TAIL))
        tail = f.read(_TAIL)
    except Exception as exc:
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: {exc.__class__.__name__}: {exc}") from None
    trailing = _trailing_bytes(f, size, tail, fmt, name)
    if decode:
        try:
            f.seek(0)
            data = f.read()
        except Exception as exc:
            raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: {exc.__class__.__name__}: {exc}") from None
        _decode(data, fmt, name)
    shown = (height, width) if orientation in _SWAPS_AXES else (width, height)
    return ImageInfo(_FORMATS[fmt], shown[0], shown[1], orientation, width, height, trailing, fmt == "MPO", exif_unreadable)


def _decode(data: bytes, fmt: str, name: str) -> None:
    """Check that the pixels decode in full; raises ProbeError(IMAGE_CORRUPT) when they do not.

    ``create_input_fn`` decodes with ``tf.io.decode_image(..., channels=3)``; :mod:`validation.pixels`
    refuses at least what that refuses, without TensorFlow (see its doc for the one difference).
    Pillow is no substitute: it skips libpng's CRC and Adler-32 checks and never asks libjpeg for
    the end of the image, so files TensorFlow refuses pass it.
    """
    try:
        pixels.check(data, "png" if fmt == "PNG" else "jpeg")
    except pixels.PixelError as exc:
        raise ProbeError(RejectReason.IMAGE_CORRUPT, f"{name}: pixel data does not decode: {exc}") from None


def _orientation(img: Image.Image) -> tuple[int, bool]:
    """EXIF orientation, and whether the EXIF block was unreadable (then 1: the stored frame)."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: struct.error, TypeError, ... (TensorFlow ignores EXIF anyway)
        return 1, True
    return (value, False) if isinstance(value, int) and 1 <= value <= 8 else (1, False)


_END = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _trailing_bytes(f: BinaryIO, size: int, tail: bytes, fmt: str, name: str) -> int:
    """Bytes after the image's end; raises when the image has no end (truncated).

    A truncated download or copy loses the end marker. The tail shows it at
    once for nearly every file; a file padded after its end (phones write
    zeros after a JPEG's end marker) is walked segment by segment, so an end
    marker inside the data (an EXIF thumbnail's) is never taken for the end.
    """
    marker = _END[fmt]
    at = tail.rfind(marker)
    if at >= 0:
        return len(tail) - at - len(marker)
    f.seek(0)
    data = f.read()
    end = _png_end(data) if fmt == "PNG" else _jpeg_end(data)
    if end is None:
        what = "no IEND chunk" if fmt == "PNG" else "no end-of-image marker"
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: truncated {'PNG' if fmt == 'PNG' else 'JPEG'} ({what})")
    return size - end


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the EOI marker, found by walking the marker segments; None if the file ends first."""
    pos, n = 2, len(data)  # after SOI
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:
            return pos + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            if pos + 4 > n:
                return None
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
                while True:
                    pos = data.find(b"\xff", pos)
                    if pos < 0 or pos + 1 >= n:
                        return None
                    following = data[pos + 1]
                    if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed 0xFF, restart marker
                        pos += 2
                    elif following == 0xFF:
                        pos += 1
                    else:
                        break
    return None


def _png_end(data: bytes) -> int | None:
    """Offset just past the IEND chunk, found by walking the chunks; None if the file ends first."""
    pos, n = 8, len(data)  # after the signature
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos if pos <= n else None
    return None


# EXIF orientation -> the transposition that shows the image upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def rotate_upright(data: bytes, orientation: int, name: str) -> bytes:
    """Turn the pixels upright for ``orientation`` (read by :func:`probe`) and re-encode as JPEG (quality 95).

    The orientation is applied directly rather than through the rest of the EXIF
    block, which a malformed entry elsewhere would make fail.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            img.load()
            if orientation in _UPRIGHT:
                img = img.transpose(_UPRIGHT[orientation])
            return _encode_jpeg(img)
    except Exception as exc:  # any decoder failure is this file's, never the job's
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: cannot decode to rotate: {exc.__class__.__name__}: {exc}") from None


def resize_to(data: bytes, max_side: int, fmt: str, name: str) -> tuple[bytes, int, int]:
    """Shrink so the longer side is ``max_side`` (aspect kept); returns bytes, width, height."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise ProbeError(RejectReason.IMAGE_UNREADABLE, f"{name}: cannot decode to resize: {exc.__class__.__name__}: {exc}") from None
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resized = img.resize(size, Image.Resampling.BILINEAR)
    if fmt == "png":
        out = io.BytesIO()
        resized.save(out, format="PNG", optimize=False)
        return out.getvalue(), size[0], size[1]
    return _encode_jpeg(resized), size[0], size[1]


def _encode_jpeg(img: Image.Image) -> bytes:
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()
