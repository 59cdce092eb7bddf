"""The local engine: a pool of worker processes on this machine (all cores by default).

Processes are started with ``spawn`` (not ``fork``: the driver holds database connections
and a progress thread, neither safe to copy into a child). Each worker builds its
:class:`~rempart.batch.worker.ItemScanner` once, in the pool's initializer. Items are
submitted a few per worker ahead of the results, so memory stays bounded however large the
corpus, and results arrive in the order they finish.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rempart.batch.engine import EngineStats, Sink
from rempart.batch.items import Item
from rempart.batch.worker import ItemScanner, ScanOptions
from rempart.errors import RempartError

_scanner: ItemScanner | None = None


def _init(options: ScanOptions, factory: Callable[[ScanOptions], ItemScanner]) -> None:
    global _scanner
    # Ctrl-C is the driver's to handle: it stops submitting and keeps what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _scanner = factory(options)


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

    def __init__(
        self,
        workers: int | None = None,
        *,
        ahead: int = 4,
        scanner: Callable[[ScanOptions], ItemScanner] = ItemScanner,
    ) -> None:
        self.workers = workers or default_workers()
        self._ahead = ahead
        #: What each worker builds once (an ItemScanner, or a subclass: picklable by name).
        self._factory = scanner

    def run(self, items: Iterable[Item], options: ScanOptions, sink: Sink) -> EngineStats:
        """Scan ``items``, handing each row to ``sink`` as it finishes."""
        t0 = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init, initargs=(options, self._factory)
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
        """Submit items a few ahead of the results and sink each result as it comes.

        Ctrl-C (SIGINT) only sets a flag here, checked between rows, so it can never land in
        the middle of writing one; a KeyboardInterrupt raised by the sink itself (after its
        row is written) is taken the same way. Either way, submitting stops, items not yet
        started are cancelled, and every result a worker finished or is finishing is sunk
        before KeyboardInterrupt is raised: nothing a worker did is dropped.
        """
        pending: set[Future[tuple[dict[str, Any], str | None]]] = set()
        ready: deque[Future[tuple[dict[str, Any], str | None]]] = deque()
        done_count = 0
        stop = _Interrupt()

        def sink_ready() -> None:
            nonlocal done_count
            while ready:
                row, preview = ready.popleft().result()
                done_count += 1
                try:
                    sink(row, preview)
                except KeyboardInterrupt:
                    stop.set()

        def collect(until_below: int) -> None:
            nonlocal pending
            while len(pending) > until_below:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                ready.extend(finished)
                sink_ready()
                if stop.is_set() and until_below:
                    return

        limit = self.workers * self._ahead
        with stop.catching():
            for item in items:
                if stop.is_set():
                    break
                pending.add(pool.submit(_scan, item))
                collect(limit - 1)
                if stop.is_set():
                    break
            if stop.is_set():
                # Drop what no worker has started; wait for the rest and keep it.
                pending = {f for f in pending if not f.cancel()}
            collect(0)
        if stop.is_set():
            raise KeyboardInterrupt
        return done_count


class _Interrupt:
    """A flag that SIGINT sets while :meth:`catching` (in the main thread only: Python runs
    signal handlers there), instead of raising KeyboardInterrupt at an arbitrary point."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    @contextlib.contextmanager
    def catching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self._set = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
