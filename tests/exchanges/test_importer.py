"""Importing and exporting against a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from rempart.errors import ImportFormatError, NotFoundError
from rempart.exchanges import export_bank, import_file
from rempart.exchanges import importer as importer_module
from rempart.exchanges.formats import Record
from rempart.store import NewEntry, Store

Hashes = Callable[..., list[str]]
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def csv_text(rows: list[str]) -> str:
    return "signal,value,quality,source,tags,metadata\n" + "".join(r + "\n" for r in rows)


def snapshot(store: Store, bank: str) -> tuple[list[tuple[str, str]], int]:
    return [(e.signal, e.value) for e in store.iter_entries(bank)], store.latest_seq()


def test_atomic_import_lists_every_bad_row_and_writes_nothing(
    store: Store, hex_hashes: Hashes, tmp_path: Path
) -> None:
    store.create_bank("b")
    store.add_entries("b", [NewEntry("md5", MD5)])
    before = snapshot(store, "b")
    good = hex_hashes(40)
    rows = [f"pdq,{h},90,,," for h in good]
    rows[5] = "pdq,abc,,,,"  # line 7
    rows[20] = "sha1,abc,,,,"  # line 22
    rows[39] = f"md5,{MD5},,"  # line 41
    path = tmp_path / "list.csv"
    path.write_text(csv_text(rows))
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", path, batch_size=8)
    err = info.value
    assert err.code == "import_rejected"
    assert [(e["line"], e["code"]) for e in err.errors] == [
        (7, "malformed_hash"),
        (22, "unknown_signal"),
        (41, "wrong_field_count"),
    ]
    assert "3 bad record(s)" in err.message and "nothing was written" in err.message
    assert "partial" in (err.hint or "")
    assert snapshot(store, "b") == before


def test_partial_import_keeps_good_rows(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    hs = hex_hashes(10)
    rows = [f"pdq,{h},,,," for h in hs]
    rows.insert(3, "pdq,nothex,,,,")  # line 5
    rows.append(f"pdq,{hs[0]},,,,")  # duplicate within the file
    report = import_file(store, "b", io.StringIO(csv_text(rows)), mode="partial")
    assert (report.read, report.added, report.duplicates, report.error_count) == (12, 10, 1, 1)
    assert [(e.line, e.code) for e in report.errors] == [(5, "malformed_hash")]
    assert not report.ok
    assert report.to_dict()["errors"] == [e.to_dict() for e in report.errors]
    assert [e.value for e in store.iter_entries("b")] == hs
    # Importing the same list again adds nothing.
    again = import_file(store, "b", io.StringIO(csv_text(rows)), mode="partial")
    assert (again.added, again.duplicates) == (0, 11)


def test_clean_atomic_import(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    lines = [json.dumps({"signal": "pdq", "value": h, "tags": ["x"]}) for h in hex_hashes(25)]
    progress: list[int] = []
    report = import_file(
        store, "b", io.StringIO("\n".join(lines)), on_progress=progress.append, progress_every=10
    )
    assert report.ok and report.format == "jsonl" and report.mode == "atomic"
    assert (report.read, report.added, report.duplicates) == (25, 25, 0)
    assert progress == [10, 20, 25]
    assert store.get_bank("b").entry_count == 25


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "hma"])
def test_export_import_round_trip(
    store: Store, hex_hashes: Hashes, tmp_path: Path, fmt: str
) -> None:
    src = store.create_bank("src")
    entries = [
        NewEntry(
            "pdq",
            h,
            quality=q,
            source="hotline" if q else None,
            tags=["a", "b c"][: q % 3],
            meta={"case": q, "note": 'é, "quoted"\nline'} if q % 2 else {},
        )
        for q, h in enumerate(hex_hashes(30))
    ]
    entries += [NewEntry("md5", h) for h in hex_hashes(5, nbytes=16, seed=7)]
    entries += [NewEntry("sha256", h) for h in hex_hashes(5, seed=8)]
    store.add_entries(src, entries)
    path = tmp_path / f"bank.{fmt}"
    assert export_bank(store, "src", path, fmt=fmt) == 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp file renamed

    store.create_bank("dst")
    report = import_file(store, "dst", path)  # format detected from the content
    assert report.format == fmt and report.ok and report.added == 40

    def fields(bank: str) -> list[tuple[object, ...]]:
        full = fmt != "hma"  # HMA lines carry only the hashes
        return [
            (e.signal, e.value) + ((e.quality, e.source, e.tags, dict(e.meta)) if full else ())
            for e in store.iter_entries(bank)
        ]

    assert fields("dst") == fields("src")
    # Exporting one signal type only.
    out = io.StringIO()
    assert export_bank(store, "src", out, fmt=fmt, signal="md5") == 5


def test_progress_callback_failure_rolls_back(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    before = snapshot(store, "b")
    calls: list[int] = []

    def on_progress(done: int) -> None:
        calls.append(done)
        if done >= 60:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-import

    text = csv_text([f"pdq,{h},,,," for h in hex_hashes(100)])
    with pytest.raises(KeyboardInterrupt):
        import_file(
            store,
            "b",
            io.StringIO(text),
            on_progress=on_progress,
            progress_every=20,
            batch_size=10,
            mode="partial",
        )
    assert calls == [20, 40, 60]  # batches had been written before the failure
    assert snapshot(store, "b") == before


def test_database_failure_mid_import_rolls_back(
    store: Store, hex_hashes: Hashes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A record that passes parsing but breaks a database constraint (quality CHECK), after
    # several batches have gone in: the whole import must disappear.
    store.create_bank("b")
    before = snapshot(store, "b")
    hs = hex_hashes(50)

    def poisoned(lines: Iterator[str]) -> Iterator[Record]:
        for i, h in enumerate(hs):
            entry = NewEntry("pdq", h)
            if i == 45:
                object.__setattr__(entry, "quality", 1000)
            yield Record(i + 1, (entry,))

    monkeypatch.setitem(importer_module._READERS, "hma", poisoned)
    with pytest.raises(IntegrityError):
        import_file(store, "b", io.StringIO("{}\n"), fmt="hma", batch_size=10)
    assert snapshot(store, "b") == before


def test_sources_paths_gzip_and_binary(store: Store, hex_hashes: Hashes, tmp_path: Path) -> None:
    store.create_bank("b")
    hs = hex_hashes(6)
    text = "".join(json.dumps({"pdq": h}) + "\n" for h in hs[:2])
    gz = tmp_path / "list.hma.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(text)
    assert import_file(store, "b", gz).added == 2
    binary = io.BytesIO(("\ufeff" + csv_text([f"pdq,{h},,,," for h in hs[2:4]])).encode())
    assert import_file(store, "b", binary).added == 2
    assert not binary.closed
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text("".join(json.dumps({"signal": "pdq", "value": h}) + "\n" for h in hs[4:]))
    assert import_file(store, "b", str(jsonl)).added == 2
    assert store.get_bank("b").entry_count == 6


def test_empty_sources(store: Store) -> None:
    store.create_bank("b")
    for text in ("", "\n\n", "signal,value\n"):
        report = import_file(store, "b", io.StringIO(text))
        assert (report.read, report.added, report.error_count) == (0, 0, 0)


def test_errors_that_stop_an_import_early(store: Store, tmp_path: Path) -> None:
    store.create_bank("b")
    with pytest.raises(NotFoundError):
        import_file(store, "missing", io.StringIO("signal,value\n"))
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", tmp_path / "nope.csv")
    assert info.value.code == "file_not_found"
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.StringIO(""), fmt="xml")
    assert info.value.code == "unknown_format"
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.StringIO(""), mode="yolo")
    assert info.value.code == "bad_import_mode"
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.StringIO(f"{MD5}\n{MD5}\n"))  # no header
    assert info.value.code == "bad_header"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"signal,value,source\n" + f"md5,{MD5},".encode() + b"caf\xe9\n")
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", latin1)
    assert info.value.code == "bad_encoding"
    assert info.value.errors[0]["line"] == 2 and "line 2" in info.value.message
    not_gzip = tmp_path / "list.csv.gz"
    not_gzip.write_text("signal,value\n")
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", not_gzip)
    assert info.value.code == "unreadable_file"
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.BytesIO(b"signal,value\n" + b"x" * (2 * 1024 * 1024)))
    assert info.value.code == "line_too_long"
    assert info.value.errors[0]["line"] == 2
    assert store.get_bank("b").entry_count == 0


def test_wrong_explicit_format_reports_rows(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b")
    text = "".join(json.dumps({"pdq": h}) + "\n" for h in hex_hashes(3))
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.StringIO(text), fmt="jsonl")
    assert [e["code"] for e in info.value.errors] == ["unknown_field"] * 3


def test_error_list_is_capped_but_counted(store: Store) -> None:
    store.create_bank("b")
    text = csv_text(["md5,bad,,,,"] * 50)
    report = import_file(store, "b", io.StringIO(text), mode="partial", max_errors=5)
    assert report.error_count == 50 and len(report.errors) == 5
    with pytest.raises(ImportFormatError) as info:
        import_file(store, "b", io.StringIO(text), max_errors=5)
    assert "first 5 are listed" in info.value.message and len(info.value.errors) == 5


def test_import_into_tenant_bank_and_by_info(store: Store, hex_hashes: Hashes) -> None:
    store.create_bank("b", tenant="acme")
    bank = store.create_bank("b")
    text = csv_text([f"pdq,{h},,,," for h in hex_hashes(3)])
    report = import_file(store, "b", io.StringIO(text), tenant="acme")
    assert (report.tenant, report.added) == ("acme", 3)
    assert import_file(store, bank, io.StringIO(text)).added == 3
    assert store.get_bank("b", "acme").entry_count == 3 and store.get_bank("b").entry_count == 3
    out = io.StringIO()
    assert export_bank(store, "b", out, tenant="acme", fmt="jsonl") == 3


def test_text_no_database_can_store_is_a_row_error(store: Store) -> None:
    # NUL and lone surrogates (valid JSON escapes) would otherwise fail inside the database.
    store.create_bank("b")
    head = f'{{"signal": "md5", "value": "{MD5}", '
    lines = [
        head + r'"source": "a\u0000b"}',
        head + r'"metadata": {"k": "\ud800"}}',
        head + r'"tags": ["\udc00"]}',
        head + r'"source": "caf\u00e9 \ud83d\ude00"}',
    ]
    report = import_file(store, "b", io.StringIO("\n".join(lines)), mode="partial")
    assert [(e.line, e.code) for e in report.errors] == [
        (1, "bad_source"),
        (2, "bad_metadata"),
        (3, "bad_tags"),
    ]
    assert report.added == 1
    [entry] = store.iter_entries("b")
    assert entry.source == "café \U0001f600"


def test_video_entries_round_trip(store: Store, hex_hashes: Hashes, tmp_path: Path) -> None:
    store.create_bank("src")
    frames = hex_hashes(12)
    store.add_entries(
        "src",
        [
            NewEntry("vpdq", "1" * 32, frames=frames[:5], tags=["video"]),
            NewEntry("pdq", frames[5], quality=88),
            NewEntry("vpdq", "2" * 32, frames=frames[6:]),
        ],
    )
    for fmt in ("csv", "jsonl"):
        path = tmp_path / f"videos.{fmt}"
        assert export_bank(store, "src", path, fmt=fmt) == 3
        store.create_bank(f"dst-{fmt}")
        assert import_file(store, f"dst-{fmt}", path).added == 3
        got = [(e.signal, e.value, e.frames, e.tags) for e in store.iter_entries(f"dst-{fmt}")]
        assert got == [(e.signal, e.value, e.frames, e.tags) for e in store.iter_entries("src")]
    assert (
        (tmp_path / "videos.csv")
        .read_bytes()
        .startswith(b"signal,value,quality,source,tags,metadata,frames\r\n")
    )
    out = io.StringIO()
    assert export_bank(store, "src", out, fmt="hma") == 1  # HMA lines: the image hash only


def test_export_header_without_videos(store: Store) -> None:
    store.create_bank("b")
    store.add_entries("b", [NewEntry("md5", MD5)])
    out = io.StringIO()
    export_bank(store, "b", out)
    assert out.getvalue().splitlines()[0] == "signal,value,quality,source,tags,metadata"


def test_import_from_stdin(
    store: Store, hex_hashes: Hashes, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_bank("b")
    data = "".join(json.dumps({"pdq": h}) + "\n" for h in hex_hashes(3)).encode()

    class FakeStdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", FakeStdin())
    assert import_file(store, "b", Path("-")).added == 3
