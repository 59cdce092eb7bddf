"""Takedown notices and their tracking (rempart.store.notices).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("platform", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("sender", JsonType, nullable=False),
        sa.Column("items", JsonType, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("last_reminder_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_reminder_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('takeitdown', 'dsa', 'pharos', 'generic')", name=op.f("ck_notices_kind")
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'removed', 'not_removed', 'withdrawn')",
            name=op.f("ck_notices_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notices_status_next_reminder_at"),
            ["status", "next_reminder_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_notices_tenant_id"), ["tenant", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_case_number"), ["case_number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notices_case_number"))
        batch_op.drop_index(batch_op.f("ix_notices_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_notices_status_next_reminder_at"))
    op.drop_table("notices")
