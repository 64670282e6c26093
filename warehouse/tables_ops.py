"""Tables of the operations part of the warehouse (registered on warehouse.tables.metadata).

    freshness   one row per expected delivery (dataset, exchange date): on_time | late |
                missing | failed, judged from the ledger against the delivery calendar
    nights      one row per exchange date a nightly run (or a backfill) completed; the
                catch-up policy finds missed dates from it
    backfills   the audit trail of backfills: who, range, datasets, the plan, start and end
    landing_issues  every file in the landing area that was not taken in, and why (Chinese):
                one row per (exchange date, file); published to the department with its ledger

The writer lock (warehouse.lock) needs no table: an advisory lock on PostgreSQL, a file lock
beside the database on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

import pandas as pd
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
    and_,
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


landing_issues = Table(
    "landing_issues",
    metadata,
    Column("exchange_date", Date, nullable=False),  # the night it belongs to
    Column("location", Text, nullable=False),  # where it was found (no credentials)
    Column("dept", String(8)),  # the department folder; NULL: outside any department's folder
    Column("dataset", String(64)),  # the dataset its name claims, if any
    Column("source_file", String(255), nullable=False),  # relative to the landing root
    Column("kind", String(24), nullable=False),  # tasks.landing.ISSUE_KINDS
    Column("reason", Text, nullable=False),  # Chinese, with where (部门, 数据集, 文件)
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange_date", "location"),
    Index(None, "dept", "exchange_date"),
)

ISSUE_COLUMNS = ("exchange_date", "dept", "dataset", "source_file", "kind", "reason")


def record_landing_issues(
    conn: Connection, rows: Iterable[Mapping[str, object]], at: datetime
) -> int:
    """Insert or refresh landing issues; returns how many were new.

    A row with `dated` False (no date in the file name) is recorded once, for the first night
    that saw it; later nights only refresh its `last_seen_at`.
    """
    t = landing_issues.c
    new = 0
    for row in rows:
        values = {k: v for k, v in row.items() if k != "dated"}
        if row.get("dated", True):
            where = and_(
                t.exchange_date == values["exchange_date"], t.location == values["location"]
            )
        else:
            where = t.location == values["location"]
        if conn.execute(select(func.count()).where(where)).scalar_one():
            conn.execute(
                update(landing_issues)
                .where(where)
                .values(kind=values["kind"], reason=values["reason"], last_seen_at=at)
            )
            continue
        conn.execute(insert(landing_issues).values(**values, first_seen_at=at, last_seen_at=at))
        new += 1
    return new


def landing_issues_frame(
    conn: Connection, date_from: date | None = None, date_to: date | None = None
) -> pd.DataFrame:
    """Landing issues of a range of nights (every night when open), in a stable order.

    Columns: exchange_date, dept (None: outside any department's folder), dataset, source_file,
    kind, reason, first_seen_at.
    """
    t = landing_issues.c
    query = select(*(t[c] for c in ISSUE_COLUMNS), t.first_seen_at)
    if date_from is not None:
        query = query.where(t.exchange_date >= date_from)
    if date_to is not None:
        query = query.where(t.exchange_date <= date_to)
    query = query.order_by(t.exchange_date, t.dept, t.source_file)
    return pd.read_sql(query, conn)


def night_landing_issues(conn: Connection, exchange_date: date) -> dict[str, pd.DataFrame]:
    """A night's landing issues per department (for the reports and the department's view).

    Keys are department codes; issues outside any department's folder are under "" (the bureau,
    XC, sees every row). Each frame has the columns of `landing_issues_frame`.
    """
    frame = landing_issues_frame(conn, exchange_date, exchange_date)
    dept = frame["dept"].fillna("")
    return {str(k): g.reset_index(drop=True) for k, g in frame.groupby(dept, sort=True)}


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
