"""Freshness, completed nights and the backfill audit trail (issue 6).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "freshness",
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("dept", sa.String(8), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True)),
        sa.Column("delivery_id", sa.String(64)),
        sa.PrimaryKeyConstraint("dataset", "exchange_date", name="pk_freshness"),
    )
    op.create_index("ix_freshness_exchange_date", "freshness", ["exchange_date"])
    op.create_table(
        "nights",
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("first_finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange_date", name="pk_nights"),
    )
    op.create_table(
        "backfills",
        sa.Column("backfill_id", sa.String(32), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("date_from", sa.Date, nullable=False),
        sa.Column("date_to", sa.Date, nullable=False),
        sa.Column("datasets", sa.Text),
        sa.Column("force", sa.Boolean, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("backfill_id", name="pk_backfills"),
    )
    op.create_index("ix_backfills_started_at", "backfills", ["started_at"])


def downgrade() -> None:
    op.drop_table("backfills")
    op.drop_table("nights")
    op.drop_table("freshness")
