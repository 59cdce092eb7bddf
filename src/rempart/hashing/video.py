"""Video hashing, vPDQ-style: the PDQ hash of sampled frames, and the rule that matches them.

Meta's vPDQ hashes frames sampled at a fixed rate (one per second here) and calls two videos
the same when enough frames of one are within the PDQ threshold of *some* frame of the
other. Frame order and timing are ignored, so a trimmed, re-encoded or slightly speeded-up
copy still matches; a single shared frame does not (the share must reach 80% by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from numpy.typing import NDArray

from rempart.hashing.pdq import PDQ_QUALITY_GATE, PDQ_THRESHOLD, pdq_hash
from rempart.media.video import VideoFrame

#: Share of the query's frames that must match for vPDQ to call two videos the same.
DEFAULT_MATCH_SHARE = 0.8


class FrameHash(TypedDict):
    """The PDQ hash of one sampled frame (the JSON shape: ``{timestamp, pdq, quality}``)."""

    timestamp: float
    pdq: str
    quality: int


def hash_frames(frames: Iterable[VideoFrame]) -> list[FrameHash]:
    """The PDQ hash of each frame, with its timestamp (low-quality hashes included)."""
    out: list[FrameHash] = []
    for frame in frames:
        h = pdq_hash(frame.rgb)
        out.append(FrameHash(timestamp=frame.timestamp_s, pdq=h.hex, quality=h.quality))
    return out


@dataclass(frozen=True)
class VideoMatch:
    """The outcome of the vPDQ rule for one query video against one bank video."""

    #: Share of the query's usable frames within the distance of some bank frame.
    query_share: float
    #: Share of the bank video's usable frames within the distance of some query frame.
    bank_share: float
    matched: bool
    #: The smallest frame-to-frame distance seen (257 when either side has no usable frame).
    best_distance: int


def _usable(frames: Sequence[FrameHash | str], quality_gate: int) -> NDArray[np.uint64]:
    # Bank frames often come as bare hex (hash lists carry no quality): those are trusted.
    codes = [
        f if isinstance(f, str) else f["pdq"]
        for f in frames
        if isinstance(f, str) or f["quality"] >= quality_gate
    ]
    if not codes:
        return np.zeros((0, 4), dtype=np.uint64)
    raw = np.frombuffer(bytes.fromhex("".join(codes)), dtype=">u8")
    return raw.astype(np.uint64).reshape(-1, 4)


def _min_distances(
    a: NDArray[np.uint64], b: NDArray[np.uint64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """For each row of ``a`` its distance to the nearest row of ``b``, and vice versa."""
    best_a = np.full(len(a), 257, dtype=np.int64)
    best_b = np.full(len(b), 257, dtype=np.int64)
    chunk = max(1, 1_000_000 // max(1, len(b)))  # bound the temporaries to ~32 MB
    for start in range(0, len(a), chunk):
        block = a[start : start + chunk]
        d = np.bitwise_count(block[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int64)
        best_a[start : start + chunk] = d.min(axis=1)
        best_b = np.minimum(best_b, d.min(axis=0))
    return best_a, best_b


def vpdq_match(
    query_frames: Sequence[FrameHash | str],
    bank_frames: Sequence[FrameHash | str],
    *,
    distance: int = PDQ_THRESHOLD,
    quality_gate: int = PDQ_QUALITY_GATE,
    query_share_required: float = DEFAULT_MATCH_SHARE,
    bank_share_required: float = 0.0,
) -> VideoMatch:
    """Apply the vPDQ rule: do these two videos show the same thing?

    Frames under ``quality_gate`` are left out on both sides (bare hex strings count as
    usable). A query frame matches when some bank frame is within ``distance`` bits. The
    videos match when the share of matching query frames reaches ``query_share_required``
    and the share of bank frames matched by some query frame reaches
    ``bank_share_required``. Meta's vPDQ can require both (a short clip of a long video
    then matches one way only); the default asks only the query side, so a clip cut out of
    a banked video is found.
    """
    q = _usable(query_frames, quality_gate)
    b = _usable(bank_frames, quality_gate)
    if len(q) == 0 or len(b) == 0:
        return VideoMatch(0.0, 0.0, False, 257)
    best_q, best_b = _min_distances(q, b)
    query_share = float(np.mean(best_q <= distance))
    bank_share = float(np.mean(best_b <= distance))
    matched = query_share >= query_share_required and bank_share >= bank_share_required
    return VideoMatch(query_share, bank_share, matched, int(best_q.min()))
