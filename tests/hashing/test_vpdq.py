"""The vPDQ rule, on hand-made frame hashes and on real encoded videos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rempart.hashing import FrameHash, hash_media, vpdq_match
from rempart.settings import MediaLimits

LIMITS = MediaLimits()


def _random_hex(rng: np.random.Generator) -> str:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def _flip_bits(hex_value: str, n: int, rng: np.random.Generator) -> str:
    value = int(hex_value, 16)
    for bit in rng.choice(256, n, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


def _frames(codes: list[str], quality: int = 100) -> list[FrameHash]:
    return [FrameHash(timestamp=float(i), pdq=c, quality=quality) for i, c in enumerate(codes)]


def test_identical_and_near_frames_match():
    rng = np.random.default_rng(0)
    bank = [_random_hex(rng) for _ in range(10)]
    query = [_flip_bits(c, 20, rng) for c in bank]  # re-encoded: 20 bits off each
    m = vpdq_match(_frames(query), _frames(bank))
    assert m.matched and m.query_share == 1.0 and m.bank_share == 1.0
    assert m.best_distance == 20


def test_share_threshold_decides():
    rng = np.random.default_rng(1)
    bank = [_random_hex(rng) for _ in range(10)]
    eight = [*bank[:8], _random_hex(rng), _random_hex(rng)]
    seven = bank[:7] + [_random_hex(rng) for _ in range(3)]
    assert vpdq_match(_frames(eight), _frames(bank)).matched  # 80 %
    m = vpdq_match(_frames(seven), _frames(bank))
    assert not m.matched and m.query_share == pytest.approx(0.7)


def test_distance_threshold_is_inclusive():
    rng = np.random.default_rng(2)
    bank = [_random_hex(rng)]
    assert vpdq_match([_flip_bits(bank[0], 31, rng)], bank).matched
    assert not vpdq_match([_flip_bits(bank[0], 32, rng)], bank).matched


def test_clip_of_a_long_video_matches_one_way():
    rng = np.random.default_rng(3)
    bank = [_random_hex(rng) for _ in range(50)]
    clip = bank[10:20]
    m = vpdq_match(clip, bank)
    assert m.matched and m.query_share == 1.0 and m.bank_share == pytest.approx(0.2)
    assert not vpdq_match(clip, bank, bank_share_required=0.8).matched


def test_quality_gate_drops_frames_on_both_sides():
    rng = np.random.default_rng(4)
    bank = [_random_hex(rng) for _ in range(4)]
    flat = _frames(bank, quality=10)  # e.g. black frames: every hash would collide
    m = vpdq_match(flat, _frames(bank))
    assert not m.matched and m.query_share == 0.0
    assert vpdq_match(flat, _frames(bank), quality_gate=0).matched
    # Bank frames given as bare hex (hash lists have no quality) are trusted.
    assert vpdq_match(_frames(bank), bank).matched
    assert not vpdq_match([], bank).matched


def _scene_frames(photo, names, size=(320, 240)) -> list[np.ndarray]:
    frames = []
    for name in names:  # two seconds of each photograph, panning slowly
        still = np.asarray(Image.fromarray(photo(name)).resize((size[0] + 20, size[1])))
        for step in range(20):
            frames.append(np.ascontiguousarray(still[:, step : step + size[0]]))
    return frames


def test_reencoded_video_matches_and_unrelated_does_not(make_video, photo):
    scenes = _scene_frames(photo, ["coffee", "chelsea", "rocket"])
    original = make_video(scenes, fps=10)
    # The copy: half the size, another codec and container, a lower quality.
    small = [np.asarray(Image.fromarray(f).resize((160, 120))) for f in scenes]
    copy = make_video(small, fps=10, container="webm", codec="libvpx-vp9")
    other = make_video(_scene_frames(photo, ["astronaut", "hubble_deep_field", "retina"]))
    a, b, c = (hash_media(v, limits=LIMITS) for v in (original, copy, other))
    assert len(a.frames) == len(b.frames) == len(c.frames) == 6
    assert all(f["quality"] >= 50 for f in a.frames + c.frames)
    m = vpdq_match(b.frames, a.frames)
    assert m.matched and m.query_share == 1.0
    unrelated = vpdq_match(c.frames, a.frames)
    assert not unrelated.matched and unrelated.query_share == 0.0
