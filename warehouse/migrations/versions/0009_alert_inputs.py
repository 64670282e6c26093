"""A night's findings record what they were computed from (issue 13: an unchanged re-run does not
evaluate the rules again).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_runs") as batch:
        batch.add_column(sa.Column("inputs_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("alert_runs") as batch:
        batch.drop_column("inputs_sha256")
