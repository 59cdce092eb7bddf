"""The `rempart` command, run for real on files it generates and a SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rempart.cli import app
from rempart.examples import EDITS, jpeg_bytes, synthetic_photo, write_examples


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REMPART_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    runner = CliRunner()

    def _run(*args: str, code: int = 0) -> list[dict]:  # type: ignore[type-arg]
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    return _run


def test_hash_folder_jsonl_and_errors(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(synthetic_photo(1)))
    (folder / "sub" / "b.png").write_bytes(b"")
    (folder / "sub" / "c.jpg").write_text("this is not an image")
    (folder / ".hidden").write_text("skipped")
    out = run("hash", "--dihedral", str(folder), code=1)
    by_name = {Path(o["path"]).name: o for o in out}
    assert set(by_name) == {"a.jpg", "b.png", "c.jpg"}
    a = by_name["a.jpg"]
    assert a["kind"] == "image" and len(a["pdq"]) == 64 and a["pdq_quality"] == 100
    assert len(a["md5"]) == 32 and len(a["sha256"]) == 64
    assert len(a["dihedral"]) == 8 and a["dihedral"]["original"] == a["pdq"]
    assert by_name["b.png"]["error"]["code"] == "empty_file"
    assert by_name["c.jpg"]["error"]["code"] == "unsupported_format"


def test_hash_csv(tmp_path: Path) -> None:
    img = tmp_path / "a.jpg"
    img.write_bytes(jpeg_bytes(synthetic_photo(2)))
    result = CliRunner().invoke(app, ["hash", "--format", "csv", str(img)])
    assert result.exit_code == 0
    header, row = result.stdout.strip().splitlines()
    assert header.startswith("path,kind,pdq,pdq_quality,md5,sha256")
    assert row.startswith(f"{img},image,")


def test_bank_workflow_and_match(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ex = write_examples(tmp_path / "ex", originals=2, unrelated=1)
    created = run("bank", "create", "reported", "--threshold", "31")
    assert created[0]["name"] == "reported" and created[0]["kind"] == "block"
    run("bank", "create", "reported", code=2)  # already exists: clear error, exit 2
    added = run("bank", "add", "reported", *map(str, ex.originals))[0]
    assert added["added"] == 4  # PDQ + MD5 per image
    again = run("bank", "add", "reported", str(ex.originals[0]))[0]
    assert again["added"] == 0 and again["duplicates"] == 2
    out = run("match", str(tmp_path / "ex" / "uploads"))
    by_name = {Path(o["path"]).name: o for o in out}
    for name in EDITS:
        assert by_name[f"original-0-{name}.jpg"]["matches"], name
    assert by_name["unrelated-0.jpg"]["matches"] == []
    exact = run("match", str(ex.originals[1]))[0]["matches"]
    assert {m["signal"] for m in exact} == {"pdq", "md5"}
    assert all(m["bank"] == "reported" for m in exact)
    listed = run("bank", "list", "--json")
    assert listed[0]["entries"] == {"pdq": 2, "md5": 2}
    # export -> import into another bank round-trips
    export = tmp_path / "reported.csv"
    run("bank", "export", "reported", "--format", "csv", "-o", str(export))
    run("bank", "create", "copy")
    report = run("bank", "import", "copy", str(export))[0]
    assert report["added"] == 4 and report["errors"] == []
    # remove an entry: it stops matching
    ids = [m["entry_id"] for m in exact]
    run("bank", "remove", "reported", *map(str, ids))
    assert run("match", "--bank", "reported", str(ex.originals[1]))[0]["matches"] == []


def test_bank_add_hash_values_and_malformed(run) -> None:  # type: ignore[no-untyped-def]
    run("bank", "create", "hashes")
    ok = run(
        "bank",
        "add",
        "hashes",
        "--pdq",
        "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        "--md5",
        "D41D8CD98F00B204E9800998ECF8427E",
    )[0]
    assert ok["added"] == 2
    run("bank", "add", "hashes", "--pdq", "zz" * 32, code=2)
    run("bank", "add", "hashes", "--pdq", "0" * 64, code=2)
    run("bank", "add", "nope", "--md5", "d41d8cd98f00b204e9800998ecf8427e", code=2)


def test_import_atomic_and_partial(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("bank", "create", "hma")
    good = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    lines = [
        json.dumps({"pdq": good}),
        "{not json",
        json.dumps({"pdq": "abc"}),
        json.dumps({"md5": "d41d8cd98f00b204e9800998ecf8427e"}),
    ]
    src = tmp_path / "hma.txt"
    src.write_text("\n".join(lines) + "\n")
    run("bank", "import", "hma", str(src), "--format", "hma", code=2)
    assert run("bank", "list", "--json")[0]["entries"] == {}
    report = run("bank", "import", "hma", str(src), "--format", "hma", "--partial", code=1)[0]
    assert report["added"] == 2
    assert [e["line"] for e in report["errors"]] == [2, 3]


def test_match_unknown_bank_is_a_clear_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = tmp_path / "a.jpg"
    img.write_bytes(jpeg_bytes(synthetic_photo(3)))
    run("match", "--bank", "missing", str(img), code=2)


def test_installed_entry_point_demo(tmp_path: Path) -> None:
    """`rempart demo` (the README's main job) end to end, as a real process."""
    exe = Path(sys.executable).parent / "rempart"
    env = dict(os.environ, REMPART_DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}")
    proc = subprocess.run(
        [str(exe), "demo", "--dir", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    matched = {Path(r["path"]).name for r in results if r["matches"]}
    assert all(f"original-0-{name}.jpg" in matched for name in EDITS)
    assert not any(n.startswith("unrelated") for n in matched)
    assert "Traceback" not in proc.stderr


def test_keys_and_audit_from_the_cli(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from rempart.settings import load_settings
    from rempart.store import Store
    from rempart.store.audit import AuditLog

    runner = CliRunner()
    result = runner.invoke(app, ["keys", "create", "--tenant", "t1", "--scopes", "scan,banks:read"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert key.startswith("rk_") and len(key.splitlines()) == 1
    listed = run("keys", "list")
    assert listed[0]["tenant"] == "t1" and listed[0]["scopes"] == ["scan", "banks:read"]
    assert key.split("_", 2)[2] not in json.dumps(listed)  # the secret is never shown again
    run("keys", "revoke", listed[0]["key_id"])
    assert run("keys", "list")[0]["revoked"] is True
    bad = runner.invoke(app, ["keys", "create", "--scopes", "root"])
    assert bad.exit_code == 2 and "unknown scope" in bad.stderr
    run("bank", "create", "b1")
    run("bank", "update", "b1", "--threshold", "20")
    run("bank", "delete", "b1", "--yes")
    store = Store.open(load_settings().database_url)
    actions = [e.action for e in AuditLog(store).list()]
    assert actions[:3] == ["bank.delete", "bank.update", "bank.create"]
    assert "key.create" in actions and "key.revoke" in actions
