"""The results folder (``--out DIR``): written as items finish, resumable.

``results.jsonl`` is the record: one row per item, appended and flushed as each finishes, so
an interrupted scan (Ctrl-C, a killed process, a crashed worker) loses no finished result. It
is also synced to disk at least every second: a power cut loses at most that. On a re-run with
the same folder, a half-written last line is dropped (in ``previews.jsonl`` too), the keys
already there are skipped, rows that failed for a reason that may have gone (``unreadable``,
``not_found``, ``missing_media``) are dropped so their items are tried again, and
``results.csv`` is rebuilt from the JSONL before new rows are added, so the two always agree.
``previews.jsonl`` (blurred greyscale thumbnails, only with ``--previews``) is kept apart, so
the results themselves never hold anything drawn from the pixels.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from rempart.batch.rows import CSV_FIELDS, csv_row, dumps
from rempart.errors import RempartError

RESULTS = "results.jsonl"
CSV_FILE = "results.csv"
PREVIEWS = "previews.jsonl"
RUN = "run.json"
REPORT = "report.html"
#: RFC 4180's line end: the csv module then quotes any cell holding a CR or an LF, so an
#: untrusted name with a carriage return cannot split a row in a spreadsheet.
CSV_EOL = "\r\n"
#: Seconds between fsyncs (every row is flushed to the OS at once; see the module doc).
SYNC_EVERY_S = 1.0


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The complete, valid rows of a results file (a torn last line is left out)."""
    if not path.exists():
        return
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                yield row


def _repair(path: Path, retry: frozenset[str] = frozenset()) -> set[str]:
    """Rewrite ``path`` without torn, invalid or duplicate lines, nor rows failed with an
    error code in ``retry`` (only when it has any of these); the keys kept.

    A torn last line must go before anything is appended: the next row would be glued to
    it, and both lost.
    """
    keys: set[str] = set()
    rows = 0
    with path.open("rb") as f:
        lines = sum(1 for _ in f)
    kept: list[dict[str, Any]] = []
    for row in iter_rows(path):
        rows += 1
        error = row.get("error")
        if isinstance(error, dict) and error.get("code") in retry:
            continue  # scanned again in this run
        if row["key"] not in keys:
            keys.add(row["key"])
            kept.append(row)
    if rows != lines or len(kept) != rows:
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for row in kept:
                f.write(dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return keys


class ResultsWriter:
    """Appends rows to ``results.jsonl`` and ``results.csv`` (and previews) in ``out``."""

    def __init__(
        self, out: Path, *, previews: bool = False, retry: frozenset[str] = frozenset()
    ) -> None:
        self.out = out
        self.previews = previews
        #: Error codes whose rows are dropped on opening, so their items are done again.
        self.retry = retry
        self.done: set[str] = set()
        self.written = 0
        self._jsonl: IO[str] | None = None
        self._csv: IO[str] | None = None
        self._csv_writer: csv.DictWriter[str] | None = None
        self._previews: IO[str] | None = None
        self._synced = time.monotonic()

    def open(self) -> Self:
        """Create or reopen the folder; ``done`` then holds the keys already finished."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            results = self.out / RESULTS
            if results.exists():
                self.done = _repair(results, self.retry)
            if self.previews and (self.out / PREVIEWS).exists():
                _repair(self.out / PREVIEWS)
            self._rebuild_csv()
            self._jsonl = results.open("a", encoding="utf-8")
            self._csv = (self.out / CSV_FILE).open("a", encoding="utf-8", newline="")
            self._csv_writer = csv.DictWriter(self._csv, CSV_FIELDS, lineterminator=CSV_EOL)
            if self.previews:
                self._previews = (self.out / PREVIEWS).open("a", encoding="utf-8")
        except OSError as e:
            raise RempartError(
                f"cannot write results to {self.out}: {e.strerror}",
                code="unwritable",
                hint="choose a folder you can write to with --out",
            ) from None
        return self

    def _rebuild_csv(self) -> None:
        tmp = self.out / (CSV_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, lineterminator=CSV_EOL)
            writer.writeheader()
            for row in iter_rows(self.out / RESULTS):
                writer.writerow(csv_row(row))
        os.replace(tmp, self.out / CSV_FILE)

    def write(self, row: dict[str, Any], preview: str | None = None) -> bool:
        """Record one finished item (ignored if its key is already done); whether written."""
        assert self._jsonl is not None and self._csv is not None and self._csv_writer
        key = row["key"]
        if key in self.done:
            return False
        self._jsonl.write(dumps(row) + "\n")
        self._jsonl.flush()
        self._csv_writer.writerow(csv_row(row))
        self._csv.flush()
        if preview and self._previews is not None:
            self._previews.write(json.dumps({"key": key, "preview": preview}) + "\n")
            self._previews.flush()
        self.done.add(key)
        self.written += 1
        if time.monotonic() - self._synced >= SYNC_EVERY_S:
            self.sync()
        return True

    def sync(self) -> None:
        """Force what was written to disk."""
        for f in (self._jsonl, self._csv, self._previews):
            if f is not None:
                os.fsync(f.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close every file."""
        if self._jsonl is None:
            return
        self.sync()
        for f in (self._jsonl, self._csv, self._previews):
            if f is not None:
                f.close()
        self._jsonl = self._csv = self._previews = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def load_previews(out: Path) -> dict[str, str]:
    """Key -> thumbnail data URI, from ``previews.jsonl`` (empty when there is none)."""
    found: dict[str, str] = {}
    for row in iter_rows(out / PREVIEWS):
        preview = row.get("preview")
        if isinstance(preview, str) and preview.startswith("data:image/jpeg;base64,"):
            found[row["key"]] = preview
    return found
