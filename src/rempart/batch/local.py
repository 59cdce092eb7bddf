"""The local engine: a pool of worker processes on this machine (all cores by default).

Processes are started with ``spawn`` (not ``fork``: the driver holds database connections
and a progress thread, neither safe to copy into a child). Each worker builds its
:class:`~rempart.batch.worker.ItemScanner` once, in the pool's initializer. Items are
submitted a few per worker ahead of the results, so memory stays bounded however large the
corpus, and results arrive in the order they finish.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rempart.batch.engine import EngineStats, Sink
from rempart.batch.items import Item
from rempart.batch.worker import ItemScanner, ScanOptions
from rempart.errors import RempartError

_scanner: ItemScanner | None = None


def _init(options: ScanOptions) -> None:
    global _scanner
    # Ctrl-C is the driver's to handle: it stops submitting and keeps what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _scanner = ItemScanner(options)


def _ready() -> int:
    return os.getpid()


def _scan(item: Item) -> tuple[dict[str, Any], str | None]:
    assert _scanner is not None, "worker not initialised"
    return _scanner.scan(item)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalEngine:
    """Scans items on a pool of ``workers`` processes."""

    name = "local"

    def __init__(self, workers: int | None = None, *, ahead: int = 4) -> None:
        self.workers = workers or default_workers()
        self._ahead = ahead

    def run(self, items: Iterable[Item], options: ScanOptions, sink: Sink) -> EngineStats:
        """Scan ``items``, handing each row to ``sink`` as it finishes."""
        t0 = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init, initargs=(options,)
        )
        try:
            # Start every worker (and build its Scanner) before the clock starts.
            for f in [pool.submit(_ready) for _ in range(self.workers)]:
                f.result()
            t1 = time.perf_counter()
            scanned = self._drive(pool, items, sink)
            t2 = time.perf_counter()
        except BrokenProcessPool as e:
            raise RempartError(
                f"a worker process died ({e})",
                code="worker_died",
                hint="run the same command again: finished items are kept and skipped",
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return EngineStats(self.name, self.workers, scanned, t1 - t0, t2 - t1)

    def _drive(self, pool: ProcessPoolExecutor, items: Iterable[Item], sink: Sink) -> int:
        pending: set[Future[tuple[dict[str, Any], str | None]]] = set()
        done_count = 0

        def collect(block_until: Callable[[], bool]) -> None:
            nonlocal pending, done_count
            while pending and block_until():
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    row, preview = f.result()
                    sink(row, preview)
                    done_count += 1

        limit = self.workers * self._ahead
        try:
            for item in items:
                pending.add(pool.submit(_scan, item))
                collect(lambda: len(pending) >= limit)
        except KeyboardInterrupt:
            # Keep what the workers already have in hand; drop what they have not started.
            pending = {f for f in pending if not f.cancel()}
            collect(lambda: True)
            raise
        collect(lambda: True)
        return done_count
