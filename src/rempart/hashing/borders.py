"""Removing uniform borders (letterboxing, pillarboxing, flat frames) before hashing.

A re-upload padded with a 20-pixel black border lands ~50 bits away from the original in
PDQ -- past the match threshold -- because PDQ sees the whole frame. Cropping flat borders
first brings it back within a few bits. It is an *extra* hash: the untrimmed hash is always
kept, since an image whose edges are genuinely flat (a sky, a studio backdrop) would
otherwise hash differently from its own copies.

A line (row or column) is border when nearly all its pixels (``min_share``) are within
``tolerance`` (per channel, 0-255) of the colour of the outermost line on that side. The
tolerance absorbs JPEG noise; the share absorbs a few stray pixels (dust, a watermark
corner). Each side has its own colour (black bars above, a white caption bar below), and
the search repeats so that nested borders (a thin grey frame inside black bars) go too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Per-channel distance from the border colour still counted as border (JPEG noise).
DEFAULT_TOLERANCE = 20
#: Share of a line's pixels that must be border colour for the line to be border.
DEFAULT_MIN_SHARE = 0.98
# Never trim to less than this share of a side, nor to fewer pixels than _MIN_SIDE: what
# would remain is not the picture but a detail of it (or the image is flat all over).
_MIN_KEEP_SHARE = 0.2
_MIN_SIDE = 16
_ROUNDS = 3


@dataclass(frozen=True)
class BorderBox:
    """How many pixels of border were found on each side."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def changed(self) -> bool:
        """Whether any border was found."""
        return bool(self.top or self.bottom or self.left or self.right)


def _leading_border(lines: NDArray[np.uint8], tolerance: int, min_share: float) -> int:
    """How many leading lines of ``lines`` (shape: lines, pixels, 3) are border.

    Lines are tested a chunk at a time, stopping at the first chunk that has a non-border
    line: most photos have no border, so one chunk is all that is ever read.
    """
    n = lines.shape[0]
    if n == 0:
        return 0
    reference = np.median(lines[0], axis=0)
    done = 0
    chunk = 8
    while done < n:
        part = lines[done : done + chunk].astype(np.int16)
        close = np.abs(part - reference).max(axis=2) <= tolerance
        ok = close.mean(axis=1) >= min_share
        if not ok.all():
            return done + int(np.argmin(ok))
        done += part.shape[0]
        chunk = min(chunk * 2, 256)
    return int(n)


def find_borders(
    rgb: NDArray[np.uint8],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    min_share: float = DEFAULT_MIN_SHARE,
) -> BorderBox:
    """The uniform borders of an RGB image (an empty box when there are none or when
    trimming them would leave too little -- a flat image has no "inside")."""
    rows, cols = rgb.shape[:2]
    top = bottom = left = right = 0
    for _ in range(_ROUNDS):
        view = rgb[top : rows - bottom, left : cols - right]
        h, w = view.shape[:2]
        if h < _MIN_SIDE or w < _MIN_SIDE:
            break
        # Look at most half-way in from each side: a border is never more than that.
        t = _leading_border(view[: h // 2], tolerance, min_share)
        b = _leading_border(view[::-1][: h // 2], tolerance, min_share)
        lt = _leading_border(view[:, : w // 2].transpose(1, 0, 2), tolerance, min_share)
        r = _leading_border(view[:, ::-1][:, : w // 2].transpose(1, 0, 2), tolerance, min_share)
        if not (t or b or lt or r):
            break
        top, bottom, left, right = top + t, bottom + b, left + lt, right + r
    kept_rows, kept_cols = rows - top - bottom, cols - left - right
    if kept_rows < max(_MIN_SIDE, _MIN_KEEP_SHARE * rows) or kept_cols < max(
        _MIN_SIDE, _MIN_KEEP_SHARE * cols
    ):
        return BorderBox()
    return BorderBox(top, bottom, left, right)


def trim_borders(
    rgb: NDArray[np.uint8],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    min_share: float = DEFAULT_MIN_SHARE,
) -> tuple[NDArray[np.uint8], BorderBox]:
    """``rgb`` without its uniform borders (a C-contiguous copy), and what was removed.

    When nothing is removed, ``rgb`` itself comes back with an empty box.
    """
    box = find_borders(rgb, tolerance=tolerance, min_share=min_share)
    if not box.changed:
        return rgb, box
    rows, cols = rgb.shape[:2]
    inner = rgb[box.top : rows - box.bottom, box.left : cols - box.right]
    return np.ascontiguousarray(inner), box
