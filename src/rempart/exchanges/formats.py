"""What every hash-list format shares: parsed records, row errors, format detection.

A *record* is one unit of a file that is either good or bad as a whole: a CSV row, a JSONL
line, an HMA line (which may carry several hashes). Parsers never raise for a bad record;
they yield it with a :class:`RowError` carrying the line number, so an import can list every
problem at once. Only a file that cannot be read at all (a CSV header naming no ``value``
column, say) raises :class:`~rempart.errors.ImportFormatError` straight away.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from rempart.errors import ImportFormatError, RempartError
from rempart.store.records import NewEntry

Format = Literal["csv", "jsonl", "hma"]
FORMATS: Final[tuple[str, ...]] = get_args(Format)


@dataclass(frozen=True, slots=True)
class RowError:
    """A bad record: the file's line number (1-based, where the record starts) and why."""

    line: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """``{line, code, message}``, the shape carried by ImportFormatError.errors."""
        return {"line": self.line, "code": self.code, "message": self.message}

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed record: its entries when good, its error when bad."""

    line: int
    entries: tuple[NewEntry, ...] = ()
    error: RowError | None = None


def bad(line: int, exc_or_message: RempartError | str, code: str = "bad_row") -> Record:
    """A failed record from a Rempart error (keeping its code) or a plain message."""
    if isinstance(exc_or_message, RempartError):
        return Record(line, error=RowError(line, exc_or_message.code, exc_or_message.message))
    return Record(line, error=RowError(line, code, exc_or_message))


def json_error(line: int, exc: json.JSONDecodeError) -> Record:
    """A record whose line is not valid JSON."""
    return bad(line, f"invalid JSON: {exc.msg} (column {exc.colno})", "bad_json")


def json_objects(
    lines: Iterable[str], expected: str = "a JSON object"
) -> Iterator[tuple[int, dict[str, Any]] | Record]:
    """``(line number, object)`` for each non-blank line holding a JSON object, or a failed
    :class:`Record` for a line that does not (shared by the JSONL and HMA readers)."""
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield json_error(n, exc)
            continue
        if not isinstance(obj, dict):
            yield bad(n, f"expected {expected}, got {type(obj).__name__}", "bad_row")
            continue
        yield n, obj


def check_format(value: str) -> Format:
    """``value`` if it names a known format, else an ImportFormatError saying which exist."""
    v = value.strip().lower()
    if v not in FORMATS:
        raise ImportFormatError(
            f"unknown hash-list format {value!r}",
            code="unknown_format",
            hint=f"use one of: {', '.join(FORMATS)} (or leave it out to detect it)",
        )
    return v  # type: ignore[return-value]


def detect_format(first_line: str) -> Format:
    """Guess the format from the first non-blank line of a file.

    A JSON object with a ``signal`` or ``value`` key is our JSONL; another JSON object is
    HMA's raw-signal format (``{"pdq": "..."}``); anything else is read as CSV (and a CSV
    without the right header is rejected with an explanation).
    """
    text = first_line.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return "jsonl"  # let the JSONL reader report the line
        if isinstance(obj, dict) and ("signal" in obj or "value" in obj):
            return "jsonl"
        return "hma"
    return "csv"


def peek_first_line(lines: Iterator[str]) -> tuple[list[str], str]:
    """Read up to the first non-blank line; returns the lines read and that line ('' if none)."""
    seen: list[str] = []
    for line in lines:
        seen.append(line)
        if line.strip():
            return seen, line
    return seen, ""
