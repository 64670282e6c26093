"""The lake mirrors the warehouse: every table the published dataset is built from, as Parquet.

    mirror_to_lake(conn, lake_root, datasets)   after a night: the history tables of the datasets
                                                merged tonight, the ledger, identity and alerts
    restore_from_lake(conn, lake_root)          an empty warehouse (at the newest revision) from
                                                the mirror alone; publishing from it gives the
                                                same files (tests/test_mirror.py)

One file per table (`warehouse.lake.mirror_path`), rows in primary-key order and written
atomically, so the same warehouse always gives the same bytes. Together with the delivered bytes
(`raw/`) and accepted rows (`accepted/`) already in the lake, the lake alone can rebuild the
warehouse, on another machine or another database (SQLite → PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
from warehouse.lake import mirror_path, write_parquet_atomic
from warehouse.tables import deliveries, history_merges, history_tables, person_sources, rejects
from warehouse.tables_alerts import alert_days, alert_feedback, alert_runs, alerts
from warehouse.tables_ops import freshness

# Tables that change every night whatever was delivered (ledger, identity, alerts, freshness).
NIGHTLY_TABLES: tuple[Table, ...] = (
    deliveries,
    rejects,
    history_merges,
    person_sources,
    alerts,
    alert_days,
    alert_runs,
    alert_feedback,
    freshness,
)


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


def mirror_tables(datasets: Iterable[str] = ()) -> list[Table]:
    """The tables to mirror after a night that merged `datasets` (all history when None)."""
    return [*(history_tables[d] for d in sorted(set(datasets))), *NIGHTLY_TABLES]


def mirror_to_lake(conn: Connection, lake_root: Path, tables: Iterable[Table]) -> int:
    """Write each table to the lake as one Parquet file; returns the rows written."""
    rows = 0
    for table in tables:
        data = _fetch(conn, table)
        write_parquet_atomic(Path(lake_root), mirror_path(table.name), data)
        rows += data.num_rows
    return rows


def _fetch(conn: Connection, table: Table) -> pa.Table:
    schema = table_schema(table)
    timestamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    if not timestamps:
        return fetch_arrow(conn, select(table).order_by(*_order(table)), schema)
    # Clock readings (received_at) go through Python: fetch_arrow's text path has no time zones.
    result = conn.execute(select(table).order_by(*_order(table)))
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
        if path.is_file():
            data = pq.read_table(path)
            rows += _load(conn, table, data)
    return rows


def _load(conn: Connection, table: Table, data: pa.Table) -> int:
    if any(pa.types.is_timestamp(f.type) for f in data.schema):
        records = data.to_pylist()
        if records:
            conn.execute(table.insert(), records)
        return len(records)
    return load_arrow(conn, table, data)
