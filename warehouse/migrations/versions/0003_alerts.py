"""Alerts and their lifecycle (issue 4).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("rule_id", sa.String(16), nullable=False),
        sa.Column("risk_type", sa.String(32), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("household_id", sa.String(32)),
        sa.Column("person_key", sa.String(32)),
        sa.Column("id_number", sa.String(18)),
        sa.Column("name", sa.Text),
        sa.Column("town", sa.Text),
        sa.Column("village", sa.Text),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_raised", sa.Date, nullable=False),
        sa.Column("last_seen", sa.Date, nullable=False),
        sa.Column("resolved_on", sa.Date),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("pushed_to", sa.String(64), nullable=False),
        sa.Column("feedback_outcome", sa.String(16)),
        sa.Column("feedback_date", sa.Date),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("opened_on", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_rule_id_subject", "alerts", ["rule_id", "subject"], unique=True)
    op.create_index("ix_alerts_status", "alerts", ["status"])
    op.create_table(
        "alert_days",
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("rule_id", sa.String(16), nullable=False),
        sa.Column("risk_type", sa.String(32), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("household_id", sa.String(32)),
        sa.Column("person_key", sa.String(32)),
        sa.Column("id_number", sa.String(18)),
        sa.Column("name", sa.Text),
        sa.Column("town", sa.Text),
        sa.Column("village", sa.Text),
        sa.Column("pushed_to", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("exchange_date", "alert_id", name="pk_alert_days"),
    )
    op.create_index("ix_alert_days_alert_id", "alert_days", ["alert_id"])
    op.create_table(
        "alert_feedback",
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("feedback_date", sa.Date, nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "feedback_date", name="pk_alert_feedback"),
    )
    op.create_table(
        "alert_runs",
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("province", sa.String(8), nullable=False),
        sa.Column("income_threshold", sa.Numeric(14, 2), nullable=False),
        sa.Column("medical_burden_household_12m", sa.Numeric(14, 2), nullable=False),
        sa.Column("findings", sa.Integer, nullable=False),
        sa.Column("open", sa.Integer, nullable=False),
        sa.Column("new", sa.Integer, nullable=False),
        sa.Column("reopened", sa.Integer, nullable=False),
        sa.Column("resolved", sa.Integer, nullable=False),
        sa.Column("closed", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("exchange_date", name="pk_alert_runs"),
    )


def downgrade() -> None:
    op.drop_table("alert_runs")
    op.drop_table("alert_feedback")
    op.drop_table("alert_days")
    op.drop_index("ix_alerts_status", "alerts")
    op.drop_index("ix_alerts_rule_id_subject", "alerts")
    op.drop_table("alerts")
