"""Amounts in history are the doubles nearest their decimals (issue 13, found while checking
the SQLite reader against the old one).

The merge converted amounts to DECIMAL(14, 2) in DuckDB and then to float through Arrow, whose
cast multiplies by a reciprocal: on SQLite -23342.92 was stored as -23342.920000000002, and the
published CSV showed that (PostgreSQL's NUMERIC(14, 2) rounded it on the way in). The merge now
converts in DuckDB (warehouse.history); this revision rounds the amounts SQLite already stores
to the cent. Values only: the row hashes were computed from the decimal text and do not change,
nor does any version's validity.

Every NUMERIC(p, 2) column of the history tables (h_*) as the database has them, so the revision
does not depend on today's contracts. The rows that differ are rounded by Python (correctly
rounded), not by SQLite's round(), whose text conversions work in long double.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _amount_columns(bind: sa.Connection) -> list[tuple[str, str]]:
    inspector = sa.inspect(bind)
    return [
        (table, column["name"])
        for table in sorted(inspector.get_table_names())
        if table.startswith("h_")
        for column in inspector.get_columns(table)
        if isinstance(column["type"], sa.Numeric)
        and not isinstance(column["type"], sa.Float)
        and column["type"].scale == 2
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    quote = bind.dialect.identifier_preparer.quote
    for table, column in _amount_columns(bind):
        t, c = quote(table), quote(column)
        rows = bind.exec_driver_sql(f"SELECT rowid, {c} FROM {t} WHERE typeof({c}) = 'real'")
        fixes = [(round(v, 2), rowid) for rowid, v in rows if round(v, 2) != v]
        if fixes:
            bind.exec_driver_sql(f"UPDATE {t} SET {c} = ? WHERE rowid = ?", fixes)


def downgrade() -> None:
    """Nothing to undo: the rounded amounts are the delivered ones."""
