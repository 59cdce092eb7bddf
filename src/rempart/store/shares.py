"""Banks shared read-only with other tenants.

A tenant that a bank is shared with may match against it (scans and lookups) but never
sees its entries or changes it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select

from rempart.store import db
from rempart.store.models import BankShare
from rempart.store.records import validate_name
from rempart.store.repository import Store

_shares = BankShare.__table__
H = _shares.c


class ShareRepository:
    """Share banks read-only with named tenants."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine

    def share(self, bank: str, tenant: str, with_tenant: str) -> None:
        """Share ``tenant``'s bank ``bank`` with ``with_tenant`` (idempotent)."""
        validate_name(with_tenant, "tenant name")
        info = self._store.get_bank(bank, tenant=tenant)
        if with_tenant == tenant:
            return
        with self._engine.begin() as conn:
            exists = conn.execute(
                select(H.bank_id).where(H.bank_id == info.id, H.tenant == with_tenant)
            ).first()
            if exists is None:
                conn.execute(
                    insert(_shares),
                    {"bank_id": info.id, "tenant": with_tenant, "created_at": datetime.now(UTC)},
                )

    def unshare(self, bank: str, tenant: str, with_tenant: str) -> None:
        """Stop sharing (idempotent)."""
        info = self._store.get_bank(bank, tenant=tenant)
        with self._engine.begin() as conn:
            conn.execute(delete(_shares).where(H.bank_id == info.id, H.tenant == with_tenant))

    def shared_with(self, tenant: str) -> set[int]:
        """Ids of the banks other tenants share with ``tenant``."""
        with db.read_transaction(self._engine) as conn:
            return set(conn.execute(select(H.bank_id).where(H.tenant == tenant)).scalars())

    def tenants_of(self, bank_id: int) -> list[str]:
        """The tenants a bank is shared with."""
        with db.read_transaction(self._engine) as conn:
            return list(
                conn.execute(
                    select(H.tenant).where(H.bank_id == bank_id).order_by(H.tenant)
                ).scalars()
            )
