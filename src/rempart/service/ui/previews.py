"""Making the one thing the UI keeps of an upload: a small, blurred, greyscale preview.

Only scans whose verdict is ``review`` get one, only when ``ui.previews`` is on, and the
blur happens here, *before* anything is stored (see :mod:`rempart.store.previews` for the
sealing and the retention). The stored preview is already unrecognisable at a glance; the
page blurs it further by default, and a moderator's deliberate, audited click removes that
second blur for one item.
"""

from __future__ import annotations

import io
import logging
from typing import Final

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageFilter

from rempart.errors import RempartError
from rempart.media import decode_image
from rempart.settings import MediaLimits

log = logging.getLogger("rempart.service.ui")

#: Longer side of a stored preview, in pixels: enough to decide, too small to re-use.
PREVIEW_SIDE: Final = 320
#: Gaussian blur radius applied before storing, relative to the preview's longer side
#: (about 4 px at 320): shapes and layout stay readable, detail and faces do not.
BLUR_FRACTION: Final = 1 / 80
JPEG_QUALITY: Final = 70


def blurred_preview(data: bytes, limits: MediaLimits) -> tuple[bytes, int, int]:
    """``(jpeg, width, height)``: a greyscale, blurred JPEG of at most
    :data:`PREVIEW_SIDE` pixels, and the original's size. Images only (MediaError
    ``unsupported_format`` for videos). Nothing of the original but this is returned."""
    decoded = decode_image(data, limits, draft_min_side=PREVIEW_SIDE)
    image = Image.fromarray(decoded.rgb).convert("L")
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    radius = max(2.0, max(image.size) * BLUR_FRACTION)
    image = image.filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    # No EXIF or other metadata is written: Pillow writes none unless asked.
    image.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue(), decoded.width, decoded.height


def _keep(request: Request, tenant: str, scan_id: str, data: bytes) -> None:
    from rempart.service.ui.state import ui_state

    state = ui_state(request.app)
    try:
        jpeg, width, height = blurred_preview(data, state.settings.limits)
    except RempartError as e:  # a video, or nothing decodable: no preview, the scan stands
        log.info("no preview for scan %s: %s", scan_id, e.code)
        return
    state.previews.put(tenant, scan_id, jpeg, width, height)


async def keep_preview(request: Request, tenant: str, scan_id: str, data: bytes) -> None:
    """The scan route's hook: keep a preview of a scan that entered the review queue.

    Does nothing when the UI or its previews are off, or scans are not recorded (there
    would be no queue item to show it in). Never fails the scan: errors are logged.
    """
    settings = request.app.state.ctx.settings
    if not (settings.ui.enabled and settings.ui.previews and settings.service.record_scans):
        return
    try:
        await run_in_threadpool(_keep, request, tenant, scan_id, data)
    except Exception:
        log.exception("keeping the review preview of scan %s failed", scan_id)
