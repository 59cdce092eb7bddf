"""Banks, entries and the change log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HexText = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
SignalName = sa.String(16).with_variant(sa.String(16, collation="C"), "postgresql")
JsonType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('block', 'allow')", name=op.f("ck_banks_kind")),
        sa.CheckConstraint("threshold >= 0 AND threshold <= 64", name=op.f("ck_banks_threshold")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_banks")),
        sa.UniqueConstraint("tenant", "name", name=op.f("uq_banks_tenant_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "entries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("signal", SignalName, nullable=False),
        sa.Column("value", HexText, nullable=False),
        sa.Column("quality", sa.SmallInteger(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("tags", JsonType, nullable=False),
        sa.Column("metadata", JsonType, nullable=False),
        sa.Column("frames", JsonType, nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "quality IS NULL OR (quality >= 0 AND quality <= 100)",
            name=op.f("ck_entries_quality"),
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["banks.id"],
            name=op.f("fk_entries_bank_id_banks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
        sa.UniqueConstraint(
            "signal", "value", "bank_id", name=op.f("uq_entries_signal_value_bank_id")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_entries_bank_id_signal_id"), "entries", ["bank_id", "signal", "id"])
    op.create_table(
        "entry_changes",
        sa.Column("seq", BigId, autoincrement=True, nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("signal", sa.String(length=16), nullable=True),
        sa.Column("value", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "op IN ('add', 'remove', 'bank_created', 'bank_updated', 'bank_deleted')",
            name=op.f("ck_entry_changes_op"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_entry_changes")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("entry_changes")
    op.drop_index(op.f("ix_entries_bank_id_signal_id"), table_name="entries")
    op.drop_table("entries")
    op.drop_table("banks")
