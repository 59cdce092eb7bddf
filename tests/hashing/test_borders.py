"""Uniform borders (letterboxing) are found and removed, and the hash comes back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from rempart.hashing import find_borders, hash_media, pdq_distance, pdq_hash, trim_borders
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


def _jpeg_hashes(encode, image: Image.Image) -> object:
    return hash_media(encode(image, "JPEG", quality=85), limits=LIMITS, trim_borders=True)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut", "rocket"])
@pytest.mark.parametrize(
    ("border", "fill"),
    [
        (20, (0, 0, 0)),  # the brief's case: 20 px of black all round
        ((0, 60, 0, 60), (0, 0, 0)),  # letterbox: bars above and below
        ((80, 0, 80, 0), (255, 255, 255)),  # pillarbox, white
        (30, (40, 120, 200)),  # any flat colour
    ],
)
def test_letterboxed_copy_hashes_back_to_the_original(photo, encode, name, border, fill):
    original = Image.fromarray(photo(name))
    boxed = ImageOps.expand(original, border=border, fill=fill)
    want = hash_media(encode(original, "JPEG", quality=90), limits=LIMITS).pdq
    got = _jpeg_hashes(encode, boxed)
    assert got.trimmed_pdq is not None
    # Untrimmed, the copy is far from the original: trimming is what brings it back. (A few
    # bits remain when the bordered copy is big enough to be decoded at reduced scale and
    # the original is not: up to 16 on rocket's 60 px letterbox.)
    assert pdq_distance(got.pdq, want) > 31
    assert pdq_distance(got.trimmed_pdq, want) <= (10 if border == 20 else 16)


def test_20px_black_border_is_far_without_trimming(photo):
    rgb = photo("chelsea")
    boxed = np.asarray(ImageOps.expand(Image.fromarray(rgb), border=20, fill=(0, 0, 0)))
    assert pdq_distance(pdq_hash(boxed).hex, pdq_hash(rgb).hex) > 40
    inner, box = trim_borders(boxed)
    assert (box.top, box.bottom, box.left, box.right) == (20, 20, 20, 20)
    assert np.array_equal(inner, rgb)


def test_noisy_border_within_tolerance(photo):
    rng = np.random.default_rng(2)
    rgb = photo("coffee")
    boxed = np.asarray(ImageOps.expand(Image.fromarray(rgb), border=(0, 40), fill=(10, 10, 10)))
    noisy = np.clip(boxed.astype(int) + rng.integers(-6, 7, boxed.shape), 0, 255).astype(np.uint8)
    box = find_borders(noisy)
    assert (box.top, box.bottom) == (40, 40)
    assert box.left == box.right == 0


def test_nested_borders_are_removed(photo):
    rgb = photo("chelsea")
    framed = ImageOps.expand(Image.fromarray(rgb), border=3, fill=(128, 128, 128))
    framed = ImageOps.expand(framed, border=25, fill=(0, 0, 0))
    inner, box = trim_borders(np.asarray(framed))
    assert box.top == 28 and box.left == 28
    assert inner.shape == rgb.shape


def test_no_border_no_change(photo, encode):
    rgb = photo("astronaut")
    inner, box = trim_borders(rgb)
    assert not box.changed and inner is rgb
    hashes = hash_media(encode(rgb, "PNG"), limits=LIMITS, trim_borders=True)
    assert hashes.trimmed_pdq is None and "trimmed_pdq" not in hashes.to_dict()


def test_flat_or_nearly_flat_images_are_not_trimmed_away():
    flat = np.full((200, 300, 3), 30, np.uint8)
    assert not find_borders(flat).changed
    dot = flat.copy()
    dot[100:104, 150:154] = 255  # what is left would be a 4x4 detail: keep the image whole
    assert not find_borders(dot).changed


def test_trimmed_dihedral_when_both_asked(photo, encode):
    boxed = ImageOps.expand(Image.fromarray(photo("coffee")), border=24, fill=(0, 0, 0))
    hashes = hash_media(encode(boxed, "PNG"), limits=LIMITS, trim_borders=True, dihedral=True)
    assert hashes.trimmed_dihedral is not None
    assert hashes.trimmed_dihedral["original"] == hashes.trimmed_pdq
    assert hashes.trimmed_borders == {"top": 24, "bottom": 24, "left": 24, "right": 24}
