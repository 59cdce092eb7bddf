"""Notices say what happened to each message: to_send, send_failed, and the send attempts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NEW = "status IN ('to_send', 'sent', 'send_failed', 'not_removed', 'removed', 'withdrawn')"
_OLD = "status IN ('sent', 'removed', 'not_removed', 'withdrawn')"


def upgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("send_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("send_error", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(op.f("ck_notices_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notices_status"), _NEW)


def downgrade() -> None:
    # The two new states have no older equivalent: an unsent notice is kept as "sent", the
    # state the old code gave it.
    op.execute("UPDATE notices SET status = 'sent' WHERE status IN ('to_send', 'send_failed')")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_notices_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notices_status"), _OLD)
        batch_op.drop_column("send_error")
        batch_op.drop_column("send_attempts")
