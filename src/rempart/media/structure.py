"""Cheap checks of a container's outer structure: does it declare more bytes than it has?

Decoders report a cut file in many ways ("image file is truncated", "could not create
decoder object", "Unexpected end of file", or nothing at all for a video whose index comes
first). The containers themselves say how long they are, so "truncated" is decided here,
from the declared sizes, and never from an error message alone.
"""

from __future__ import annotations

from rempart.media.sniff import MediaFormat

_ISO = frozenset({MediaFormat.HEIF, MediaFormat.AVIF, MediaFormat.MP4, MediaFormat.MOV})
_EBML = frozenset({MediaFormat.WEBM, MediaFormat.MKV})


def _iso_bmff_truncated(data: bytes) -> bool:
    """Walk the top-level boxes; truncated when one claims to end past the data.

    A box type that is not four printable characters means the bytes are not boxes at all
    (damage, not truncation): the walk stops there and says "not truncated".
    """
    pos, n = 0, len(data)
    while pos + 8 <= n:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if not all(32 <= c < 127 for c in kind):
            return False
        header = 8
        if size == 1:  # 64-bit size follows the type
            if pos + 16 > n:
                return True
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:  # the box runs to the end of the file
            return False
        if size < header:
            return False
        if pos + size > n:
            return True
        pos += size
    return 0 < n - pos < 8  # a box header cut in the middle


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, length), or None if cut/invalid."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, length


def _ebml_truncated(data: bytes) -> bool:
    """Truncated when the Segment element declares more bytes than follow it."""
    pos = 0
    for expected_id in (0x1A45DFA3, 0x18538067):  # EBML header, then Segment
        ident = _vint(data, pos, keep_marker=True)
        if ident is None:
            return pos > 0 or len(data) < 4
        if ident[0] != expected_id:
            return False
        pos += ident[1]
        size = _vint(data, pos, keep_marker=False)
        if size is None:
            return True
        value, length = size
        pos += length
        if value == (1 << (7 * length)) - 1:  # "unknown size" (live streams): cannot tell
            return False
        if expected_id == 0x18538067:
            return pos + value > len(data)
        pos += value
    return False


def declares_truncation(data: bytes, fmt: MediaFormat) -> bool:
    """Whether ``data``'s own structure says bytes are missing at its end."""
    if fmt is MediaFormat.WEBP:
        return len(data) < 12 or int.from_bytes(data[4:8], "little") + 8 > len(data)
    if fmt is MediaFormat.PNG:
        return b"IEND" not in data[-64:]
    if fmt is MediaFormat.GIF:
        return not data.rstrip(b"\x00").endswith(b";")
    if fmt is MediaFormat.JPEG:
        # Trailing bytes after the end-of-image marker are common (padding, appended
        # data), so only a file with no EOI near its end counts.
        return b"\xff\xd9" not in data[-1024:]
    if fmt in _ISO:
        return _iso_bmff_truncated(data)
    if fmt in _EBML:
        return _ebml_truncated(data)
    return False
