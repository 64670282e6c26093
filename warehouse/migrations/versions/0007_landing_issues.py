"""Landing issues: every file in the landing area that was not taken in, and why (issue 11).

Revision ID: 0007
Revises: 0006 (0006_portal: the two were written at the same time)
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "landing_issues",
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("dept", sa.String(8)),
        sa.Column("dataset", sa.String(64)),
        sa.Column("source_file", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange_date", "location", name="pk_landing_issues"),
    )
    op.create_index(
        "ix_landing_issues_dept_exchange_date", "landing_issues", ["dept", "exchange_date"]
    )


def downgrade() -> None:
    op.drop_index("ix_landing_issues_dept_exchange_date", "landing_issues")
    op.drop_table("landing_issues")
