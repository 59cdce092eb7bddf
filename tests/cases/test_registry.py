"""Cases in the library: submit, status, lockout, withdraw -- on SQLite and PostgreSQL.

Images are drawn by ``rempart.examples``; face templates are random vectors sealed the way
``rempart protect`` seals them (no face is needed to test storage and deletion).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from rempart.cases import build_submission, load_submission, seal_template
from rempart.cases.registry import (
    CaseError,
    CaseRepository,
    client_key,
    entries_for_submission,
    normalise_case_number,
)
from rempart.cases.service_key import write_keypair
from rempart.errors import ConflictError, RempartError
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.scan import Scanner
from rempart.settings import MediaLimits, Settings, load_settings
from rempart.store import Store
from rempart.store.audit import AuditLog
from rempart.store.cases import (
    CASES_TENANT,
    case_alerts_table,
    case_pin_failures_table,
    cases_table,
)
from rempart.store.faces import FaceTemplates, face_templates_table, parse_key
from rempart.store.keys import KeyRepository
from rempart.store.models import changes_table, entries_table

FACE_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64


def _photo_dir(tmp_path: Path, seed: int = 7) -> Path:
    d = tmp_path / f"photos-{seed}"
    d.mkdir()
    (d / "mine.jpg").write_bytes(jpeg_bytes(synthetic_photo(seed)))
    return d


def _copy(seed: int = 7) -> bytes:
    """A resized, recompressed copy of the drawn photo (what a platform would see)."""
    img = synthetic_photo(seed)
    img = img.resize((img.width * 2 // 3, img.height * 2 // 3))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=55)
    return buf.getvalue()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, bytes]:
    private, public = tmp_path / "svc.key", tmp_path / "svc.pub"
    write_keypair(private, public)
    return private, bytes.fromhex(public.read_text().strip())


@pytest.fixture
def settings(db_url: str, keys: tuple[Path, bytes]) -> Settings:
    s = load_settings(database_url=db_url, face_template_key=FACE_KEY)
    s.cases = s.cases.model_copy(
        update={"service_key_file": keys[0], "pin_attempts": 3, "lockout_s": 60.0}
    )
    s.service = s.service.model_copy(update={"egress_allow_private": True})
    return s


def _count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_submit_status_scan_withdraw(store: Store, settings: Settings, tmp_path: Path) -> None:
    sub = load_submission(build_submission([_photo_dir(tmp_path)], limits=MediaLimits()).to_json())
    cases = CaseRepository(store, settings)
    new = cases.submit(sub)
    assert normalise_case_number(new.number) == new.number
    assert len(new.pin) == 8 and new.pin.isdigit() and new.entries == 3
    # Only the Argon2id hash of the PIN is stored.
    with store.engine.connect() as conn:
        row = conn.execute(select(cases_table)).one()
    assert row.pin_hash.startswith("$argon2id$") and new.pin not in row.pin_hash

    status = cases.status(new.number.lower().replace("-", " "), new.pin)
    assert status.status == "open" and status.matches == 0 and status.entries == 3

    # Entries are opaque: no source, tags or metadata, nothing names the case.
    for entry in store.iter_entries("cases", tenant=CASES_TENANT):
        assert entry.source is None and entry.tags == () and entry.meta == {}

    scanner = Scanner(store, settings)
    found = scanner.scan_bytes(_copy(), tenant="acme").match
    assert [m.bank for m in found.matches] == ["cases"]
    assert new.number not in json.dumps(found.to_dict())
    # banks=[...] by name works for the cases bank too, and no tenant can hide it behind a
    # bank of its own called "cases".
    assert scanner.scan_bytes(_copy(), tenant="acme", banks=["cases"]).match.matches
    with pytest.raises(ConflictError) as reserved:
        store.create_bank("cases", tenant="shadow")
    assert reserved.value.code == "reserved_bank_name"
    assert [m.bank for m in scanner.scan_bytes(_copy(), tenant="shadow").match.matches] == ["cases"]

    values = {e.value for e in store.iter_entries("cases", tenant=CASES_TENANT)}
    done = cases.withdraw(new.number, new.pin)
    assert done.entries_removed == 3
    scanner.matcher.refresh()
    assert not scanner.scan_bytes(_copy(), tenant="acme").match.matches

    # Nothing of hers is left: no entry, no hash in the change log, only the tombstone.
    assert store.count_entries() == 0
    with store.engine.connect() as conn:
        logged = {v for v in conn.execute(select(changes_table.c.value)).scalars() if v}
        tomb = conn.execute(select(cases_table)).one()
    assert not (values & logged)
    assert tomb.status == "withdrawn" and tomb.pin_hash is None and tomb.contact_sealed is None
    info = cases.get(new.number)
    assert info.status == "withdrawn" and info.withdrawn_at is not None and info.entries == 0
    events = AuditLog(store).list(CASES_TENANT)
    assert [e.action for e in events] == ["case.withdraw", "case.submit"]
    assert not any(v in json.dumps([e.to_dict() for e in events]) for v in values)
    # A withdrawn case answers like an unknown one.
    with pytest.raises(CaseError) as e:
        cases.status(new.number, new.pin)
    assert e.value.code == "case_access_denied"


def test_shared_hash_survives_the_other_case(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    text = build_submission([_photo_dir(tmp_path)], limits=MediaLimits()).to_json()
    cases = CaseRepository(store, settings)
    first = cases.submit(load_submission(text))
    second = cases.submit(load_submission(text))
    assert store.count_entries() == 3
    assert cases.withdraw(first.number, first.pin).entries_removed == 0
    assert store.count_entries() == 3
    assert cases.status(second.number, second.pin).entries == 3
    assert cases.withdraw(second.number, second.pin).entries_removed == 3
    assert store.count_entries() == 0


def _answer(repo: CaseRepository, number: str, pin: str, client: str) -> tuple[str, str]:
    """``("ok", "")`` or the (code, message) of the refusal; lock times are left out."""
    try:
        repo.status(number, pin, client=client)
    except CaseError as e:
        return e.code, e.message
    return "ok", ""


def _unlock(store: Store) -> None:
    """Let every lock run out (as time passing would), keeping the counts."""
    with store.engine.begin() as conn:
        conn.execute(
            case_pin_failures_table.update().values(locked_until=datetime.now(UTC) - timedelta(1))
        )


def test_wrong_pins_lock_one_address_in_every_worker(
    db_url: str, store: Store, settings: Settings, tmp_path: Path
) -> None:
    sub = load_submission(build_submission([_photo_dir(tmp_path)], limits=MediaLimits()).to_json())
    new = CaseRepository(store, settings).submit(sub)
    wrong = "00000000" if new.pin != "00000000" else "11111111"
    # Two "workers": separate stores (connection pools) on the same database.
    with Store.open(db_url) as other:
        a, b = CaseRepository(store, settings), CaseRepository(other, settings)
        for repo in (a, b, a):  # the third wrong PIN from this address locks it out
            assert _answer(repo, new.number, wrong, "203.0.113.9")[0] == "case_access_denied"
        for repo in (a, b):
            with pytest.raises(CaseError) as e:
                repo.status(new.number, new.pin, client="203.0.113.9")  # even the right PIN
            assert e.value.code == "case_locked" and e.value.status == 429
            assert 0 < e.value.retry_after_s <= 60  # type: ignore[attr-defined]
            with pytest.raises(CaseError) as e:
                repo.withdraw(new.number, new.pin, client="203.0.113.9")
            assert e.value.code == "case_locked"
        # She, from her own address, is not locked out by someone else's wrong PINs.
        assert b.status(new.number, new.pin, client="198.51.100.7").status == "open"
        assert a.get(new.number).locked_until is None
    # The next lockout of the same address lasts twice as long...
    cases = CaseRepository(store, settings)

    def lockout_after_three_wrong() -> float:
        for _ in range(3):
            _answer(cases, new.number, wrong, "203.0.113.9")
        with pytest.raises(CaseError) as e:
            cases.status(new.number, new.pin, client="203.0.113.9")
        assert e.value.code == "case_locked"
        return float(e.value.retry_after_s)  # type: ignore[attr-defined]

    _unlock(store)
    assert 60 < lockout_after_three_wrong() <= 120
    # ... until the right PIN comes from that address.
    _unlock(store)
    assert cases.status(new.number, new.pin, client="203.0.113.9").status == "open"
    assert lockout_after_three_wrong() <= 60


def test_the_number_locks_for_everyone_only_at_a_much_higher_count(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    settings.cases = settings.cases.model_copy(update={"case_pin_attempts": 8})
    sub = load_submission(build_submission([_photo_dir(tmp_path)], limits=MediaLimits()).to_json())
    cases = CaseRepository(store, settings)
    new = cases.submit(sub)
    wrong = "00000000" if new.pin != "00000000" else "11111111"
    # Four addresses, two wrong PINs each (under the per-address limit of 3): 8 in all.
    for i in range(4):
        for _ in range(2):
            assert _answer(cases, new.number, wrong, f"192.0.2.{i}")[0] == "case_access_denied"
    with pytest.raises(CaseError) as e:
        cases.status(new.number, new.pin, client="198.51.100.7")  # her, from elsewhere
    assert e.value.code == "case_locked" and "this case number is locked" in e.value.message
    # Locked until the window (a day by default) ends, and the operator sees it.
    assert e.value.retry_after_s > 23 * 3600  # type: ignore[attr-defined]
    assert cases.get(new.number).locked_until is not None
    # Once the window is over the count starts again.
    with store.engine.begin() as conn:
        conn.execute(
            case_pin_failures_table.update().values(
                first_at=datetime.now(UTC) - timedelta(days=2),
                locked_until=datetime.now(UTC) - timedelta(days=1),
            )
        )
    assert _answer(cases, new.number, wrong, "192.0.2.0")[0] == "case_access_denied"
    assert cases.status(new.number, new.pin, client="198.51.100.7").status == "open"
    # Old rows were forgotten: only this window's counts are left.
    assert _count(store, case_pin_failures_table) == 2


def test_ipv6_addresses_count_per_64() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1")
    assert client_key("192.0.2.1") != client_key("192.0.2.2")
    assert "192.0.2.1" not in client_key("192.0.2.1")


def test_unknown_case_and_wrong_pin_look_the_same(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    cases = CaseRepository(store, settings)
    answers = set()
    for number, pin in (("RMP-0000-0000-0000", "12345678"), ("nonsense", ""), ("", "x" * 500)):
        with pytest.raises(CaseError) as e:
            cases.status(number, pin)
        answers.add((e.value.code, e.value.message))
    assert len(answers) == 1
    with pytest.raises(RempartError) as nf:
        cases.get("RMP-0000-0000-0000")
    assert nf.value.code == "case_not_found"

    # Wrong PINs on a real number, a withdrawn one and an unknown one: the same answers, step
    # by step -- the lockouts (per address, then per number) never tell which numbers exist.
    settings.cases = settings.cases.model_copy(update={"case_pin_attempts": 6})
    text = build_submission([_photo_dir(tmp_path)], limits=MediaLimits()).to_json()
    real = cases.submit(load_submission(text)).number
    withdrawn = cases.submit(load_submission(text))
    cases.withdraw(withdrawn.number, withdrawn.pin)
    unknown = "RMP-ZZZZ-ZZZZ-ZZZ0"
    # 3 wrong, then locked out; 2 more wrong; the 6th wrong in all locks the number.
    clients = ["192.0.2.1"] * 4 + ["192.0.2.2"] * 2 + ["192.0.2.3"] * 2 + ["192.0.2.4"]
    seen = {
        number: [_answer(cases, number, "00000001", c) for c in clients]
        for number in (real, withdrawn.number, unknown)
    }
    assert seen[real] == seen[unknown] == seen[withdrawn.number], seen
    codes = [code for code, _ in seen[real]]
    denied, locked = "case_access_denied", "case_locked"
    assert codes == [denied] * 3 + [locked] + [denied] * 3 + [locked] * 2, codes


def test_face_template_stored_under_opaque_id_and_deleted(
    store: Store, settings: Settings, keys: tuple[Path, bytes], tmp_path: Path
) -> None:
    sub = build_submission([_photo_dir(tmp_path)], limits=MediaLimits())
    vector = np.random.default_rng(1).normal(size=128).astype(np.float32)
    sub.face_templates.append(seal_template(vector, keys[1]))
    cases = CaseRepository(store, settings)
    new = cases.submit(load_submission(sub.to_json()))
    assert new.face_templates == 1
    faces = FaceTemplates(store, parse_key(FACE_KEY))
    people, matrix = faces.load_all(CASES_TENANT)
    assert len(people) == 1 and people[0].startswith("p_") and new.number not in people[0]
    np.testing.assert_allclose(matrix[0], vector)
    assert cases.status(new.number, new.pin).face_enrolled
    assert cases.withdraw(new.number, new.pin).templates_removed == 1
    assert _count(store, face_templates_table) == 0


def test_bad_submissions_store_nothing(
    store: Store, settings: Settings, keys: tuple[Path, bytes], tmp_path: Path
) -> None:
    import nacl.public

    cases = CaseRepository(store, settings)
    sub = build_submission([_photo_dir(tmp_path)], limits=MediaLimits())
    other_key = bytes(nacl.public.PrivateKey.generate().public_key)
    sub.face_templates.append(seal_template(np.ones(128, dtype=np.float32), other_key))
    with pytest.raises(RempartError) as e:
        cases.submit(load_submission(sub.to_json()))
    assert e.value.code == "wrong_service_key"

    good = load_submission(
        build_submission([_photo_dir(tmp_path, 8)], limits=MediaLimits()).to_json()
    )
    with pytest.raises(RempartError) as e:
        cases.submit(good, email="not an address")
    assert e.value.code == "bad_contact"
    with pytest.raises(RempartError) as e:
        cases.submit(good, webhook_url="ftp://example.org/x")
    assert e.value.code == "bad_contact"

    # A failure inside the transaction (a face key that cannot seal) leaves nothing either.
    broken = settings.model_copy(update={"face_template_key": None})
    good.face_templates.append(seal_template(np.ones(128, dtype=np.float32), keys[1]))
    with pytest.raises(RempartError) as e:
        CaseRepository(store, broken).submit(good)
    assert e.value.code == "no_face_key"

    for table in (cases_table, entries_table, face_templates_table, case_alerts_table):
        assert _count(store, table) == 0
    with store.engine.connect() as conn:
        assert not [v for v in conn.execute(select(changes_table.c.value)).scalars() if v]

    (tmp_path / "empty").mkdir()
    nothing = build_submission([tmp_path / "empty"], limits=MediaLimits()).to_json()
    with pytest.raises(RempartError) as e:
        cases.submit(load_submission(nothing))
    assert e.value.code == "empty_submission"


def test_entries_for_a_video_keep_its_frames() -> None:
    from rempart.cases.submission import Submission

    video = Submission(
        created_at="2026-01-01T00:00:00Z",
        items=[
            {
                "index": 0,
                "kind": "video",
                "md5": "0" * 31 + "1",
                "sha256": "0" * 63 + "1",
                "frames": [{"timestamp": 0.0, "pdq": "f" * 64, "quality": 100}],
            }
        ],
    )
    entries = entries_for_submission(load_submission(video.to_json()))
    assert [(e.signal, len(e.frames)) for e in entries] == [("md5", 0), ("sha256", 0), ("vpdq", 1)]


def test_reserved_tenant_cannot_get_keys(store: Store) -> None:
    with pytest.raises(RempartError) as e:
        KeyRepository(store).create(CASES_TENANT, ["scan"])
    assert e.value.code == "reserved_tenant"
