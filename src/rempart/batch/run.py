"""A batch run: sources -> items -> engine -> results folder -> report and summary.

:func:`run_batch` is what ``rempart scan PATH... --out DIR`` calls. It lists the items (cheap:
locators, not bytes), skips those already in ``DIR``, writes the rows of items that failed
before scanning, hands the rest to the engine, writes every row as it finishes, and ends with
the HTML report and a summary. An interrupted run (Ctrl-C) still writes the report of what is
done and re-raises; running the same command again finishes the job.

The results folder remembers what it is a scan of (``run.json``): the options that decide a
row's content and the inputs. A re-run with other options is refused; with other inputs too,
unless ``force`` (the new inputs are then added to the folder's). Rows that failed for a
reason that may have gone (:data:`~rempart.batch.items.TRANSIENT_ERRORS`) are tried again.

With ``record`` (the default), each flagged item is also recorded in the store as a scan of
the tenant, with where it was found, and its ``scan_id`` written in its row: see
:mod:`rempart.batch.records`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rempart import __version__
from rempart.batch.archives import ArchiveLimits, TarStreamReader
from rempart.batch.engine import ENGINES, Engine, EngineStats
from rempart.batch.items import (
    TRANSIENT_ERRORS,
    InlineRef,
    Item,
    TarStreamRef,
    absolute,
    error_row,
)
from rempart.batch.records import Recorder, case_numbers
from rempart.batch.report import CaseGroups, Tally, write_report
from rempart.batch.results import REPORT, RESULTS, RUN, ResultsWriter, iter_rows, load_previews
from rempart.batch.rows import flagged
from rempart.batch.sources import iter_items
from rempart.batch.worker import ScanOptions
from rempart.errors import RempartError
from rempart.policy import DEFAULT_POLICY, Policy
from rempart.settings import Settings
from rempart.store import Store
from rempart.store.cases import CASES_BANK


class Progress(Protocol):
    """Told how far a run is (the CLI shows it with Rich)."""

    def start(self, total: int, done: int) -> None:
        """``total`` items in all, ``done`` of them finished by earlier runs."""

    def advance(self) -> None:
        """One more item finished."""


@dataclass
class BatchConfig:
    """Everything a batch run needs."""

    paths: Sequence[Path]
    out: Path
    settings: Settings
    policy: Policy = DEFAULT_POLICY
    #: How the policy was chosen (a file name or ``default``): a re-run must use the same.
    policy_name: str = "default"
    banks: tuple[str, ...] | None = None
    tenant: str = "default"
    signals: frozenset[str] = frozenset()
    engine: str = "local"
    workers: int | None = None
    address: str | None = None
    previews: bool = False
    #: Scan at most this many new items in this run (the rest is left for a re-run).
    limit: int | None = None
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    #: Record each flagged item as a scan of ``tenant`` in the store (for evidence packages
    #: and case alerts), its ``scan_id`` in its row.
    record: bool = True
    #: Accept inputs other than those the results folder holds (they are added to it).
    force: bool = False

    def options(self) -> ScanOptions:
        """What the workers need."""
        return ScanOptions(
            self.settings,
            self.policy,
            self.banks,
            self.tenant,
            self.signals,
            self.previews,
            self.archive_limits,
        )

    def identity(self) -> dict[str, Any]:
        """The options that decide a row's content: a re-run into the same folder must
        keep them, or the results would mix two kinds of scan."""
        return {
            "banks": sorted(self.banks) if self.banks is not None else None,
            "signals": sorted(self.signals),
            "tenant": self.tenant,
            "policy": self.policy_name,
        }


@dataclass
class BatchSummary:
    """The outcome of a run, over the whole results folder (earlier runs included)."""

    out: Path
    tally: Tally
    stats: EngineStats
    total: int
    skipped: int
    failed_now: int
    seconds: float
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """Every item listed has a row."""
        return self.tally.items >= self.total and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI prints."""
        rate = self.stats.scanned / self.stats.scan_s if self.stats.scan_s > 0 else 0.0
        return {
            "out": str(self.out),
            "complete": self.complete,
            "items": self.total,
            "done": self.tally.items,
            "scanned_now": self.stats.scanned,
            "skipped_done": self.skipped,
            "errors_now": self.failed_now,
            **self.tally.summary(),
            "engine": self.stats.engine,
            "workers": self.stats.workers,
            "startup_s": round(self.stats.startup_s, 2),
            "scan_s": round(self.stats.scan_s, 2),
            "seconds": round(self.seconds, 2),
            "items_per_s": round(rate, 2),
            "results": str(self.out / RESULTS),
            "report": str(self.out / REPORT),
        }


def make_engine(name: str, workers: int | None, address: str | None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``)."""
    if workers is not None and workers < 1:
        raise RempartError(f"--workers must be at least 1, got {workers}", code="usage")
    if name == "local":
        from rempart.batch.local import LocalEngine

        if address:
            raise RempartError("--address is for --engine ray", code="usage")
        return LocalEngine(workers)
    if name == "ray":
        from rempart.batch.raydata import RayEngine

        return RayEngine(workers, address)
    raise RempartError(
        f"unknown engine {name!r}", code="unknown_engine", hint=f"use one of: {', '.join(ENGINES)}"
    )


def check_banks(config: BatchConfig) -> None:
    """Fail before any work when a bank named does not exist, as the Scanner would (the
    tenant's banks, shared ones, the global ``cases`` bank). The store is migrated here,
    once, so that workers can open it without migrating."""
    from rempart.matcher import BankMatcher
    from rempart.store import Store

    store = Store.open(config.settings.database_url)
    try:
        if config.banks:
            BankMatcher(store, config.settings).banks_for(config.banks, config.tenant)
    finally:
        store.close()


def _inputs(config: BatchConfig) -> list[str]:
    return sorted({absolute(p) for p in config.paths})


def _check_run_file(config: BatchConfig) -> dict[str, Any]:
    path = config.out / RUN
    record: dict[str, Any] = {"rempart": __version__, "options": config.identity(), "runs": []}
    if path.exists():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {"rempart": __version__, "options": config.identity(), "runs": []}
        has_results = (config.out / RESULTS).exists()
        if has_results and record.get("options") != config.identity():
            raise RempartError(
                f"{config.out} holds results of a scan with other options "
                f"({json.dumps(record.get('options'))})",
                code="batch_options_changed",
                hint="re-run with the same --bank, --signals, --tenant and --policy, "
                "or choose another --out",
            )
        before = record.get("inputs")
        new = sorted(set(_inputs(config)) - set(before or []))
        if has_results and isinstance(before, list) and new and not config.force:
            raise RempartError(
                f"{config.out} holds the results of a scan of {json.dumps(before)}, "
                f"not of {json.dumps(new)}",
                code="batch_inputs_changed",
                hint="re-run with the same paths to finish that scan, choose another --out, "
                "or add --force to add these paths to that folder's scan",
            )
    # Identifies this results folder (its scan ids derive from it): kept from run to run.
    record.setdefault("id", str(uuid.uuid4()))
    return record


def _write_run_file(
    config: BatchConfig, record: dict[str, Any], run: dict[str, Any] | None = None
) -> None:
    """Save ``run.json``: at the start (options and inputs, before any row is written, so
    even a killed run leaves them) and at the end (with ``run``, how it went)."""
    record["options"] = config.identity()
    record["inputs"] = sorted(set(record.get("inputs") or []) | set(_inputs(config)))
    if run is not None:
        record.setdefault("runs", []).append(run)
    tmp = config.out / (RUN + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, config.out / RUN)


def run_batch(
    config: BatchConfig,
    *,
    progress: Progress | None = None,
    engine: Engine | None = None,
    items: Iterable[Item] | None = None,
) -> BatchSummary:
    """Scan everything under ``config.paths`` into ``config.out``; see the module doc.

    ``items`` replaces the listing of ``config.paths`` (for callers with their own source).
    Raises :class:`KeyboardInterrupt` after saving, when interrupted.
    """
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    engine = engine or make_engine(config.engine, config.workers, config.address)
    check_banks(config)
    config.out.mkdir(parents=True, exist_ok=True)
    record = _check_run_file(config)
    _write_run_file(config, record)
    settings = config.settings
    listed = (
        list(items)
        if items is not None
        else list(iter_items(config.paths, media=settings.limits, limits=config.archive_limits))
    )
    interrupted = False
    failed_now = 0
    stats = EngineStats(engine.name, engine.workers, 0, 0.0, 0.0)
    store = Store.open(settings.database_url, migrate=False)
    recorder = Recorder(store, settings, config.tenant, record["id"]) if config.record else None
    writer = ResultsWriter(config.out, previews=config.previews, retry=TRANSIENT_ERRORS)
    try:
        with writer:
            todo = [i for i in listed if i.key not in writer.done]
            skipped = len(listed) - len(todo)
            if progress is not None:
                progress.start(len(listed), skipped)

            def sink(row: dict[str, Any], preview: str | None) -> None:
                nonlocal failed_now
                if row["key"] in writer.done:
                    return
                if recorder is not None and flagged(row):
                    # Recorded before the row is written: a row never names a scan id that
                    # is not in the store.
                    row["scan_id"] = recorder.record(row)
                writer.write(row, preview)
                failed_now += 1 if row.get("error") else 0
                if progress is not None:
                    progress.advance()

            for item in todo:
                if item.error is not None:
                    sink(error_row(item, item.error), None)
            runnable = [i for i in todo if i.error is None]
            if config.limit is not None:
                runnable = runnable[: max(config.limit, 0)]
            try:
                if runnable:  # nothing left: no worker (nor Ray) is started
                    stats = engine.run(_with_bytes(runnable, config, sink), config.options(), sink)
            except KeyboardInterrupt:
                interrupted = True
                elapsed = time.perf_counter() - t0
                stats = EngineStats(engine.name, engine.workers, writer.written, 0.0, elapsed)
        tally = Tally.from_rows(iter_rows(config.out / RESULTS))
        cases = _case_groups(store, tally)
    finally:
        store.close()
    previews = load_previews(config.out) if config.previews else None
    write_report(config.out / REPORT, tally, config.identity(), previews, cases)
    seconds = time.perf_counter() - t0
    summary = BatchSummary(
        config.out, tally, stats, len(listed), skipped, failed_now, seconds, interrupted
    )
    _write_run_file(
        config,
        record,
        {
            "started": started,
            "engine": stats.engine,
            "workers": stats.workers,
            "scanned": stats.scanned,
            "errors": failed_now,
            "seconds": round(seconds, 2),
            "complete": summary.complete,
        },
    )
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _case_groups(store: Store, tally: Tally) -> CaseGroups:
    """The case numbers of the ``cases`` bank entries that flagged rows matched."""
    entries = {
        int(m["entry_id"])
        for row in tally.flagged
        for m in row.get("matches", [])
        if m.get("bank") == CASES_BANK
    }
    if not entries:
        return CaseGroups()
    bank_id, numbers = case_numbers(store, entries)
    return CaseGroups(bank_id, numbers)


def _with_bytes(items: list[Item], config: BatchConfig, sink: Any) -> Iterator[Item]:
    """The items, with members of compressed TARs read here, in order (see archives)."""
    reader = TarStreamReader(config.settings.limits, config.archive_limits)
    try:
        for item in items:
            if isinstance(item.locator, TarStreamRef):
                try:
                    data = reader.read(item.locator)
                except RempartError as e:
                    sink(error_row(item, e.to_dict()), None)
                    continue
                item = item.with_locator(InlineRef(data))
            yield item
    finally:
        reader.close()
