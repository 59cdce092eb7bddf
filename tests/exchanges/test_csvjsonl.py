"""Parsing and writing our CSV and JSONL, and format detection (no database)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rempart.errors import ImportFormatError
from rempart.exchanges import detect_format
from rempart.exchanges.csvjsonl import read_csv, read_jsonl, write_csv, write_jsonl
from rempart.exchanges.formats import Record
from rempart.exchanges.importer import _Lines
from rempart.store import EntryInfo

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def lines(text: str) -> list[str]:
    # Split the way an import does: bytes, on "\n" only (a lone "\r" is data).
    return list(_Lines(io.BytesIO(text.encode())))


def errors(records: list[Record]) -> list[tuple[int, str]]:
    return [(r.line, r.error.code) for r in records if r.error is not None]


def good(records: list[Record]) -> list[tuple[int, str, str]]:
    return [(r.line, e.signal, e.value) for r in records if r.error is None for e in r.entries]


# -- CSV --------------------------------------------------------------------------------------


def test_csv_full_row() -> None:
    text = (
        "signal,value,quality,source,tags,metadata\n"
        f'pdq,{PDQ.upper()},90,ngo x,ncii;case-17,"{{""case"": ""17""}}"\n'
    )
    [rec] = list(read_csv(lines(text)))
    [e] = rec.entries
    assert rec.line == 2 and rec.error is None
    assert (e.signal, e.value, e.quality, e.source, e.tags) == (
        "pdq",
        PDQ,
        90,
        "ngo x",
        ("ncii", "case-17"),
    )
    assert e.meta == {"case": "17"}


def test_csv_minimal_reordered_header_bom_and_blank_lines() -> None:
    text = f"\ufeffVALUE , Signal\r\n\r\n{MD5},md5\r\n\r\n{SHA},sha256\r\n"
    recs = list(read_csv(lines(text)))
    assert good(recs) == [(3, "md5", MD5), (5, "sha256", SHA)]
    assert recs[0].entries[0].quality is None and recs[0].entries[0].tags == ()


def test_csv_line_numbers_follow_multiline_fields() -> None:
    text = (
        "signal,value,metadata\n"
        f'md5,{MD5},"{{""note"":\n""two lines""}}"\n'
        "md5,nothex,\n"
        f"pdq,{PDQ},\n"
    )
    recs = list(read_csv(lines(text)))
    assert recs[0].entries[0].meta == {"note": "two lines"}
    assert errors(recs) == [(4, "malformed_hash")]
    assert good(recs)[-1] == (5, "pdq", PDQ)


def test_csv_every_kind_of_bad_row() -> None:
    text = "\n".join(
        [
            "signal,value,quality,source,tags,metadata",  # 1
            f"pdq,{PDQ},90,,,",  # 2 good
            f"pdq,{'0' * 64},,,,",  # 3 all-zero PDQ
            f"pdq,{PDQ[:-2]},,,,",  # 4 short
            f"sha1,{MD5},,,,",  # 5 unknown signal
            f"md5,{MD5},high,,,",  # 6 quality not a number
            f"md5,{MD5},101,,,",  # 7 quality out of range
            f"md5,{MD5},,,,[1]",  # 8 metadata not an object
            f"md5,{MD5},,,,{{oops",  # 9 metadata not JSON
            f"md5,{MD5},,",  # 10 missing columns
            f"md5,{MD5},,,,,extra",  # 11 too many columns
            f"md5,{MD5},,,{'t' * 101},",  # 12 tag too long
            f"md5,{'z' * 32},,,,",  # 13 not hex
            f'md5,"{MD5},,,,',  # 14 unterminated quote (runs to the end)
        ]
    )
    recs = list(read_csv(lines(text + "\n")))
    assert errors(recs) == [
        (3, "malformed_hash"),
        (4, "malformed_hash"),
        (5, "unknown_signal"),
        (6, "bad_quality"),
        (7, "bad_quality"),
        (8, "bad_metadata"),
        (9, "bad_metadata"),
        (10, "wrong_field_count"),
        (11, "wrong_field_count"),
        (12, "bad_tags"),
        (13, "malformed_hash"),
        (14, "bad_csv"),
    ]
    assert good(recs) == [(2, "pdq", PDQ)]
    for r in recs:
        if r.error:
            assert r.error.message and str(r.error).startswith(f"line {r.line}: ")


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("signal,value,colour", "unknown column"),
        ("signal,quality", "lacks column(s) value"),
        ("signal,value,value", "appear twice"),
        (MD5, "unknown column"),  # a bare list of hashes, no header
    ],
)
def test_csv_bad_header_fails_the_file(header: str, needle: str) -> None:
    with pytest.raises(ImportFormatError) as info:
        read_csv(lines(f"{header}\nmd5,{MD5}\n"))
    assert info.value.code == "bad_header"
    assert needle in info.value.message
    assert info.value.errors[0]["line"] == 1
    assert "signal,value" in (info.value.hint or "")


def test_csv_empty_file() -> None:
    assert list(read_csv([])) == []
    assert list(read_csv(lines("\n\n"))) == []
    assert list(read_csv(lines("signal,value\n"))) == []


# -- JSONL ------------------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines() -> None:
    rows: list[str] = [
        json.dumps(
            {
                "signal": "pdq",
                "value": PDQ,
                "quality": 80,
                "source": "s",
                "tags": ["a"],
                "metadata": {"k": [1]},
            }
        ),  # 1
        "",  # 2 blank
        "{not json",  # 3
        "[1, 2]",  # 4 not an object
        json.dumps({"signal": "md5", "value": MD5, "colour": "red"}),  # 5 unknown field
        json.dumps({"signal": "md5"}),  # 6 missing value
        json.dumps({"signal": "md5", "value": MD5, "quality": "80"}),  # 7 quality type
        json.dumps({"signal": "md5", "value": MD5, "quality": 80.5}),  # 8
        json.dumps({"signal": "md5", "value": MD5, "tags": "a;b"}),  # 9 tags not a list
        json.dumps({"signal": "md5", "value": MD5, "metadata": "x"}),  # 10
        json.dumps({"signal": "md5", "value": 12345}),  # 11 value not a string
        json.dumps({"signal": "sha1", "value": MD5}),  # 12 unknown signal
        json.dumps(
            {
                "signal": "md5",
                "value": MD5,
                "quality": None,
                "source": None,
                "tags": [],
                "metadata": {},
            }
        ),  # 13 good, explicit nulls
    ]
    recs = list(read_jsonl(lines("\n".join(rows) + "\n")))
    assert errors(recs) == [
        (3, "bad_json"),
        (4, "bad_row"),
        (5, "unknown_field"),
        (6, "missing_field"),
        (7, "bad_quality"),
        (8, "bad_quality"),
        (9, "bad_tags"),
        (10, "bad_metadata"),
        (11, "malformed_hash"),
        (12, "unknown_signal"),
    ]
    assert good(recs) == [(1, "pdq", PDQ), (13, "md5", MD5)]
    e = recs[0].entries[0]
    assert (e.quality, e.source, e.tags, e.meta) == (80, "s", ("a",), {"k": [1]})


def test_detect_format() -> None:
    assert detect_format("signal,value") == "csv"
    assert detect_format(f'{{"signal": "pdq", "value": "{PDQ}"}}') == "jsonl"
    assert detect_format(f'{{"pdq": "{PDQ}"}}') == "hma"
    assert detect_format("{broken") == "jsonl"
    assert detect_format("") == "csv"


# -- writing, and round trips -----------------------------------------------------------------


def _info(i: int, signal: str, value: str, **kw: Any) -> EntryInfo:
    base: dict[str, Any] = dict(
        id=i,
        bank_id=1,
        bank="b",
        tenant="default",
        signal=signal,
        value=value,
        quality=None,
        source=None,
        tags=(),
        meta={},
        added_at=datetime.now(UTC),
    )
    base.update(kw)
    return EntryInfo(**base)


def storable_text(min_size: int = 0, max_size: int = 20, exclude: str = "") -> Any:
    """Any text a store can hold: no NUL (PostgreSQL), no lone surrogates (UTF-8)."""
    return st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + exclude),
        min_size=min_size,
        max_size=max_size,
    )


tag_text = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=";"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | storable_text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(storable_text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
entry_fields = st.fixed_dictionaries(
    {
        "quality": st.none() | st.integers(0, 100),
        "source": st.none() | storable_text(max_size=40).map(str.strip).filter(bool),
        "tags": st.lists(tag_text, max_size=4, unique=True).map(tuple),
        "meta": st.dictionaries(storable_text(max_size=10), json_value, max_size=4),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(entry_fields, max_size=5), st.sampled_from(["csv", "jsonl"]))
def test_round_trip_preserves_every_field(fields: list[dict[str, Any]], fmt: str) -> None:
    infos = [_info(i, "md5", f"{i + 1:032x}", **f) for i, f in enumerate(fields)]
    out = io.StringIO(newline="")
    writer, reader = (write_csv, read_csv) if fmt == "csv" else (write_jsonl, read_jsonl)
    assert writer(infos, out) == len(infos)
    recs = list(reader(lines(out.getvalue())))
    assert errors(recs) == []
    back = [e for r in recs for e in r.entries]
    assert [(e.signal, e.value, e.quality, e.source, e.tags, e.meta) for e in back] == [
        (i.signal, i.value, i.quality, i.source, i.tags, i.meta) for i in infos
    ]
