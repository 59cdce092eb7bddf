"""Banks: create, list, get, update, delete; validation; tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.store import NewEntry, Store


def test_create_and_get(store: Store) -> None:
    before = datetime.now(UTC)
    bank = store.create_bank("ncii-reports", description="victim reports", threshold=20)
    assert bank.name == "ncii-reports"
    assert bank.tenant == "default"
    assert bank.description == "victim reports"
    assert (bank.threshold, bank.kind, bank.enabled) == (20, "block", True)
    assert bank.entry_count == 0 and dict(bank.counts) == {}
    assert bank.created_at.tzinfo is not None and bank.created_at >= before.replace(microsecond=0)
    assert store.get_bank("ncii-reports") == bank
    assert store.get_bank_by_id(bank.id) == bank


def test_defaults(store: Store) -> None:
    bank = store.create_bank("b")
    assert (bank.threshold, bank.kind, bank.enabled, bank.description) == (31, "block", True, "")


def test_duplicate_name_is_a_conflict(store: Store) -> None:
    store.create_bank("dup")
    with pytest.raises(ConflictError) as info:
        store.create_bank("dup")
    assert info.value.code == "bank_exists"


@pytest.mark.parametrize("name", ["", "a" * 65, "with space", "slash/", "é", "semi;colon", "ab\n"])
def test_bad_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(RempartError) as info:
        store.create_bank(name)
    assert info.value.code == "bad_name"
    assert info.value.hint


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "x" * 64, "2024.list"])
def test_good_names(store: Store, name: str) -> None:
    assert store.create_bank(name).name == name


@pytest.mark.parametrize("threshold", [-1, 65, 256, 3.5, True, "31"])
def test_bad_threshold(store: Store, threshold: object) -> None:
    with pytest.raises(RempartError) as info:
        store.create_bank("b", threshold=threshold)  # type: ignore[arg-type]
    assert info.value.code == "bad_threshold"


def test_bad_kind_and_tenant(store: Store) -> None:
    with pytest.raises(RempartError) as info:
        store.create_bank("b", kind="deny")  # type: ignore[arg-type]
    assert info.value.code == "bad_bank_kind"
    with pytest.raises(RempartError) as info:
        store.create_bank("b", tenant="bad tenant")
    assert info.value.code == "bad_name"


def test_tenants_have_separate_namespaces(store: Store) -> None:
    a = store.create_bank("shared", tenant="acme")
    b = store.create_bank("shared", tenant="globex")
    assert a.id != b.id
    assert store.get_bank("shared", "acme").id == a.id
    assert store.get_bank("shared", "globex").id == b.id
    with pytest.raises(NotFoundError):
        store.get_bank("shared")  # not in the default tenant
    assert [x.name for x in store.list_banks("acme")] == ["shared"]
    assert {(x.tenant, x.name) for x in store.list_banks()} == {
        ("acme", "shared"),
        ("globex", "shared"),
    }
    # Entries added through one tenant's bank stay there.
    store.add_entries("shared", [NewEntry("md5", "0" * 31 + "1")], tenant="acme")
    assert store.get_bank("shared", "acme").entry_count == 1
    assert store.get_bank("shared", "globex").entry_count == 0


def test_not_found_hint_lists_banks(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get_bank("nope")
    assert info.value.code == "bank_not_found"
    assert "no banks yet" in (info.value.hint or "")
    store.create_bank("alpha")
    store.create_bank("beta")
    with pytest.raises(NotFoundError) as info:
        store.get_bank("alpah")
    assert info.value.hint == "existing banks: alpha, beta"
    with pytest.raises(NotFoundError):
        store.get_bank_by_id(999_999)


def test_list_banks_counts_entries_per_signal(store: Store, hex_hashes) -> None:  # type: ignore[no-untyped-def]
    store.create_bank("b1")
    store.create_bank("b2")
    store.add_entries("b1", [NewEntry("pdq", h) for h in hex_hashes(3)])
    store.add_entries("b1", [NewEntry("md5", h) for h in hex_hashes(2, nbytes=16)])
    store.add_entries("b2", [NewEntry("sha256", h) for h in hex_hashes(4, seed=1)])
    banks = {b.name: b for b in store.list_banks()}
    assert dict(banks["b1"].counts) == {"md5": 2, "pdq": 3}
    assert dict(banks["b2"].counts) == {"sha256": 4}
    assert banks["b1"].entry_count == 5
    assert [b.name for b in store.list_banks()] == ["b1", "b2"]


def test_update(store: Store) -> None:
    bank = store.create_bank("b")
    updated = store.update_bank("b", threshold=10, kind="allow", enabled=False, description="fp")
    assert (updated.threshold, updated.kind, updated.enabled, updated.description) == (
        10,
        "allow",
        False,
        "fp",
    )
    assert updated.updated_at >= bank.updated_at
    assert updated.created_at == bank.created_at
    assert store.get_bank("b") == updated
    # Nothing given: nothing changes.
    assert store.update_bank("b") == updated
    with pytest.raises(RempartError):
        store.update_bank("b", threshold=100)
    with pytest.raises(NotFoundError):
        store.update_bank("missing", threshold=3)


def test_delete_cascades_to_entries(store: Store, hex_hashes) -> None:  # type: ignore[no-untyped-def]
    store.create_bank("gone")
    keep = store.create_bank("kept")
    ids = store.add_entries("gone", [NewEntry("pdq", h) for h in hex_hashes(5)]).ids
    store.add_entries("kept", [NewEntry("pdq", h) for h in hex_hashes(2, seed=9)])
    deleted = store.delete_bank("gone")
    assert deleted.entry_count == 5
    with pytest.raises(NotFoundError):
        store.get_bank("gone")
    for i in ids:
        with pytest.raises(NotFoundError):
            store.get_entry(i)
    assert store.count_entries() == 2
    assert store.get_bank("kept") == keep.__class__(**{**_fields(keep), "counts": {"pdq": 2}})
    with pytest.raises(NotFoundError):
        store.delete_bank("gone")
    # The name is free again, with a new id (ids are never reused).
    again = store.create_bank("gone")
    assert again.id > deleted.id


def _fields(bank: object) -> dict[str, object]:
    return {k: getattr(bank, k) for k in bank.__dataclass_fields__}  # type: ignore[attr-defined]
