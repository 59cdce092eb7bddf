"""What the UI holds per worker process: its repositories, keys and the purge loop.

Built from the service's :class:`~rempart.service.context.ServiceContext` when the service
starts (the app's lifespan calls :func:`start_ui`), or on first use, and kept on
``app.state``. Starting it purges expired previews (all previews when they are turned off)
and sessions at once, then every hour: a restarted service that nobody opens the UI of
still deletes what has expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from typing import Any, Final

from fastapi import FastAPI, Request

from rempart.errors import ConfigError
from rempart.service.context import ServiceContext
from rempart.service.ui.ratelimit import LoginLimiter
from rempart.store.faces import parse_key
from rempart.store.instance_secrets import instance_secret
from rempart.store.previews import PreviewStore, purge_all
from rempart.store.reviews import ReviewQueue
from rempart.store.users import UserRepository

log = logging.getLogger("rempart.service.ui")

_lock = threading.Lock()
#: Longest sleep of the purge loop between two purges.
_PURGE_EVERY_S: Final = 3600.0


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with an all-zero salt: a key per purpose from one secret."""
    prk = hmac.new(b"\x00" * 32, secret, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


class UIState:
    """Users, sessions, previews, the queue and the login limiter of one process."""

    def __init__(self, ctx: ServiceContext) -> None:
        ui = ctx.settings.ui
        self.ctx = ctx
        self.settings = ctx.settings
        if ui.session_secret is not None:
            secret = ui.session_secret.get_secret_value().encode()
        else:
            # Generated once and kept in the store, so every worker (on any host) and every
            # restart signs sessions and seals previews with the same keys (docs/ui.md).
            secret = instance_secret(ctx.store)
            log.info("ui.session_secret is not set: using the secret generated in the store")
        self.signing_key = _hkdf(secret, b"rempart/ui/signing/v1")
        if ui.preview_key is not None:
            try:
                preview_key = parse_key(ui.preview_key.get_secret_value())
            except ConfigError:
                raise ConfigError(
                    "ui.preview_key must be 32 random bytes, base64 or hex encoded",
                    code="bad_preview_key",
                    hint='generate one with: python -c "import os,base64;'
                    'print(base64.b64encode(os.urandom(32)).decode())"',
                ) from None
        else:
            preview_key = _hkdf(secret, b"rempart/ui/preview-key/v1")
        self.users = UserRepository(ctx.store)
        self.queue = ReviewQueue(ctx.store)
        self.previews = PreviewStore(
            ctx.store, preview_key, retention_days=ui.preview_retention_days
        )
        self.limiter = LoginLimiter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Purge now, then start the purge loop (once)."""
        if self._thread is not None:
            return
        try:
            self.purge()
        except Exception:  # a store hiccup must not stop the service; the loop retries
            log.exception("purging previews at start-up failed")
        self._thread = threading.Thread(
            target=self._purge_loop, name="rempart-ui-purge", daemon=True
        )
        self._thread.start()

    def purge(self) -> int:
        """Delete expired previews (every preview while previews are turned off) and
        expired sessions; returns how many previews went."""
        if self.settings.ui.previews:
            n = self.previews.purge()
        else:
            n = purge_all(self.ctx.store)
            if n:
                log.info("previews are turned off: deleted %d kept preview(s)", n)
        self.users.purge_sessions()
        return n

    def _purge_loop(self) -> None:
        interval = min(_PURGE_EVERY_S, self.previews.retention.total_seconds() / 4)
        while not self._stop.wait(interval):
            if not self.ctx.ready:  # the service stopped
                return
            try:
                self.purge()
            except Exception:  # the store may be gone at shutdown; try again next time
                log.warning("preview purge failed; retrying later", exc_info=True)

    def stop(self) -> None:
        """Stop the purge loop."""
        self._stop.set()

    def sign(self, purpose: str, value: str) -> str:
        """An HMAC-SHA256 of ``value`` for ``purpose`` (cookies, CSRF tokens), base64url."""
        mac = hmac.new(self.signing_key, f"{purpose}\x00{value}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def check(self, purpose: str, value: str, signature: str) -> bool:
        """Whether ``signature`` is :meth:`sign` of ``value`` (constant time)."""
        return hmac.compare_digest(self.sign(purpose, value), signature)


def ui_state(app: FastAPI | Any) -> UIState:
    """The process's UIState, built (and started) on first use."""
    state: UIState | None = getattr(app.state, "ui", None)
    if state is None:
        with _lock:
            state = getattr(app.state, "ui", None)
            if state is None:
                state = UIState(app.state.ctx)
                state.start()
                app.state.ui = state
    return state


def start_ui(app: FastAPI | Any) -> None:
    """For the service's start-up: build the UI state now, which purges what has expired
    and starts the periodic purge (before any UI request comes)."""
    ui_state(app)


def stop_ui(app: FastAPI | Any) -> None:
    """For the service's shutdown: stop the purge loop."""
    state: UIState | None = getattr(app.state, "ui", None)
    if state is not None:
        state.stop()


async def get_ui(request: Request) -> UIState:
    """The UI state (a FastAPI dependency)."""
    return ui_state(request.app)
