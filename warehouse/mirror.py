"""The lake mirrors the warehouse: every table the published dataset is built from, as Parquet.

    mirror_to_lake(conn, lake_root, tables)     after a night: the history tables of the datasets
                                                merged tonight, the ledger, identity and alerts
    mirror_tables(datasets, part)               which: all, or the part the intake wrote (the
                                                night mirrors it beside the alerts) or the rest
    restore_from_lake(conn, lake_root)          an empty warehouse (at the newest revision) from
                                                the mirror alone; publishing from it gives the
                                                same files (tests/test_mirror.py)

One file per table (`warehouse.lake.mirror_path`), rows in primary-key order and written
atomically, so the same warehouse always gives the same bytes. The two tables that grow with
every night are split (issue 13): person_sources one file per dataset (a night changes the
datasets it merged, as it changes their history tables), alert_days one file per exchange date
(a night writes the dates it evaluated: its own, or from the date a late delivery rebuilt).
Together with the delivered bytes (`raw/`) and accepted rows (`accepted/`) already in the lake,
the lake alone can rebuild the warehouse, on another machine or another database (SQLite →
PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Integer,
    Numeric,
    Table,
    select,
)
from sqlalchemy.types import TypeEngine

from warehouse.bulk import fetch_arrow, load_arrow
from warehouse.lake import mirror_part_path, mirror_path, write_parquet_atomic
from warehouse.tables import deliveries, history_merges, history_tables, person_sources, rejects
from warehouse.tables_alerts import alert_days, alert_feedback, alert_runs, alerts
from warehouse.tables_ops import freshness

# Tables that change every night whatever was delivered: those the intake writes (the ledger,
# identity) and those the steps after it write (alerts, freshness). A night mirrors the first
# part, with the history it merged, while its alerts are raised (flows.nightly).
INTAKE_TABLES: tuple[Table, ...] = (deliveries, rejects, history_merges, person_sources)
DERIVED_TABLES: tuple[Table, ...] = (alerts, alert_days, alert_runs, alert_feedback, freshness)
NIGHTLY_TABLES: tuple[Table, ...] = INTAKE_TABLES + DERIVED_TABLES


def _arrow_type(kind: TypeEngine[Any]) -> pa.DataType:
    if isinstance(kind, Date) and not isinstance(kind, DateTime):
        return pa.date32()
    if isinstance(kind, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(kind, BigInteger | Integer):
        return pa.int64()
    if isinstance(kind, Boolean):
        return pa.bool_()
    if isinstance(kind, Numeric):
        return pa.float64()
    return pa.string()


def table_schema(table: Table) -> pa.Schema:
    """The Arrow schema a table is mirrored with (from its SQLAlchemy column types)."""
    return pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in table.columns])


def _order(table: Table) -> list[Any]:
    keys = list(table.primary_key.columns) or list(table.columns)
    return keys


def mirror_tables(
    datasets: Iterable[str] = (), part: Literal["all", "intake", "derived"] = "all"
) -> list[Table]:
    """The tables to mirror after a night that merged `datasets`: all of them, or the part
    the intake wrote (their history, INTAKE_TABLES) or the part written after it."""
    history = [history_tables[d] for d in sorted(set(datasets))]
    if part == "intake":
        return [*history, *INTAKE_TABLES]
    if part == "derived":
        return list(DERIVED_TABLES)
    return [*history, *NIGHTLY_TABLES]


# Tables mirrored one file per value of a column (see the module docstring).
PARTITIONED: dict[str, str] = {"person_sources": "dataset", "alert_days": "exchange_date"}


def mirror_to_lake(
    conn: Connection,
    lake_root: Path,
    tables: Iterable[Table],
    *,
    merged: Iterable[str] | None = None,
    alerts_from: date | None = None,
) -> int:
    """Write each table to the lake as Parquet; returns the rows written.

    person_sources is written for the `merged` datasets and alert_days for the exchange dates
    from `alerts_from` on (None: every dataset, every date); a part the lake does not have yet
    is written whatever the night did, so a first mirror, or one after a night that stopped
    before its mirror, is whole."""
    rows = 0
    for table in tables:
        if table.name in PARTITIONED:
            wanted = merged if table.name == "person_sources" else alerts_from
            rows += _mirror_parts(conn, Path(lake_root), table, wanted)
            continue
        data = _fetch(conn, table)
        write_parquet_atomic(Path(lake_root), mirror_path(table.name), data)
        rows += data.num_rows
    return rows


def _mirror_parts(
    conn: Connection, lake_root: Path, table: Table, wanted: Iterable[str] | date | None
) -> int:
    column = table.c[PARTITIONED[table.name]]
    values = [v for (v,) in conn.execute(select(column).distinct().order_by(column))]
    folder = lake_root / mirror_path(table.name).removesuffix(".parquet")
    have = {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()
    names = {str(v)[:10] if table.name == "alert_days" else str(v): v for v in values}
    whole = lake_root / mirror_path(table.name)  # the layout before the split
    if wanted is None or whole.exists():
        write = set(names)
    elif isinstance(wanted, date):
        write = {n for n in names if n >= wanted.isoformat()}
    else:
        write = set(wanted) & set(names)
    write |= set(names) - have
    rows = 0
    for name in sorted(write):
        data = _fetch(conn, table, column == names[name])
        write_parquet_atomic(lake_root, mirror_part_path(table.name, name), data)
        rows += data.num_rows
    for gone in have - set(names):
        (folder / f"{gone}.parquet").unlink()
    whole.unlink(missing_ok=True)
    return rows


def _fetch(conn: Connection, table: Table, where: Any = None) -> pa.Table:
    schema = table_schema(table)
    query = select(table).order_by(*_order(table))
    if where is not None:
        query = query.where(where)
    timestamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    if not timestamps:
        return fetch_arrow(conn, query, schema)
    # Clock readings (received_at) go through Python: fetch_arrow's text path has no time zones.
    result = conn.execute(query)
    columns: list[Sequence[Any]] = list(zip(*result.all(), strict=True))
    columns = columns or [[] for _ in table.columns]
    return pa.table(
        {f.name: pa.array(list(col), f.type) for f, col in zip(schema, columns, strict=True)}
    )


def restore_from_lake(conn: Connection, lake_root: Path) -> int:
    """Load every mirrored table into an empty warehouse; returns the rows loaded."""
    rows = 0
    for table in [*history_tables.values(), *NIGHTLY_TABLES]:
        path = Path(lake_root) / mirror_path(table.name)
        parts = sorted(path.with_suffix("").glob("*.parquet"))
        for file in [path] if path.is_file() else parts:
            data = pq.read_table(file)
            rows += _load(conn, table, data)
    return rows


def _load(conn: Connection, table: Table, data: pa.Table) -> int:
    if any(pa.types.is_timestamp(f.type) for f in data.schema):
        records = data.to_pylist()
        if records:
            conn.execute(table.insert(), records)
        return len(records)
    return load_arrow(conn, table, data)
