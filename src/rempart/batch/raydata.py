"""The Ray engine (``--engine ray``): the same items through the same workers, on a Ray
cluster, with Ray Data.

The items (locators, not bytes) become a dataset; an actor pool of ``workers`` actors, each
holding one :class:`~rempart.batch.worker.ItemScanner` built once, maps it; rows stream back
to the driver, which writes them as they come. The files must be readable from every node
(a shared file system) and the store reachable (PostgreSQL, or a SQLite file on shared
storage); members of compressed TARs are the exception: the driver reads them and their bytes
travel in the dataset (in windows of at most :data:`WINDOW_BYTES`).

Needs the ``rempart[ray]`` extra.
"""

from __future__ import annotations

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


class _RayScanner:
    """A Ray Data actor: one ItemScanner for its lifetime."""

    def __init__(self, options_blob: bytes) -> None:
        self._scanner = ItemScanner(pickle.loads(options_blob))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        rows: list[str] = []
        previews: list[str] = []
        for blob in batch["item"]:
            row, preview = self._scanner.scan(pickle.loads(blob))
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
        ray.init(
            address=self.address,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
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
                    _RayScanner,
                    fn_constructor_args=(blob,),
                    compute=ray.data.ActorPoolStrategy(size=self.workers),
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
