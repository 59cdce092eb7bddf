"""Wrong case PINs counted per (case number, client) and per number (rempart.store.cases).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_pin_failures",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("number", "client", name=op.f("pk_case_pin_failures")),
    )
    with op.batch_alter_table("case_pin_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_pin_failures_first_at"), ["first_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("case_pin_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_pin_failures_first_at"))
    op.drop_table("case_pin_failures")
