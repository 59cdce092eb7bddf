"""Hashes of media: PDQ (with its 8 dihedral variants), MD5/SHA-256, and video frame PDQ.

:func:`hash_media` is the one entry point from bytes to hashes; the rest is pure functions
on pixels and hashes.
"""

from rempart.hashing.borders import BorderBox, find_borders, trim_borders
from rempart.hashing.exact import ExactHashes, exact_hashes
from rempart.hashing.media import DRAFT_MIN_SIDE, MediaHashes, hash_media
from rempart.hashing.pdq import (
    DIHEDRAL_NAMES,
    PDQ_QUALITY_GATE,
    PDQ_THRESHOLD,
    DihedralName,
    PdqDihedral,
    PdqHash,
    pdq_dihedral,
    pdq_distance,
    pdq_hash,
)
from rempart.hashing.video import FrameHash, VideoMatch, hash_frames, vpdq_match

__all__ = [
    "DIHEDRAL_NAMES",
    "DRAFT_MIN_SIDE",
    "PDQ_QUALITY_GATE",
    "PDQ_THRESHOLD",
    "BorderBox",
    "DihedralName",
    "ExactHashes",
    "FrameHash",
    "MediaHashes",
    "PdqDihedral",
    "PdqHash",
    "VideoMatch",
    "exact_hashes",
    "find_borders",
    "hash_frames",
    "hash_media",
    "pdq_dihedral",
    "pdq_distance",
    "pdq_hash",
    "trim_borders",
    "vpdq_match",
]
