"""Tables of the operations part of the warehouse (registered on warehouse.tables.metadata).

    freshness   one row per expected delivery (dataset, exchange date): on_time | late |
                missing | failed, judged from the ledger against the delivery calendar
    nights      one row per exchange date a nightly run (or a backfill) completed; the
                catch-up policy finds missed dates from it
    backfills   the audit trail of backfills: who, range, datasets, the plan, start and end

The writer lock (warehouse.lock) needs no table: an advisory lock on PostgreSQL, a file lock
beside the database on SQLite.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from warehouse.tables import metadata

freshness = Table(
    "freshness",
    metadata,
    Column("dataset", String(32), nullable=False),
    Column("exchange_date", Date, nullable=False),
    Column("dept", String(8), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # on_time | late | missing | failed
    Column("received_at", DateTime(timezone=True)),  # first intake of the counted delivery
    Column("delivery_id", String(64)),  # the delivery that counted, if any
    PrimaryKeyConstraint("dataset", "exchange_date"),
    Index(None, "exchange_date"),
)

nights = Table(
    "nights",
    metadata,
    Column("exchange_date", Date, nullable=False),
    Column("kind", String(16), nullable=False),  # nightly | backfill
    Column("runs", Integer, nullable=False),
    Column("first_finished_at", DateTime(timezone=True), nullable=False),
    Column("last_finished_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange_date"),
)

backfills = Table(
    "backfills",
    metadata,
    Column("backfill_id", String(32), nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("date_from", Date, nullable=False),
    Column("date_to", Date, nullable=False),
    Column("datasets", Text),  # JSON list; NULL = every dataset
    Column("force", Boolean, nullable=False),
    Column("plan", Text, nullable=False),  # JSON: [{date, dataset, reason, ...}]
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("error", Text),  # exception class only, never values
    PrimaryKeyConstraint("backfill_id"),
    Index(None, "started_at"),
)


def record_night(conn: Connection, exchange_date: date, kind: str, at: datetime) -> None:
    """Note that a night (or a backfill's night) completed for `exchange_date`."""
    row = conn.execute(
        select(nights.c.runs).where(nights.c.exchange_date == exchange_date)
    ).scalar_one_or_none()
    if row is None:
        conn.execute(
            insert(nights).values(
                exchange_date=exchange_date,
                kind=kind,
                runs=1,
                first_finished_at=at,
                last_finished_at=at,
            )
        )
    else:
        conn.execute(
            update(nights)
            .where(nights.c.exchange_date == exchange_date)
            .values(runs=row + 1, last_finished_at=at)
        )


def last_night(conn: Connection) -> date | None:
    """The latest exchange date a night completed for (None before the first)."""
    return conn.execute(select(func.max(nights.c.exchange_date))).scalar_one_or_none()
