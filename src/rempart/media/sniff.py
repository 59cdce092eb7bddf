"""Recognising a file's format from its first bytes (magic numbers), never from its name.

A file name is chosen by whoever uploads the file; its bytes are what a decoder will parse.
Sniffing the bytes first lets us hand each file to exactly one decoder, chosen by us, and
refuse everything else before any parser runs (Pillow alone knows ~40 formats, some with
large attack surfaces; FFmpeg even more, including playlist formats that open other files).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

MediaKind = Literal["image", "video"]


class MediaFormat(StrEnum):
    """A container format Rempart decodes. The value is the short name used in JSON."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    BMP = "bmp"
    TIFF = "tiff"
    HEIF = "heif"
    AVIF = "avif"
    MP4 = "mp4"
    MOV = "mov"
    WEBM = "webm"
    MKV = "mkv"

    @property
    def kind(self) -> MediaKind:
        """``"video"`` for video containers, else ``"image"``."""
        return "video" if self in _VIDEO else "image"


_VIDEO = frozenset({MediaFormat.MP4, MediaFormat.MOV, MediaFormat.WEBM, MediaFormat.MKV})

# ISO base media file format ("ftyp" box) brands. HEIF still images and image sequences
# share the container with MP4/MOV video; the brands say which is which.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# Generic still-image brands: HEVC (HEIF) or AV1 (AVIF), said by the other brands.
_MIAF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", b"miaf"})
_MOV_BRANDS = frozenset({b"qt  "})
_MP4_BRANDS = frozenset(
    {
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"iso7",
        b"iso8",
        b"iso9",
        b"mp41",
        b"mp42",
        b"mp71",
        b"avc1",
        b"av01",
        b"dash",
        b"M4V ",
        b"M4VH",
        b"M4VP",
        b"mp4v",
        b"f4v ",
        b"MSNV",
        b"3gp4",
        b"3gp5",
        b"3gp6",
        b"3gp7",
        b"3gg6",
        b"3g2a",
        b"3g2b",
        b"3g2c",
        b"XAVC",
        b"NDAS",
        b"mmp4",
        b"CAEP",
    }
)
# Old QuickTime files may start with another atom than "ftyp".
_QT_FIRST_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
# BMP: the DIB header sizes that exist (OS/2 1.x, BITMAPINFOHEADER ... V5). Checking it
# keeps "BM" -- two printable letters -- from claiming any text file that starts with them.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _iso_bmff(data: bytes) -> MediaFormat | None:
    if len(data) < 12 or data[4:8] != b"ftyp":
        if len(data) >= 8 and data[4:8] in _QT_FIRST_ATOMS:
            return MediaFormat.MOV
        return None
    size = int.from_bytes(data[0:4], "big")
    major = data[8:12]
    # The compatible brands follow the minor version; a box size is at most the data we have.
    end = min(size if size >= 16 else 16, len(data), 4096)
    compatible = [data[i : i + 4] for i in range(16, end - 3, 4)]
    for brands in ([major], compatible):
        # The major brand decides; compatible brands only when it is unknown.
        if any(b in _AVIF_BRANDS for b in brands):
            return MediaFormat.AVIF
        if any(b in _HEIF_BRANDS for b in brands):
            return MediaFormat.HEIF
        if any(b in _MIAF_BRANDS for b in brands):
            return (
                MediaFormat.AVIF
                if any(b in _AVIF_BRANDS for b in compatible)
                else (MediaFormat.HEIF)
            )
        if any(b in _MOV_BRANDS for b in brands):
            return MediaFormat.MOV
        if any(b in _MP4_BRANDS for b in brands):
            return MediaFormat.MP4
    return None


def _ebml(data: bytes) -> MediaFormat:
    # The EBML header carries the DocType ("webm" or "matroska") in its first few dozen bytes.
    head = data[:64]
    return MediaFormat.WEBM if b"webm" in head else MediaFormat.MKV


def sniff_format(data: bytes) -> MediaFormat | None:
    """The format of ``data`` from its leading bytes, or ``None`` if it is none we decode.

    Only the first few kilobytes are looked at, so this is cheap on any input.
    """
    head = bytes(data[:4096])
    if head.startswith(b"\xff\xd8\xff"):
        return MediaFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaFormat.PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return MediaFormat.GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaFormat.WEBP
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return MediaFormat.TIFF
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    ):
        return MediaFormat.BMP
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(head)
    return _iso_bmff(head)
