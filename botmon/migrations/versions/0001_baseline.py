"""Baseline: snapshots, the latest guild list, refused pushes, alert state.

Revision ID: 0001
Revises:
Create Date: 2025-11-20

A database made before migrations existed (by `create_all`) holds some or
all of these tables already: only the missing ones are created, so such a
database is adopted by running this revision like any other.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _snapshots() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("resumen_json", sa.Text(), nullable=False),
        sa.Column("estado_json", sa.Text(), nullable=False),
        sa.Column("server_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_snapshots_received_at", "snapshots", ["received_at"])


def _latest_servers() -> None:
    op.create_table(
        "latest_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("servers_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def _refused_pushes() -> None:
    op.create_table(
        "refused_pushes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=64), nullable=False),
        sa.Column("last_message", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _alert_state() -> None:
    op.create_table(
        "alert_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("pending_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


# In dependency order: latest_servers refers to snapshots.
TABLES = {
    "snapshots": _snapshots,
    "latest_servers": _latest_servers,
    "refused_pushes": _refused_pushes,
    "alert_state": _alert_state,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
