"""A short path through PIL for small grey JPEGs such as FER2013's 48x48 faces.

`Image.open` reads a JPEG's header in Python, marker by marker, and tries its format plugins
before that: for a 48 px face that costs as much as decoding it. Here the file's bytes are read
once, the few markers that decide the result are scanned, and PIL's own libjpeg decoder (the one
`Image.open(...).load()` drives) fills a fresh grey image: the same pixels, byte for byte.

Only the plainest case takes this path: one 8-bit channel, a baseline, extended or progressive
frame, no EXIF or XMP (APP1: an orientation to honour) and no Adobe marker (APP14: a colour
transform), and no more than `Image.MAX_IMAGE_PIXELS` pixels; the caller adds that draft decoding
would not reduce it (harness.data.cache). Anything else, and any decoder complaint (a truncated or corrupt file), returns None: the
caller then opens the file the usual way, which gives the usual result or the usual error.
"""

from __future__ import annotations

from typing import NamedTuple

SOI = b"\xff\xd8"
# Start-of-frame markers for Huffman-coded baseline, extended and progressive DCT: the frames
# PIL's JPEG plugin reads without a special mode. The rest (lossless, arithmetic, hierarchical)
# go the usual way.
PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
APP1, APP14, SOS, EOI = 0xE1, 0xEE, 0xDA, 0xD9


class Frame(NamedTuple):
    """What a JPEG's start-of-frame says: bits per sample, size and channel count."""

    precision: int
    width: int
    height: int
    channels: int


def plain_frame(data: bytes) -> Frame | None:
    """The frame of a JPEG whose markers before its scan hold nothing this path must honour.

    None if the bytes are not a JPEG, carry an APP1 (EXIF/XMP) or APP14 (Adobe) segment, use a
    frame other than baseline/extended/progressive Huffman, or end before a frame and a scan.
    """
    if not data.startswith(SOI):
        return None
    frame, i, end = None, 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        if marker in (APP1, APP14, EOI) or (0xC0 <= marker <= 0xCF and marker not in PLAIN_FRAMES | {0xC4, 0xC8, 0xCC}):
            return None
        if marker == SOS:
            return frame
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in PLAIN_FRAMES:
            if length < 8 or i + 4 + length > end or frame is not None:
                return None
            frame = Frame(data[i + 4], (data[i + 7] << 8) | data[i + 8], (data[i + 5] << 8) | data[i + 6], data[i + 9])
        i += 2 + length
    return None


def grey_frame(data: bytes) -> Frame | None:
    """The frame of a JPEG this path decodes: 8-bit grey, within PIL's pixel limit; else None."""
    from PIL import Image

    frame = plain_frame(data)
    if frame is None or frame.precision != 8 or frame.channels != 1 or min(frame.width, frame.height) < 1:
        return None
    if frame.width * frame.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return None  # PIL warns or refuses: its own path says so
    return frame


def decode_grey(data: bytes, frame: Frame):  # noqa: ANN201 - a PIL image or None
    """The grey image in `data` (whose `grey_frame` is `frame`) decoded by PIL's libjpeg decoder,
    or None if the decoder does not finish cleanly (a truncated or corrupt file)."""
    from PIL import Image

    im = Image.new("L", (frame.width, frame.height))
    try:
        decoder = Image._getdecoder("L", "jpeg", ("L", ""))  # noqa: SLF001 - the decoder ImageFile.load uses
        decoder.setimage(im.im, (0, 0, frame.width, frame.height))
        consumed, error = decoder.decode(data)
        decoder.cleanup()
    except Exception:  # noqa: BLE001 - any trouble: the usual path decides
        return None
    # A finished decode reports consumed < 0; otherwise the file ended early or was corrupt.
    return im if consumed < 0 and error >= 0 else None
