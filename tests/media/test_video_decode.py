"""Video frames: sampling, timestamps, limits and broken files."""

from __future__ import annotations

import io
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from rempart.errors import MediaError
from rempart.media import MediaFormat, iter_video_frames, open_video
from rempart.media.video import _rotate_upright
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


def _grey_frames(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    """Frame i is flat grey at level 4 * i, so a sampled frame tells which one it was."""
    width, height = size
    return [np.full((height, width, 3), 4 * i, dtype=np.uint8) for i in range(n)]


def _code(data: bytes, limits: MediaLimits = LIMITS) -> str:
    with pytest.raises(MediaError) as info:
        list(iter_video_frames(data, limits))
    assert info.value.message and info.value.hint
    return info.value.code


@pytest.mark.parametrize(
    ("container", "codec", "fmt"),
    [
        ("mp4", "libx264", MediaFormat.MP4),
        ("mov", "libx264", MediaFormat.MOV),
        ("webm", "libvpx-vp9", MediaFormat.WEBM),
        ("matroska", "libx264", MediaFormat.MKV),
    ],
)
def test_one_frame_per_second_with_timestamps(make_video, container, codec, fmt):
    data = make_video(_grey_frames(50), fps=10, container=container, codec=codec)
    with open_video(data, LIMITS) as video:
        assert video.info.format is fmt
        assert (video.info.width, video.info.height) == (96, 64)
        assert video.info.duration_s == pytest.approx(5.0, abs=0.15)
        frames = list(video)
    assert [f.timestamp_s for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    for f in frames:
        assert f.rgb.shape == (64, 96, 3) and f.rgb.dtype == np.uint8
        expected = 4 * round(f.timestamp_s * 10)  # the frame shown at that instant
        assert abs(float(f.rgb.mean()) - expected) < 4, (f.timestamp_s, f.rgb.mean())


def test_sampling_rate_follows_the_limits(make_video):
    data = make_video(_grey_frames(40), fps=10)
    stamps = [f.timestamp_s for f in iter_video_frames(data, MediaLimits(video_fps=2))]
    assert stamps == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]


def test_large_frames_are_downscaled_when_asked(make_video):
    data = make_video(_grey_frames(3, size=(1280, 720)), fps=1)
    small = next(iter(open_video(data, LIMITS, min_side=256)))
    assert small.rgb.shape == (360, 640, 3)  # by 2: the short side stays >= 256
    full = next(iter(open_video(data, LIMITS)))
    assert full.rgb.shape == (720, 1280, 3)


def test_display_rotation_is_applied_counter_clockwise():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(_rotate_upright(rgb, 90), np.rot90(rgb, 1))
    assert np.array_equal(_rotate_upright(rgb, -90), np.rot90(rgb, 3))
    assert np.array_equal(_rotate_upright(rgb, 180), np.rot90(rgb, 2))
    assert _rotate_upright(rgb, 0) is rgb


# -- bad input ------------------------------------------------------------------------------


def _empty_container(container: str, codec: str) -> bytes:
    buf = io.BytesIO()
    out = av.open(buf, "w", format=container)
    stream = out.add_stream(codec, rate=10)
    stream.width, stream.height = 64, 48
    out.start_encoding()  # header written, not one frame
    out.close()
    return buf.getvalue()


@pytest.mark.parametrize(("container", "codec"), [("mp4", "libx264"), ("matroska", "libx264")])
def test_video_without_frames(container, codec):
    data = _empty_container(container, codec)
    assert len(data) > 0
    assert _code(data) == "no_frames"


def test_audio_only_file_has_no_frames():
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert _code(buf.getvalue()) == "no_frames"


@pytest.mark.parametrize(("container", "codec"), [("mp4", "libx264"), ("webm", "libvpx-vp9")])
def test_truncated_video(make_video, container, codec):
    data = make_video(_grey_frames(30), container=container, codec=codec)
    assert _code(data[: len(data) // 2]) == "truncated"


def test_garbage_after_the_magic_is_corrupt(make_video):
    data = make_video(_grey_frames(5))
    garbage = np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert _code(data[:32] + garbage) == "corrupt"


def test_over_the_byte_limit(make_video):
    data = make_video(_grey_frames(5))
    assert _code(data, MediaLimits(max_bytes=len(data) - 1)) == "too_large"


def test_over_the_duration_limit(make_video):
    data = make_video(_grey_frames(50), fps=10)  # 5 s
    assert _code(data, MediaLimits(max_duration_s=3)) == "too_long"


def test_five_hour_video_is_refused_from_its_header():
    # Two frames, five hours apart: a few hundred bytes that declare a five-hour video.
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        for pts in (0, 5 * 3600):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    start = time.perf_counter()
    assert _code(buf.getvalue()) == "too_long"
    assert time.perf_counter() - start < 1.0


def test_over_the_sampled_frame_limit(make_video):
    data = make_video(_grey_frames(50), fps=10)  # 5 samples at 1 per second
    assert _code(data, MediaLimits(max_frames=4)) == "too_many_frames"
    assert len(list(iter_video_frames(data, MediaLimits(max_frames=5)))) == 5


def test_frame_pixel_limit(make_video):
    data = make_video(_grey_frames(5, size=(320, 240)))
    assert _code(data, MediaLimits(max_pixels=320 * 240 - 1)) == "too_many_pixels"


def test_images_and_text_are_not_videos(encode):
    from PIL import Image

    assert _code(encode(Image.new("RGB", (8, 8)), "PNG")) == "unsupported_format"
    assert _code(b"just some text, named movie.mp4\n") == "unsupported_format"
    assert _code(b"") == "empty_file"
