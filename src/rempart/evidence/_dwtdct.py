"""A clean-room, vectorised reader for ``invisible-watermark``'s ``dwtDct`` method.

What the library's ``EmbedMaxDct`` (invisible-watermark 0.2.0) does, and what we mirror:

* convert the image (OpenCV BGR order) to YUV with OpenCV's BT.601 coefficients;
* with the default ``scales=[0, 36, 36]`` and its loop over ``range(2)``, only the **U**
  channel is used (Y has scale 0, V is never reached);
* take a one-level Haar DWT of the top-left ``row//4*4 x col//4*4`` crop and keep the
  approximation band ``cA`` (each coefficient is ``(a + b + c + d) / 2`` of a 2x2 pixel
  block);
* cut ``cA`` into 4x4 blocks in raster order; block ``n`` carries bit ``n % length``;
* in each block pick the coefficient of largest magnitude, ignoring the block's first
  (top-left) one, and quantise its magnitude to ``(k + 0.25 + 0.5 * bit) * scale``.
  Despite the name, no DCT is applied in this version: the "DCT" step works on the raw
  ``cA`` block;
* decoding reads ``bit = (|v| mod scale) > scale / 2`` per block and takes, per payload
  bit, the mean over its blocks, thresholded at ``mean * 255 > 127``.

No OpenCV, PyWavelets or torch is needed here: the Haar approximation band is four
additions, and the YUV conversion is three multiplications.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SCALE = 36.0
BLOCK = 4

# OpenCV's RGB -> YUV (BT.601, analog U scaling) coefficients, as used by cv2.COLOR_BGR2YUV.
_KR, _KG, _KB = 0.299, 0.587, 0.114
_KU = 0.492111


def u_channel(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """The U plane OpenCV's ``COLOR_BGR2YUV`` gives for a uint8 image (rounded, clipped)."""
    r = rgb[..., 0].astype(np.float64)
    g = rgb[..., 1].astype(np.float64)
    b = rgb[..., 2].astype(np.float64)
    y = _KR * r + _KG * g + _KB * b
    u = (b - y) * _KU + 128.0
    # OpenCV rounds and saturates to uint8; the library then works on those integers.
    return np.clip(np.rint(u), 0, 255)


@dataclass(frozen=True)
class BlockBits:
    """Per-block bits read from one plane: ``bits[n]`` is block ``n`` in raster order."""

    bits: npt.NDArray[np.uint8]

    @property
    def count(self) -> int:
        return int(self.bits.size)


def read_block_bits(u: npt.NDArray[np.float64], offset: float = 0.0) -> BlockBits:
    """Read one bit per 4x4 block of the Haar ``cA`` band of plane ``u``.

    ``offset`` is subtracted from the plane first. 0 reads images watermarked as uint8
    (the reference scripts of SD 1 and SD 2); 127.5 reads the lattice of images
    watermarked as float arrays in 0..255 (OpenCV's float YUV has U centred at 0.5,
    not 128), which is how Stability's ``sgm`` code and ``diffusers`` mark SDXL output.
    """
    rows, cols = u.shape
    r4, c4 = rows // 4 * 4, cols // 4 * 4
    x = u[:r4, :c4] - offset
    ca = (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    br, bc = ca.shape[0] // BLOCK, ca.shape[1] // BLOCK
    blocks = (
        ca[: br * BLOCK, : bc * BLOCK]
        .reshape(br, BLOCK, bc, BLOCK)
        .transpose(0, 2, 1, 3)
        .reshape(br * bc, BLOCK * BLOCK)
    )
    mag = np.abs(blocks[:, 1:])
    pos = np.argmax(mag, axis=1)
    val = mag[np.arange(mag.shape[0]), pos]
    bits = (np.mod(val, SCALE) > 0.5 * SCALE).astype(np.uint8)
    return BlockBits(bits)


@dataclass(frozen=True)
class PayloadMatch:
    """How well the block bits of one plane agree with one expected payload."""

    matched_bits: int
    total_bits: int
    #: Fraction of individual blocks whose bit equals the payload bit they carry.
    block_agreement: float
    #: How far ``block_agreement`` is above what the same blocks would give by chance
    #: (payload positions shuffled), in standard deviations.
    block_z: float
    blocks: int


def match_payload(block_bits: BlockBits, payload: npt.NDArray[np.uint8]) -> PayloadMatch:
    """Decode ``len(payload)`` bits the library's way and compare them with ``payload``."""
    n_bits = int(payload.size)
    bits = block_bits.bits
    n = bits.size
    index = np.arange(n) % n_bits
    ones = np.bincount(index, weights=bits, minlength=n_bits)
    counts = np.bincount(index, minlength=n_bits).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, ones / np.maximum(counts, 1), 0.0)
    decoded = (means * 255 > 127).astype(np.uint8)
    matched = int(np.sum(decoded == payload))

    expected = payload[index]
    agreement = float(np.mean(bits == expected)) if n else 0.0
    # Null: the plane's own share of ones, placed independently of payload position.
    q = float(bits.mean()) if n else 0.0
    f1 = float(expected.mean()) if n else 0.0
    p0 = q * f1 + (1.0 - q) * (1.0 - f1)
    sd = math.sqrt(max(p0 * (1.0 - p0), 1e-12) / max(n, 1))
    z = (agreement - p0) / sd if n else 0.0
    return PayloadMatch(matched, n_bits, agreement, z, int(n))
