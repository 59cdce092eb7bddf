"""Rotating the face template key, on SQLite and PostgreSQL: old keys keep matching while
configured, ``rotate`` re-seals every row under the current key (batched, idempotent,
resumable), and rows under a key nobody configured stop it before anything changes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rempart.cli import app
from rempart.errors import ConfigError
from rempart.store import Store
from rempart.store.audit import AuditLog
from rempart.store.faces import (
    FaceKeyError,
    FaceTemplates,
    face_templates_table,
    match,
    parse_previous_keys,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes(range(200, 232))
T = face_templates_table.c


def _vectors(n: int, seed: int) -> np.ndarray:
    """``n`` random embeddings of the scale dlib gives (unit-ish, far apart)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(store: Store) -> list[tuple[int, str, str, str, bytes]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(T.id, T.tenant, T.person_id, T.key_fp, T.sealed).order_by(T.id)
        ).all()
    return [(i, tenant, person, fp, bytes(sealed)) for i, tenant, person, fp, sealed in rows]


def _enrol_people(templates: FaceTemplates) -> dict[str, np.ndarray]:
    """Five people over two tenants, 2 templates each: 10 rows."""
    people = {}
    for i, (tenant, person) in enumerate(
        [("t1", "alice"), ("t1", "bob"), ("t1", "carol"), ("t2", "dan"), ("t2", "erin")]
    ):
        vectors = _vectors(2, seed=i)
        templates.enrol(person, tenant, vectors)
        people[person] = vectors
    return people


def test_previous_keys_keep_matching_during_a_rotation(store: Store) -> None:
    people = _enrol_people(FaceTemplates(store, KEY_A))
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    # New enrolments during the rotation are sealed with the current key only.
    rotating.enrol("fred", "t1", _vectors(1, seed=99))
    fps = {fp for _, _, person, fp, _ in _rows(store) if person == "fred"}
    assert fps == {rotating.key_fingerprint}
    enrolled = rotating.load_all("t1")
    assert enrolled[0] == ["alice", "alice", "bob", "bob", "carol", "carol", "fred"]
    np.testing.assert_array_equal(enrolled[1][2], people["bob"][0])
    leads = match(people["carol"][1] + 0.01, enrolled, threshold=0.6)
    assert [person for person, _ in leads] == ["carol"]
    status = rotating.key_status()
    assert status.rows == {FaceTemplates(store, KEY_A).key_fingerprint: 10, status.current: 1}
    assert status.to_reseal == 10 and status.unknown == 0


def test_rotate_reseals_every_row_under_the_current_key(store: Store) -> None:
    people = _enrol_people(FaceTemplates(store, KEY_A))
    before = {row_id: sealed for row_id, *_, sealed in _rows(store)}
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    result = rotating.rotate(batch=3)
    assert (result.resealed, result.already_current) == (10, 0)
    assert result.tenants == {"t1": 6, "t2": 4}
    assert result.to_dict()["key_fp"] == rotating.key_fingerprint
    after = _rows(store)
    assert {fp for *_, fp, _ in after} == {rotating.key_fingerprint}
    # A fresh nonce and a new ciphertext for every row; same length, same row ids.
    assert {row_id for row_id, *_ in after} == set(before)
    for row_id, _, _, _, sealed in after:
        assert sealed[:12] != before[row_id][:12] and sealed != before[row_id]
        assert len(sealed) == len(before[row_id])
    # The new key alone now opens everything, with the same vectors...
    only_b = FaceTemplates(store, KEY_B)
    names, matrix = only_b.load_all("t2")
    assert names == ["dan", "dan", "erin", "erin"]
    np.testing.assert_array_equal(matrix, np.concatenate([people["dan"], people["erin"]]))
    # ...and the old key alone opens nothing.
    with pytest.raises(FaceKeyError) as info:
        FaceTemplates(store, KEY_A).load_all("t1")
    assert info.value.code == "face_key_mismatch"
    assert rotating.key_fingerprint in str(info.value)
    assert "face_template_previous_keys" in str(info.value)
    status = only_b.key_status()
    assert status.rows == {only_b.key_fingerprint: 10} and status.to_reseal == 0


def test_rotate_is_idempotent(store: Store) -> None:
    _enrol_people(FaceTemplates(store, KEY_A))
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    assert rotating.rotate().resealed == 10
    sealed = _rows(store)
    again = rotating.rotate()
    assert (again.resealed, again.already_current, again.tenants) == (0, 10, {})
    assert _rows(store) == sealed  # nothing rewritten
    # Without any previous key, a finished rotation has nothing to open either.
    assert FaceTemplates(store, KEY_B).rotate().resealed == 0


class _Interrupted(Exception):
    pass


def test_an_interrupted_rotation_is_finished_by_running_it_again(store: Store) -> None:
    _enrol_people(FaceTemplates(store, KEY_A))
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    progress: list[int] = []

    def stop_after_first_batch(done: int) -> None:
        progress.append(done)
        raise _Interrupted

    with pytest.raises(_Interrupted):
        rotating.rotate(batch=4, on_progress=stop_after_first_batch)
    assert progress == [4]
    progress.clear()
    # The committed batch stays done; the service (B + previous A) still reads everything.
    status = rotating.key_status()
    assert status.rows == {rotating.key_fingerprint: 4, status.previous[0]: 6}
    assert len(rotating.load_all("t1")[0]) + len(rotating.load_all("t2")[0]) == 10
    # A second interruption from another process: 3 rows sealed with a third key C, which
    # is now the current one; A and B are both previous keys.
    third = FaceTemplates(store, KEY_C, previous_keys=[KEY_B, KEY_A])
    with pytest.raises(_Interrupted):
        third.rotate(batch=3, on_progress=stop_after_first_batch)
    assert progress == [3] and len(third.key_status().rows) == 3
    seen: list[int] = []
    result = third.rotate(batch=4, on_progress=seen.append)
    assert (result.resealed, result.already_current) == (7, 3)
    assert seen == [4, 7]
    assert third.key_status().rows == {third.key_fingerprint: 10}
    assert len(FaceTemplates(store, KEY_C).load_all("t1")[0]) == 6


def test_rows_under_an_unknown_key_stop_the_rotation_before_any_change(store: Store) -> None:
    _enrol_people(FaceTemplates(store, KEY_A))
    FaceTemplates(store, KEY_C).enrol("zoe", "t2", _vectors(1, seed=50))
    unknown_fp = FaceTemplates(store, KEY_C).key_fingerprint
    before = _rows(store)
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    status = rotating.key_status()
    assert status.role(unknown_fp) == "unknown" and status.unknown == 1
    with pytest.raises(FaceKeyError) as info:
        rotating.rotate(batch=2)
    assert info.value.code == "face_key_mismatch"
    assert unknown_fp in info.value.message and "nothing was changed" in info.value.message
    assert info.value.hint is not None and "face_template_previous_keys" in info.value.hint
    assert _rows(store) == before
    # Loading the tenant says which key is missing, too; the other tenant still loads.
    with pytest.raises(FaceKeyError) as info:
        rotating.load_all("t2")
    assert unknown_fp in info.value.message and "another key" in info.value.message
    assert rotating.load_all("t1")[0][:2] == ["alice", "alice"]
    # With the missing key configured, the rotation goes through.
    assert FaceTemplates(store, KEY_B, [KEY_A, KEY_C]).rotate().resealed == 11


def test_a_corrupt_row_stops_the_rotation_with_its_batch_unchanged(store: Store) -> None:
    _enrol_people(FaceTemplates(store, KEY_A))
    rows = _rows(store)
    broken_id = rows[5][0]
    with store.engine.begin() as conn:
        conn.execute(
            face_templates_table.update()
            .where(T.id == broken_id)
            .values(sealed=rows[5][4][:-1] + bytes([rows[5][4][-1] ^ 1]))
        )
    before = _rows(store)
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    with pytest.raises(FaceKeyError) as info:
        rotating.rotate(batch=4)
    assert info.value.code == "face_template_corrupt" and str(broken_id) in info.value.message
    after = _rows(store)
    assert after[:4] != before[:4]  # the first batch was committed
    assert after[4:] == before[4:]  # the failing batch was rolled back, the rest untouched


def test_aad_still_binds_rows_after_rotation(store: Store) -> None:
    FaceTemplates(store, KEY_A).enrol("alice", "t", _vectors(1, seed=1))
    FaceTemplates(store, KEY_A).enrol("bob", "t", _vectors(1, seed=2))
    FaceTemplates(store, KEY_A).enrol("alice", "u", _vectors(1, seed=3))
    rotating = FaceTemplates(store, KEY_B, previous_keys=[KEY_A])
    rotating.rotate()
    alice_t, bob_t, alice_u = _rows(store)
    with store.engine.begin() as conn:
        conn.execute(
            face_templates_table.update().where(T.id == bob_t[0]).values(sealed=alice_t[4])
        )
        conn.execute(
            face_templates_table.update().where(T.id == alice_u[0]).values(sealed=alice_t[4])
        )
    for tenant in ("t", "u"):
        with pytest.raises(FaceKeyError) as info:
            rotating.load_all(tenant)
        assert info.value.code == "face_template_corrupt"


def test_previous_keys_are_validated() -> None:
    assert parse_previous_keys([KEY_A.hex(), base64.b64encode(KEY_B).decode()]) == (
        KEY_A,
        KEY_B,
    )
    with pytest.raises(ConfigError) as info:
        parse_previous_keys([KEY_A.hex(), "too short"])
    assert info.value.code == "bad_face_key"
    assert info.value.message.startswith("face_template_previous_keys[1]")


def test_previous_key_equal_to_the_current_one_is_ignored(store: Store) -> None:
    templates = FaceTemplates(store, KEY_A, previous_keys=[KEY_A, KEY_B, KEY_B])
    assert templates.previous_fingerprints == (FaceTemplates(store, KEY_B).key_fingerprint,)
    with pytest.raises(ConfigError) as info:
        FaceTemplates(store, KEY_A, previous_keys=[KEY_B, b"short"])
    assert "previous key 1" in info.value.message
    # Any iterable will do, a generator included.
    assert FaceTemplates(store, KEY_A, (k for k in [KEY_B])).previous_fingerprints == (
        FaceTemplates(store, KEY_B).key_fingerprint,
    )


# -- the CLI -------------------------------------------------------------------------------


def test_cli_rotate_key_and_key_status(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(db_url) as store:
        _enrol_people(FaceTemplates(store, KEY_A))
        fp_a = FaceTemplates(store, KEY_A).key_fingerprint
        fp_b = FaceTemplates(store, KEY_B).key_fingerprint
    monkeypatch.delenv("REMPART_CONFIG", raising=False)
    monkeypatch.setenv("REMPART_DATABASE_URL", db_url)
    monkeypatch.setenv("REMPART_FACE_TEMPLATE_KEY", base64.b64encode(KEY_B).decode())
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
        result = runner.invoke(app, ["faces", *args], catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return json.loads(result.stdout) if result.stdout.strip() else {}

    # Only the new key: the old rows are unknown, and rotating changes nothing.
    status = run("key-status")
    assert status["current"] == fp_b and status["unknown"] == 10
    assert {"fingerprint": fp_a, "role": "unknown", "rows": 10} in status["keys"]
    failed = runner.invoke(app, ["faces", "rotate-key"])
    assert failed.exit_code == 2 and fp_a in failed.stderr
    assert "face_template_previous_keys" in failed.stderr and "Traceback" not in failed.stderr

    monkeypatch.setenv("REMPART_FACE_TEMPLATE_PREVIOUS_KEYS", json.dumps([KEY_A.hex()]))
    status = run("key-status")
    assert status["keys"] == [
        {"fingerprint": fp_b, "role": "current", "rows": 0},
        {"fingerprint": fp_a, "role": "previous", "rows": 10},
    ]
    assert (status["rows"], status["to_reseal"], status["unknown"]) == (10, 10, 0)
    result = run("rotate-key", "--batch", "3")
    assert result == {
        "key_fp": fp_b,
        "resealed": 10,
        "already_current": 0,
        "tenants": {"t1": 6, "t2": 4},
    }
    assert run("rotate-key")["resealed"] == 0
    status = run("key-status")
    assert status["keys"] == [
        {"fingerprint": fp_b, "role": "current", "rows": 10},
        {"fingerprint": fp_a, "role": "previous", "rows": 0},
    ]
    assert status["to_reseal"] == 0

    # The old key can go: the new one alone lists and loads everything.
    monkeypatch.delenv("REMPART_FACE_TEMPLATE_PREVIOUS_KEYS")
    listed = runner.invoke(app, ["faces", "list", "--tenant", "t2"])
    assert [json.loads(line)["person_id"] for line in listed.stdout.splitlines()] == [
        "dan",
        "erin",
    ]
    with Store.open(db_url) as store:
        assert len(FaceTemplates(store, KEY_B).load_all("t1")[0]) == 6
        audit = [e for e in AuditLog(store).list() if e.action == "face.rotate_key"]
    # One entry per tenant re-sealed, counts only; the no-op run wrote none.
    assert sorted((e.tenant, e.target, e.details) for e in audit) == [
        ("t1", fp_b, {"resealed": 6}),
        ("t2", fp_b, {"resealed": 4}),
    ]
    assert all(e.actor.startswith("cli") for e in audit)


def test_cli_bad_previous_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMPART_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("REMPART_FACE_TEMPLATE_KEY", KEY_B.hex())
    monkeypatch.setenv("REMPART_FACE_TEMPLATE_PREVIOUS_KEYS", json.dumps(["nope"]))
    result = CliRunner().invoke(app, ["faces", "key-status"])
    assert result.exit_code == 2
    assert "face_template_previous_keys[0]" in result.stderr and "Traceback" not in result.stderr
