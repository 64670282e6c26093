"""Migrations: from empty to head on SQLite and PostgreSQL, idempotent, and equal to the code.

The last test is the guard against drift: a contract (or table) change in warehouse.tables
without a new revision makes alembic's autogenerate comparison find a difference.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from warehouse.db import connect, current_revision, head_revision, upgrade
from warehouse.tables import history_merges, history_tables, metadata, person_sources


def _engine(url: str) -> Engine:
    engine = connect(url)
    upgrade(engine)
    return engine


def test_upgrade_from_empty_creates_every_table(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        assert current_revision(engine) == head_revision()
        names = set(inspect(engine).get_table_names())
        expected = {t.name for t in history_tables.values()}
        expected |= {history_merges.name, person_sources.name, "deliveries", "rejects"}
        assert expected <= names
    finally:
        engine.dispose()


def _columns(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """Every table's columns, tables in name order (PostgreSQL lists tables in no set order:
    catalog activity of other tests can change it between two calls)."""
    inspector = inspect(engine)
    return {t: inspector.get_columns(t) for t in sorted(inspector.get_table_names())}


def test_upgrade_twice_is_a_no_op(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        before = _columns(engine)
        upgrade(engine)
        after = _columns(engine)
        assert current_revision(engine) == head_revision()
        assert repr(before) == repr(after)
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_metadata(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [
                d for d in compare_metadata(context, metadata) if not _is_alembic_bookkeeping(d)
            ]
        assert diff == []
    finally:
        engine.dispose()


def _is_alembic_bookkeeping(diff: object) -> bool:
    # compare_metadata reports alembic_version as "not in the metadata"; it is Alembic's own.
    return (
        isinstance(diff, tuple)
        and len(diff) >= 2
        and diff[0] == "remove_table"
        and getattr(diff[1], "name", None) == "alembic_version"
    )
