"""Rempart's own hash-list formats: CSV and JSONL (documented in docs/hash-lists.md).

CSV::

    signal,value,quality,source,tags,metadata
    pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,90,ngo,ncii;c17,
    md5,d41d8cd98f00b204e9800998ecf8427e,,,,"{""case"": ""17""}"

* The header is required; column names are case-insensitive and may come in any order.
  ``signal`` and ``value`` are required columns, the others optional; unknown columns are
  refused (a typo would otherwise drop data silently).
* ``quality``: integer 0-100 or empty. ``source``: free text or empty. ``tags``:
  ``;``-separated. ``metadata``: a JSON object or empty. ``frames`` (optional column, video
  entries only): the frames' PDQ hashes, ``;``-separated.

JSONL: one JSON object per line, keys ``signal`` and ``value`` (required), ``quality``,
``source``, ``tags`` (list of strings), ``metadata`` (object), ``frames`` (list, video
entries only); unknown keys are refused.
Blank lines are skipped in both formats.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, TextIO, cast

from rempart.errors import ImportFormatError, RempartError
from rempart.exchanges.formats import Record, bad, json_objects
from rempart.store.records import EntryInfo, NewEntry

COLUMNS: Final = ("signal", "value", "quality", "source", "tags", "metadata")
#: Only for video (``vpdq``) entries: the frames' PDQ hashes, ``;``-separated in CSV.
FRAMES: Final = "frames"
KNOWN: Final = (*COLUMNS, FRAMES)
REQUIRED: Final = ("signal", "value")
_JSONL_KEYS: Final = frozenset(KNOWN)


# -- CSV ------------------------------------------------------------------------------------


def read_csv(lines: Iterable[str]) -> Iterator[Record]:
    """Parse our CSV from an iterable of text lines (opened with ``newline=""``).

    The header is checked at once (ImportFormatError ``bad_header``); rows are parsed as the
    returned iterator is consumed.
    """
    reader = csv.reader(iter(lines), strict=True)
    header: list[str] | None = None
    header_line = 0
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                header, header_line = row, reader.line_num
                break
    except csv.Error as exc:
        raise _header_error(reader.line_num, f"cannot read the CSV header: {exc}") from None
    if header is None:
        return iter(())
    names = [h.strip().lower() for h in header]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise _header_error(
            header_line,
            f"unknown column(s) {', '.join(repr(u) for u in unknown)} in the CSV header",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _header_error(header_line, f"column(s) {', '.join(repeated)} appear twice")
    missing = [r for r in REQUIRED if r not in names]
    if missing:
        raise _header_error(header_line, f"the CSV header lacks column(s) {', '.join(missing)}")
    return _csv_rows(reader, names)


def _header_error(line: int, message: str) -> ImportFormatError:
    return ImportFormatError(
        f"line {line}: {message}",
        code="bad_header",
        errors=[{"line": line, "code": "bad_header", "message": message}],
        hint=f"the first line must be a header such as: {','.join(COLUMNS)} "
        "(signal and value are required)",
    )


def _csv_rows(reader: Any, names: list[str]) -> Iterator[Record]:
    index = {n: i for i, n in enumerate(names)}
    width = len(names)
    i_sig, i_val = index["signal"], index["value"]
    i_q, i_src, i_tags, i_meta, i_frames = (
        index.get(k) for k in ("quality", "source", "tags", "metadata", FRAMES)
    )
    last = reader.line_num
    while True:
        start = last + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last = reader.line_num
            yield bad(start, f"malformed CSV: {exc}", "bad_csv")
            continue
        last = reader.line_num
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != width:
            yield bad(
                start,
                f"expected {width} fields ({','.join(names)}), got {len(row)}",
                "wrong_field_count",
            )
            continue
        try:
            entry = NewEntry(
                signal=row[i_sig].strip(),
                value=row[i_val],
                quality=_quality(row[i_q]) if i_q is not None else None,
                source=(row[i_src].strip() or None) if i_src is not None else None,
                tags=row[i_tags].split(";") if i_tags is not None else (),
                meta=_metadata(row[i_meta]) if i_meta is not None else {},
                frames=_frames(row[i_frames]) if i_frames is not None else (),
            )
        except RempartError as exc:
            yield bad(start, exc)
            continue
        yield Record(start, (entry,))


def _quality(cell: str) -> int | None:
    text = cell.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise RempartError(
            f"quality must be an integer from 0 to 100, got {text[:40]!r}", code="bad_quality"
        ) from None


def _frames(cell: str) -> tuple[str, ...]:
    return tuple(f for f in (part.strip() for part in cell.split(";")) if f)


def _metadata(cell: str) -> dict[str, Any]:
    text = cell.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RempartError(
            f"metadata is not valid JSON: {exc.msg} (column {exc.colno})", code="bad_metadata"
        ) from None
    if not isinstance(value, dict):
        raise RempartError(
            f"metadata must be a JSON object, got {type(value).__name__}", code="bad_metadata"
        )
    return cast(dict[str, Any], value)


def write_csv(entries: Iterable[EntryInfo], out: TextIO, *, frames: bool = False) -> int:
    """Write entries as our CSV (with header); returns how many rows were written.

    ``frames=True`` adds the ``frames`` column (needed when video entries are written).
    """
    # RFC 4180 line ends: with "\r\n" as the terminator the csv module also quotes fields
    # holding a lone "\r" (with "\n" alone, Python 3.11 would not, and the file would not
    # read back).
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(KNOWN if frames else COLUMNS)
    n = 0
    for e in entries:
        row: tuple[Any, ...] = (
            e.signal,
            e.value,
            "" if e.quality is None else e.quality,
            e.source or "",
            ";".join(e.tags),
            json.dumps(e.meta, ensure_ascii=False) if e.meta else "",
        )
        if frames:
            row = (*row, ";".join(e.frames))
        elif e.frames:
            raise ValueError("entry has frames: write_csv(..., frames=True)")
        writer.writerow(row)
        n += 1
    return n


# -- JSONL ----------------------------------------------------------------------------------


def read_jsonl(lines: Iterable[str]) -> Iterator[Record]:
    """Parse our JSONL: one object per line, blank lines skipped."""
    for item in json_objects(lines):
        if isinstance(item, Record):
            yield item
            continue
        n, obj = item
        unknown = sorted(k for k in obj if k not in _JSONL_KEYS)
        if unknown:
            yield bad(
                n,
                f"unknown field(s) {', '.join(repr(k) for k in unknown)}; "
                f"known: {', '.join(KNOWN)}",
                "unknown_field",
            )
            continue
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            yield bad(n, f"missing field(s) {', '.join(missing)}", "missing_field")
            continue
        try:
            entry = NewEntry(
                signal=obj["signal"],
                value=obj["value"],
                quality=obj.get("quality"),
                source=obj.get("source"),
                tags=obj.get("tags", ()),
                meta=obj.get("metadata", {}),
                frames=obj.get(FRAMES, ()),
            )
        except RempartError as exc:
            yield bad(n, exc)
            continue
        yield Record(n, (entry,))


def write_jsonl(entries: Iterable[EntryInfo], out: TextIO) -> int:
    """Write entries as our JSONL (every key present, ``frames`` for video entries only);
    returns how many lines were written."""
    n = 0
    for e in entries:
        obj: dict[str, Any] = {
            "signal": e.signal,
            "value": e.value,
            "quality": e.quality,
            "source": e.source,
            "tags": list(e.tags),
            "metadata": dict(e.meta),
        }
        if e.frames:
            obj[FRAMES] = list(e.frames)
        out.write(json.dumps(obj, ensure_ascii=False))
        out.write("\n")
        n += 1
    return n
