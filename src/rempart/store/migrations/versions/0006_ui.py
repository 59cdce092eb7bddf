"""Moderator UI: users, sessions, review previews (rempart.store.users, rempart.store.previews).

Also the review decisions that take items out of the queue (rempart.store.reviews).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('moderator', 'admin')", name=op.f("ck_ui_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_users")),
        sa.UniqueConstraint("username", name=op.f("uq_ui_users_username")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_ui_users_tenant"), "ui_users", ["tenant"], unique=False)

    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["ui_users.id"],
            name=op.f("fk_ui_sessions_user_id_ui_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_sessions")),
    )
    op.create_index(op.f("ix_ui_sessions_user_id"), "ui_sessions", ["user_id"], unique=False)

    op.create_table(
        "review_decisions",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("bank", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('confirm', 'reject', 'escalate')",
            name=op.f("ck_review_decisions_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_review_decisions_scan_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_review_decisions")),
    )
    op.create_index(
        op.f("ix_review_decisions_tenant_decision"),
        "review_decisions",
        ["tenant", "decision"],
        unique=False,
    )

    # Sealed (AES-GCM), already blurred, expiring previews; no foreign key to scans (the scan
    # record may be written after its preview).
    op.create_table(
        "review_previews",
        sa.Column("scan_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("key_fp", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_review_previews")),
    )
    op.create_index(
        op.f("ix_review_previews_expires_at"), "review_previews", ["expires_at"], unique=False
    )


def downgrade() -> None:
    # Dropping review_previews is the hard delete of every preview.
    op.drop_index(op.f("ix_review_previews_expires_at"), table_name="review_previews")
    op.drop_table("review_previews")
    op.drop_index(op.f("ix_review_decisions_tenant_decision"), table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_index(op.f("ix_ui_sessions_user_id"), table_name="ui_sessions")
    op.drop_table("ui_sessions")
    op.drop_index(op.f("ix_ui_users_tenant"), table_name="ui_users")
    op.drop_table("ui_users")
