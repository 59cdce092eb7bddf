"""What the UI holds per worker process: its repositories, keys and the purge loop.

Built on first use from the service's :class:`~rempart.service.context.ServiceContext` (the
app's lifespan belongs to the service; the UI only adds to it), and kept on ``app.state``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from typing import Any, Final

from fastapi import FastAPI, Request

from rempart.service.context import ServiceContext
from rempart.service.ui.ratelimit import LoginLimiter
from rempart.store.faces import parse_key
from rempart.store.previews import PreviewStore
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
            # Documented: sessions then last as long as this process, in this process only.
            secret = secrets.token_bytes(32)
            log.warning("ui.session_secret is not set: UI sessions end when this process does")
        self.signing_key = _hkdf(secret, b"rempart/ui/signing/v1")
        if ui.preview_key is not None:
            preview_key = parse_key(ui.preview_key.get_secret_value())
        else:
            preview_key = _hkdf(secret, b"rempart/ui/preview-key/v1")
        self.users = UserRepository(ctx.store)
        self.queue = ReviewQueue(ctx.store)
        self.previews = PreviewStore(
            ctx.store, preview_key, retention_days=ui.preview_retention_days
        )
        self.limiter = LoginLimiter()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._purge_loop, name="rempart-ui-purge", daemon=True
        )
        self._thread.start()

    def purge(self) -> int:
        """Delete expired previews and sessions; returns how many previews went."""
        n = self.previews.purge()
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
                log.debug("preview purge failed", exc_info=True)

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
    """The process's UIState, built on first use."""
    state: UIState | None = getattr(app.state, "ui", None)
    if state is None:
        with _lock:
            state = getattr(app.state, "ui", None)
            if state is None:
                state = UIState(app.state.ctx)
                app.state.ui = state
    return state


async def get_ui(request: Request) -> UIState:
    """The UI state (a FastAPI dependency)."""
    return ui_state(request.app)
