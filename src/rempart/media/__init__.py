"""Safe decoding of untrusted media: the only part of Rempart that parses files.

Formats are recognised from the bytes, never the name; limits (bytes, pixels, frames,
duration) are checked from the headers before pixels are decoded; every failure is a
:class:`~rempart.errors.MediaError` with a stable ``code``.
"""

from rempart.media.files import iter_files, read_media_file
from rempart.media.image import DecodedImage, decode_image, to_rgb
from rempart.media.sniff import MediaFormat, MediaKind, sniff_format
from rempart.media.video import (
    VideoFrame,
    VideoFrames,
    VideoInfo,
    iter_video_frames,
    open_video,
)

__all__ = [
    "DecodedImage",
    "MediaFormat",
    "MediaKind",
    "VideoFrame",
    "VideoFrames",
    "VideoInfo",
    "decode_image",
    "iter_files",
    "iter_video_frames",
    "open_video",
    "read_media_file",
    "sniff_format",
    "to_rgb",
]
