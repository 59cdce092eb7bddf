"""Meta HMA's raw-signal format: one JSON object per line, signal type name -> hash.

This is the body HMA 2.0 (OpenMediaMatch) takes at ``POST /c/bank/<name>/signal``, written
one per line::

    {"pdq": "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"}
    {"video_md5": "d41d8cd98f00b204e9800998ecf8427e"}
    {"pdq": "...", "md5": "..."}

A line may carry several signal keys (the hashes of one piece of content); each becomes an
entry, and the line is good or bad as a whole. HMA names file MD5s ``video_md5``; Rempart
reads that, ``md5`` and ``sha256``. The format has no quality, source, tags or metadata, so
an HMA export keeps only the hashes, and leaves video (``vpdq``) entries out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Final, TextIO

from rempart.errors import RempartError
from rempart.exchanges.formats import Record, bad, json_objects
from rempart.signals import SIGNALS
from rempart.store.records import EntryInfo, NewEntry

#: HMA (python-threatexchange) signal type names -> Rempart signal names.
HMA_NAMES: Final[dict[str, str]] = {
    "pdq": "pdq",
    "video_md5": "md5",
    "md5": "md5",
    "sha256": "sha256",
}


def read_hma(lines: Iterable[str]) -> Iterator[Record]:
    """Parse HMA raw-signal lines; blank lines are skipped."""
    for item in json_objects(lines, 'a JSON object such as {"pdq": "<hex>"}'):
        if isinstance(item, Record):
            yield item
            continue
        n, obj = item
        if not obj:
            yield bad(n, 'expected a JSON object such as {"pdq": "<hex>"}', "bad_row")
            continue
        entries: list[NewEntry] = []
        try:
            for key, value in obj.items():
                name = HMA_NAMES.get(key.strip().lower())
                if name is None:
                    raise RempartError(
                        f"unknown signal type {key!r} (known: {', '.join(HMA_NAMES)})",
                        code="unknown_signal",
                    )
                entries.append(NewEntry(signal=name, value=value))
        except RempartError as exc:
            yield bad(n, exc)
            continue
        yield Record(n, tuple(entries))


def write_hma(entries: Iterable[EntryInfo], out: TextIO, *, md5_key: str = "md5") -> int:
    """Write one ``{"<signal>": "<hex>"}`` line per entry; returns how many were written.

    ``md5_key="video_md5"`` writes MD5s under HMA's own name for them, for loading into HMA.
    Video (``vpdq``) entries are left out: HMA's vPDQ serialisation is a different format,
    not supported yet.
    """
    keys = {name: name for name in SIGNALS}
    keys["md5"] = md5_key
    n = 0
    for e in entries:
        if e.signal not in keys:
            continue
        out.write(json.dumps({keys[e.signal]: e.value}))
        out.write("\n")
        n += 1
    return n
