"""The change log: what other workers poll to keep their indexes current."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rempart.store import NewEntry, Store

Hashes = Callable[..., list[str]]


def test_every_change_is_logged_in_order(store: Store, hex_hashes: Hashes) -> None:
    assert store.latest_seq() == 0
    assert store.changes_since(0) == []
    bank = store.create_bank("b")
    hs = hex_hashes(3)
    ids = store.add_entries(bank, [NewEntry("pdq", h, quality=80) for h in hs]).ids
    store.add_entries(bank, [NewEntry("pdq", hs[0])])  # duplicate: nothing logged
    store.update_bank("b", threshold=12)
    store.remove_entries(bank, [ids[1]])
    store.delete_bank("b")

    changes = store.changes_since(0)
    assert [c.op for c in changes] == [
        "bank_created",
        "add",
        "add",
        "add",
        "bank_updated",
        "remove",
        "bank_deleted",
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert store.latest_seq() == seqs[-1]
    assert all(c.bank_id == bank.id for c in changes)
    adds = [c for c in changes if c.op == "add"]
    assert [(c.entry_id, c.signal, c.value) for c in adds] == [
        (i, "pdq", h) for i, h in zip(ids, hs, strict=True)
    ]
    # Quality is read at poll time: the entries are gone now (bank deleted).
    assert all(c.quality is None for c in adds)
    remove = changes[5]
    assert (remove.entry_id, remove.signal, remove.value) == (ids[1], "pdq", hs[1])
    assert changes[0].entry_id is None and changes[0].value is None
    # Polling from a position returns only what came after it.
    assert store.changes_since(seqs[3]) == changes[4:]
    assert store.changes_since(seqs[0], limit=2) == changes[1:3]
    assert store.changes_since(seqs[-1]) == []


def test_add_carries_quality_while_entry_exists(store: Store) -> None:
    store.create_bank("b")
    store.add_entries("b", [NewEntry("md5", "a" * 32, quality=64), NewEntry("md5", "b" * 32)])
    adds = [c for c in store.changes_since(0) if c.op == "add"]
    assert [c.quality for c in adds] == [64, None]


def test_another_process_sees_changes(db_url: str, hex_hashes: Hashes) -> None:
    # Two Store objects on one database stand for two workers.
    with Store.open(db_url) as writer, Store.open(db_url) as reader:
        seq = reader.latest_seq()
        writer.create_bank("b")
        writer.add_entries("b", [NewEntry("pdq", h) for h in hex_hashes(10)])
        seen = reader.changes_since(seq)
        assert [c.op for c in seen] == ["bank_created"] + ["add"] * 10
        assert reader.latest_seq() == writer.latest_seq() == seen[-1].seq


def test_concurrent_writers_never_leave_gaps_behind_a_reader(
    db_url: str, hex_hashes: Hashes
) -> None:
    # Writers are serialised, so a reader that has seen position p will never later find a
    # change with a smaller position. Hammer it from threads and poll meanwhile.
    with Store.open(db_url) as store:
        for name in ("w0", "w1", "w2"):
            store.create_bank(name)
        values = hex_hashes(90)
        start = store.latest_seq()
        polled: list[int] = []
        done = threading.Event()

        def write(k: int) -> None:
            for i in range(10):
                v = values[k * 30 + i * 3 : k * 30 + i * 3 + 3]
                store.add_entries(f"w{k}", [NewEntry("pdq", h) for h in v])

        def poll() -> None:
            pos = start
            while not done.is_set():
                for c in store.changes_since(pos):
                    assert c.seq > pos
                    polled.append(c.seq)
                    pos = c.seq
            polled.extend(c.seq for c in store.changes_since(pos))

        reader = threading.Thread(target=poll)
        reader.start()
        writers = [threading.Thread(target=write, args=(k,)) for k in range(3)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        reader.join()
        all_seqs = [c.seq for c in store.changes_since(start)]
        assert polled == all_seqs
        assert len(all_seqs) == 90


def test_prune_keeps_the_newest(store: Store) -> None:
    store.create_bank("b")
    store.add_entries("b", [NewEntry("md5", f"{i:032x}") for i in range(1, 6)])
    latest = store.latest_seq()
    assert store.prune_changes(latest + 100) == 5
    assert [c.seq for c in store.changes_since(0)] == [latest]
    assert store.latest_seq() == latest
    store.add_entries("b", [NewEntry("md5", "f" * 32)])
    assert store.latest_seq() == latest + 1
