"""One entry point from a file's bytes to all its hashes: :func:`hash_media`.

The CLI (``rempart hash``), the :class:`~rempart.scan.Scanner` and bank enrolment all call
it, so an image hashed anywhere in Rempart hashes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from rempart.hashing.borders import BorderBox
from rempart.hashing.borders import trim_borders as _trim
from rempart.hashing.exact import exact_hashes
from rempart.hashing.pdq import pdq_dihedral, pdq_hash
from rempart.hashing.video import FrameHash, hash_frames
from rempart.media.image import check_size, decode_image, unsupported
from rempart.media.sniff import sniff_format
from rempart.media.video import open_video
from rempart.settings import MediaLimits

#: Short side (pixels) images and video frames are decoded at, at least. JPEGs decode at
#: 1/2-1/8 scale in the DCT domain; PDQ conformance on Meta's reference images holds at
#: 256 (all within 6 bits), not at 128.
DRAFT_MIN_SIDE: Final = 256


@dataclass
class MediaHashes:
    """Every hash of one file. ``to_dict()`` gives the JSON shape used by the CLI and API.

    Low-quality PDQ hashes are reported as they are; the matcher applies the quality gate.
    """

    kind: Literal["image", "video"]
    #: The sniffed format (``jpeg``, ``png``, ``mp4``...).
    format: str
    #: Full size, upright for images (after EXIF orientation); as stored for video.
    width: int
    height: int
    md5: str
    sha256: str
    #: PDQ hex of the image (``None`` for video: see ``frames``).
    pdq: str | None = None
    pdq_quality: int | None = None
    #: The 8 dihedral variants' hex, by name (see :mod:`rempart.hashing.pdq`), when asked.
    dihedral: dict[str, str] | None = None
    #: PDQ hex of the image without its uniform borders -- only when borders were found.
    trimmed_pdq: str | None = None
    trimmed_quality: int | None = None
    #: Dihedral variants of the trimmed image, when both were asked for and borders found.
    trimmed_dihedral: dict[str, str] | None = None
    #: The borders removed, in pixels of the full-size image (approximate when the image
    #: was decoded at reduced size).
    trimmed_borders: dict[str, int] | None = None
    #: Video: the PDQ hash of each sampled frame.
    frames: list[FrameHash] = field(default_factory=list)
    #: Video: duration from the container, in seconds (``None`` if it does not say).
    duration_s: float | None = None
    #: Image: frames or pages in the file (only the first is hashed).
    n_frames: int = 1

    def to_dict(self) -> dict[str, Any]:
        """``{kind, format, width, height, pdq, pdq_quality, md5, sha256, ...}``; the optional
        keys (``dihedral``, ``trimmed_*``, ``frames``, ``duration_s``) appear when set."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
            "md5": self.md5,
            "sha256": self.sha256,
        }
        if self.dihedral is not None:
            out["dihedral"] = dict(self.dihedral)
        if self.trimmed_pdq is not None:
            out["trimmed_pdq"] = self.trimmed_pdq
            out["trimmed_quality"] = self.trimmed_quality
            out["trimmed_borders"] = dict(self.trimmed_borders or {})
            if self.trimmed_dihedral is not None:
                out["trimmed_dihedral"] = dict(self.trimmed_dihedral)
        if self.kind == "video":
            out["duration_s"] = self.duration_s
            out["frames"] = [dict(f) for f in self.frames]
        elif self.n_frames > 1:
            out["n_frames"] = self.n_frames
        return out


def _scaled_box(box: BorderBox, scale_x: float, scale_y: float) -> dict[str, int]:
    return {
        "top": round(box.top * scale_y),
        "bottom": round(box.bottom * scale_y),
        "left": round(box.left * scale_x),
        "right": round(box.right * scale_x),
    }


def hash_media(
    data: bytes,
    *,
    limits: MediaLimits,
    dihedral: bool = False,
    trim_borders: bool = False,
) -> MediaHashes:
    """Hash an image or video from its bytes: PDQ (per frame for video), MD5 and SHA-256.

    ``dihedral``: also give the PDQ of the 8 rotations/flips (computed together, at little
    extra cost). ``trim_borders``: also hash the image without its uniform borders
    (letterboxing); reported only when borders were found. Both apply to images; a video
    gets one PDQ per sampled frame.

    Raises :class:`~rempart.errors.MediaError` for anything that cannot be decoded safely
    (see :func:`rempart.media.decode_image` and :func:`rempart.media.open_video`).
    """
    check_size(data, limits)
    fmt = sniff_format(data)
    if fmt is None:
        raise unsupported(data)
    if fmt.kind == "video":
        with open_video(data, limits, min_side=DRAFT_MIN_SIDE) as video:
            frames = hash_frames(video)
            info = video.info
        exact = exact_hashes(data)
        return MediaHashes(
            kind="video",
            format=fmt.value,
            width=info.width,
            height=info.height,
            md5=exact.md5,
            sha256=exact.sha256,
            frames=frames,
            duration_s=info.duration_s,
        )

    image = decode_image(data, limits, draft_min_side=DRAFT_MIN_SIDE, fmt=fmt)
    exact = exact_hashes(data)
    out = MediaHashes(
        kind="image",
        format=fmt.value,
        width=image.width,
        height=image.height,
        md5=exact.md5,
        sha256=exact.sha256,
        n_frames=image.n_frames,
    )
    if dihedral:
        variants = pdq_dihedral(image.rgb)
        out.pdq, out.pdq_quality = variants.original.hex, variants.quality
        out.dihedral = variants.hex()
    else:
        h = pdq_hash(image.rgb)
        out.pdq, out.pdq_quality = h.hex, h.quality
    if trim_borders:
        inner, box = _trim(image.rgb)
        if box.changed:
            rows, cols = image.rgb.shape[:2]
            out.trimmed_borders = _scaled_box(box, image.width / cols, image.height / rows)
            if dihedral:
                t = pdq_dihedral(inner)
                out.trimmed_pdq, out.trimmed_quality = t.original.hex, t.quality
                out.trimmed_dihedral = t.hex()
            else:
                th = pdq_hash(inner)
                out.trimmed_pdq, out.trimmed_quality = th.hex, th.quality
    return out
