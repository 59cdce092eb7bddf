"""The matcher and scanner against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from rempart.entries import entries_for_values
from rempart.errors import NotFoundError
from rempart.examples import EDITS, jpeg_bytes, synthetic_photo
from rempart.hashing import hash_media
from rempart.scan import Scanner
from rempart.settings import load_settings
from rempart.store import NewEntry


@pytest.fixture
def settings():  # type: ignore[no-untyped-def]
    return load_settings(database_url="sqlite://")


def _pdq(data: bytes, settings) -> str:  # type: ignore[no-untyped-def]
    return hash_media(data, limits=settings.limits).pdq


def _flip_bits(hex_value: str, n: int, seed: int = 0) -> str:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_value), np.uint8))
    idx = np.random.default_rng(seed).choice(256, n, replace=False)
    bits[idx] ^= 1
    return np.packbits(bits).tobytes().hex()


def test_edited_copies_match_their_original(store, settings) -> None:  # type: ignore[no-untyped-def]
    original = synthetic_photo(7)
    store.create_bank("reported")
    added = store.add_entries(
        "reported", [NewEntry(signal="pdq", value=_pdq(jpeg_bytes(original), settings))]
    )
    scanner = Scanner(store, settings)
    for name, edit in EDITS.items():
        result = scanner.scan_bytes(jpeg_bytes(edit(original), quality=70))
        assert [m.entry_id for m in result.match.matches] == list(added.ids), name
        match = result.match.matches[0]
        assert match.distance <= 31 and match.threshold == 31
    rotated = scanner.scan_bytes(jpeg_bytes(EDITS["rotated"](original)))
    assert rotated.match.matches[0].variant in {"rot90", "rot270"}
    boxed = scanner.scan_bytes(jpeg_bytes(EDITS["letterboxed"](original)))
    assert boxed.match.matches[0].variant == "trimmed+original"
    unrelated = scanner.scan_bytes(jpeg_bytes(synthetic_photo(8)))
    assert unrelated.match.matches == []


def test_per_bank_threshold_is_respected(store, settings) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes(synthetic_photo(11))
    pdq = _pdq(data, settings)
    store.create_bank("strict", threshold=10)
    store.create_bank("loose", threshold=40)
    far = _flip_bits(pdq, 25)
    store.add_entries("strict", [NewEntry(signal="pdq", value=far)])
    store.add_entries("loose", [NewEntry(signal="pdq", value=far)])
    result = Scanner(store, settings).scan_bytes(data)
    assert [(m.bank, m.distance) for m in result.match.matches] == [("loose", 25)]
    assert result.match.matches[0].threshold == 40


def test_allow_bank_suppresses_block_match(store, settings) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes(synthetic_photo(12))
    pdq = _pdq(data, settings)
    store.create_bank("reported")
    store.create_bank("known-fp", kind="allow")
    store.add_entries("reported", [NewEntry(signal="pdq", value=pdq)])
    scanner = Scanner(store, settings)
    assert len(scanner.scan_bytes(data).match.matches) == 1
    store.add_entries("known-fp", [NewEntry(signal="pdq", value=_flip_bits(pdq, 3))])
    scanner.matcher.refresh()
    result = scanner.scan_bytes(data).match
    assert result.matches == []
    assert [m.bank for m in result.suppressed] == ["reported"]
    assert [m.bank for m in result.allowed] == ["known-fp"]


def test_exact_hashes_match_even_under_the_quality_gate(store, settings) -> None:  # type: ignore[no-untyped-def]
    flat = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 90, 90)).save(flat, "PNG")
    data = flat.getvalue()
    hashes = hash_media(data, limits=settings.limits)
    assert hashes.pdq_quality < 50
    store.create_bank("reported")
    store.add_entries("reported", entries_for_values({"md5": [hashes.md5]}))
    result = Scanner(store, settings).scan_bytes(data).match
    assert [(m.signal, m.distance) for m in result.matches] == [("md5", 0)]
    assert any("quality" in w for w in result.warnings)


def test_changes_are_visible_after_refresh_without_reload(store, settings) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes(synthetic_photo(13))
    store.create_bank("reported")
    scanner = Scanner(store, settings)
    assert scanner.scan_bytes(data).match.matches == []
    added = store.add_entries("reported", [NewEntry(signal="pdq", value=_pdq(data, settings))])
    assert scanner.matcher.refresh() >= 1
    assert [m.entry_id for m in scanner.scan_bytes(data).match.matches] == list(added.ids)
    store.remove_entries("reported", list(added.ids))
    scanner.matcher.refresh()
    assert scanner.scan_bytes(data).match.matches == []
    store.update_bank("reported", enabled=False)
    store.add_entries("reported", [NewEntry(signal="pdq", value=_pdq(data, settings))])
    scanner.matcher.refresh()
    assert scanner.scan_bytes(data).match.matches == []


def test_disabled_and_unknown_banks(store, settings) -> None:  # type: ignore[no-untyped-def]
    store.create_bank("reported")
    scanner = Scanner(store, settings)
    with pytest.raises(NotFoundError) as info:
        scanner.scan_bytes(jpeg_bytes(synthetic_photo(1)), banks=["nope"])
    assert info.value.code == "bank_not_found"


def test_mirrored_letterboxed_copy_matches(store, settings) -> None:  # type: ignore[no-untyped-def]
    original = synthetic_photo(21)
    store.create_bank("reported")
    store.add_entries(
        "reported", [NewEntry(signal="pdq", value=_pdq(jpeg_bytes(original), settings))]
    )
    copy = ImageOps.expand(ImageOps.mirror(original), border=20, fill=(0, 0, 0))
    result = Scanner(store, settings).scan_bytes(jpeg_bytes(copy))
    assert result.match.matches and result.match.matches[0].variant.startswith("trimmed+flip")


def _frames(seed: int, n: int = 6) -> list[np.ndarray]:
    """n seconds of a slowly panning synthetic scene, 10 frames per second."""
    base = np.asarray(synthetic_photo(seed, (400, 300)))
    return [np.roll(base, shift=i, axis=1)[:240, :320].copy() for i in range(0, n * 10)]


def test_video_copy_matches_by_frames(store, settings, make_video, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rempart.entries import entries_for_file

    original = make_video(_frames(31), fps=10)
    reencoded = make_video(_frames(31), fps=10, container="webm", codec="libvpx")
    other = make_video(_frames(32), fps=10)
    store.create_bank("videos")
    path = tmp_path / "v.mp4"
    path.write_bytes(original)
    entries = entries_for_file(path, settings)
    assert {e.signal for e in entries} == {"md5", "vpdq"}
    store.add_entries("videos", entries)
    scanner = Scanner(store, settings)
    exact = scanner.scan_bytes(original).match.matches
    assert {m.signal for m in exact} == {"md5", "vpdq"}
    copy = scanner.scan_bytes(reencoded).match.matches
    assert [m.signal for m in copy] == ["vpdq"] and copy[0].share >= 0.8
    assert scanner.scan_bytes(other).match.matches == []


def test_two_matchers_on_one_store_stay_in_step(db_url, settings) -> None:  # type: ignore[no-untyped-def]
    """A change written through one connection is seen by another process's matcher."""
    from rempart.store import Store

    data = jpeg_bytes(synthetic_photo(41))
    with Store.open(db_url) as writer, Store.open(db_url) as reader:
        writer.create_bank("reported")
        scanner = Scanner(reader, settings)
        added = writer.add_entries("reported", [NewEntry(signal="pdq", value=_pdq(data, settings))])
        scanner.matcher.refresh()
        assert [m.entry_id for m in scanner.scan_bytes(data).match.matches] == list(added.ids)
        writer.delete_bank("reported")
        scanner.matcher.refresh()
        with pytest.raises(NotFoundError):
            scanner.scan_bytes(data, banks=["reported"])
        assert scanner.scan_bytes(data).match.matches == []
