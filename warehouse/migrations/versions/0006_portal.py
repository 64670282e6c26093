"""The department portal: accounts, logins, API tokens, verifications and opinions (issue 15).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(8), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("session_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_portal_users"),
    )
    op.create_table(
        "portal_logins",
        sa.Column("login_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("login_id", name="pk_portal_logins"),
    )
    op.create_index("ix_portal_logins_username_at", "portal_logins", ["username", "at"])
    op.create_index("ix_portal_logins_client_at", "portal_logins", ["client", "at"])
    op.create_table(
        "portal_tokens",
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("consumer", sa.String(8), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("token_id", name="pk_portal_tokens"),
    )
    op.create_table(
        "portal_verifications",
        sa.Column("verification_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("checked_date", sa.Date, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("verification_id", name="pk_portal_verifications"),
    )
    op.create_index("ix_portal_verifications_alert_id", "portal_verifications", ["alert_id"])
    op.create_table(
        "portal_opinions",
        sa.Column("opinion_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("consumer", sa.String(8), nullable=False),
        sa.Column("opinion", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("opinion_id", name="pk_portal_opinions"),
    )
    op.create_index("ix_portal_opinions_alert_id", "portal_opinions", ["alert_id"])


def downgrade() -> None:
    op.drop_table("portal_opinions")
    op.drop_table("portal_verifications")
    op.drop_table("portal_tokens")
    op.drop_table("portal_logins")
    op.drop_table("portal_users")
