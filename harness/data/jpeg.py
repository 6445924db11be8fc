"""A short path through PIL for small grey JPEGs such as FER2013's 48x48 faces.

`Image.open` reads a JPEG's header in Python, marker by marker, and tries its format plugins
before that: for a 48 px face that costs as much as decoding it. Here the file's bytes are read
once, the few markers that decide the result are scanned, and PIL's own libjpeg decoder (the one
`Image.open(...).load()` drives) fills a fresh grey image: the same pixels, byte for byte.

Only the plainest case takes this path: one 8-bit channel, a baseline, extended or progressive
frame, a header of nothing but the segments such a file needs (no EXIF or XMP with an orientation
to honour, no Adobe colour transform, nothing PIL would reject), and no more than
`Image.MAX_IMAGE_PIXELS` pixels; the caller (harness.data.cache) adds that draft decoding would
not shrink it. Anything else, and any decoder complaint (a truncated or corrupt file), gives None:
the caller then opens the file the usual way, which gives the usual result or the usual error.
"""

from __future__ import annotations

from typing import NamedTuple

SOI = b"\xff\xd8"
# Start-of-frame markers for Huffman-coded baseline, extended and progressive DCT.
PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
APP0, DHT, DQT, DRI, COM, SOS = 0xE0, 0xC4, 0xDB, 0xDD, 0xFE, 0xDA
# The only segments allowed before the scan: those PIL's parser reads without effect on the pixels
# (checked below as strictly as it checks them). Any other marker, a fill byte, junk between
# segments or a standalone marker sends the file the usual way.
PLAIN_SEGMENTS = PLAIN_FRAMES | {APP0, DHT, DQT, DRI, COM}


class Frame(NamedTuple):
    """What a JPEG's start-of-frame says: bits per sample, size and channel count."""

    precision: int
    width: int
    height: int
    channels: int


def plain_frame(data: bytes) -> Frame | None:
    """The frame of a JPEG whose header holds only segments this path can vouch for, or None.

    Segments follow one another with no fill or junk; each is a JFIF APP0 that PIL parses, a
    quantization table PIL accepts, a Huffman table, a restart interval, a comment or the one
    baseline/extended/progressive frame; the scan must start within `data`. Everything else (APP1
    EXIF/XMP, APP2 ICC/MPF, APP14 Adobe, other frames) is None.
    """
    if not data.startswith(SOI):
        return None
    frame, i, end = None, 2, len(data)
    while i + 4 <= end and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == SOS:
            return frame
        length = (data[i + 2] << 8) | data[i + 3]
        payload = data[i + 4 : i + 2 + length]
        if marker not in PLAIN_SEGMENTS or length < 2 or i + 2 + length > end or not _segment_ok(marker, payload):
            return None
        if marker in PLAIN_FRAMES:
            if frame is not None:
                return None
            frame = Frame(payload[0], (payload[3] << 8) | payload[4], (payload[1] << 8) | payload[2], payload[5])
        i += 2 + length
    return None


def _segment_ok(marker: int, payload: bytes) -> bool:
    """Whether PIL's parser reads this segment without an error (JpegImagePlugin's APP, DQT, SOF)."""
    if marker == APP0:
        return payload.startswith(b"JFIF") and len(payload) >= 12
    if marker == DQT:
        while payload:
            size = 1 + (1 if payload[0] // 16 == 0 else 2) * 64
            if len(payload) < size:
                return False
            payload = payload[size:]
        return True
    if marker in PLAIN_FRAMES:
        return len(payload) >= 6
    return True


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
    decoder = None
    try:
        decoder = Image._getdecoder("L", "jpeg", ("L", ""))  # noqa: SLF001 - the decoder ImageFile.load uses
        decoder.setimage(im.im, (0, 0, frame.width, frame.height))
        consumed, error = decoder.decode(data)
    except Exception:  # noqa: BLE001 - any trouble: the usual path decides
        return None
    finally:
        if decoder is not None:
            decoder.cleanup()
    # A finished decode reports consumed < 0; otherwise the file ended early or was corrupt.
    return im if consumed < 0 and error >= 0 else None
