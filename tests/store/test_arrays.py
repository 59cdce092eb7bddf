"""load_signal_arrays: the bulk path an in-memory index is built from."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rempart.store import NewEntry, Store

Hashes = Callable[..., list[str]]


def test_empty(store: Store) -> None:
    arrays = store.load_signal_arrays("pdq")
    assert arrays.entry_ids.shape == (0,) and arrays.codes.shape == (0, 32)
    assert arrays.codes.dtype == np.uint8 and arrays.quality.dtype == np.int16
    assert arrays.seq == 0


def test_arrays_match_entries(store: Store, hex_hashes: Hashes) -> None:
    a = store.create_bank("a")
    b = store.create_bank("b", enabled=False)
    pdq_a = hex_hashes(300)
    pdq_b = hex_hashes(50, seed=2)
    ids_a = store.add_entries(
        a, [NewEntry("pdq", h, quality=(i % 101) if i % 3 else None) for i, h in enumerate(pdq_a)]
    ).ids
    ids_b = store.add_entries(b, [NewEntry("pdq", h, quality=100) for h in pdq_b]).ids
    md5 = hex_hashes(40, nbytes=16, seed=5)
    ids_m = store.add_entries(a, [NewEntry("md5", h) for h in md5]).ids
    store.remove_entries(a, ids_a[:10])

    progress: list[int] = []
    arrays = store.load_signal_arrays("pdq", on_progress=progress.append)
    assert arrays.entry_ids.dtype == np.int64 and arrays.bank_ids.dtype == np.int64
    order = np.argsort(arrays.entry_ids)
    expected_ids = ids_a[10:] + ids_b
    assert arrays.entry_ids[order].tolist() == expected_ids
    assert arrays.bank_ids[order].tolist() == [a.id] * 290 + [b.id] * 50
    codes = arrays.codes[order]
    assert [bytes(row).hex() for row in codes] == pdq_a[10:] + pdq_b
    quality = arrays.quality[order].tolist()
    assert quality[:290] == [(i % 101) if i % 3 else -1 for i in range(10, 300)]
    assert quality[290:] == [100] * 50
    assert arrays.seq == store.latest_seq()
    assert progress and progress[-1] == 340

    md5_arrays = store.load_signal_arrays("MD5")
    assert md5_arrays.codes.shape == (40, 16)
    assert sorted(md5_arrays.entry_ids.tolist()) == ids_m
    by_id = dict(
        zip(md5_arrays.entry_ids.tolist(), (bytes(r).hex() for r in md5_arrays.codes), strict=True)
    )
    assert [by_id[i] for i in ids_m] == md5


def test_snapshot_plus_changes_is_current(store: Store, hex_hashes: Hashes) -> None:
    # The recipe in the repository docstring: snapshot, then replay changes_since(seq).
    store.create_bank("b")
    hs = hex_hashes(20)
    ids = store.add_entries("b", [NewEntry("pdq", h) for h in hs[:10]]).ids
    snap = store.load_signal_arrays("pdq")
    live = {int(i): bytes(c).hex() for i, c in zip(snap.entry_ids, snap.codes, strict=True)}
    store.add_entries("b", [NewEntry("pdq", h) for h in hs[10:]])
    store.remove_entries("b", ids[:4])
    for change in store.changes_since(snap.seq):
        if change.op == "add" and change.signal == "pdq":
            assert change.entry_id is not None and change.value is not None
            live[change.entry_id] = change.value
        elif change.op == "remove":
            live.pop(change.entry_id or 0, None)
    fresh = store.load_signal_arrays("pdq")
    assert live == {
        int(i): bytes(c).hex() for i, c in zip(fresh.entry_ids, fresh.codes, strict=True)
    }
