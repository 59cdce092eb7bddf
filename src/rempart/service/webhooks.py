"""Sending webhooks: signed POSTs from a background dispatcher, and checking them on arrival.

Every delivery is a JSON POST::

    {"id": 42, "event": "match", "created_at": "2026-11-22T17:28:09.041907Z",
     "tenant": "acme", "data": {...}}

with headers ``Rempart-Event``, ``Rempart-Delivery`` (the delivery id, the same as
``id``) and ``Rempart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, where the HMAC is
keyed with the webhook's secret over ``f"{t}.{raw_body}"`` (Stripe's scheme, so existing
receiver code carries over). Receivers check it with :func:`verify_signature`.

The dispatcher leases due deliveries from the outbox (:mod:`rempart.store.webhooks`) and
sends them from a small thread pool, so one slow receiver holds one sender, not the queue.
It claims only as many deliveries as it has free senders: a claimed delivery is always
being sent, and its lease never runs out while it waits in a local queue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

import httpx

from rempart.egress import http_client
from rempart.errors import RempartError
from rempart.store.repository import Store
from rempart.store.webhooks import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_CAP_S,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    ClaimedDelivery,
    Delivery,
    WebhookRepository,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "Rempart-Signature"
EVENT_HEADER: Final = "Rempart-Event"
DELIVERY_HEADER: Final = "Rempart-Delivery"
#: Signatures older (or newer) than this are refused by default: a captured request cannot
#: be replayed later, while ordinary clock skew between servers passes.
DEFAULT_TOLERANCE_S: Final = 300
#: Bytes of a failed response's body kept in the delivery log, to help the receiver's owner.
_ERROR_BODY_BYTES: Final = 300
_USER_AGENT: Final = "Rempart-Webhooks/1"


class SignatureError(RempartError):
    """A webhook request whose signature does not check out.

    Codes: ``malformed_signature`` (no or unreadable header), ``stale_signature`` (the
    timestamp is outside the tolerance: a replay, or a clock far off), ``bad_signature``
    (wrong secret, or the body was changed on the way).
    """

    code = "bad_signature"
    status = 400


# -- signing (pure) -------------------------------------------------------------------------


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Rempart-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery's ``Rempart-Signature`` header; return its timestamp.

    ``body`` must be the raw request body exactly as received (bytes; a ``str`` is taken as
    UTF-8): parsing and re-serialising the JSON changes the bytes and fails the check.
    Raises :class:`SignatureError` when the header is missing or malformed, when its
    timestamp is more than ``tolerance_s`` seconds from ``now`` (default: the current time),
    or when no ``v1`` signature matches. Several ``v1=`` values may be present; any match
    passes. Comparison is constant-time.

    >>> body = b'{"id":1}'
    >>> verify_signature("whsec_x", sign("whsec_x", body, 1700000000), body, now=1700000001)
    1700000000
    """
    if not header:
        raise SignatureError(
            f"the {SIGNATURE_HEADER} header is missing",
            code="malformed_signature",
            hint="is the request from Rempart? the header is t=<unix time>,v1=<hex>",
        )
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif key == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        raise SignatureError(
            f"cannot read the {SIGNATURE_HEADER} header",
            code="malformed_signature",
            hint="expected t=<unix time>,v1=<hex HMAC-SHA256>",
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(
            f"the signature's timestamp is {abs(current - timestamp):.0f} s from now "
            f"(tolerance {tolerance_s:g} s)",
            code="stale_signature",
            hint="a replayed request, or this server's clock is wrong (use NTP)",
        )
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = _mac(secret, timestamp, raw)
    # Check every candidate (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(
            "the webhook signature does not match",
            code="bad_signature",
            hint="check the secret (shown once, when the webhook was created) and that the "
            "raw body is verified before any JSON parsing",
        )
    return timestamp


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def delivery_body(delivery: Delivery) -> bytes:
    """The JSON body sent for ``delivery`` (compact, UTF-8)."""
    envelope = {
        "id": delivery.id,
        "event": delivery.event,
        "created_at": _timestamp(delivery.created_at),
        "tenant": delivery.tenant,
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def delivery_headers(delivery: ClaimedDelivery, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers sent with ``body`` (signed at ``timestamp``)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
        SIGNATURE_HEADER: sign(delivery.secret, body, timestamp),
    }


# -- the dispatcher -------------------------------------------------------------------------


class WebhookDispatcher:
    """Sends due webhook deliveries from a background thread until stopped.

    Several dispatchers (threads or processes, on one or many machines) may share a store:
    each delivery is leased to one of them at a time. A send that gets a 2xx answer is
    delivered; any other answer, a timeout or a connection error is a failed attempt,
    retried with exponential backoff until ``max_attempts``, then ``dead``.

    The loop never raises: database and network errors are logged and retried. Stopping
    waits for sends in flight (at most ``timeout_s`` each); deliveries not yet claimed stay
    pending in the store and go out after the next start, from this or another process.
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval_s: float = 0.5,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float = 10.0,
        concurrency: int = 4,
        backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
        backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S,
        lease_s: float | None = None,
        allow_private: bool = True,
    ) -> None:
        if poll_interval_s <= 0 or timeout_s <= 0 or concurrency < 1:
            raise ValueError("poll_interval_s and timeout_s must be > 0, concurrency >= 1")
        # The lease must outlast a send (httpx's timeout applies per phase: connect, write,
        # read), or another worker would send the same delivery again meanwhile.
        lease = lease_s if lease_s is not None else max(DEFAULT_LEASE_S, 4 * timeout_s + 30)
        self.repository = WebhookRepository(
            store,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            lease_s=lease,
        )
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        #: False: connect only to public addresses (rempart.egress), as the service does.
        self.allow_private = allow_private
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the background thread (no-op if running). May be called again after stop."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self._pool = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="rempart-webhook-send"
            )
            self._thread = threading.Thread(
                target=self._loop, name="rempart-webhook-dispatcher", daemon=True
            )
            self._thread.start()
        logger.info("webhook dispatcher started (%d senders)", self.concurrency)

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop claiming, wait for sends in flight, and release connections."""
        with self._lock:
            thread, pool = self._thread, self._pool
            self._thread = self._pool = None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_s)
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            client.close()
        logger.info("webhook dispatcher stopped")

    def __enter__(self) -> WebhookDispatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- work -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            free = self.concurrency - self._in_flight
            claimed = 0
            if free > 0:
                try:
                    claimed = self._claim_and_submit(free)
                except Exception:
                    logger.exception("claiming webhook deliveries failed; retrying")
            if claimed < free or free <= 0:
                # Idle, or every sender busy: wait for the poll interval or a sender to free.
                self._wake.wait(self.poll_interval_s)

    def _claim_and_submit(self, free: int) -> int:
        pool = self._pool
        if pool is None:
            return 0
        batch = self.repository.claim_due(datetime.now(UTC), free)
        for delivery in batch:
            with self._lock:
                self._in_flight += 1
            try:
                pool.submit(self._deliver, delivery)
            except RuntimeError:  # pool shut down under us: the lease will run out
                with self._lock:
                    self._in_flight -= 1
        return len(batch)

    def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            self.send_one(delivery)
        except Exception:
            logger.exception("webhook delivery %d: unexpected error", delivery.id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def send_one(self, delivery: ClaimedDelivery) -> bool:
        """Send one claimed delivery and record the outcome; True when delivered.

        A failure to record (the database is down) is logged; the lease then runs out and
        the delivery is sent again (at least once, never lost).
        """
        status, error = self._post(delivery)
        try:
            if error is None and status is not None:
                self.repository.mark_delivered(delivery.id, status)
                logger.debug("webhook delivery %d delivered (%d)", delivery.id, status)
                return True
            after = self.repository.mark_failed(
                delivery.id, status, error or "failed", datetime.now(UTC)
            )
        except Exception:
            logger.exception("webhook delivery %d: cannot record the outcome", delivery.id)
            return False
        if after is not None and after.status == "dead":
            logger.error(
                "webhook delivery %d to webhook %d is dead after %d attempts: %s",
                delivery.id,
                delivery.webhook_id,
                after.attempts,
                error,
            )
        else:
            logger.warning(
                "webhook delivery %d to webhook %d failed (attempt %d): %s",
                delivery.id,
                delivery.webhook_id,
                delivery.attempts,
                error,
            )
        return False

    def _post(self, delivery: ClaimedDelivery) -> tuple[int | None, str | None]:
        """POST the delivery; ``(status, None)`` on 2xx, else ``(status or None, error)``."""
        body = delivery_body(delivery)
        headers = delivery_headers(delivery, body, int(time.time()))
        try:
            with self._client().stream(
                "POST", delivery.url, content=body, headers=headers
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return status, None
                snippet = _first_bytes(response.iter_bytes(), _ERROR_BODY_BYTES)
                text = snippet.decode("utf-8", "replace").strip()
                reason = response.reason_phrase or ""
                return status, f"HTTP {status} {reason}".strip() + (f": {text}" if text else "")
        except httpx.TimeoutException:
            return None, f"timed out after {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bad URL that validation let through, TLS trouble...
            return None, f"{type(exc).__name__}: {exc}"

    def _client(self) -> httpx.Client:
        """This sender thread's HTTP client (connections are reused per receiver)."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            # Redirects are not followed: a 3xx counts as a failure, so a receiver that moved
            # is noticed, and a redirect cannot send signed events somewhere else.
            client = http_client(
                allow_private=self.allow_private, timeout=self.timeout_s, follow_redirects=False
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client


def _first_bytes(chunks: Iterator[bytes], limit: int) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit])


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "SignatureError",
    "WebhookDispatcher",
    "delivery_body",
    "delivery_headers",
    "sign",
    "verify_signature",
]
