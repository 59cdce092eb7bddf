"""Entries: validation, add, duplicates, removal (hard delete), lookups, streaming."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from rempart.errors import HashFormatError, NotFoundError, RempartError
from rempart.store import NewEntry, Store

Hashes = Callable[..., list[str]]


# -- NewEntry validation (pure) ---------------------------------------------------------------


def test_new_entry_canonicalises() -> None:
    e = NewEntry(" PDQ ", "0x" + "AB" * 32, quality=90, source="  ngo  ", tags=[" a", "b", "a", ""])
    assert (e.signal, e.value, e.quality, e.source, e.tags) == (
        "pdq",
        "ab" * 32,
        90,
        "ngo",
        ("a", "b"),
    )
    assert NewEntry("md5", "f" * 32).meta == {}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"signal": "pdq", "value": "0" * 64}, "malformed_hash"),  # all-zero PDQ
        ({"signal": "pdq", "value": "ab" * 31}, "malformed_hash"),
        ({"signal": "md5", "value": "g" * 32}, "malformed_hash"),
        ({"signal": "sha256", "value": "a" * 32}, "malformed_hash"),
        ({"signal": "sha1", "value": "a" * 40}, "unknown_signal"),
        ({"signal": 5, "value": "a" * 32}, "unknown_signal"),
        ({"signal": "md5", "value": 12}, "malformed_hash"),
        ({"signal": "md5", "value": "a" * 32, "quality": 101}, "bad_quality"),
        ({"signal": "md5", "value": "a" * 32, "quality": -1}, "bad_quality"),
        ({"signal": "md5", "value": "a" * 32, "quality": True}, "bad_quality"),
        ({"signal": "md5", "value": "a" * 32, "quality": "90"}, "bad_quality"),
        ({"signal": "md5", "value": "a" * 32, "tags": "a;b"}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "tags": ["a;b"]}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "tags": [3]}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "tags": ["x\ny"]}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "meta": [1]}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": []}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": ""}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "tags": ""}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "meta": {1: "x"}}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": {"x": float("nan")}}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": {"x": object()}}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": {"x": "y" * 20_000}}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "source": 5}, "bad_source"),
        ({"signal": "md5", "value": "a" * 32, "source": "a\x00b"}, "bad_source"),
        ({"signal": "md5", "value": "a" * 32, "source": "a\ud800"}, "bad_source"),
        ({"signal": "md5", "value": "a" * 32, "tags": ["\udfff"]}, "bad_tags"),
        ({"signal": "md5", "value": "a" * 32, "meta": {"k": "\x00"}}, "bad_metadata"),
        ({"signal": "md5", "value": "a" * 32, "meta": {"\ud800": 1}}, "bad_metadata"),
        (
            {"signal": "md5", "value": "a" * 32, "meta": {"k": [{"x": "\ud800"}]}},
            "bad_metadata",
        ),
    ],
)
def test_new_entry_rejects(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(HashFormatError) as info:
        NewEntry(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == code
    assert info.value.message


@given(st.binary(min_size=32, max_size=32).filter(any), st.booleans())
def test_new_entry_accepts_any_nonzero_pdq(raw: bytes, upper: bool) -> None:
    text = raw.hex().upper() if upper else raw.hex()
    assert NewEntry("pdq", text).value == raw.hex()


# -- adding and removing ----------------------------------------------------------------------


def test_add_reports_duplicates(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    hs = hex_hashes(4)
    first = store.add_entries("b", [NewEntry("pdq", h) for h in hs[:3]])
    assert (first.added, first.duplicates, len(first.ids)) == (3, 0, 3)
    assert first.ids == sorted(first.ids)
    # Two already there, one repeated within the call, one new; case differences are the same hash.
    second = store.add_entries(
        "b",
        [
            NewEntry("pdq", hs[0].upper()),
            NewEntry("pdq", hs[1]),
            NewEntry("pdq", hs[3]),
            NewEntry("pdq", hs[3]),
        ],
    )
    assert (second.added, second.duplicates) == (1, 3)
    assert second.ids[0] > max(first.ids)
    assert store.get_bank("b").entry_count == 4
    # The same value under another signal, or in another bank, is not a duplicate.
    store.create_bank("c")
    assert store.add_entries("b", [NewEntry("sha256", hs[0])]).added == 1
    assert store.add_entries("c", [NewEntry("pdq", hs[0])]).added == 1
    assert store.add_entry("c", NewEntry("pdq", hs[0])) is None
    assert isinstance(store.add_entry("c", NewEntry("pdq", hs[1])), int)


def test_add_entries_is_one_transaction(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    seq = store.latest_seq()

    def entries() -> Iterator[NewEntry]:
        for h in hex_hashes(25):
            yield NewEntry("pdq", h)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        store.add_entries("b", entries(), batch_size=10)
    assert store.get_bank("b").entry_count == 0
    assert store.latest_seq() == seq


def test_database_constraint_failure_rolls_back(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    hs = hex_hashes(30)
    bad = NewEntry("pdq", hs[20])
    object.__setattr__(bad, "quality", 500)  # bypass validation: only the CHECK stops it
    entries = [NewEntry("pdq", h) for h in hs[:20]] + [bad] + [NewEntry("pdq", h) for h in hs[21:]]
    with pytest.raises(IntegrityError):
        store.add_entries("b", entries, batch_size=7)
    assert store.count_entries() == 0
    assert [c.op for c in store.changes_since(0)] == ["bank_created"]


def test_add_rejects_non_entries(store: Store) -> None:
    store.create_bank("b")
    with pytest.raises(TypeError):
        store.add_entries("b", [("md5", "a" * 32)])  # type: ignore[list-item]


def test_get_entry_round_trips_fields(store: Store) -> None:
    bank = store.create_bank("b")
    [i] = store.add_entries(
        bank,
        [
            NewEntry(
                "md5",
                "A" * 32,
                quality=77,
                source="hotline",
                tags=["x", "y"],
                meta={"case": "17", "n": [1, 2], "ok": True, "none": None},
            )
        ],
    ).ids
    e = store.get_entry(i)
    assert (e.id, e.bank_id, e.bank, e.tenant) == (i, bank.id, "b", "default")
    assert (e.signal, e.value, e.quality, e.source) == ("md5", "a" * 32, 77, "hotline")
    assert e.tags == ("x", "y")
    assert e.meta == {"case": "17", "n": [1, 2], "ok": True, "none": None}
    assert e.added_at.tzinfo is not None
    with pytest.raises(NotFoundError) as info:
        store.get_entry(i + 1000)
    assert info.value.code == "entry_not_found"


def test_remove_is_a_hard_delete(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    other = store.create_bank("other")
    ids = store.add_entries("b", [NewEntry("pdq", h) for h in hex_hashes(5)]).ids
    [foreign] = store.add_entries(other, [NewEntry("md5", "1" * 32)]).ids
    result = store.remove_entries("b", [ids[1], ids[3], ids[3], 10**9, foreign])
    assert result.removed == [ids[1], ids[3]]
    assert result.not_found == [10**9, foreign]  # the other bank's entry is not touched
    assert result.count == 2
    assert store.get_entry(foreign).bank == "other"
    for i in (ids[1], ids[3]):
        with pytest.raises(NotFoundError):
            store.get_entry(i)
    assert store.get_bank("b").entry_count == 3
    # Removing again is harmless; re-adding the hash gives it a new id.
    assert store.remove_entries("b", [ids[1]]).removed == []
    value = hex_hashes(5)[1]
    [new_id] = store.add_entries("b", [NewEntry("pdq", value)]).ids
    assert new_id > max(ids)


def test_entry_operations_need_an_existing_bank(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.add_entries("missing", [NewEntry("md5", "a" * 32)])
    with pytest.raises(NotFoundError):
        store.remove_entries("missing", [1])
    with pytest.raises(NotFoundError):
        store.iter_entries("missing")
    with pytest.raises(NotFoundError):
        store.add_entries(12345, [])


def test_iter_entries_streams_in_id_order(store: Store, hex_hashes: Hashes) -> None:
    bank = store.create_bank("b")
    store.create_bank("c")
    pdq = hex_hashes(50)
    md5 = hex_hashes(20, nbytes=16, seed=3)
    ids = store.add_entries("b", [NewEntry("pdq", h) for h in pdq]).ids
    ids += store.add_entries("b", [NewEntry("md5", h) for h in md5]).ids
    store.add_entries("c", [NewEntry("md5", h) for h in hex_hashes(5, nbytes=16, seed=4)])
    got = list(store.iter_entries("b", chunk_size=7))
    assert [e.id for e in got] == ids
    assert [e.value for e in got] == pdq + md5
    assert [e.value for e in store.iter_entries(bank, "md5")] == md5
    assert [e.value for e in store.iter_entries(bank.id, "PDQ")] == pdq


def test_lookup_exact(store: Store) -> None:
    a = store.create_bank("a")
    b = store.create_bank("b", enabled=False)
    t = store.create_bank("a", tenant="t2")
    md5 = "0123456789abcdef0123456789abcdef"
    for bank in (a, b, t):
        store.add_entries(bank, [NewEntry("md5", md5)])
    store.add_entries(a, [NewEntry("md5", "f" * 32)])
    assert {e.bank_id for e in store.lookup_exact("md5", md5.upper())} == {a.id, b.id, t.id}
    assert {e.bank_id for e in store.lookup_exact("md5", md5, enabled_only=True)} == {a.id, t.id}
    assert {e.bank_id for e in store.lookup_exact("md5", md5, tenant="t2")} == {t.id}
    assert {e.bank_id for e in store.lookup_exact("md5", md5, ["a", "b"])} == {a.id, b.id}
    assert {e.bank_id for e in store.lookup_exact("md5", md5, [t.id])} == {t.id}
    assert {e.bank_id for e in store.lookup_exact("md5", md5, ["a"], tenant="t2")} == {t.id}
    assert store.lookup_exact("sha256", "a" * 64) == []
    with pytest.raises(HashFormatError):
        store.lookup_exact("md5", "nothex")


def test_bulk_path_counts_and_rolls_back(store: Store, hex_hashes: Hashes) -> None:
    # Batches this large take the bulk path (COPY + INSERT ... SELECT on PostgreSQL).
    store.create_bank("b")
    hs = hex_hashes(1500)
    first = store.add_entries("b", [NewEntry("pdq", h) for h in hs[:1000]], batch_size=400)
    assert (first.added, first.duplicates, len(first.ids)) == (1000, 0, 1000)
    # Overlaps the first call and repeats values across its own batches.
    second = store.add_entries(
        "b", [NewEntry("pdq", h) for h in hs[800:] + hs[1200:1300]], batch_size=400
    )
    assert (second.added, second.duplicates) == (500, 300)
    entries = list(store.iter_entries("b"))
    assert [e.value for e in entries] == hs
    assert [e.id for e in entries] == first.ids + second.ids

    bad = NewEntry("md5", "e" * 32)
    object.__setattr__(bad, "quality", 101)
    more = [NewEntry("md5", f"{i + 1:032x}") for i in range(900)]
    with pytest.raises(IntegrityError):
        store.add_entries("b", [*more[:700], bad, *more[700:]], batch_size=300)
    assert store.get_bank("b").entry_count == 1500
    # The next bulk transaction starts clean.
    assert store.add_entries("b", more, batch_size=300).added == 900


# -- video entries ----------------------------------------------------------------------------


def test_video_entry_validation(hex_hashes: Hashes) -> None:
    frames = hex_hashes(3)
    e = NewEntry("VPDQ", "A" * 32, frames=[frames[0].upper(), "0" * 64, frames[1], frames[2]])
    assert (e.signal, e.value) == ("vpdq", "a" * 32)
    assert e.frames == tuple(frames)  # the blank frame is dropped
    for bad in (
        {"frames": []},
        {"frames": ["0" * 64]},
        {"frames": "abc"},
        {"frames": [frames[0], "xyz"]},
        {"frames": frames * 700},
    ):
        with pytest.raises(HashFormatError) as info:
            NewEntry("vpdq", "a" * 32, **bad)  # type: ignore[arg-type]
        assert info.value.code == "bad_frames"
    with pytest.raises(HashFormatError) as info:
        NewEntry("vpdq", frames[0], frames=frames)  # the value is the video's MD5
    assert info.value.code == "malformed_hash"
    with pytest.raises(HashFormatError) as info:
        NewEntry("pdq", frames[0], frames=frames)
    assert info.value.code == "bad_frames"


def test_video_entries_are_stored_with_their_frames(store: Store, hex_hashes: Hashes) -> None:
    a = store.create_bank("a")
    b = store.create_bank("b")
    frames = hex_hashes(40)
    [va] = store.add_entries(a, [NewEntry("vpdq", "1" * 32, frames=frames[:30])]).ids
    [vb] = store.add_entries(b, [NewEntry("vpdq", "2" * 32, frames=frames[30:])]).ids
    [pa] = store.add_entries(a, [NewEntry("pdq", frames[0])]).ids
    assert store.add_entries(a, [NewEntry("vpdq", "1" * 32, frames=frames[:2])]).duplicates == 1
    assert store.get_entry(va).frames == tuple(frames[:30])
    assert store.get_entry(pa).frames == ()
    assert [e.id for e in store.iter_video_entries()] == [va, vb]
    assert [e.frames for e in store.iter_video_entries("b")] == [tuple(frames[30:])]
    assert [e.id for e in store.get_entries([pa, vb, 10**9, va])] == [va, vb, pa]
    assert [e.id for e in store.lookup_exact("vpdq", "1" * 32)] == [va]
    assert [e.id for e in store.lookup_exact("vpdq", "1" * 32, bank_ids=[b.id])] == []
    assert store.get_bank("a").counts == {"pdq": 1, "vpdq": 1}
    adds = [c for c in store.changes_since(0) if c.op == "add"]
    assert [(c.entry_id, c.signal) for c in adds] == [(va, "vpdq"), (vb, "vpdq"), (pa, "pdq")]
    with pytest.raises(RempartError) as info:
        store.load_signal_arrays("vpdq")
    assert info.value.code == "unsupported_signal"
    # The PDQ arrays hold image hashes only, and unpack as four arrays.
    ids, bank_ids, _codes, _quality = arrays = store.load_signal_arrays("pdq")
    assert ids.tolist() == [pa] and bank_ids.tolist() == [a.id]
    assert arrays.seq == store.latest_seq()
