"""Alembic environment: migrations run programmatically from warehouse.db.upgrade, revisions are
written by warehouse.migrate.write_revision (`datashare db revision`), which passes the hook
that keeps a generated revision portable between SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from warehouse.tables import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
    process_revision_directives=config.attributes.get("process_revision_directives"),
)
with context.begin_transaction():
    context.run_migrations()
