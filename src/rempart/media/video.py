"""Safe decoding of video frames, sampled in time, from bytes in memory (PyAV / FFmpeg).

Frames are sampled at ``limits.video_fps`` (one per second by default, as Meta's vPDQ
does): the first decoded frame at or after each sampling instant. Only sampled frames are
converted to RGB. Limits are checked from the container header before decoding (duration,
frame size, the number of frames the sampling would give) and again while decoding, since a
header can lie.

The demuxer is chosen from the sniffed bytes (``mov`` for MP4/MOV, ``matroska`` for
WebM/MKV), never probed: FFmpeg's probing would also accept playlists (HLS, concat) that
make it open other files or URLs.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Any, Final

import av
import numpy as np
from numpy.typing import NDArray

from rempart.errors import MediaError
from rempart.media.image import check_size, unsupported
from rempart.media.sniff import MediaFormat, sniff_format
from rempart.media.structure import declares_truncation
from rempart.settings import MediaLimits

_DEMUXERS: Final[dict[MediaFormat, str]] = {
    MediaFormat.MP4: "mov",
    MediaFormat.MOV: "mov",
    MediaFormat.WEBM: "matroska",
    MediaFormat.MKV: "matroska",
}

_HINT_DAMAGED = "the video is damaged or incomplete; if you have the original, hash that"


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: upright RGB pixels and when it is shown."""

    #: Seconds from the start of the video stream.
    timestamp_s: float
    #: Shape (rows, columns, 3), ``uint8``, C-contiguous.
    rgb: NDArray[np.uint8]


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about the video stream."""

    format: MediaFormat
    codec: str
    #: Frame size as stored (before any display rotation).
    width: int
    height: int
    #: Seconds, or ``None`` when the container does not say.
    duration_s: float | None


def _error(message: str, code: str, hint: str) -> MediaError:
    return MediaError(message, code=code, hint=hint)


def _too_long(seconds: float, limits: MediaLimits) -> MediaError:
    return _error(
        f"the video lasts {seconds:,.1f} s, more than the limit of {limits.max_duration_s:,.0f} s",
        "too_long",
        "cut the video into parts, or raise limits.max_duration_s if you trust it",
    )


def _too_many_frames(limits: MediaLimits, expected: int | None = None) -> MediaError:
    said = f"{expected:,} sampled frames" if expected else "more sampled frames than allowed"
    return _error(
        f"the video would give {said} at {limits.video_fps:g} per second, more than the "
        f"limit of {limits.max_frames:,}",
        "too_many_frames",
        "lower limits.video_fps or raise limits.max_frames",
    )


def _too_many_pixels(width: int, height: int, limits: MediaLimits) -> MediaError:
    return _error(
        f"the video's frames are {width}x{height} = {width * height:,} pixels, more than the "
        f"limit of {limits.max_pixels:,}",
        "too_many_pixels",
        "downscale the video, or raise limits.max_pixels if you trust it",
    )


def _no_frames(fmt: MediaFormat, why: str) -> MediaError:
    return _error(
        f"the {fmt.value} file has no video frames ({why})",
        "no_frames",
        "an audio-only file or an empty video cannot be hashed perceptually; its MD5/SHA-256 "
        "still identify exact copies",
    )


def _av_failure(e: BaseException, fmt: MediaFormat, started: bool) -> MediaError:
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, av.error.EOFError) and not started:
        # The sizes were checked first (not truncated): the container simply holds nothing.
        return _no_frames(fmt, "the container ends before any frame")
    where = "its frames" if started else "its container"
    return _error(
        f"the file starts like a {fmt.value} video but {where} could not be decoded: {text}",
        "corrupt",
        _HINT_DAMAGED,
    )


def _rotate_upright(rgb: NDArray[np.uint8], rotation: int) -> NDArray[np.uint8]:
    """Apply a display-matrix rotation (degrees counter-clockwise, as FFmpeg reports it)."""
    k = round(rotation / 90) % 4
    return rgb if k == 0 else np.ascontiguousarray(np.rot90(rgb, k))


class VideoFrames:
    """The sampled frames of one video, decoded lazily; use as an iterator.

    Opening checks the header limits (raising at once); iterating decodes. Close it (or use
    ``with``) to free the decoder early; exhausting the iterator closes it too.
    """

    def __init__(
        self,
        data: bytes,
        limits: MediaLimits,
        *,
        min_side: int | None = None,
        fmt: MediaFormat | None = None,
    ) -> None:
        check_size(data, limits)
        if fmt is None:
            fmt = sniff_format(data)
        if fmt is None:
            raise unsupported(data)
        if fmt.kind != "video":
            raise _error(
                f"this is a {fmt.value} image, not a video",
                "unsupported_format",
                "decode it with rempart.media.decode_image (or hash_media)",
            )
        if declares_truncation(data, fmt):
            raise _error(
                f"the {fmt.value} file is truncated: its container declares more bytes than "
                f"the {len(data):,} it has",
                "truncated",
                "the file was cut short (an interrupted download or upload?); get a complete copy",
            )
        self._limits = limits
        self._min_side = min_side
        self._fmt = fmt
        self._closed = False
        try:
            self._container: Any = av.open(io.BytesIO(data), mode="r", format=_DEMUXERS[fmt])
        except MemoryError as e:
            raise _error(
                "ran out of memory opening the video",
                "too_many_pixels",
                "give the process more memory",
            ) from e
        except Exception as e:  # FFmpeg errors on hostile input; none may escape raw
            raise _av_failure(e, fmt, started=False) from e
        try:
            self.info = self._check_header()
        except BaseException:
            self.close()
            raise
        self._iter = self._frames()

    def _check_header(self) -> VideoInfo:
        fmt, limits = self._fmt, self._limits
        streams = self._container.streams.video
        if not streams:
            raise _no_frames(fmt, "no video stream")
        stream = streams[0]
        self._stream = stream
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > limits.max_pixels:
            raise _too_many_pixels(width, height, limits)
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        if duration is not None:
            if duration > limits.max_duration_s:
                raise _too_long(duration, limits)
            # Samples fall at 0, 1/fps, 2/fps ... strictly before the end.
            expected = max(1, math.ceil(duration * limits.video_fps - 1e-9))
            if expected > limits.max_frames:
                raise _too_many_frames(limits, expected)
        codec = ctx.name or "unknown"
        return VideoInfo(fmt, codec, width, height, duration)

    def _frames(self) -> Iterator[VideoFrame]:
        fmt, limits = self._fmt, self._limits
        stream = self._stream
        time_base: Fraction | None = stream.time_base
        start = stream.start_time or 0
        interval = 1.0 / limits.video_fps
        next_sample = 0.0
        sampled = 0
        decoded = 0
        started = False
        try:
            for frame in self._container.decode(stream):
                started = True
                decoded += 1
                if frame.pts is not None and time_base is not None:
                    t = float((frame.pts - start) * time_base)
                else:  # no timestamps: assume the nominal rate, else one frame per sample
                    rate = float(stream.average_rate or limits.video_fps)
                    t = (decoded - 1) / rate
                t = max(t, 0.0)
                if t > limits.max_duration_s:
                    raise _too_long(t, limits)
                # Allow for timestamps rounded just under the sampling instant.
                if t + 1e-6 < next_sample:
                    continue
                if frame.width * frame.height > limits.max_pixels:
                    raise _too_many_pixels(frame.width, frame.height, limits)
                sampled += 1
                if sampled > limits.max_frames:
                    raise _too_many_frames(limits)
                next_sample = (math.floor(t / interval + 1e-6) + 1) * interval
                yield VideoFrame(round(t, 3), self._to_rgb(frame))
        except MediaError:
            raise
        except MemoryError as e:
            raise _error(
                "ran out of memory decoding the video",
                "too_many_pixels",
                "lower limits.max_pixels, or give the process more memory",
            ) from e
        except Exception as e:  # FFmpeg errors on hostile input; none may escape raw
            raise _av_failure(e, fmt, started=started) from e
        finally:
            self.close()
        if sampled == 0:
            raise _no_frames(fmt, "the video stream decodes to nothing")

    def _to_rgb(self, frame: Any) -> NDArray[np.uint8]:
        width, height = frame.width, frame.height
        factor = min(width, height) // self._min_side if self._min_side else 1
        if factor >= 2:
            # Area averaging, like the JPEG draft decode of stills: PDQ only needs 64 x 64.
            rgb = frame.reformat(
                width // factor, height // factor, format="rgb24", interpolation="AREA"
            ).to_ndarray()
        else:
            rgb = frame.to_ndarray(format="rgb24")
        return _rotate_upright(np.ascontiguousarray(rgb, dtype=np.uint8), frame.rotation or 0)

    def __iter__(self) -> Iterator[VideoFrame]:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._iter)

    def close(self) -> None:
        """Free the demuxer and decoder (idempotent)."""
        if not self._closed:
            self._closed = True
            # Closing a broken container must not mask the real error.
            with contextlib.suppress(Exception):
                self._container.close()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_video(data: bytes, limits: MediaLimits, *, min_side: int | None = None) -> VideoFrames:
    """Open a video from its bytes, checking the header limits; iterate it for frames.

    ``min_side``: when set, frames whose short side is at least twice it are downscaled
    (area averaging, by an integer factor) so the short side stays at or above it.

    Raises :class:`~rempart.errors.MediaError`: ``empty_file``, ``too_large``,
    ``unsupported_format``, ``no_frames``, ``too_many_pixels``, ``too_long``,
    ``too_many_frames``, ``truncated``, ``corrupt`` (here or while iterating).
    """
    return VideoFrames(data, limits, min_side=min_side)


def iter_video_frames(
    data: bytes, limits: MediaLimits, *, min_side: int | None = None
) -> Iterator[VideoFrame]:
    """The frames of a video sampled at ``limits.video_fps``, with their timestamps.

    A shorthand for iterating :func:`open_video`; see it for ``min_side`` and the errors.
    """
    with open_video(data, limits, min_side=min_side) as frames:
        yield from frames
