"""Secrets an installation generates once and shares between its workers: the fallback
UI signing secret (sessions, CSRF) and, derived from it, the review-preview key.

An operator who sets ``ui.session_secret`` (and ``ui.preview_key``) never uses this. One who
does not still gets sessions and previews that work across every worker and every restart:
the first process to need the secret generates it and stores it here; every other process,
on any host sharing the store, reads the same value. "First writer wins": the secret's name
is the primary key, so a second concurrent writer's insert fails and it reads the winner's.

The trade-off is stated in docs/ui.md: a secret kept in the database sits beside what it
protects, so a copy of the database alone can open the previews. Operators who want the
key elsewhere set ``ui.preview_key`` (for example from a secret manager).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, cast

from sqlalchemy import LargeBinary, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from rempart.store import db
from rempart.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from rempart.store.repository import Store

#: The generated fallback for ``ui.session_secret``.
UI_SECRET: Final = "ui.secret"


class InstanceSecret(Base):
    """One generated secret, by name. Written once, never updated."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


secrets_table = cast(Table, InstanceSecret.__table__)
_C = secrets_table.c


def _read(store: Store, name: str) -> bytes | None:
    with db.read_transaction(store.engine) as conn:
        value = conn.execute(select(_C.value).where(_C.name == name)).scalar_one_or_none()
    return None if value is None else bytes(value)


def instance_secret(store: Store, name: str = UI_SECRET, *, nbytes: int = 32) -> bytes:
    """The secret called ``name``, generated (``nbytes`` random bytes) and stored on first
    use; the same bytes for every process on this store, now and after restarts."""
    found = _read(store, name)
    if found is not None:
        return found
    fresh = secrets.token_bytes(nbytes)
    try:
        with db.write_transaction(store.engine) as conn:
            conn.execute(
                insert(secrets_table),
                {"name": name, "value": fresh, "created_at": datetime.now(UTC)},
            )
    except IntegrityError:  # another worker stored it first: theirs is the secret
        winner = _read(store, name)
        assert winner is not None
        return winner
    return fresh
