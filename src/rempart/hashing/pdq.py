"""PDQ, Meta's perceptual image hash, through Meta's own C++ (the ``pdqhash`` binding).

A PDQ hash is 256 bits; two images are "the same picture" when their hashes differ in at
most 31 bits (Meta's recommended threshold). Each hash comes with a quality from 0 to 100:
flat or featureless images give low quality, and their hashes collide with each other --
hence the quality gate (50) that the matcher applies. Hashing reports every hash, whatever
its quality.

Hex form: bit 0 of the C++ hash vector is the most significant bit of the first byte, which
is the order of Meta's reference hashes (``expected-wasm.csv``) and of ThreatExchange.

Dihedral variants
-----------------
PDQ is not invariant to rotation or mirroring, but Meta's C++ computes the hashes of all 8
rotations and flips of an image at almost the cost of one (they share the DCT). Rempart
names them **by the edit a query would have undergone**, so that a match reads naturally:

    "the query matched the bank's original through ``rot90``"
    = the query is the bank's picture rotated 90 degrees (counter-clockwise).

That is: ``variants[name]`` is the hash of the image with the edit ``name`` *undone*; it
is close to the hash of the original when the image is the original edited by ``name``.
The names follow Meta's test images (``pdq/data/reg-test-input/dih/``):

=============== ====================================================== ==============
name            the edit (the query is the original ...)               Meta's test file
=============== ====================================================== ==============
``original``    unchanged                                              bridge-1-original
``rot90``       rotated 90 degrees counter-clockwise (``np.rot90``)    bridge-2-rotate-90
``rot180``      rotated 180 degrees                                    bridge-3-rotate-180
``rot270``      rotated 270 degrees counter-clockwise (90 clockwise)   bridge-4-rotate-270
``flipx``       flipped top to bottom (mirrored across the x axis)     bridge-5-flipx
``flipy``       mirrored left to right (across the y axis)             bridge-6-flipy
``flip_plus1``  transposed (mirrored across the main diagonal)         bridge-7-flip-plus-1
``flip_minus1`` mirrored across the anti-diagonal                      bridge-8-flip-minus-1
=============== ====================================================== ==============

Meta's C++ returns the hashes of the image *with* each edit applied, in the order original,
rotate90, rotate180, rotate270, flipX, flipY, flipPlus1, flipMinus1. Flips and the 180
degree rotation undo themselves; a 90 degree rotation is undone by a 270 degree one, so our
``rot90`` is its ``rotate270`` and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pdqhash
from numpy.typing import NDArray

DihedralName = Literal[
    "original", "rot90", "rot180", "rot270", "flipx", "flipy", "flip_plus1", "flip_minus1"
]

#: The variant names, in a stable order (``original`` first).
DIHEDRAL_NAMES: Final[tuple[DihedralName, ...]] = (
    "original",
    "rot90",
    "rot180",
    "rot270",
    "flipx",
    "flipy",
    "flip_plus1",
    "flip_minus1",
)

# For each of our names, the index in pdqhash.compute_dihedral's output of the inverse edit.
_CPP_INDEX: Final[dict[DihedralName, int]] = {
    "original": 0,
    "rot90": 3,  # undo a 90 degree rotation: rotate 270
    "rot180": 2,
    "rot270": 1,  # undo a 270 degree rotation: rotate 90
    "flipx": 4,
    "flipy": 5,
    "flip_plus1": 6,
    "flip_minus1": 7,
}

#: Distance at or under which two PDQ hashes match (Meta's recommendation).
PDQ_THRESHOLD: Final = 31
#: Quality under which a PDQ hash should not be matched (Meta's recommendation).
PDQ_QUALITY_GATE: Final = 50


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash (32 bytes) and its quality (0-100)."""

    code: bytes
    quality: int

    @property
    def hex(self) -> str:
        """The 64-character lowercase hex form (Meta's)."""
        return self.code.hex()


@dataclass(frozen=True)
class PdqDihedral:
    """The PDQ hashes of the 8 dihedral variants of one image (see the module doc)."""

    variants: dict[DihedralName, bytes]
    quality: int

    @property
    def original(self) -> PdqHash:
        """The hash of the image as it is."""
        return PdqHash(self.variants["original"], self.quality)

    def hex(self) -> dict[str, str]:
        """``{name: hex}`` in :data:`DIHEDRAL_NAMES` order."""
        return {name: self.variants[name].hex() for name in DIHEDRAL_NAMES}


def _bits_to_bytes(vector: NDArray[np.integer]) -> bytes:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()


def _check(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"PDQ needs an RGB uint8 array (rows, columns, 3), got {rgb.dtype} {rgb.shape}"
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"PDQ needs at least one pixel, got {rgb.shape}")
    return rgb


def pdq_hash(rgb: NDArray[np.uint8]) -> PdqHash:
    """The PDQ hash of an RGB ``uint8`` image."""
    vector, quality = pdqhash.compute(_check(rgb))
    return PdqHash(_bits_to_bytes(vector), int(quality))


def pdq_dihedral(rgb: NDArray[np.uint8]) -> PdqDihedral:
    """The PDQ hashes of the 8 rotations and flips of an RGB ``uint8`` image, by edit name."""
    vectors, quality = pdqhash.compute_dihedral(_check(rgb))
    return PdqDihedral(
        {name: _bits_to_bytes(vectors[i]) for name, i in _CPP_INDEX.items()}, int(quality)
    )


def _as_bytes(h: bytes | str) -> bytes:
    return bytes.fromhex(h) if isinstance(h, str) else h


def pdq_distance(a: bytes | str, b: bytes | str) -> int:
    """Hamming distance between two PDQ hashes (bytes or hex)."""
    x, y = _as_bytes(a), _as_bytes(b)
    if len(x) != 32 or len(y) != 32:
        raise ValueError("PDQ hashes are 32 bytes (64 hex digits)")
    return (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).bit_count()
