"""Thumbnails for the report, made only when asked (``--previews``): small, greyscale and
blurred, so a reviewer can tell a screenshot from a photo without seeing what it shows.

Made in memory from the bytes being scanned, only for flagged items, and never kept in the
results: they go to ``previews.jsonl`` and into the report.
"""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageFilter

from rempart.errors import RempartError
from rempart.media import decode_image
from rempart.settings import MediaLimits

#: Longest side of a thumbnail, and the blur radius at that size: at 64 px a radius of 4
#: leaves shapes and layout but no detail (faces and bodies are not recognisable).
SIDE = 64
BLUR_RADIUS = 4.0


def make_preview(data: bytes, limits: MediaLimits) -> str | None:
    """A blurred greyscale JPEG thumbnail of the image in ``data`` as a data URI; ``None``
    for what is not an image (videos get no preview)."""
    try:
        rgb = decode_image(data, limits, draft_min_side=SIDE * 2).rgb
    except RempartError:
        return None
    image = Image.fromarray(rgb).convert("L")
    image.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=60)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
