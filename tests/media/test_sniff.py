"""Format detection from the bytes, never the name."""

from __future__ import annotations

import numpy as np
import pytest

from rempart.media import MediaFormat, sniff_format


@pytest.mark.parametrize(
    ("pil_format", "expected"),
    [
        ("JPEG", MediaFormat.JPEG),
        ("PNG", MediaFormat.PNG),
        ("WEBP", MediaFormat.WEBP),
        ("GIF", MediaFormat.GIF),
        ("BMP", MediaFormat.BMP),
        ("TIFF", MediaFormat.TIFF),
        ("HEIF", MediaFormat.HEIF),
        ("AVIF", MediaFormat.AVIF),
    ],
)
def test_generated_images_are_recognised(encode, pil_format, expected):
    import pillow_heif  # noqa: F401  (registers the HEIF writer)

    rng = np.random.default_rng(1)
    data = encode(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), pil_format)
    fmt = sniff_format(data)
    assert fmt is expected
    assert fmt.kind == "image"


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 16


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_ftyp(b"heic", b"mif1", b"heic"), MediaFormat.HEIF),
        (_ftyp(b"mif1", b"heic", b"miaf"), MediaFormat.HEIF),
        (_ftyp(b"mif1", b"avif", b"miaf"), MediaFormat.AVIF),
        (_ftyp(b"avif", b"mif1"), MediaFormat.AVIF),
        (_ftyp(b"msf1", b"hevc"), MediaFormat.HEIF),
        (_ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), MediaFormat.MP4),
        (_ftyp(b"mp42", b"isom"), MediaFormat.MP4),
        (_ftyp(b"M4V ", b"M4V "), MediaFormat.MP4),
        (_ftyp(b"qt  ", b"qt  "), MediaFormat.MOV),
        (_ftyp(b"zzzz", b"isom"), MediaFormat.MP4),  # unknown major: compatible brands decide
        (_ftyp(b"zzzz", b"yyyy"), None),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x10mdat", MediaFormat.MOV),  # old QuickTime
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", MediaFormat.WEBM),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", MediaFormat.MKV),
    ],
)
def test_container_brands(data, expected):
    fmt = sniff_format(data)
    assert fmt is expected
    if expected in (MediaFormat.MP4, MediaFormat.MOV, MediaFormat.WEBM, MediaFormat.MKV):
        assert fmt.kind == "video"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",  # too short to be a JPEG
        b"hello, this is text and not an image\n",
        b"BM but a text file that starts with BM\n",  # BMP magic without a DIB header
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"%PDF-1.7\n",
        b"RIFF\x00\x00\x00\x00AVI LIST",  # RIFF, but not WebP
    ],
)
def test_unknown_bytes_are_not_claimed(data):
    assert sniff_format(data) is None
