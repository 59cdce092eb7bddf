"""The Ray engine (``--engine ray``): the same items through the same workers, on a Ray
cluster, with Ray Data.

The items (locators, not bytes) become a dataset, mapped by at most ``workers`` tasks at a
time; each Ray worker process builds one :class:`~rempart.batch.worker.ItemScanner` the first
time it runs one and keeps it (see :data:`_cached`); rows stream back to the driver, which
writes them as they come. Tasks rather than an actor pool: actors start in new processes
that must import Ray Data and the Scanner every run (and every window of a compressed TAR),
which cost seconds each; task workers are kept by Ray from one dataset to the next.

The files must be readable from every node (a shared file system) and the store reachable
(PostgreSQL, or a SQLite file on shared storage); members of compressed TARs are the
exception: the driver reads them and their bytes travel in the dataset (in windows of at
most :data:`WINDOW_BYTES`).

Needs the ``rempart[ray]`` extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import time
from collections.abc import Iterable, Iterator
from typing import Any

from rempart.batch.engine import EngineStats, Sink
from rempart.batch.items import InlineRef, Item
from rempart.batch.worker import ItemScanner, ScanOptions
from rempart.errors import RempartError

#: Inline bytes (compressed TAR members) held in one dataset before the next is started.
WINDOW_BYTES = 256 * 1024**2
#: Items per dataset block (one Ray task each): small enough to balance work between actors
#: and keep the progress smooth, large enough that Ray's per-task cost stays small.
BLOCK_ITEMS = 64
BATCH_ITEMS = 16


#: The ItemScanner of this Ray worker process, and the digest of the options it was built
#: with. Ray keeps worker processes from task to task (and from run to run on a cluster),
#: so a scanner is built once per process, like an actor's, without an actor's start-up:
#: Ray starts no process for it, and a new dataset (the next window of a compressed TAR, the
#: next run) finds its scanners ready.
_cached: tuple[bytes, ItemScanner] | None = None


def _scanner_for(options_blob: bytes) -> ItemScanner:
    global _cached
    digest = hashlib.sha256(options_blob).digest()
    if _cached is not None and _cached[0] == digest:
        # Banks may have changed since the last batch (another run, an import): the same
        # refresh as the service's, one indexed query when nothing did.
        _cached[1].scanner.matcher.refresh()
        return _cached[1]
    if _cached is not None:
        _cached[1].close()
        _cached = None
    scanner = ItemScanner(pickle.loads(options_blob))
    _cached = (digest, scanner)
    return scanner


def _scan_batch(batch: dict[str, Any], options_blob: bytes) -> dict[str, list[str]]:
    """A Ray Data task: scan a batch of items with this process's scanner."""
    scanner = _scanner_for(options_blob)
    rows: list[str] = []
    previews: list[str] = []
    for blob in batch["item"]:
        row, preview = scanner.scan(pickle.loads(blob))
        rows.append(json.dumps(row, ensure_ascii=False))
        previews.append(preview or "")
    return {"row": rows, "preview": previews}


def _windows(items: Iterable[Item]) -> Iterator[list[Item]]:
    window: list[Item] = []
    size = 0
    for item in items:
        window.append(item)
        if isinstance(item.locator, InlineRef):
            size += len(item.locator.data)
            if size >= WINDOW_BYTES:
                yield window
                window, size = [], 0
    if window:
        yield window


class RayEngine:
    """Scans items on a Ray cluster (``address``), or on a local Ray started for the run."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.workers = workers or 0
        self.address = address

    def _connect(self) -> bool:
        try:
            import ray
        except ImportError:
            raise RempartError(
                "the Ray engine needs Ray",
                code="ray_missing",
                hint="install the extra: pip install 'rempart[ray]'",
            ) from None
        if ray.is_initialized():
            return False
        # A Ray started here for this run listens on the loopback only: nothing on the
        # network can reach a scan of seized data (a cluster is given with --address).
        local: dict[str, Any] = {"_node_ip_address": "127.0.0.1"} if self.address is None else {}
        ray.init(
            address=self.address,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
            **local,
        )
        return True

    def run(self, items: Iterable[Item], options: ScanOptions, sink: Sink) -> EngineStats:
        """Scan ``items``, handing each row to ``sink`` as it finishes."""
        t0 = time.perf_counter()
        started = self._connect()
        import ray
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        if not self.workers:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        blob = pickle.dumps(options)
        t1 = time.perf_counter()
        scanned = 0
        try:
            for window in _windows(items):
                blocks = max(
                    1, min(len(window), max(self.workers * 2, math.ceil(len(window) / BLOCK_ITEMS)))
                )
                dataset = ray.data.from_items(
                    [{"item": pickle.dumps(item)} for item in window], override_num_blocks=blocks
                ).map_batches(
                    _scan_batch,  # type: ignore[arg-type]
                    fn_kwargs={"options_blob": blob},
                    compute=ray.data.TaskPoolStrategy(size=self.workers),
                    batch_size=BATCH_ITEMS,
                    batch_format="numpy",
                    num_cpus=1,
                )
                for out in dataset.iter_rows():
                    sink(json.loads(out["row"]), out["preview"] or None)
                    scanned += 1
        finally:
            if started:
                ray.shutdown()
        return EngineStats(self.name, self.workers, scanned, t1 - t0, time.perf_counter() - t1)
