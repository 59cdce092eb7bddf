"""Import and export hash lists: streamed, validated, one transaction per import.

An import reads its source once, line by line (a 1 GB file is never held in memory), and
writes through :meth:`Store.add_entries` in a single transaction:

* ``atomic`` (the default): if any record is bad, nothing is written and
  :class:`~rempart.errors.ImportFormatError` lists every bad record with its line number.
  Writing stops at the first bad record; the rest of the file is still read to report
  every problem, then the transaction is rolled back.
* ``partial``: good records are written, bad ones are reported in the returned
  :class:`ImportReport`.

Either way an import is never half-done: an exception from anywhere (the progress
callback, the database, Ctrl-C) rolls the whole transaction back.
"""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Final, Literal, TextIO, cast, get_args

from rempart.errors import ImportFormatError
from rempart.exchanges.csvjsonl import read_csv, read_jsonl, write_csv, write_jsonl
from rempart.exchanges.formats import (
    Format,
    Record,
    RowError,
    check_format,
    detect_format,
    peek_first_line,
)
from rempart.exchanges.hma import read_hma, write_hma
from rempart.store import BankRef, NewEntry, Store
from rempart.store.records import VIDEO_SIGNAL

ImportMode = Literal["atomic", "partial"]
IMPORT_MODES: Final[tuple[str, ...]] = get_args(ImportMode)

Source = str | os.PathLike[str] | IO[str] | IO[bytes]
Dest = str | os.PathLike[str] | TextIO

#: The longest line read (a record with 16 KiB of metadata, quoted, fits many times over).
MAX_LINE: Final = 1024 * 1024

_READERS: Final[dict[str, Callable[[Iterator[str]], Iterator[Record]]]] = {
    "csv": read_csv,
    "jsonl": read_jsonl,
    "hma": read_hma,
}


@dataclass(slots=True)
class ImportReport:
    """What an import did.

    ``read`` counts records (CSV rows, JSONL/HMA lines; blank lines excepted); ``added`` and
    ``duplicates`` count hashes (an HMA line can hold several). ``errors`` lists bad records
    up to the import's ``max_errors``; ``error_count`` counts them all.
    """

    bank: str
    tenant: str
    format: Format
    mode: ImportMode
    read: int = 0
    added: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0

    @property
    def ok(self) -> bool:
        """True when every record was good."""
        return self.error_count == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for the CLI's ``--json`` and the API)."""
        return {
            "bank": self.bank,
            "tenant": self.tenant,
            "format": self.format,
            "mode": self.mode,
            "read": self.read,
            "added": self.added,
            "duplicates": self.duplicates,
            "error_count": self.error_count,
            "errors": [e.to_dict() for e in self.errors],
        }


def import_file(
    store: Store,
    bank: BankRef,
    source: Source,
    *,
    tenant: str = "default",
    fmt: Format | str | None = None,
    mode: ImportMode | str = "atomic",
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
    max_errors: int | None = 10_000,
    batch_size: int = 5_000,
) -> ImportReport:
    """Import a hash list into ``bank`` and report what happened.

    ``source`` is a path (``.gz`` is decompressed; ``-`` is standard input), or an open
    text or binary file. ``fmt`` is ``csv``, ``jsonl`` or ``hma``; left out, it is detected
    from the first line.
    ``on_progress(records_read)`` is called every ``progress_every`` records and at the end;
    if it raises, the import is rolled back and the exception propagates. It runs inside
    the import's write transaction, so it must not write to the store itself (it would
    wait for the import's own lock).

    Raises ImportFormatError (atomic mode with bad records, or an unreadable file),
    NotFoundError (no such bank).
    """
    if mode not in IMPORT_MODES:
        raise ImportFormatError(
            f"unknown import mode {mode!r}",
            code="bad_import_mode",
            hint="use 'atomic' (all or nothing) or 'partial' (skip bad rows)",
        )
    chosen = check_format(fmt) if fmt is not None else None
    # Look the bank up before reading anything: a typo in its name fails at once.
    if isinstance(bank, str):
        info = store.get_bank(bank, tenant)
    else:
        info = store.get_bank_by_id(bank if isinstance(bank, int) else bank.id)
    atomic = mode == "atomic"

    with _open_lines(source) as lines:
        seen, first = peek_first_line(lines)
        found: Format = chosen or detect_format(first)
        records = _READERS[found](chain(seen, lines))
        report = ImportReport(
            bank=info.name, tenant=info.tenant, format=found, mode=cast(ImportMode, mode)
        )

        def entries() -> Iterator[NewEntry]:
            for rec in records:
                report.read += 1
                if rec.error is not None:
                    report.error_count += 1
                    if max_errors is None or len(report.errors) < max_errors:
                        report.errors.append(rec.error)
                elif not (atomic and report.error_count):
                    # After a bad record an atomic import only validates: what it would write
                    # is going to be rolled back anyway.
                    yield from rec.entries
                if on_progress is not None and report.read % progress_every == 0:
                    on_progress(report.read)
            if on_progress is not None and report.read % progress_every:
                on_progress(report.read)
            if atomic and report.error_count:
                # Raised inside add_entries' transaction, so it rolls everything back.
                raise _rejection(report)

        result = store.add_entries(info, entries(), return_ids=False, batch_size=batch_size)
    report.added = result.added
    report.duplicates = result.duplicates
    return report


class _Lines:
    """The lines of a file as text, decoded one line at a time.

    Decoding per line (rather than through a text wrapper that decodes 8 KiB blocks) is what
    lets a non-UTF-8 byte be reported with its exact line number.
    """

    def __init__(self, fh: IO[bytes] | IO[str]) -> None:
        self._fh = fh
        self.count = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            raw = self._fh.readline(MAX_LINE + 1)
        except (OSError, EOFError) as exc:  # a corrupt or truncated .gz, a read error
            raise ImportFormatError(
                f"cannot read the file after line {self.count}: {exc}",
                code="unreadable_file",
                hint="check that the file is complete (and really gzip, if it ends in .gz)",
            ) from None
        if not raw:
            raise StopIteration
        self.count += 1
        if len(raw) > MAX_LINE:
            # Hash lists have short lines; this is the wrong file, and reading on could
            # mean holding gigabytes of one "line" in memory.
            raise ImportFormatError(
                f"line {self.count} is longer than {MAX_LINE // 1024} KiB",
                code="line_too_long",
                errors=[{"line": self.count, "code": "line_too_long", "message": "too long"}],
                hint="is this a hash list? each record must be on its own line",
            )
        if isinstance(raw, str):
            line = raw
        else:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFormatError(
                    f"line {self.count} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                    code="bad_encoding",
                    errors=[{"line": self.count, "code": "bad_encoding", "message": str(exc)}],
                    hint="save the list as UTF-8 (hash lists are plain ASCII)",
                ) from None
        if self.count == 1 and line.startswith("\ufeff"):
            line = line[1:]  # a byte-order mark, as some Windows tools write
        return line


def _rejection(report: ImportReport) -> ImportFormatError:
    n = report.error_count
    listed = "" if len(report.errors) == n else f" (the first {len(report.errors)} are listed)"
    return ImportFormatError(
        f"import into bank {report.bank!r} rejected: {n} bad record(s){listed}; "
        "nothing was written",
        errors=[e.to_dict() for e in report.errors],
        hint="fix the lines listed, or import in partial mode to add the good rows and skip these",
    )


@contextmanager
def _open_lines(source: Source) -> Iterator[_Lines]:
    if isinstance(source, (str, os.PathLike)) and str(source) == "-":
        yield _Lines(sys.stdin.buffer)
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImportFormatError(
                f"no such file: {path}", code="file_not_found", hint="check the path"
            )
        opener: Any = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            yield _Lines(fh)
        return
    yield _Lines(source)


# -- export ---------------------------------------------------------------------------------


def export_bank(
    store: Store,
    bank: BankRef,
    dest: Dest,
    *,
    tenant: str = "default",
    fmt: Format | str = "csv",
    signal: str | None = None,
    hma_md5_key: str = "md5",
) -> int:
    """Write a bank's entries (of one ``signal``, or all) to ``dest``; returns how many.

    Streams from one consistent read. A path is written to a temporary file beside it and
    renamed into place, so an interrupted export never leaves a truncated list behind.
    ``hma_md5_key="video_md5"`` names MD5s the way HMA does in HMA exports (which leave
    video entries out).
    """
    chosen = check_format(fmt)
    info = store.get_bank(bank, tenant) if isinstance(bank, str) else None
    has_video = info is None or VIDEO_SIGNAL in info.counts
    entries = store.iter_entries(bank, signal, tenant=tenant)

    def write(out: TextIO) -> int:
        if chosen == "hma":
            return write_hma(entries, out, md5_key=hma_md5_key)
        if chosen == "csv":
            # The frames column only when the bank holds videos (or might: looked up by id).
            return write_csv(entries, out, frames=has_video and signal in (None, VIDEO_SIGNAL))
        return write_jsonl(entries, out)

    if not isinstance(dest, (str, os.PathLike)):
        return write(dest)
    path = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            n = write(out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
