"""Detect the invisible watermarks Stable Diffusion pipelines embed (``dwtDct`` method).

The reference Stable Diffusion scripts mark every output with the ``invisible-watermark``
library's ``dwtDct`` method: SD 1 with the bytes ``StableDiffusionV1`` (136 bits), SD 2
with ``SDV2`` (32 bits), SDXL with the 48 bits ``0xB3EC907BB19E``. This module reads those
marks with its own numpy decoder (see :mod:`rempart.evidence._dwtdct`); it needs neither
the library, OpenCV nor torch.

Trade-off, stated plainly: the mark is weak by design. It lives in the chroma (U) plane,
dies under heavy compression, cropping, rotation or any regeneration, and anyone can strip
it. A finding is a useful *positive* signal ("this came out of an SD pipeline, or someone
copied its mark"); the absence of a finding means nothing.

Only findings at ``inconclusive`` or above are returned. ``likely`` and ``very likely``
additionally require block-level evidence (``details["block_z"]``, see
:data:`MIN_BLOCK_Z`), which keeps chance bit matches on clean images from ever reaching
those bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from rempart.errors import MediaError
from rempart.evidence import _dwtdct

Source = Literal["watermark-sd1", "watermark-sd2", "watermark-sdxl"]
Band = Literal["none", "inconclusive", "likely", "very likely"]

_BAND_RANK: dict[str, int] = {"none": 0, "inconclusive": 1, "likely": 2, "very likely": 3}

#: ``likely``/``very likely`` need the individual blocks to agree with the payload this many
#: standard deviations above chance. A real, fresh mark scores in the tens (hundreds of
#: blocks per bit); clean images score around 0. Chance bit-majority matches (about 1 in
#: 360 decodes reaches SDXL's "likely" by luck) do not move this statistic enough.
MIN_BLOCK_Z = 5.0

#: The library refuses images under 256 x 256 pixels; so do we.
MIN_PIXELS = 256 * 256

#: Side lengths SD models generate at; a resized image is scaled back to these and re-read.
NATIVE_SIDES = (512, 768, 1024)


@dataclass(frozen=True)
class _Payload:
    source: Source
    bits: npt.NDArray[np.uint8]
    #: Bit-match thresholds (inconclusive, likely, very likely), inclusive.
    thresholds: tuple[int, int, int]
    #: Plane offsets to try; see ``_dwtdct.read_block_bits``.
    offsets: tuple[float, ...]


def _bytes_bits(data: bytes) -> npt.NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def _int_bits(value: int, n: int) -> npt.NDArray[np.uint8]:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


# SDXL's thresholds are Stability's (generative-models, scripts/demo/detect.py): <= 27 none,
# 28-33 inconclusive, 34-35 likely, > 35 very likely. SD 1 and SD 2 have no published bands;
# theirs are the smallest match counts whose chance probability (binomial, p = 1/2) is no
# larger than that of SDXL's threshold: P(>= 28 of 48) = 0.16, P(>= 34) = 0.0028,
# P(>= 36) = 0.00036.
_PAYLOADS: tuple[_Payload, ...] = (
    _Payload("watermark-sd1", _bytes_bits(b"StableDiffusionV1"), (75, 85, 89), (0.0,)),
    _Payload("watermark-sd2", _bytes_bits(b"SDV2"), (20, 25, 26), (0.0,)),
    # SDXL output is marked as a float array (Stability's sgm code, diffusers), whose U
    # lattice sits 127.5 below the uint8 one; the uint8 lattice is tried too.
    _Payload("watermark-sdxl", _int_bits(0xB3EC907BB19E, 48), (28, 34, 36), (0.0, 127.5)),
)


@dataclass(frozen=True)
class WatermarkFinding:
    """One payload read from an image, with its confidence band.

    ``size`` is the ``(width, height)`` the image was read at: its own size, or a native SD
    size it was scaled to when the image looked resized.
    """

    source: Source
    matched_bits: int
    total_bits: int
    band: Band
    size: tuple[int, int]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the finding."""
        return {
            "source": self.source,
            "matched_bits": self.matched_bits,
            "total_bits": self.total_bits,
            "band": self.band,
            "size": list(self.size),
            "details": dict(self.details),
        }


def _band(matched: int, thresholds: tuple[int, int, int]) -> Band:
    inconclusive, likely, very_likely = thresholds
    if matched >= very_likely:
        return "very likely"
    if matched >= likely:
        return "likely"
    if matched >= inconclusive:
        return "inconclusive"
    return "none"


def candidate_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """Sizes to read an image at: its own, then native SD sizes of the same aspect ratio.

    For each native side we try it as the short and as the long side, the other side rounded
    to a multiple of 8 (SD sizes are). At most seven sizes, so the cost stays bounded.
    """
    sizes: list[tuple[int, int]] = [(width, height)]
    short, long_ = min(width, height), max(width, height)
    for side in NATIVE_SIDES:
        for reference in (short, long_):
            scale = side / reference
            # ``side`` is a multiple of 8, so the reference side lands on it exactly.
            size = (round(width * scale / 8) * 8, round(height * scale / 8) * 8)
            if size[0] * size[1] >= MIN_PIXELS and size not in sizes:
                sizes.append(size)
    return sizes


def _check(rgb: np.ndarray) -> npt.NDArray[np.uint8]:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MediaError(
            f"expected an RGB array of shape (height, width, 3), got {getattr(rgb, 'shape', None)}",
            code="unsupported_format",
            hint="decode the image with rempart.media and convert it to RGB first",
        )
    if rgb.dtype != np.uint8:
        raise MediaError(
            f"expected a uint8 RGB array, got {rgb.dtype}",
            code="unsupported_format",
            hint="convert to 8-bit RGB (Pillow: image.convert('RGB'))",
        )
    return rgb


def detect_watermarks(rgb: np.ndarray) -> list[WatermarkFinding]:
    """Look for the SD 1, SD 2 and SDXL ``dwtDct`` watermarks in an RGB uint8 image.

    The image is read at its own size and, unless it already has a native size, scaled
    (bicubic) to the native SD sizes of :func:`candidate_sizes`. For each payload the best
    reading is kept. Returns findings at ``inconclusive`` or above, strongest first; an
    empty list is *not* evidence that an image is authentic. Images under 256 x 256 pixels
    give no findings (the library cannot mark them).
    """
    rgb = _check(rgb)
    height, width = rgb.shape[:2]
    if width * height < MIN_PIXELS:
        return []
    pil: Image.Image | None = None
    best: dict[Source, WatermarkFinding] = {}
    for size in candidate_sizes(width, height):
        if size == (width, height):
            plane_rgb = rgb
        else:
            if pil is None:
                pil = Image.fromarray(np.ascontiguousarray(rgb))
            plane_rgb = np.asarray(pil.resize(size, Image.Resampling.BICUBIC))
        u = _dwtdct.u_channel(plane_rgb)
        blocks = {off: _dwtdct.read_block_bits(u, off) for off in (0.0, 127.5)}
        for payload in _PAYLOADS:
            for offset in payload.offsets:
                m = _dwtdct.match_payload(blocks[offset], payload.bits)
                band = _band(m.matched_bits, payload.thresholds)
                if _BAND_RANK[band] >= _BAND_RANK["likely"] and m.block_z < MIN_BLOCK_Z:
                    band = "inconclusive"
                finding = WatermarkFinding(
                    source=payload.source,
                    matched_bits=m.matched_bits,
                    total_bits=m.total_bits,
                    band=band,
                    size=size,
                    details={
                        "method": "dwtDct",
                        "resized": size != (width, height),
                        "lattice": "float" if offset else "uint8",
                        "block_agreement": round(m.block_agreement, 4),
                        "block_z": round(m.block_z, 2),
                        "blocks": m.blocks,
                    },
                )
                if _key(finding) > _key(best.get(payload.source)):
                    best[payload.source] = finding
    found = [f for f in best.values() if f.band != "none"]
    return sorted(found, key=_key, reverse=True)


def _key(f: WatermarkFinding | None) -> tuple[int, float, int]:
    if f is None:
        return (-1, 0.0, 0)
    return (_BAND_RANK[f.band], f.matched_bits / f.total_bits, int(f.details["block_z"] * 100))
