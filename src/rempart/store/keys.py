"""API keys: random secrets of which only a SHA-256 is stored.

A key reads ``rk_<key_id>_<secret>``. ``key_id`` is public and finds the row; the secret has
256 bits of entropy, so a plain SHA-256 (not a slow password hash) is the right digest: there
is nothing to brute-force, and every request pays for the check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from rempart.errors import NotFoundError, RempartError
from rempart.store import db
from rempart.store.cases import CASES_TENANT
from rempart.store.models import ApiKey
from rempart.store.records import validate_name
from rempart.store.repository import Store

#: What a key may do. ``admin`` implies every other scope of its tenant.
SCOPES = ("scan", "banks:read", "banks:write", "webhooks", "cases", "admin")

_keys = ApiKey.__table__
K = _keys.c


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as listed (never its secret)."""

    key_id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        """JSON shape for the CLI and API."""
        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked": self.revoked_at is not None,
        }


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scopes, deduplicated in canonical order; RempartError ``bad_scope`` if unknown."""
    wanted = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise RempartError(
            f"unknown scope(s): {', '.join(unknown)}" if unknown else "no scope given",
            code="bad_scope",
            hint=f"scopes are: {', '.join(SCOPES)}",
        )
    return tuple(s for s in SCOPES if s in wanted)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: object) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,  # type: ignore[attr-defined]
        tenant=row.tenant,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        scopes=tuple(row.scopes),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        last_used_at=row.last_used_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


class KeyRepository:
    """Create, check, list and revoke API keys."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def create(
        self, tenant: str, scopes: list[str] | tuple[str, ...], name: str = ""
    ) -> tuple[KeyInfo, str]:
        """A new key for ``tenant``; returns its record and the key itself (shown once)."""
        validate_name(tenant, "tenant name")
        if tenant == CASES_TENANT:
            raise RempartError(
                f"{CASES_TENANT!r} is reserved for victims' cases; no key can act as it",
                code="reserved_tenant",
                hint="choose another tenant name",
            )
        canonical = validate_scopes(scopes)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                insert(_keys),
                {
                    "key_id": key_id,
                    "key_hash": _digest(secret),
                    "tenant": tenant,
                    "name": name,
                    "scopes": list(canonical),
                    "created_at": now,
                },
            )
            row = conn.execute(select(_keys).where(K.key_id == key_id)).one()
        return _info(row), f"rk_{key_id}_{secret}"

    def verify(self, key: str) -> KeyInfo | None:
        """The live key matching ``key``, or None (unknown, malformed, wrong or revoked)."""
        parts = key.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != "rk" or not parts[1] or not parts[2]:
            return None
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(select(_keys).where(K.key_id == parts[1])).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, _digest(parts[2])):
            return None
        return _info(row)

    def touch(self, key_id: str) -> None:
        """Record that the key was used (called at most once a minute per key)."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_keys).where(K.key_id == key_id).values(last_used_at=datetime.now(UTC))
            )

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        """Keys (of one tenant, or all), oldest first."""
        query = select(_keys).order_by(K.id)
        if tenant is not None:
            query = query.where(K.tenant == tenant)
        with db.read_transaction(self._engine) as conn:
            return [_info(r) for r in conn.execute(query)]

    def revoke(self, key_id: str, tenant: str | None = None) -> KeyInfo:
        """Revoke a key at once; NotFoundError ``key_not_found`` if there is none."""
        with self._engine.begin() as conn:
            query = update(_keys).where(K.key_id == key_id, K.revoked_at.is_(None))
            if tenant is not None:
                query = query.where(K.tenant == tenant)
            conn.execute(query.values(revoked_at=datetime.now(UTC)))
            where = select(_keys).where(K.key_id == key_id)
            if tenant is not None:
                where = where.where(K.tenant == tenant)
            row = conn.execute(where).one_or_none()
        if row is None:
            raise NotFoundError(
                f"no API key {key_id!r}",
                code="key_not_found",
                hint="list keys with `rempart keys list`",
            )
        return _info(row)
