"""Bounded extraction of metadata chunks (text, XMP, EXIF) from image containers.

Only the container framing is parsed here (PNG chunks, JPEG markers, RIFF chunks), by hand,
with every length checked against the bytes that remain. Nothing is decoded into pixels.
Each chunk's payload is capped at :data:`MAX_CHUNK_BYTES` and the number of chunks walked at
:data:`MAX_CHUNKS`, so a hostile file costs at most a few megabytes and milliseconds; what
was cut is reported in ``problems`` rather than silently dropped.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Final

from PIL import Image

from rempart.media.sniff import MediaFormat

#: The most bytes of one metadata chunk that are read (and decompressed, for zTXt/iTXt).
MAX_CHUNK_BYTES: Final = 1 << 20
#: The most chunks / markers walked in one file (a PNG may hold millions of tiny chunks).
MAX_CHUNKS: Final = 10_000
#: The most text entries kept (later ones are reported and dropped).
MAX_TEXT_ENTRIES: Final = 256

_XMP_JPEG_PREFIX: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_EXIF_PREFIX: Final = b"Exif\x00\x00"
_TAG_SOFTWARE: Final = 0x0131
_TAG_IMAGE_DESCRIPTION: Final = 0x010E
_TAG_EXIF_IFD: Final = 0x8769
_TAG_USER_COMMENT: Final = 0x9286


@dataclass
class Metadata:
    """What the container says about itself, as text; never pixel data."""

    #: PNG tEXt/zTXt/iTXt entries and selected EXIF tags, keyword -> text.
    texts: dict[str, str] = field(default_factory=dict)
    #: XMP packets, decoded as UTF-8 (with replacement).
    xmp: list[str] = field(default_factory=list)
    #: ``(code, message)`` for each thing that was cut short or could not be read.
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add_text(self, key: str, value: str) -> None:
        if key in self.texts:
            # Keep the first; a duplicate keyword is unusual but not an error.
            return
        if len(self.texts) >= MAX_TEXT_ENTRIES:
            self.problems.append(("too_many_chunks", f"text entry {key!r} dropped: too many"))
            return
        self.texts[key] = value


def _cap(payload: bytes, what: str, meta: Metadata) -> bytes:
    if len(payload) > MAX_CHUNK_BYTES:
        meta.problems.append(
            (
                "truncated",
                f"{what} is {len(payload):,} bytes; only the first {MAX_CHUNK_BYTES:,} were read",
            )
        )
        return payload[:MAX_CHUNK_BYTES]
    return payload


def _inflate(compressed: bytes, what: str, meta: Metadata) -> bytes | None:
    """Decompress at most MAX_CHUNK_BYTES (a zlib bomb stops there)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(compressed, MAX_CHUNK_BYTES)
    except zlib.error as exc:
        meta.problems.append(("corrupt_chunk", f"{what}: bad zlib data ({exc})"))
        return None
    if d.unconsumed_tail:
        meta.problems.append(
            ("truncated", f"{what} decompresses to more than {MAX_CHUNK_BYTES:,} bytes; cut")
        )
    return out


def _png(data: bytes, meta: Metadata) -> None:
    pos = 8
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            return
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        start, end = pos + 8, pos + 8 + length
        if end > len(data):
            meta.problems.append(("corrupt_chunk", f"PNG chunk {ctype!r} runs past the file"))
            end = len(data)
        pos = end + 4  # skip the CRC
        if ctype == b"IEND":
            return
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        name = ctype.decode("ascii")
        payload = data[start:end]
        key_raw, sep, rest = payload.partition(b"\x00")
        if not sep or not key_raw or len(key_raw) > 79:
            meta.problems.append(("corrupt_chunk", f"PNG {name} chunk without a valid keyword"))
            continue
        key = key_raw.decode("latin-1")
        what = f"PNG {name} {key!r}"
        if ctype == b"tEXt":
            meta.add_text(key, _cap(rest, what, meta).decode("latin-1"))
        elif ctype == b"zTXt":
            raw = _inflate(rest[1:], what, meta)
            if raw is not None:
                meta.add_text(key, raw.decode("latin-1"))
        else:
            if len(rest) < 2:
                meta.problems.append(("corrupt_chunk", f"{what} is too short"))
                continue
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            if compressed:
                inflated = _inflate(text, what, meta)
                if inflated is None:
                    continue
                text = inflated
            else:
                text = _cap(text, what, meta)
            decoded = text.decode("utf-8", errors="replace")
            if key == "XML:com.adobe.xmp":
                meta.xmp.append(decoded)
            else:
                meta.add_text(key, decoded)
    meta.problems.append(("too_many_chunks", f"PNG has more than {MAX_CHUNKS:,} chunks; stopped"))


def decode_user_comment(raw: bytes) -> str:
    """An EXIF UserComment as text (8-byte charset prefix, then the text)."""
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        # The standard says "UCS-2" without byte order; writers use both. ASCII-range text
        # has its zero bytes first in big-endian.
        even_zeros = body[0::2].count(0)
        odd_zeros = body[1::2].count(0)
        codec = "utf-16-be" if even_zeros >= odd_zeros else "utf-16-le"
        return body.decode(codec, errors="replace").rstrip("\x00")
    if prefix.startswith((b"ASCII", b"\x00\x00\x00\x00\x00\x00\x00\x00")):
        return body.decode("utf-8", errors="replace").rstrip("\x00 ")
    return raw.decode("utf-8", errors="replace").rstrip("\x00 ")


def _exif(payload: bytes, meta: Metadata) -> None:
    payload = _cap(payload, "EXIF block", meta)
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; we report it ourselves
            exif.load(payload)
            software = exif.get(_TAG_SOFTWARE)
            description = exif.get(_TAG_IMAGE_DESCRIPTION)
            comment = exif.get_ifd(_TAG_EXIF_IFD).get(_TAG_USER_COMMENT)
    except Exception as exc:  # Pillow raises many types on corrupt EXIF
        meta.problems.append(("corrupt_exif", f"EXIF could not be read ({type(exc).__name__})"))
        return
    if isinstance(software, str):
        meta.add_text("exif:Software", software)
    if isinstance(description, str):
        meta.add_text("exif:ImageDescription", description)
    if isinstance(comment, bytes):
        meta.add_text("exif:UserComment", decode_user_comment(comment))
    elif isinstance(comment, str):
        meta.add_text("exif:UserComment", comment)


def _jpeg(data: bytes, meta: Metadata) -> None:
    pos = 2
    for _ in range(MAX_CHUNKS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            meta.problems.append(("corrupt_chunk", "JPEG segment with an impossible length"))
            return
        payload = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xE1:
            if payload.startswith(_EXIF_PREFIX):
                _exif(payload[len(_EXIF_PREFIX) :], meta)
            elif payload.startswith(_XMP_JPEG_PREFIX):
                meta.xmp.append(payload[len(_XMP_JPEG_PREFIX) :].decode("utf-8", "replace"))
        elif marker == 0xFE:  # COM
            meta.add_text("jpeg:Comment", payload.decode("utf-8", errors="replace"))
    meta.problems.append(("too_many_chunks", f"JPEG has more than {MAX_CHUNKS:,} segments"))


def _webp(data: bytes, meta: Metadata) -> None:
    pos = 12
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            return
        ctype, length = struct.unpack("<4sI", data[pos : pos + 8])
        start, end = pos + 8, pos + 8 + length
        if end > len(data):
            meta.problems.append(("corrupt_chunk", f"WebP chunk {ctype!r} runs past the file"))
            end = len(data)
        pos = end + (length & 1)
        if ctype == b"EXIF":
            payload = data[start:end]
            if payload.startswith(_EXIF_PREFIX):
                payload = payload[len(_EXIF_PREFIX) :]
            _exif(payload, meta)
        elif ctype == b"XMP ":
            xmp = _cap(data[start:end], "WebP XMP chunk", meta)
            meta.xmp.append(xmp.decode("utf-8", errors="replace"))
    meta.problems.append(("too_many_chunks", f"WebP has more than {MAX_CHUNKS:,} chunks"))


def extract_metadata(data: bytes, fmt: MediaFormat | None) -> Metadata:
    """Text, XMP and EXIF metadata of ``data`` (PNG, JPEG and WebP; others give nothing)."""
    meta = Metadata()
    if fmt is MediaFormat.PNG:
        _png(data, meta)
    elif fmt is MediaFormat.JPEG:
        _jpeg(data, meta)
    elif fmt is MediaFormat.WEBP:
        _webp(data, meta)
    return meta
