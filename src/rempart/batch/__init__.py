"""Batch scanning: a corpus (folders, ZIP/TAR archives, Telegram Desktop exports) through the
same :class:`~rempart.scan.Scanner` as ``rempart scan`` and the service, on a local process
pool or a Ray cluster, into a resumable results folder with an HTML report.

>>> from rempart.batch import BatchConfig, run_batch          # doctest: +SKIP
>>> summary = run_batch(BatchConfig([Path("seized/")], Path("out"), settings))  # doctest: +SKIP

See ``docs/batch.md``.
"""

from rempart.batch.archives import ArchiveLimits
from rempart.batch.engine import ENGINES, Engine, EngineStats
from rempart.batch.items import BatchError, Item
from rempart.batch.results import ResultsWriter, iter_rows
from rempart.batch.run import BatchConfig, BatchSummary, Progress, make_engine, run_batch
from rempart.batch.sources import iter_items
from rempart.batch.worker import ItemScanner, ScanOptions

__all__ = [
    "ENGINES",
    "ArchiveLimits",
    "BatchConfig",
    "BatchError",
    "BatchSummary",
    "Engine",
    "EngineStats",
    "Item",
    "ItemScanner",
    "Progress",
    "ResultsWriter",
    "ScanOptions",
    "iter_items",
    "iter_rows",
    "make_engine",
    "run_batch",
]
