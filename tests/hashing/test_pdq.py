"""PDQ: conformance with Meta's reference hashes, hex order, dihedral variant names."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from rempart.hashing import (
    DIHEDRAL_NAMES,
    hash_media,
    pdq_dihedral,
    pdq_distance,
    pdq_hash,
)
from rempart.media import read_media_file
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


def _expected(pdq_ref) -> list[tuple[str, str]]:
    with (pdq_ref / "expected-wasm.csv").open() as f:
        return [(row["path"], row["pdq_hex"]) for row in csv.DictReader(f)]


def test_meta_conformance_through_the_real_decode_path(pdq_ref):
    """Meta's rule: every hash of quality >= 80 within distance 10 of the reference."""
    checked = 0
    worst = 0
    for path, expected in _expected(pdq_ref):
        hashes = hash_media(read_media_file(pdq_ref / path, LIMITS), limits=LIMITS)
        if hashes.pdq_quality < 80:
            continue
        distance = pdq_distance(hashes.pdq, expected)
        assert distance <= 10, (path, distance)
        worst = max(worst, distance)
        checked += 1
    assert checked >= 14  # every file of the CSV but the low-quality small.jpg


def test_full_resolution_hashes_match_the_reference_too(pdq_ref):
    from rempart.media import decode_image

    for path, expected in _expected(pdq_ref):
        image = decode_image((pdq_ref / path).read_bytes(), LIMITS, draft_min_side=None)
        h = pdq_hash(image.rgb)
        if h.quality >= 80:
            assert pdq_distance(h.hex, expected) <= 10, path


def test_hex_order_is_meta_order():
    """Bit 0 of the C++ vector is the top bit of the first hex digit (ThreatExchange's
    ``"%0*X" % int(bits, 2)`` conversion)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    import pdqhash

    vector, _ = pdqhash.compute(rgb)
    bits = "".join(str(int(b)) for b in vector)
    pytx_hex = ("%0*X" % ((len(bits) + 3) // 4, int(bits, 2))).lower()  # noqa: UP031
    assert pdq_hash(rgb).hex == pytx_hex
    assert len(pytx_hex) == 64


def test_reference_hex_is_reproduced_exactly_for_a_simple_file(pdq_ref):
    # wee.jpg (34 x 42) needs no scaling: the hash must be identical, bit for bit.
    hashes = hash_media((pdq_ref / "misc-images" / "wee.jpg").read_bytes(), limits=LIMITS)
    assert hashes.pdq == "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d"


# file -> the edit it shows, named as Rempart names variants
_DIH_FILES = {
    "bridge-1-original.jpg": "original",
    "bridge-2-rotate-90.jpg": "rot90",
    "bridge-3-rotate-180.jpg": "rot180",
    "bridge-4-rotate-270.jpg": "rot270",
    "bridge-5-flipx.jpg": "flipx",
    "bridge-6-flipy.jpg": "flipy",
    "bridge-7-flip-plus-1.jpg": "flip_plus1",
    "bridge-8-flip-minus-1.jpg": "flip_minus1",
}


@pytest.mark.parametrize(("name", "variant"), sorted(_DIH_FILES.items()))
def test_each_dihedral_file_matches_the_original_through_its_own_variant(pdq_ref, name, variant):
    folder = pdq_ref / "reg-test-input" / "dih"
    original = hash_media((folder / "bridge-1-original.jpg").read_bytes(), limits=LIMITS).pdq
    query = hash_media((folder / name).read_bytes(), limits=LIMITS, dihedral=True)
    distances = {k: pdq_distance(v, original) for k, v in query.dihedral.items()}
    best = min(distances, key=distances.__getitem__)
    assert best == variant, distances
    assert distances[best] <= 31
    others = sorted(d for k, d in distances.items() if k != best)
    assert others[0] > 80  # the wrong variants are nowhere near


@pytest.mark.parametrize(
    ("variant", "edit"),
    [
        ("original", lambda a: a),
        ("rot90", lambda a: np.rot90(a, 1)),  # counter-clockwise
        ("rot180", lambda a: np.rot90(a, 2)),
        ("rot270", lambda a: np.rot90(a, 3)),
        ("flipx", lambda a: a[::-1]),  # top to bottom
        ("flipy", lambda a: a[:, ::-1]),  # left to right
        ("flip_plus1", lambda a: a.transpose(1, 0, 2)),
        ("flip_minus1", lambda a: np.rot90(a, 2).transpose(1, 0, 2)),
    ],
)
def test_variant_names_describe_the_edit_of_the_query(photo, variant, edit):
    """Independently of Meta's files: edit a photo with numpy, and the variant of the same
    name is the one that gives back the original's hash. (Not bit for bit: PDQ's box
    filters are not symmetric under flips, so a lossless flip still moves a few bits.)"""
    rgb = photo("astronaut")
    original = pdq_hash(rgb).hex
    query = pdq_dihedral(np.ascontiguousarray(edit(rgb)))
    distances = {k: pdq_distance(v, original) for k, v in query.hex().items()}
    assert min(distances, key=distances.__getitem__) == variant, distances
    assert distances[variant] <= 31
    assert min(d for k, d in distances.items() if k != variant) > 60


def test_dihedral_original_is_the_plain_hash(photo):
    rgb = photo("coffee")
    d = pdq_dihedral(rgb)
    plain = pdq_hash(rgb)
    assert d.original == plain
    assert list(d.hex()) == list(DIHEDRAL_NAMES)
    assert len(set(d.hex().values())) == 8


def test_unrelated_image_is_far(pdq_ref):
    bridge = hash_media(
        (pdq_ref / "reg-test-input" / "dih" / "bridge-1-original.jpg").read_bytes(), limits=LIMITS
    )
    pen = hash_media(
        (pdq_ref / "reg-test-input" / "pen-and-coaster.png").read_bytes(), limits=LIMITS
    )
    assert pdq_distance(bridge.pdq, pen.pdq) > 100


def test_flat_images_have_low_quality_and_are_still_reported():
    flat = np.full((100, 100, 3), 128, np.uint8)
    h = pdq_hash(flat)
    assert h.quality < 50
    assert len(h.hex) == 64


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError):
        pdq_hash(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        pdq_hash(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        pdq_hash(np.zeros((0, 10, 3), np.uint8))


def test_distance():
    a = "0" * 63 + "1"
    assert pdq_distance(a, a) == 0
    assert pdq_distance(a, "0" * 64) == 1
    assert pdq_distance("f" * 64, "0" * 64) == 256
    assert pdq_distance(bytes(32), b"\xff" * 32) == 256
    with pytest.raises(ValueError):
        pdq_distance("abc", a)


def test_pillow_image_and_array_paths_agree(photo):
    rgb = photo("chelsea")
    assert pdq_hash(np.asarray(Image.fromarray(rgb))).hex == pdq_hash(rgb).hex
