"""The exchange ledger and the rejects.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("dept", sa.String(8), nullable=False),
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("source_file", sa.String(255), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_in", sa.Integer, nullable=False),
        sa.Column("rows_loaded", sa.Integer, nullable=False),
        sa.Column("rows_rejected", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("file_format", sa.String(8)),
        sa.Column("encoding", sa.String(16)),
        sa.Column("extra_columns", sa.Text),
        sa.Column("gx_success", sa.Boolean),
        sa.Column("lake_path", sa.Text),
        sa.Column("raw_path", sa.Text),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_deliveries"),
        sa.UniqueConstraint(
            "dataset", "exchange_date", "sha256", name="uq_deliveries_dataset_exchange_date_sha256"
        ),
    )
    op.create_index(
        "ix_deliveries_dataset_exchange_date", "deliveries", ["dataset", "exchange_date"]
    )
    op.create_table(
        "rejects",
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("source_file", sa.String(255), nullable=False),
        sa.Column("source_row", sa.Integer),
        sa.Column("column", sa.String(64)),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("value_masked", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_rejects_delivery_id", "rejects", ["delivery_id"])
    op.create_index("ix_rejects_dataset_exchange_date", "rejects", ["dataset", "exchange_date"])


def downgrade() -> None:
    op.drop_table("rejects")
    op.drop_table("deliveries")
