"""Safe decoding of still images into upright RGB pixels.

Every image Rempart hashes goes through :func:`decode_image`. It

- picks the decoder from the sniffed bytes and lets Pillow try no other;
- checks the byte, pixel and frame limits from the headers, *before* any pixel is decoded
  (a PNG can declare 30000 x 30000 pixels in a few kilobytes);
- decodes JPEGs at reduced size (libjpeg's DCT scaling) when the caller needs no more than
  ``draft_min_side`` pixels on the short side -- PDQ downsamples to 64 x 64 anyway, and a
  12-megapixel JPEG then decodes in milliseconds;
- applies the EXIF orientation, so the pixels are what a viewer shows;
- turns every Pillow mode into RGB ``uint8``;
- turns every decoder failure into a :class:`~rempart.errors.MediaError` with a stable code.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import pillow_heif
from numpy.typing import NDArray
from PIL import Image, ImageCms

from rempart.errors import MediaError
from rempart.media.sniff import MediaFormat, sniff_format
from rempart.media.structure import declares_truncation
from rempart.settings import MediaLimits

pillow_heif.register_heif_opener()

#: The one Pillow plugin allowed to parse each image format.
_PIL_FORMATS: Final[dict[MediaFormat, str]] = {
    MediaFormat.JPEG: "JPEG",
    MediaFormat.PNG: "PNG",
    MediaFormat.WEBP: "WEBP",
    MediaFormat.GIF: "GIF",
    MediaFormat.BMP: "BMP",
    MediaFormat.TIFF: "TIFF",
    MediaFormat.HEIF: "HEIF",
    MediaFormat.AVIF: "AVIF",
}

# Containers whose header declares their length: a cut file is recognisable even when the
# header itself no longer parses.
_SIZED_CONTAINERS: Final = frozenset({MediaFormat.WEBP, MediaFormat.HEIF, MediaFormat.AVIF})

# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENTATION: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Transparent pixels are shown over white by browsers, chat apps and most viewers; we hash
# what a person sees.
_BACKGROUND: Final = (255, 255, 255)

_HINT_DAMAGED = "the file is damaged; if you have the original, hash that instead"


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded for hashing.

    ``rgb`` may be smaller than the image (see ``draft_min_side`` in :func:`decode_image`);
    ``width`` and ``height`` are always the full size, upright (after EXIF orientation).
    """

    #: Upright pixels, shape (rows, columns, 3), ``uint8``, C-contiguous.
    rgb: NDArray[np.uint8]
    format: MediaFormat
    width: int
    height: int
    #: The Pillow mode the file was stored in (``RGB``, ``P``, ``I;16``, ``CMYK``...).
    mode: str
    #: Frames (animation) or pages in the file; only the first is decoded.
    n_frames: int
    #: The EXIF orientation that was applied (1 = none).
    orientation: int = 1


def _pixel_error(pixels: int | None, limits: MediaLimits, fmt: MediaFormat) -> MediaError:
    declared = f"declares {pixels:,} pixels" if pixels else "declares too many pixels"
    return MediaError(
        f"the {fmt.value} image {declared}, more than the limit of {limits.max_pixels:,} "
        "(a decompression bomb, or a very large image)",
        code="too_many_pixels",
        hint="downscale the image, or raise limits.max_pixels if you trust it",
    )


def check_size(data: bytes, limits: MediaLimits) -> None:
    """Raise ``empty_file`` or ``too_large`` before anything parses ``data``."""
    if len(data) == 0:
        raise MediaError(
            "the file is empty (0 bytes)",
            code="empty_file",
            hint="check that the file was copied or uploaded completely",
        )
    if len(data) > limits.max_bytes:
        raise MediaError(
            f"the file is {len(data):,} bytes, more than the limit of {limits.max_bytes:,}",
            code="too_large",
            hint="raise limits.max_bytes (REMPART_LIMITS__MAX_BYTES) if you trust the file",
        )


def unsupported(data: bytes) -> MediaError:
    """The error for bytes whose format we do not recognise."""
    head = bytes(data[:16])
    looks = "text" if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "binary"
    return MediaError(
        f"unsupported or unrecognised file format (the content looks like {looks}, "
        f"first bytes {head[:8].hex(' ')})",
        code="unsupported_format",
        hint="Rempart reads JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF images and "
        "MP4, MOV, WebM, MKV videos; the format is read from the content, not the name",
    )


def _count_gif_frames(data: bytes, stop_after: int) -> int:
    """Count image descriptors in a GIF, walking its blocks without decoding anything.

    Stops as soon as the count passes ``stop_after``, so a GIF of 10,000 frames costs no
    more than reading ``stop_after`` frame headers. A broken block structure ends the
    count; the decoder reports the damage.
    """
    n = len(data)
    if n < 13:
        return 0
    pos = 13
    flags = data[10]
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    frames = 0

    def skip_sub_blocks(p: int) -> int:
        while p < n:
            size = data[p]
            p += 1 + size
            if size == 0:
                return p
        return n

    while pos < n and frames <= stop_after:
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            if pos + 10 > n:
                break
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:
                pos += 3 << ((flags & 7) + 1)
            pos = skip_sub_blocks(pos + 1)  # after the LZW minimum code size
        else:  # trailer (0x3B) or garbage
            break
    return frames


def _frame_count(im: Image.Image, data: bytes, fmt: MediaFormat, limits: MediaLimits) -> int:
    if fmt is MediaFormat.GIF:
        # Pillow counts GIF frames by parsing every one of them; ours stops early.
        return _count_gif_frames(data, limits.max_frames)
    # APNG (acTL chunk), WebP (demuxer), HEIF (top-level images) declare their frame count;
    # TIFF walks its page directories without decoding pixels.
    return int(getattr(im, "n_frames", 1) or 1)


def _open(data: bytes, fmt: MediaFormat, limits: MediaLimits) -> Image.Image:
    # Pillow's own bomb check warns above MAX_IMAGE_PIXELS and fails above twice that.
    # A warning is not a limit: make it an error, and never let Pillow's ceiling be under
    # ours (ours is checked right after opening, with a clearer message). Both touch
    # process-wide state: the ceiling only ever goes up, and catch_warnings is not
    # thread-safe before Python 3.14 -- at worst a concurrent thread sees the warning
    # instead of the error, and our own check right after still refuses the image.
    ceiling = Image.MAX_IMAGE_PIXELS
    if ceiling is not None and ceiling < limits.max_pixels:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            raise _pixel_error(int(m.group(1)) if m else None, limits, fmt) from None


def _decode_failure(e: BaseException, data: bytes, fmt: MediaFormat, opened: bool) -> MediaError:
    text = str(e)
    if opened:
        # The header parsed; pixel data that stops early is a cut file, not a damaged one.
        lowered = text.lower()
        truncated = (
            "truncated" in lowered or "end of file" in lowered or declares_truncation(data, fmt)
        )
    else:
        # A header that fails to parse is damage (garbage after a valid magic), unless the
        # container's sizes say bytes are missing (WebP's RIFF size, HEIF/AVIF boxes).
        truncated = fmt in _SIZED_CONTAINERS and declares_truncation(data, fmt)
    if truncated:
        return MediaError(
            f"the {fmt.value} file is truncated: it ends before the image does ({text})",
            code="truncated",
            hint="the file was cut short (an interrupted download or upload?); get a complete copy",
        )
    where = "its pixel data" if opened else "its header"
    return MediaError(
        f"the file starts like a {fmt.value} image but {where} could not be decoded: "
        f"{type(e).__name__}: {text or 'no detail'}",
        code="corrupt",
        hint=_HINT_DAMAGED,
    )


def _normalise_to_l(im: Image.Image) -> Image.Image:
    """Map an integer or float single-channel image (I, I;16*, F) onto 0..255 grey.

    Pillow's own conversion clips (a 16-bit image becomes almost all white), so the range
    is mapped instead: 16-bit modes by their full scale; I and F by the range their values
    actually use -- 0..255 kept as is, 0..1 (float) and 0..65535 scaled, anything else
    stretched min..max. PDQ compares DCT coefficients with their median, so a linear change
    of brightness barely moves the hash; what matters is not to clip.
    """
    a = np.asarray(im)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    else:
        a = a.astype(np.float64)
    if im.mode.startswith("I;16"):
        scaled = a / 257.0
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1.0 and im.mode == "F":
            scaled = a * 255.0
        elif lo >= 0 and hi <= 255:
            scaled = a
        elif lo >= 0 and hi <= 65535:
            scaled = a / 257.0
        else:
            scaled = (a - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


_LAB_TO_RGB: ImageCms.ImageCmsTransform | None = None


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    # Pillow's convert("RGB") copies LAB channels as if they were RGB; use a real transform.
    global _LAB_TO_RGB
    if _LAB_TO_RGB is None:
        _LAB_TO_RGB = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
    out = ImageCms.applyTransform(im, _LAB_TO_RGB)
    assert out is not None
    return out


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded image of any Pillow mode to an ``RGB`` image, as a viewer shows it.

    - alpha (LA, La, PA, RGBA, RGBa, P with transparency) is composited over white;
      fully opaque alpha is simply dropped;
    - I, I;16 and F are range-mapped to grey (see :func:`_normalise_to_l`);
    - LAB goes through a colour transform; CMYK, YCbCr, HSV, 1, L, P through Pillow.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _normalise_to_l(im).convert("RGB")
    if mode == "LAB":
        return _lab_to_rgb(im)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa"):
        if mode == "La":  # premultiplied: Pillow only un-premultiplies it to LA
            im = im.convert("LA")
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        lo, _ = im.getchannel("A").getextrema()
        if lo == 255:
            return im.convert("RGB")
        background = Image.new("RGBA", im.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not stop the image from being hashed
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION else 1


def decode_image(
    data: bytes,
    limits: MediaLimits,
    *,
    draft_min_side: int | None = 256,
    fmt: MediaFormat | None = None,
) -> DecodedImage:
    """Decode the first frame of an image file into upright RGB pixels.

    ``draft_min_side``: the short side (in pixels) the caller needs at least. JPEGs are then
    decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, and other formats box-reduced after
    decoding, as long as both sides stay at or above it. PDQ conformance holds at 256 (every
    reference hash within distance 6 of Meta's); at 128 it does not. ``None``: full size.

    Raises :class:`~rempart.errors.MediaError`: ``empty_file``, ``too_large``,
    ``unsupported_format``, ``too_many_pixels``, ``too_many_frames``, ``truncated``,
    ``corrupt``.
    """
    check_size(data, limits)
    if fmt is None:
        fmt = sniff_format(data)
    if fmt is None or fmt.kind != "image":
        raise (
            unsupported(data)
            if fmt is None
            else MediaError(
                f"this is a {fmt.value} video, not an image",
                code="unsupported_format",
                hint="decode it with rempart.media.iter_video_frames (or hash_media)",
            )
        )
    opened = False
    try:
        im = _open(data, fmt, limits)
        opened = True
        width, height = im.size
        if width <= 0 or height <= 0:
            raise MediaError(
                f"the {fmt.value} image declares a size of {width}x{height}",
                code="corrupt",
                hint=_HINT_DAMAGED,
            )
        if width * height > limits.max_pixels:
            raise _pixel_error(width * height, limits, fmt)
        n_frames = _frame_count(im, data, fmt, limits)
        if n_frames > limits.max_frames:
            raise MediaError(
                f"the {fmt.value} image has more than {limits.max_frames:,} frames",
                code="too_many_frames",
                hint="only the first frame is hashed, but files over the frame limit are "
                "refused; raise limits.max_frames if you trust the file",
            )
        mode = im.mode
        if draft_min_side is not None and fmt is MediaFormat.JPEG:
            im.draft("RGB", (draft_min_side, draft_min_side))
        im.load()
        orientation = _orientation(im)
        rgb = to_rgb(im)
        if draft_min_side is not None and fmt is not MediaFormat.JPEG:
            factor = min(rgb.size) // draft_min_side
            if factor >= 2:
                rgb = rgb.reduce(factor)
        if orientation != 1:
            rgb = rgb.transpose(_ORIENTATION[orientation])
            if orientation >= 5:
                width, height = height, width
        pixels = np.asarray(rgb, dtype=np.uint8)
    except MediaError:
        raise
    except MemoryError as e:
        raise MediaError(
            f"ran out of memory decoding the {fmt.value} image",
            code="too_many_pixels",
            hint="lower limits.max_pixels, or give the process more memory",
        ) from e
    except Exception as e:  # Pillow raises many types on hostile input; none may escape raw
        raise _decode_failure(e, data, fmt, opened) from e
    if not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)
    return DecodedImage(
        rgb=pixels,
        format=fmt,
        width=width,
        height=height,
        mode=mode,
        n_frames=n_frames,
        orientation=orientation,
    )
