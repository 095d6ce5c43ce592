"""The pixel check without TensorFlow (validation/pixels.py) against TensorFlow's own full decode.

``create_input_fn`` decodes every image with ``tf.io.decode_image(..., channels=3)``. The job's
pixel check must refuse everything that refuses: a file it accepts and TensorFlow does not would
stop training. Thousands of corruptions of real photos (the shared datasets' JPEGs, and PNGs and
JPEG variants made from them) go through both; the count of files we accept and TensorFlow refuses
must be zero. The other direction (TensorFlow decodes a file with libjpeg warnings, grey rows made
up for the damage, and we refuse it) is counted and printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import io
import json
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import shared
from validation import pixels, probe

_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _tf_accepts(data: bytes) -> bool:
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.OpError:
        return False
    return True


def _we_accept(data: bytes, fmt: str) -> bool:
    try:
        pixels.check(data, fmt)
    except pixels.PixelError:
        return False
    return True


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    pixels_: np.ndarray, colour: int, depth: int = 8, interlace: bool = False, palette: bytes = b"", extra: bytes = b""
) -> bytes:
    """A PNG written by hand: Pillow writes neither Adam7 interlacing nor 16-bit colour."""
    height, width = pixels_.shape[:2]
    itemsize = 2 if depth == 16 else 1

    def rows(block: np.ndarray) -> bytes:
        flat = block.astype(">u2" if depth == 16 else "u1").reshape(block.shape[0], -1)
        if depth < 8:  # pack sub-byte samples
            flat = np.packbits(
                np.unpackbits(flat[..., None], axis=-1)[..., 8 - depth :].reshape(flat.shape[0], -1), axis=-1
            )
        return b"".join(
            bytes([i % 5]) + _filtered(row.tobytes(), i % 5, itemsize * pixels_[0, 0].size)
            for i, row in enumerate(flat)
        )

    if interlace:
        raw = b"".join(rows(pixels_[y0::dy, x0::dx]) for x0, y0, dx, dy in _ADAM7 if pixels_[y0::dy, x0::dx].size)
    else:
        raw = rows(pixels_)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlace))
    compressed = zlib.compress(raw, 6)
    idat = b"".join(_chunk(b"IDAT", compressed[i : i + 4096]) for i in range(0, len(compressed), 4096))  # several IDATs
    plte = _chunk(b"PLTE", palette) if palette else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + extra + idat + _chunk(b"IEND", b"")


def _filtered(row: bytes, kind: int, bpp: int) -> bytes:
    """PNG filter ``kind`` applied to one row, the row above taken as zeros (valid for every kind)."""
    out = bytearray(row)
    bpp = max(1, bpp)
    for i in range(len(row) - 1, -1, -1):
        left = row[i - bpp] if i >= bpp else 0
        if kind == 1:
            out[i] = (row[i] - left) % 256
        elif kind == 3:
            out[i] = (row[i] - left // 2) % 256
        elif kind == 4:
            out[i] = (row[i] - left) % 256  # Paeth with a zero row above picks the left byte
        # 0 and 2 (up, from zeros) leave the row as it is
    return bytes(out)


def _photos() -> list[Image.Image]:
    cards = sorted(shared("cards-voc").rglob("*.jpg"))[:2]
    aquarium = sorted(shared("aquarium-yolo").rglob("*.jpg"))[:1]
    return [Image.open(p).convert("RGB") for p in cards + aquarium]


def _jpeg(img: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", **options)
    return out.getvalue()


def _jpeg_sources() -> list[bytes]:
    real = [p.read_bytes() for p in sorted(shared("cards-voc").rglob("*.jpg"))[:6]]
    real += [p.read_bytes() for p in sorted(shared("aquarium-yolo").rglob("*.jpg"))[:2]]
    photo = _photos()[0]
    made = [
        _jpeg(photo, progressive=True, quality=85),
        _jpeg(photo.convert("CMYK"), quality=90),
        _jpeg(photo.convert("CMYK"), progressive=True),
        _jpeg(photo.convert("L"), quality=80),
        _jpeg(photo, restart_marker_rows=1),
        _jpeg(photo, restart_marker_blocks=4, progressive=True),
        _jpeg(photo, subsampling=0, quality=95),
        _jpeg(photo.resize((97, 61)), quality=70),  # sizes that are not multiples of the block
    ]
    return real + made


def _png_sources() -> list[bytes]:
    photo = np.asarray(_photos()[1].resize((120, 90)))
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    alpha = np.dstack([photo, gray])
    quant = Image.fromarray(photo).quantize(16)
    index = np.asarray(quant)
    palette = bytes(quant.getpalette()[: 3 * 16])
    pillow_rgba = io.BytesIO()
    Image.fromarray(alpha).save(pillow_rgba, format="PNG", optimize=True)
    text = _chunk(b"tEXt", b"Comment\x00real photo") + _chunk(b"gAMA", struct.pack(">I", 45455))
    return [
        _png(photo, 2, extra=text),
        _png(photo, 2, interlace=True),
        _png(photo.astype(np.uint16) * 257, 2, depth=16),
        _png(gray, 0, interlace=True),
        _png(gray >> 7, 0, depth=1),
        _png(np.dstack([gray, gray]), 4),
        _png(alpha, 6, interlace=True),
        _png(index, 3, depth=4, palette=palette, extra=_chunk(b"tRNS", b"\x80" * 4)),
        pillow_rgba.getvalue(),
    ]


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, length) of a JPEG's segments up to the first scan."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, pos, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _jpeg_corruptions(src: bytes, rng: random.Random) -> tuple[str, bytes]:
    d = bytearray(src)
    segments = _segments(src)
    scan = max((p for m, p, _ in segments if m == 0xDA), default=100)
    kind = rng.choice(
        [
            "bit flip",
            "bit flips in scan",
            "random bytes mid-scan",
            "cut",
            "cut, end marker kept",
            "Huffman table",
            "quantization table",
            "frame header",
            "scan header",
            "restart markers",
            "bytes inserted",
            "bytes dropped",
        ]
    )
    if kind == "bit flip":
        at = rng.randrange(2, len(d) - 2)
        d[at] ^= 1 << rng.randrange(8)
    elif kind == "bit flips in scan":
        for _ in range(rng.choice([2, 10, 100])):
            d[rng.randrange(scan, len(d) - 2)] ^= 1 << rng.randrange(8)
    elif kind == "random bytes mid-scan":
        n = rng.choice([1, 4, 50, 400, 3000])
        at = rng.randrange(scan, max(scan + 1, len(d) - n - 2))
        d[at : at + n] = rng.randbytes(n)
    elif kind == "cut":
        d = d[: rng.randrange(2, len(d))]
    elif kind == "cut, end marker kept":
        d = d[: rng.randrange(scan, len(d) - 2)] + b"\xff\xd9"
    elif kind in ("Huffman table", "quantization table", "frame header", "scan header"):
        codes = {
            "Huffman table": {0xC4},
            "quantization table": {0xDB},
            "frame header": {0xC0, 0xC1, 0xC2},
            "scan header": {0xDA},
        }[kind]
        at_, length = rng.choice([(p, n) for m, p, n in segments if m in codes])
        d[rng.randrange(at_ + 4, at_ + 2 + length)] = rng.randrange(256)
    elif kind == "restart markers":
        found = [j for j in range(scan, len(d) - 1) if d[j] == 0xFF and 0xD0 <= d[j + 1] <= 0xD7]
        if not found:  # this source has none: damage the scan instead
            d[rng.randrange(scan, len(d) - 2)] ^= 0xFF
        else:
            j, op = rng.choice(found), rng.choice(["renumbered", "dropped", "doubled"])
            if op == "renumbered":
                d[j + 1] = 0xD0 + rng.randrange(8)
            elif op == "dropped":
                del d[j : j + 2]
            else:
                d[j:j] = d[j : j + 2]
    elif kind == "bytes inserted":
        at = rng.randrange(scan, len(d) - 2)
        d[at:at] = rng.randbytes(rng.choice([1, 7, 100]))
    else:
        at = rng.randrange(scan, len(d) - 2)
        del d[at : at + rng.choice([1, 7, 100])]
    return kind, bytes(d)


def _png_chunks(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(offset, type, body length) of each chunk."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        yield pos, data[pos + 4 : pos + 8], length
        pos += 12 + length


def _png_corruptions(src: bytes, rng: random.Random) -> tuple[str, bytes]:
    chunks = list(_png_chunks(src))
    idats = [(p, n) for p, k, n in chunks if k == b"IDAT"]

    def rewrite(pos: int, kind: bytes, body: bytes, old_length: int) -> bytes:  # a chunk replaced, its CRC made good
        return src[:pos] + _chunk(kind, body) + src[pos + 12 + old_length :]

    kind = rng.choice(
        [
            "bit flip",
            "bad chunk CRC",
            "IDAT damaged, CRC good",
            "short IDAT",
            "IDAT dropped",
            "cut",
            "random bytes",
            "IHDR changed, CRC good",
            "zlib header damaged",
            "chunk duplicated",
            "IEND moved up",
            "extra image data",
            "ancillary chunk added",
            "ancillary chunk changed, CRC good",
            "IDAT split again",
        ]
    )
    if kind == "ancillary chunk added":  # one libpng knows (and checks), or a private one it skips
        body = rng.choice([struct.pack(">I", rng.randrange(1 << 32)), rng.randbytes(rng.choice([0, 1, 9, 40]))])
        chunk = _chunk(rng.choice([b"gAMA", b"pHYs", b"tIME", b"sRGB", b"tEXt", b"bKGD", b"tRNS", b"prVt"]), body)
        pos = rng.choice([p for p, _, _ in chunks[1:]])
        return kind, src[:pos] + chunk + src[pos:]
    if kind == "ancillary chunk changed, CRC good":
        ancillary = [(p, k, n) for p, k, n in chunks if k[0] & 0x20] or [(8, b"IHDR", 13)]
        pos, name, length = rng.choice(ancillary)
        body = bytearray(src[pos + 8 : pos + 8 + length])
        if body:
            body[rng.randrange(len(body))] = rng.randrange(256)
        return kind, rewrite(pos, name, bytes(body), length)
    if kind == "IDAT split again":  # the same stream in other pieces, some empty: valid
        first, last = idats[0][0], idats[-1][0] + 12 + idats[-1][1]
        stream = b"".join(src[p + 8 : p + 8 + n] for p, n in idats)
        cuts = sorted(rng.sample(range(len(stream) + 1), 3))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        return kind, src[:first] + b"".join(_chunk(b"IDAT", piece) for piece in pieces) + src[last:]
    if kind == "bit flip":
        d = bytearray(src)
        d[rng.randrange(8, len(d))] ^= 1 << rng.randrange(8)
        return kind, bytes(d)
    if kind == "bad chunk CRC":
        pos, _, length = rng.choice(chunks)
        d = bytearray(src)
        d[pos + 8 + length + rng.randrange(4)] ^= 1 << rng.randrange(8)
        return kind, bytes(d)
    if kind in ("IDAT damaged, CRC good", "short IDAT", "zlib header damaged", "extra image data"):
        pos, length = rng.choice(idats) if kind != "zlib header damaged" else idats[0]
        body = bytearray(src[pos + 8 : pos + 8 + length])
        if kind == "IDAT damaged, CRC good":
            for _ in range(rng.choice([1, 3, 20])):
                body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        elif kind == "short IDAT":
            body = body[: rng.randrange(len(body))]
        elif kind == "zlib header damaged":
            body[rng.randrange(2)] ^= 1 << rng.randrange(8)
        else:  # the whole stream re-made with more rows than the header implies, or fewer
            whole = zlib.decompress(b"".join(src[p + 8 : p + 8 + n] for p, n in idats))
            changed = whole + bytes(rng.choice([1, 300])) if rng.random() < 0.5 else whole[: -rng.choice([1, 300])]
            first, last = idats[0][0], idats[-1][0] + 12 + idats[-1][1]
            return kind, src[:first] + _chunk(b"IDAT", zlib.compress(changed)) + src[last:]
        return kind, rewrite(pos, b"IDAT", bytes(body), length)
    if kind == "IDAT dropped":
        pos, length = rng.choice(idats)
        return kind, src[:pos] + src[pos + 12 + length :]
    if kind == "cut":
        return kind, src[: rng.randrange(8, len(src))]
    if kind == "random bytes":
        n = rng.choice([1, 4, 50, 400])
        at = rng.randrange(8, len(src) - n)
        return kind, src[:at] + rng.randbytes(n) + src[at + n :]
    if kind == "IHDR changed, CRC good":
        body = bytearray(src[16:29])
        body[rng.randrange(13)] = rng.choice([0, 1, 2, 3, 4, 6, 8, 16, 255, rng.randrange(256)])
        return kind, rewrite(8, b"IHDR", bytes(body), 13)
    if kind == "chunk duplicated":
        pos, _, length = rng.choice(chunks[:-1])
        piece = src[pos : pos + 12 + length]
        return kind, src[: pos + 12 + length] + piece + src[pos + 12 + length :]
    pos = rng.choice(idats)[0]  # IEND moved up before some image data
    return kind, src[:pos] + _chunk(b"IEND", b"") + src[pos:]


def _compare(
    sources: list[bytes], corrupt: Callable[[bytes, random.Random], tuple[str, bytes]], fmt: str, count: int, seed: int
):
    rng = random.Random(seed)
    table: collections.Counter[tuple[str, bool, bool]] = collections.Counter()
    accepted_but_refused = []
    for i in range(count):
        kind, data = corrupt(sources[i % len(sources)], rng)
        ours, theirs = _we_accept(data, fmt), _tf_accepts(data)
        table[(kind, ours, theirs)] += 1
        if ours and not theirs:
            accepted_but_refused.append((i, kind))
    print(f"\n{fmt}: {count} corruptions; kind: we accept / TF accepts -> files")
    for (kind, ours, theirs), n in sorted(table.items()):
        print(f"  {kind:28} {ours!s:5} / {theirs!s:5} -> {n}")
    return table, accepted_but_refused


def test_sources_decode_in_both_and_cover_the_variants():
    jpegs, pngs = _jpeg_sources(), _png_sources()
    for data in jpegs:
        assert _we_accept(data, "jpeg") and _tf_accepts(data)
    for data in pngs:
        assert _we_accept(data, "png") and _tf_accepts(data)
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[
            ..., :3
        ]  # the hand-written files decode as Pillow reads them
        assert np.array_equal(tf.io.decode_png(data, channels=3).numpy(), rgb)
    depth_colour_interlace = {(data[24], data[25], data[28]) for data in pngs}
    assert depth_colour_interlace >= {
        (8, 2, 0),
        (8, 2, 1),
        (16, 2, 0),
        (8, 0, 1),
        (1, 0, 0),
        (8, 4, 0),
        (8, 6, 1),
        (4, 3, 0),
    }


def test_jpegs_are_decoded_at_one_eighth_scale():
    """The whole entropy-coded stream is parsed either way; the 1/8 scale saves the inverse DCT's work."""
    photo = _photos()[0]
    assert photo.size == (960, 540)
    assert pixels.check_jpeg(_jpeg(photo)) == (68, 120)  # ceil(540 / 8), 960 / 8
    assert pixels.check_jpeg(_jpeg(photo.resize((5, 3)))) == (1, 1)


def test_no_corrupted_jpeg_that_the_check_accepts_is_refused_by_tensorflow():
    table, wrong = _compare(_jpeg_sources(), _jpeg_corruptions, "jpeg", 2400, seed=11)
    assert wrong == []
    refused_by_both = sum(n for (_, ours, theirs), n in table.items() if not ours and not theirs)
    accepted_by_both = sum(n for (_, ours, theirs), n in table.items() if ours and theirs)
    assert refused_by_both > 600 and accepted_by_both > 400  # both outcomes well represented


def test_no_corrupted_png_that_the_check_accepts_is_refused_by_tensorflow():
    table, wrong = _compare(_png_sources(), _png_corruptions, "png", 1200, seed=12)
    assert wrong == []
    refused_by_both = sum(n for (_, ours, theirs), n in table.items() if not ours and not theirs)
    accepted_by_both = sum(n for (_, ours, theirs), n in table.items() if ours and theirs)
    assert refused_by_both > 300 and accepted_by_both > 100


@pytest.mark.parametrize("dataset", ["aquarium-yolo", "cards-voc", "chess-coco"])
def test_every_image_of_the_shared_datasets_passes_the_check(dataset):
    paths = sorted(p for p in shared(dataset).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert paths
    for path in paths:
        data = path.read_bytes()
        pixels.check(data, "png" if path.suffix.lower() == ".png" else "jpeg")
        assert _tf_accepts(data), path


def test_the_probe_names_the_file_and_libjpegs_reason():
    good = _jpeg_sources()[0]
    at = _segments(good)[-1][1] + 400
    broken = good[:at] + bytes(600) + good[at + 600 :]
    with pytest.raises(probe.ProbeError) as caught:
        probe.probe(broken, "cards/IMG_1.jpg")
    assert caught.value.reason.value == "image_corrupt"
    assert caught.value.detail.startswith("cards/IMG_1.jpg: pixel data does not decode: ")
    with pytest.raises(
        probe.ProbeError, match=r"^x\.png: pixel data does not decode: CRC error in chunk IDAT at byte \d+$"
    ):
        data = bytearray(_png_sources()[0])
        pos = next(p for p, k, _ in _png_chunks(bytes(data)) if k == b"IDAT")
        data[pos + 20] ^= 1
        probe.probe(bytes(data), "x.png")


def test_a_job_that_checks_every_pixel_never_imports_tensorflow(tmp_path):
    """The point of the check: a job's processes stay free of TensorFlow (about 3.7 s and 500 MB each)."""
    jpeg, png = _jpeg_sources()[0], _png_sources()[0]
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "b.png").write_bytes(png)
    broken = jpeg[: len(jpeg) // 2] + bytes(500) + jpeg[len(jpeg) // 2 + 500 :]
    (tmp_path / "c.jpg").write_bytes(broken)
    doc = {
        "images": [{"id": i, "file_name": n, "width": 1, "height": 1} for i, n in enumerate(["a.jpg", "b.png", "c.jpg"])],
        "annotations": [{"id": i, "image_id": i, "bbox": [1, 1, 5, 5], "category_id": 1} for i in range(3)],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    script = (
        "import sys; from boxweight.cli import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "finally:\n    print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr)\n"
    )
    argv = ["prepare", "--input", str(tmp_path / "annotations.json"), "--output", str(tmp_path / "out"), "--val-fraction=0"]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "tensorflow imported: False"
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"]["images_written"] == 2 and stats["totals"]["images_quarantined"] == 1
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    images = [r for r in rejects if r["kind"] == "image"]
    assert [(r["image"], r["reason"]) for r in images] == [("c.jpg", "image_corrupt")]
    assert "c.jpg: pixel data does not decode: Corrupt JPEG data" in images[0]["detail"]
