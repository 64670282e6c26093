"""Publications and the append-only audit log (issue 5).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = {
    "audit_log_no_update": "BEFORE UPDATE",
    "audit_log_no_delete": "BEFORE DELETE",
}


def upgrade() -> None:
    op.create_table(
        "publications",
        sa.Column("publication_id", sa.String(32), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("consumers", sa.Integer),
        sa.Column("files", sa.Integer),
        sa.Column("catalog_sha256", sa.String(64)),
        sa.PrimaryKeyConstraint("publication_id", name="pk_publications"),
    )
    op.create_index("ix_publications_as_of", "publications", ["as_of"])
    op.create_table(
        "audit_log",
        sa.Column("audit_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("publication_id", sa.String(32)),
        sa.Column("consumer", sa.String(8)),
        sa.Column("object", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("personal", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_publication_id", "audit_log", ["publication_id"])
    # Append-only: refuse changes with triggers (they bind the table's owner too, unlike REVOKE).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC")
    else:
        for name, when in _SQLITE_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("ix_audit_log_publication_id", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_publications_as_of", "publications")
    op.drop_table("publications")
