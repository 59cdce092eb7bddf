"""Example images for demos, tests and benchmarks -- drawn here, never downloaded.

Rempart never ships or fetches real photos of people. These are synthetic scenes (smooth
colour fields, shapes, sensor-like noise) that hash with full PDQ quality, plus the everyday
edits that platforms see on re-uploads: resizing, recompression, letterboxing, rotation,
flips and crops.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps


def synthetic_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A deterministic, photograph-like RGB image (PDQ quality 100) for ``seed``."""
    rng = np.random.default_rng(seed)
    width, height = size
    field = rng.random((6, 8, 3))
    image = Image.fromarray((field * 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(image)
    scale = max(width, height) / 640
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(20, 200) * scale)
        y1 = y0 + int(rng.integers(20, 200) * scale)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """``image`` encoded as JPEG."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _letterbox(image: Image.Image) -> Image.Image:
    return ImageOps.expand(image, border=(0, 40, 0, 40), fill=(0, 0, 0))


#: The edits applied to originals in the demo, by name.
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resized": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "letterboxed": _letterbox,
    "rotated": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "mirrored": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "cropped": lambda im: im.crop((8, 6, im.width - 8, im.height - 6)),
}


@dataclass(frozen=True)
class ExampleSet:
    """Where :func:`write_examples` put its files."""

    originals: list[Path]
    copies: list[Path]
    unrelated: list[Path]


def write_examples(directory: Path, *, originals: int = 4, unrelated: int = 2) -> ExampleSet:
    """Write originals, edited copies of them and unrelated images under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "originals").mkdir(exist_ok=True)
    (directory / "uploads").mkdir(exist_ok=True)
    result = ExampleSet([], [], [])
    for i in range(originals):
        image = synthetic_photo(1000 + i)
        path = directory / "originals" / f"original-{i}.jpg"
        path.write_bytes(jpeg_bytes(image, quality=92))
        result.originals.append(path)
        for name, edit in EDITS.items():
            copy = directory / "uploads" / f"original-{i}-{name}.jpg"
            copy.write_bytes(jpeg_bytes(edit(image), quality=75))
            result.copies.append(copy)
    for j in range(unrelated):
        path = directory / "uploads" / f"unrelated-{j}.jpg"
        path.write_bytes(jpeg_bytes(synthetic_photo(5000 + j)))
        result.unrelated.append(path)
    return result
