"""hash_media: every format, the JSON shape, errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pillow_heif
import pytest

from rempart.errors import MediaError
from rempart.hashing import DIHEDRAL_NAMES, hash_media, pdq_distance, pdq_hash
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


@pytest.mark.parametrize(
    ("pil_format", "fmt", "options"),
    [
        ("JPEG", "jpeg", {"quality": 90}),
        ("PNG", "png", {}),
        ("WEBP", "webp", {"quality": 90}),
        ("GIF", "gif", {}),
        ("BMP", "bmp", {}),
        ("TIFF", "tiff", {}),
        ("HEIF", "heif", {"quality": 90}),
        ("AVIF", "avif", {"quality": 90}),
    ],
)
def test_images_of_every_format(photo, encode, pil_format, fmt, options):
    assert pillow_heif  # registers the HEIF encoder used by encode()
    rgb = photo("chelsea")
    data = encode(rgb, pil_format, **options)
    hashes = hash_media(data, limits=LIMITS)
    assert (hashes.kind, hashes.format) == ("image", fmt)
    assert (hashes.width, hashes.height) == (451, 300)
    assert hashes.md5 == hashlib.md5(data).hexdigest()
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.pdq_quality >= 80
    # Lossy formats (GIF's 256-colour palette included) move it a few bits at most.
    assert pdq_distance(hashes.pdq, pdq_hash(rgb).hex) <= 16
    out = hashes.to_dict()
    assert list(out)[:8] == [
        "kind",
        "format",
        "width",
        "height",
        "pdq",
        "pdq_quality",
        "md5",
        "sha256",
    ]
    assert "frames" not in out and "dihedral" not in out
    json.dumps(out)


def test_dihedral_shape(photo, encode):
    hashes = hash_media(encode(photo("coffee"), "PNG"), limits=LIMITS, dihedral=True)
    assert list(hashes.dihedral) == list(DIHEDRAL_NAMES)
    assert hashes.dihedral["original"] == hashes.pdq
    assert hashes.to_dict()["dihedral"] == hashes.dihedral


@pytest.mark.parametrize(
    ("container", "codec", "fmt"),
    [("mp4", "libx264", "mp4"), ("webm", "libvpx-vp9", "webm")],
)
def test_videos(photo, make_video, container, codec, fmt):
    stills = [photo(n)[:240, :320] for n in ("coffee", "chelsea", "astronaut")]
    frames = [s for s in stills for _ in range(10)]  # 3 s at 10 fps, a new picture each second
    data = make_video(frames, fps=10, container=container, codec=codec)
    hashes = hash_media(data, limits=LIMITS, dihedral=True, trim_borders=True)
    assert (hashes.kind, hashes.format) == ("video", fmt)
    assert (hashes.width, hashes.height) == (320, 240)
    assert hashes.pdq is None and hashes.dihedral is None
    assert [f["timestamp"] for f in hashes.frames] == [0.0, 1.0, 2.0]
    for f, still in zip(hashes.frames, stills, strict=True):
        assert pdq_distance(f["pdq"], pdq_hash(np.ascontiguousarray(still)).hex) <= 20
    out = hashes.to_dict()
    assert out["frames"][0].keys() == {"timestamp", "pdq", "quality"}
    assert out["duration_s"] == pytest.approx(3.0, abs=0.15)
    assert hashes.md5 == hashlib.md5(data).hexdigest()
    json.dumps(out)


def test_low_quality_hashes_are_reported(encode):
    flat = np.full((64, 64, 3), 90, np.uint8)
    hashes = hash_media(encode(flat, "PNG"), limits=LIMITS)
    assert hashes.pdq is not None and hashes.pdq_quality < 50


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"plain text, not a picture\n", "unsupported_format"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt"),
    ],
)
def test_errors_are_media_errors(data, code):
    with pytest.raises(MediaError) as info:
        hash_media(data, limits=LIMITS)
    assert info.value.code == code
    assert info.value.to_dict()["code"] == code


def test_byte_limit_before_anything(encode, photo):
    data = encode(photo("coffee"), "PNG")
    with pytest.raises(MediaError) as info:
        hash_media(data, limits=MediaLimits(max_bytes=1000))
    assert info.value.code == "too_large"
