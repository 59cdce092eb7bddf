"""Parsing and writing Meta HMA's raw-signal lines (no database)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from rempart.exchanges.formats import Record
from rempart.exchanges.hma import read_hma, write_hma
from rempart.exchanges.importer import _Lines
from rempart.store import EntryInfo

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def lines(text: str) -> list[str]:
    return list(_Lines(io.BytesIO(text.encode())))


def errors(records: list[Record]) -> list[tuple[int, str]]:
    return [(r.line, r.error.code) for r in records if r.error is not None]


def good(records: list[Record]) -> list[tuple[int, str, str]]:
    return [(r.line, e.signal, e.value) for r in records if r.error is None for e in r.entries]


def test_hma_lines() -> None:
    text = "\n".join(
        [
            json.dumps({"pdq": PDQ}),  # 1
            json.dumps({"pdq": PDQ, "video_md5": MD5}),  # 2: two entries
            json.dumps({"md5": MD5.upper(), "sha256": SHA}),  # 3
            json.dumps({"vpdq": "x"}),  # 4 unknown signal type
            json.dumps({"pdq": PDQ, "md5": "short"}),  # 5 one bad hash spoils the line
            "{}",  # 6
            "[]",  # 7
            "nope",  # 8
            json.dumps({"pdq": None}),  # 9
        ]
    )
    recs = list(read_hma(lines(text)))
    assert good(recs) == [
        (1, "pdq", PDQ),
        (2, "pdq", PDQ),
        (2, "md5", MD5),
        (3, "md5", MD5),
        (3, "sha256", SHA),
    ]
    assert errors(recs) == [
        (4, "unknown_signal"),
        (5, "malformed_hash"),
        (6, "bad_row"),
        (7, "bad_row"),
        (8, "bad_json"),
        (9, "malformed_hash"),
    ]


def _info(i: int, signal: str, value: str) -> EntryInfo:
    return EntryInfo(
        id=i,
        bank_id=1,
        bank="b",
        tenant="default",
        signal=signal,
        value=value,
        quality=90,
        source="s",
        tags=("t",),
        meta={"k": 1},
        added_at=datetime.now(UTC),
    )


def test_hma_writer_md5_key() -> None:
    out = io.StringIO()
    assert write_hma([_info(1, "md5", MD5), _info(2, "pdq", PDQ)], out, md5_key="video_md5") == 2
    assert out.getvalue().splitlines() == [json.dumps({"video_md5": MD5}), json.dumps({"pdq": PDQ})]


def test_hma_round_trip_keeps_hashes() -> None:
    out = io.StringIO()
    write_hma([_info(1, "pdq", PDQ), _info(2, "sha256", SHA)], out)
    assert good(list(read_hma(lines(out.getvalue())))) == [(1, "pdq", PDQ), (2, "sha256", SHA)]
