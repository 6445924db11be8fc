"""The short grey-JPEG path (harness.data.jpeg): taken exactly where it is safe, and always the
same pixels or the same error as opening the file with PIL."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import cache, jpeg
from harness.data.cache import Preprocess, Source, decode_or_error


def _face(side: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(side), np.arange(side)) * (255 // (2 * side))
    return Image.fromarray((ramp + rng.integers(0, 60, (side, side))).clip(0, 255).astype(np.uint8), "L")


def _jpeg(im: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _both(path: Path, prep: Preprocess, box: tuple[int, int, int, int] | None = None) -> tuple[object, object]:
    """decode_or_error with the short path, and with it switched off."""
    record = Source(str(path), box, None, None)
    fast = decode_or_error(record, prep)
    original = cache._open_plain_grey_jpeg
    try:
        cache._open_plain_grey_jpeg = lambda *_: None
        usual = decode_or_error(record, prep)
    finally:
        cache._open_plain_grey_jpeg = original
    return fast, usual


@pytest.mark.parametrize("options", [{"quality": 75}, {"quality": 95, "optimize": True}, {"progressive": True}, {"quality": 30, "subsampling": 0}])
@pytest.mark.parametrize("prep", [Preprocess(32, 3), Preprocess(48, 1)])
def test_small_grey_jpegs_take_the_short_path_with_the_same_pixels(tmp_path: Path, options: dict, prep: Preprocess) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(_jpeg(_face(), **options))
    assert cache._open_plain_grey_jpeg(Source(str(path), None, None, None), prep) is not None
    fast, usual = _both(path, prep)
    assert isinstance(fast, np.ndarray) and fast.shape == (prep.image_size, prep.image_size, prep.channels)
    assert np.array_equal(fast, usual)
    with Image.open(path) as im:  # the decoded face itself, before any resizing
        assert np.array_equal(np.asarray(im.convert("L")), np.asarray(jpeg.decode_grey(path.read_bytes(), jpeg.grey_frame(path.read_bytes()))))


def test_a_face_box_is_cropped_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(_jpeg(_face(60)))
    fast, usual = _both(path, Preprocess(32, 3), box=(5, 7, 40, 44))
    assert isinstance(fast, np.ndarray) and np.array_equal(fast, usual)


def test_what_the_short_path_must_not_take_goes_the_usual_way(tmp_path: Path) -> None:
    grey = _face()
    exif = Image.Exif()
    exif[cache.ORIENTATION] = 6  # rotated: the usual path turns it upright
    cases = {
        "rgb": _jpeg(grey.convert("RGB")),
        "exif": _jpeg(grey, exif=exif.tobytes()),
        "png": (lambda b: (grey.save(b, "PNG"), b.getvalue())[1])(io.BytesIO()),
        "cmyk": _jpeg(grey.convert("CMYK")),
    }
    for name, data in cases.items():
        assert jpeg.grey_frame(data) is None, name
        path = tmp_path / f"{name}.img"
        path.write_bytes(data)
        fast, usual = _both(path, Preprocess(32, 3))
        assert isinstance(fast, np.ndarray) and np.array_equal(fast, usual), name
    # Large enough that draft decoding would shrink it: the usual path, which does.
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg(_face(200)))
    assert jpeg.grey_frame(big.read_bytes()) is not None
    assert cache._open_plain_grey_jpeg(Source(str(big), None, None, None), Preprocess(32, 3)) is None
    fast, usual = _both(big, Preprocess(32, 3))
    assert np.array_equal(fast, usual)


def test_a_truncated_or_corrupt_grey_jpeg_gets_the_usual_error(tmp_path: Path) -> None:
    data = _jpeg(_face())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    assert jpeg.grey_frame(truncated.read_bytes()) is not None  # its header is intact
    assert jpeg.decode_grey(truncated.read_bytes(), jpeg.grey_frame(truncated.read_bytes())) is None
    fast, usual = _both(truncated, Preprocess(32, 3))
    assert isinstance(fast, str) and fast == usual and "truncated" in fast
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(data[:20])
    fast, usual = _both(header_only, Preprocess(32, 3))
    assert isinstance(fast, str) and fast == usual
    missing = tmp_path / "missing.jpg"
    fast, usual = _both(missing, Preprocess(32, 3))
    assert isinstance(fast, str) and fast.startswith("FileNotFoundError") and fast == usual


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _after_soi(data: bytes, extra: bytes) -> bytes:
    return data[:2] + extra + data[2:]


def _crafted() -> dict[str, bytes]:
    """Headers PIL's parser reads differently from a naive marker walk (each must go the usual way)."""
    face = _face(48)
    base = _jpeg(face.crop((0, 0, 40, 48)))
    exif = Image.Exif()
    exif[cache.ORIENTATION] = 6
    app1 = _segment(0xE1, b"Exif\0\0" + exif.tobytes())
    jfif_end = 2 + 2 + struct.unpack(">H", base[4:6])[0]
    return {
        "exif_behind_ff00": _after_soi(base, b"\xff\x00" + struct.pack(">H", len(app1) + 2) + app1),
        "exif_behind_rst0": _after_soi(base, b"\xff\xd0" + struct.pack(">H", len(app1) + 2) + app1),
        "short_jfif_app0": _after_soi(base[:2] + base[jfif_end:], _segment(0xE0, b"JFIF\0")),
        "short_icc_app2": _after_soi(base, _segment(0xE2, b"ICC_PROFILE\0")),
        "tem_marker": _after_soi(base, b"\xff\x01\x00\x04\x00\x00"),
        "fill_bytes": _after_soi(base, b"\xff\xff"),
        "bad_quantization_table": _after_soi(base, _segment(0xDB, b"\x00" + bytes(10))),
        "two_frames": base.replace(b"\xff\xda", _segment(0xC0, bytes([8, 0, 8, 0, 8, 1, 1, 0x11, 0])) + b"\xff\xda", 1),
    }


@pytest.mark.parametrize("name", sorted(_crafted()))
def test_headers_pil_reads_its_own_way_are_left_to_pil(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(_crafted()[name])
    assert jpeg.grey_frame(path.read_bytes()) is None
    fast, usual = _both(path, Preprocess(32, 1))
    assert type(fast) is type(usual)
    assert fast == usual if isinstance(fast, str) else np.array_equal(fast, usual)


def test_restart_intervals_and_comments_take_the_short_path(tmp_path: Path) -> None:
    path = tmp_path / "restart.jpg"
    path.write_bytes(_after_soi(_jpeg(_face(), restart_marker_blocks=1), _segment(0xFE, b"a comment")))
    assert cache._open_plain_grey_jpeg(Source(str(path), None, None, None), Preprocess(32, 1)) is not None
    fast, usual = _both(path, Preprocess(32, 1))
    assert isinstance(fast, np.ndarray) and np.array_equal(fast, usual)
