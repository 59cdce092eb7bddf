"""Small, blurred, encrypted previews of items waiting in the review queue.

Rempart never stores uploaded media. The one exception is this: when a scan's verdict is
``review`` (and the operator has not turned previews off), the moderator needs *something*
to look at. What is kept is made by :func:`rempart.service.ui.previews.blurred_preview`
before it reaches this module -- at most 320 pixels on its longer side, greyscale, blurred --
and it is then

- sealed with AES-256-GCM under the preview key (``ui.preview_key``, else derived from
  ``ui.session_secret``, else from the installation's generated secret: see
  :mod:`rempart.store.instance_secrets`), with a fresh random nonce per row and the tenant
  and scan id as associated data, so a sealed preview moved onto another scan or tenant
  fails to open; each row records the key's fingerprint, so a preview sealed under another
  key is reported as unreadable rather than tried;
- deleted when it expires (``ui.preview_retention_days``, 7 days by default) by
  :meth:`PreviewStore.purge`, which the service runs at start-up and then periodically, and
  every read runs first; as soon as a moderator (or API feedback) has confirmed or rejected
  the item; and all at once (:func:`purge_all`) when the operator turns previews off.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, cast

from sqlalchemy import Index, Integer, LargeBinary, String, Table, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import ConfigError
from rempart.store import db
from rempart.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_AAD_PREFIX: Final = b"rempart/review-preview/v1\x00"


class ReviewPreview(Base):
    """One sealed preview. ``sealed`` is ``nonce (12 bytes) || AES-GCM(JPEG || tag)``.

    No foreign key to ``scans``: the scan record is written by a background thread and may
    land after its preview; a preview without a scan simply expires.
    """

    __tablename__ = "review_previews"
    __table_args__ = (Index(None, "expires_at"),)

    scan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    key_fp: Mapped[str] = mapped_column(String(16))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: The original image's size, so evidence boxes (nudity, faces) can be drawn over it.
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


previews_table = cast(Table, ReviewPreview.__table__)
P = previews_table.c


@dataclass(frozen=True, slots=True)
class PreviewInfo:
    """What is known of a kept preview without opening it."""

    width: int
    height: int
    #: Whether it was sealed under this store's key (False: it cannot be opened here).
    readable: bool


@dataclass(frozen=True, slots=True)
class Preview:
    """An opened preview: the (already blurred, greyscale) JPEG and the original's size."""

    jpeg: bytes
    width: int
    height: int
    created_at: datetime


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"rempart/preview-key-fp\x00" + key).hexdigest()[:16]


def _aad(tenant: str, scan_id: str) -> bytes:
    return _AAD_PREFIX + tenant.encode() + b"\x00" + scan_id.encode()


class PreviewStore:
    """Seal, open and purge review previews with a 32-byte AES key."""

    def __init__(self, store: Store, key: bytes, *, retention_days: float = 7.0) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigError(
                f"the preview key must be exactly {KEY_BYTES} bytes",
                code="bad_preview_key",
                hint="set ui.preview_key to 32 random bytes, base64 or hex encoded",
            )
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._store = store
        self._engine = store.engine
        self._aead = AESGCM(key)
        self._key_fp = _fingerprint(key)
        self.retention = timedelta(days=retention_days)

    def put(self, tenant: str, scan_id: str, jpeg: bytes, width: int, height: int) -> None:
        """Seal and keep a preview (already reduced and blurred) until it expires."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, jpeg, _aad(tenant, scan_id))
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:
            conn.execute(delete(previews_table).where(P.scan_id == scan_id))
            conn.execute(
                insert(previews_table),
                {
                    "scan_id": scan_id,
                    "tenant": tenant,
                    "key_fp": self._key_fp,
                    "sealed": sealed,
                    "width": int(width),
                    "height": int(height),
                    "created_at": now,
                    "expires_at": now + self.retention,
                },
            )

    @property
    def key_fingerprint(self) -> str:
        """The fingerprint of the key this store seals with (kept with each preview)."""
        return self._key_fp

    def get(self, tenant: str, scan_id: str) -> Preview | None:
        """The preview of a scan of ``tenant``, or None (none kept, expired, sealed with
        another key, or altered). Expired previews are purged first."""
        from cryptography.exceptions import InvalidTag

        self.purge()
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(
                select(previews_table).where(P.scan_id == scan_id, P.tenant == tenant)
            ).one_or_none()
        if row is None or row.key_fp != self._key_fp:
            return None
        sealed = bytes(row.sealed)
        try:
            jpeg = self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(tenant, scan_id)
            )
        except InvalidTag:
            return None
        return Preview(jpeg, row.width, row.height, row.created_at)

    def info(self, tenant: str, scan_id: str) -> PreviewInfo | None:
        """Size and readability of the unexpired preview of a scan, or None."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(
                select(P.width, P.height, P.key_fp).where(
                    P.tenant == tenant, P.scan_id == scan_id, P.expires_at > datetime.now(UTC)
                )
            ).one_or_none()
        if row is None:
            return None
        return PreviewInfo(int(row.width), int(row.height), row.key_fp == self._key_fp)

    def size_of(self, tenant: str, scan_ids: list[str]) -> dict[str, tuple[int, int]]:
        """``scan_id -> (width, height)`` for the scans that have a preview."""
        if not scan_ids:
            return {}
        with db.read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(P.scan_id, P.width, P.height).where(
                    P.tenant == tenant,
                    P.scan_id.in_(scan_ids),
                    P.expires_at > datetime.now(UTC),
                )
            ).all()
        return {r.scan_id: (int(r.width), int(r.height)) for r in rows}

    def delete(self, tenant: str, scan_id: str) -> bool:
        """Delete one preview (after a decision); True if there was one."""
        return delete_preview(self._store, tenant, scan_id)

    def purge(self, now: datetime | None = None) -> int:
        """Delete every expired preview; returns how many went."""
        return purge_previews(self._store, now)

    def count(self) -> int:
        """How many previews are kept (all tenants)."""
        from sqlalchemy import func

        with db.read_transaction(self._engine) as conn:
            return int(conn.execute(select(func.count()).select_from(previews_table)).scalar_one())


def delete_preview(store: Store, tenant: str, scan_id: str) -> bool:
    """Delete one scan's preview (it has done its job); True if there was one. Needs no
    key, so the API's feedback route can call it whether or not the UI runs."""
    with db.write_transaction(store.engine) as conn:
        n = conn.execute(
            delete(previews_table).where(P.scan_id == scan_id, P.tenant == tenant)
        ).rowcount
    return bool(n)


def purge_previews(store: Store, now: datetime | None = None) -> int:
    """Delete every expired preview; returns how many went."""
    now = now or datetime.now(UTC)
    with db.write_transaction(store.engine) as conn:
        n = conn.execute(delete(previews_table).where(P.expires_at <= now)).rowcount
    return int(n or 0)


def purge_all(store: Store) -> int:
    """Delete every preview, expired or not (previews were turned off); how many went."""
    with db.write_transaction(store.engine) as conn:
        n = conn.execute(delete(previews_table)).rowcount
    return int(n or 0)
