"""What one service process holds: the store, the scanner and the background jobs.

Background threads per worker process:

- the **refresher** applies the store's change log to this worker's in-memory index every
  ``refresh_interval_s`` (0.25 s), so a bank change made through any worker is seen by every
  other within a second, without a rebuild;
- the **scan recorder** writes scan records and enqueues webhook events in batches, off the
  request path, so a slow store never slows a scan response;
- the **webhook dispatcher**, **feed scheduler** and **case alert dispatcher** (when
  ``background_jobs`` is on).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from rempart.policy import Policy, load_policy
from rempart.scan import Scanner
from rempart.service.metrics import INDEX_SIZE
from rempart.service.ratelimit import RateLimiter
from rempart.settings import Settings
from rempart.store import Store
from rempart.store.audit import AuditLog
from rempart.store.keys import KeyInfo, KeyRepository
from rempart.store.scans import ScanRecord, ScanRepository
from rempart.store.shares import ShareRepository

log = logging.getLogger("rempart.service")


@dataclass
class _Pending:
    scan: ScanRecord | None = None
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: Set once this item (and everything queued before it) is written.
    done: threading.Event | None = None


class ServiceContext:
    """Everything a request handler needs, built once per worker process."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else Store.open(settings.database_url)
        self.scanner = Scanner(self.store, settings)
        self.keys = KeyRepository(self.store)
        self.audit = AuditLog(self.store)
        self.scans = ScanRepository(self.store)
        self.shares = ShareRepository(self.store)
        # Policies load at start: a bad policy file stops the service with a clear error
        # rather than failing scans later.
        self.policies: dict[str, Policy] = {
            tenant: load_policy(path, name=f"{tenant}:{path.name}")
            for tenant, path in settings.policies.items()
        }
        svc = settings.service
        self.limiter = RateLimiter(svc.rate_limit_per_s, svc.rate_limit_burst)
        self.webhooks: Any = None
        self._dispatcher: Any = None
        self._feeds: Any = None
        self._alerts: Any = None
        self._notices: Any = None
        self._key_cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._shared: dict[str, tuple[float, set[int]]] = {}
        self._listening: dict[str, tuple[float, frozenset[str]]] = {}
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = False
        self._init_jobs()

    def _init_jobs(self) -> None:
        try:
            from rempart.store.webhooks import WebhookRepository

            self.webhooks = WebhookRepository(self.store)
        except ImportError:  # pragma: no cover - during development only
            self.webhooks = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background threads."""
        self._stop.clear()
        for target, name in ((self._refresh_loop, "refresher"), (self._record_loop, "recorder")):
            t = threading.Thread(target=target, name=f"rempart-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.settings.service.background_jobs:
            self._start_jobs()
        INDEX_SIZE.set(self.index_size())
        self.ready = True

    def _start_jobs(self) -> None:
        try:
            from rempart.service.webhooks import WebhookDispatcher

            hooks = self.settings.webhooks
            self._dispatcher = WebhookDispatcher(
                self.store,
                poll_interval_s=hooks.poll_interval_s,
                max_attempts=hooks.max_attempts,
                timeout_s=hooks.timeout_s,
                concurrency=hooks.concurrency,
                backoff_base_s=hooks.backoff_base_s,
                backoff_cap_s=hooks.backoff_cap_s,
                allow_private=self.settings.service.egress_allow_private,
            )
            self._dispatcher.start()
        except ImportError:  # pragma: no cover
            log.warning("webhook dispatcher unavailable")
        try:
            from rempart.cases.alerts import AlertDispatcher

            self._alerts = AlertDispatcher(self.store, self.settings)
            self._alerts.start()
        except ImportError:  # pragma: no cover
            log.warning("case alert dispatcher unavailable")
        try:  # takedown notices: a reminder every evidence.renotice_hours until removal
            from rempart.cases.notices import NoticeScheduler

            self._notices = NoticeScheduler(self.store, self.settings)
            self._notices.start()
        except ImportError:  # pragma: no cover
            log.warning("notice scheduler unavailable")
        try:
            from rempart.exchanges.feeds import FeedScheduler

            self._feeds = FeedScheduler(
                self.store, allow_private=self.settings.service.egress_allow_private
            )
            self._feeds.start()
        except ImportError:  # pragma: no cover
            log.warning("feed scheduler unavailable")

    def stop(self) -> None:
        """Stop the threads, writing what is queued first."""
        self.ready = False
        self._stop.set()
        self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        for job in (self._dispatcher, self._feeds, self._alerts, self._notices):
            if job is not None:
                job.stop()

    # -- background loops ---------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        interval = self.settings.service.refresh_interval_s
        while not self._stop.wait(interval):
            try:
                if self.scanner.matcher.refresh():
                    INDEX_SIZE.set(self.index_size())
            except Exception:  # keep serving with the index we have; retry next tick
                log.exception("index refresh failed")

    def _record_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 500:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            if any(b is None for b in batch):
                return

    def _write(self, batch: list[_Pending | None]) -> None:
        items = [b for b in batch if b is not None]
        scans = [b.scan for b in items if b.scan is not None]
        for attempt in range(5):
            try:
                if scans:
                    self.scans.record_many(scans)
                break
            except Exception:
                log.exception("writing %d scan records failed (attempt %d)", len(scans), attempt)
                time.sleep(0.5 * 2**attempt)
        if scans:  # victims' cases: a scan matching a case raises an alert (rempart.cases)
            try:
                from rempart.cases.alerts import record_alerts

                record_alerts(self.store, self.settings, scans, self.policies)
            except Exception:
                log.exception("recording case alerts failed")
        for item in items:
            for tenant, event, payload in item.events:
                if self.webhooks is None:
                    break
                try:
                    self.webhooks.enqueue(tenant, event, payload)
                except Exception:
                    log.exception("enqueueing webhook event %s failed", event)
        for item in items:
            if item.done is not None:
                item.done.set()

    def listened(self, tenant: str) -> frozenset[str]:
        """Events some enabled webhook of ``tenant`` subscribes to (cached for 1 second)."""
        now = time.monotonic()
        hit = self._listening.get(tenant)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        events: frozenset[str] = frozenset()
        if self.webhooks is not None:
            events = frozenset(e for w in self.webhooks.list(tenant) if w.enabled for e in w.events)
        self._listening[tenant] = (now, events)
        return events

    def submit(
        self, scan: ScanRecord | None, events: list[tuple[str, str, dict[str, Any]]]
    ) -> None:
        """Queue a scan record and webhook events for the recorder thread."""
        events = [e for e in events if e[1] in self.listened(e[0])]
        if scan is None and not events:
            return
        try:
            self._queue.put_nowait(_Pending(scan, events))
        except queue.Full:
            # Back-pressure rather than unbounded memory: write in the caller's thread.
            self._write([_Pending(scan, events)])

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is written (feedback needs its scan)."""
        if not self._threads:
            return True
        done = threading.Event()
        self._queue.put(_Pending(done=done))
        return done.wait(timeout_s)

    # -- helpers for routes ----------------------------------------------------------------

    def cached_key(self, key: str) -> tuple[bool, KeyInfo | None]:
        """``(True, answer)`` when :meth:`verify_key` answered for ``key`` within 2 seconds,
        else ``(False, None)``: lets async code skip the thread pool on the common path."""
        hit = self._key_cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < 2.0:
            return True, hit[1]
        return False, None

    def verify_key(self, key: str) -> KeyInfo | None:
        """A key check cached for 2 seconds (so revocation takes effect within 2 s)."""
        now = time.monotonic()
        hit = self._key_cache.get(key)
        if hit is not None and now - hit[0] < 2.0:
            return hit[1]
        info = self.keys.verify(key)
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        self._key_cache[key] = (now, info)
        return info

    def shared_with(self, tenant: str) -> set[int]:
        """Banks shared with ``tenant`` (cached for 1 second)."""
        now = time.monotonic()
        hit = self._shared.get(tenant)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        ids = self.shares.shared_with(tenant)
        self._shared[tenant] = (now, ids)
        return ids

    def policy_for(self, tenant: str) -> Policy:
        """The tenant's policy (the shipped one unless configured)."""
        return self.policies.get(tenant, self.scanner.policy)

    def index_size(self) -> int:
        """PDQ hashes held by this worker's index."""
        return self.scanner.matcher.size()


async def get_context(request: Request) -> ServiceContext:
    """The process's ServiceContext (a FastAPI dependency)."""
    ctx: ServiceContext = request.app.state.ctx
    return ctx
