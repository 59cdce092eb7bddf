"""Fixtures: Meta's PDQ reference data (read in place) and generated photographs."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

#: The shared reference data, next to the repository (CI always has it).
REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "pdq-reference"


@pytest.fixture(scope="session")
def pdq_ref() -> Path:
    """Meta's PDQ reference images; tests using it skip when the shared data is absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"PDQ reference data not found at {REFERENCE} (the shared data directory)")
    return REFERENCE


@pytest.fixture(scope="session")
def photo() -> Callable[[str], np.ndarray]:
    """A photograph from scikit-image's bundled samples, as RGB uint8 (coffee, chelsea...)."""

    def load(name: str = "coffee") -> np.ndarray:
        return np.ascontiguousarray(getattr(skdata, name)()[..., :3])

    return load


def _encode(rgb: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """``encode(rgb_or_image, "PNG", **options)``: the bytes Pillow writes."""
    return _encode


def _make_video(
    frames: list[np.ndarray],
    *,
    fps: int = 10,
    container: str = "mp4",
    codec: str = "libx264",
) -> bytes:
    """Encode RGB frames (all the same size, even sides) into a video, in memory."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def make_video() -> Callable[..., bytes]:
    """``make_video(frames, fps=10, container="mp4", codec="libx264")``: video bytes."""
    return _make_video
