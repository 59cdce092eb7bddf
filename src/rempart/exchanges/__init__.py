"""Import and export of hash lists: Rempart's CSV and JSONL, and Meta HMA's raw-signal lines.

>>> from rempart.exchanges import import_file, export_bank
>>> report = import_file(store, "ncii", "list.csv")             # doctest: +SKIP
>>> export_bank(store, "ncii", "out.jsonl", fmt="jsonl")         # doctest: +SKIP

Formats are documented in docs/hash-lists.md.
"""

from rempart.exchanges.formats import FORMATS, Format, Record, RowError, detect_format
from rempart.exchanges.importer import (
    IMPORT_MODES,
    ImportMode,
    ImportReport,
    export_bank,
    import_file,
)

__all__ = [
    "FORMATS",
    "IMPORT_MODES",
    "Format",
    "ImportMode",
    "ImportReport",
    "Record",
    "RowError",
    "detect_format",
    "export_bank",
    "import_file",
]
