"""Bulk moves between Arrow and the warehouse, inside the caller's transaction.

    Arrow ─ load_arrow ─▶ table      PostgreSQL: COPY ... FROM STDIN (CSV written by Arrow)
                                     SQLite:     one executemany
    table ─ fetch_arrow ─▶ Arrow     PostgreSQL: COPY (SELECT ...) TO STDOUT, parsed by Arrow
                                     SQLite:     one fetchall, converted column by column
    staging(...)                     a temporary table, loaded as above, dropped afterwards

On PostgreSQL COPY loads 233k-275k rows/s (bench/bench_merge.py, 1M history rows) where
pandas.to_sql manages ~35k and executemany ~57k. Values cross as text only there, in forms both
sides agree on (ISO dates, `12.50`, true/false). Nothing here knows about datasets.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, Table, text
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeEngine

_COPY_BATCH_ROWS = 100_000
_SQLITE_CACHE_BYTES = 256 * 2**20


def is_postgres(conn: Connection) -> bool:
    """Whether the connection is to PostgreSQL (else SQLite is assumed)."""
    return conn.dialect.name == "postgresql"


def prepare_bulk(conn: Connection) -> None:
    """Give a SQLite connection a page cache fit for bulk work (it is only ever raised).

    SQLite's default cache is 2 MB: a nightly merge that closes 60k versions of a 1M-row table
    then spills and re-reads pages all transaction long (night 2 of bench/bench_merge.py took
    10.5-12 s with it, 8.5 s with 256 MB). Memory is taken only as pages are read. Belongs in
    warehouse.db.connect, for every connection; PostgreSQL needs nothing.
    """
    if is_postgres(conn):
        return
    size = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    if (-size * 1024 if size < 0 else size * page) < _SQLITE_CACHE_BYTES:
        conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_BYTES // 1024}")


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _sqlite_values(column: pa.ChunkedArray) -> list[Any]:
    """Python values as SQLAlchemy would bind them on SQLite (ISO dates, floats for decimals)."""
    kind = column.type
    if pa.types.is_date(kind):
        column = column.cast(pa.string())
    elif pa.types.is_decimal(kind):
        column = column.cast(pa.float64())
    return column.to_pylist()


def load_arrow(conn: Connection, table: Table | str, data: pa.Table) -> int:
    """Append Arrow rows to a table (columns matched by name); returns the number of rows."""
    if data.num_rows == 0:
        return 0
    name = table if isinstance(table, str) else table.name
    columns = ", ".join(_quote(conn, c) for c in data.column_names)
    if is_postgres(conn):
        sql = f"COPY {_quote(conn, name)} ({columns}) FROM STDIN (FORMAT csv)"
        options = pacsv.WriteOptions(include_header=False)
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
            for batch in data.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())
    else:
        marks = ", ".join("?" for _ in data.column_names)
        sql = f"INSERT INTO {_quote(conn, name)} ({columns}) VALUES ({marks})"
        rows = list(zip(*(_sqlite_values(c) for c in data.columns), strict=True))
        conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]
    return data.num_rows


def _literal_sql(conn: Connection, statement: Executable) -> str:
    # Only our own dates, flags and names are bound here; rendering them inline lets the
    # statement run inside COPY, which takes no parameters.
    return str(
        statement.compile(  # type: ignore[attr-defined]
            dialect=conn.dialect,
            compile_kwargs={"literal_binds": True},
        )
    )


def _arrow_column(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    if pa.types.is_date(kind):
        return pa.array(values, pa.string()).cast(kind)
    if pa.types.is_boolean(kind):
        return pa.array(values, pa.int64()).cast(kind)
    return pa.array(values, kind)


def fetch_arrow(conn: Connection, statement: Executable, schema: pa.Schema) -> pa.Table:
    """Run a SELECT and return its rows as Arrow, typed by `schema` (names in select order)."""
    sql = _literal_sql(conn, statement)
    if is_postgres(conn):
        driver = conn.connection.driver_connection
        chunks: list[bytes] = []
        with (
            driver.cursor() as cursor,  # type: ignore[union-attr]
            cursor.copy(  # type: ignore[union-attr]
                f"COPY ({sql}) TO STDOUT (FORMAT csv)"
            ) as copy,
        ):
            chunks.extend(bytes(block) for block in copy)
        if not chunks:
            return schema.empty_table()
        return pacsv.read_csv(
            pa.BufferReader(b"".join(chunks)),
            read_options=pacsv.ReadOptions(column_names=schema.names),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=schema,
                true_values=["t"],
                false_values=["f"],
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        ).cast(schema)
    # The driver's own cursor: SQLAlchemy's result processing would double the time for 1M rows.
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows = cursor.execute(sql).fetchall()
    finally:
        cursor.close()
    if not rows:
        return schema.empty_table()
    matrix = np.array(rows, dtype=object).reshape(len(rows), len(schema))  # C-level transpose
    return pa.Table.from_arrays(
        [_arrow_column(matrix[:, i], field.type) for i, field in enumerate(schema)],
        schema=schema,
    )


@contextmanager
def staging(
    conn: Connection,
    name: str,
    columns: Sequence[tuple[str, TypeEngine[Any]]],
    data: pa.Table,
    *,
    primary_key: Sequence[str] = (),
) -> Iterator[Table]:
    """A temporary table holding `data` for set-based statements; dropped on leaving."""
    conn.execute(text(f"DROP TABLE IF EXISTS {_quote(conn, name)}"))
    table = Table(
        name,
        MetaData(),
        *(Column(c, kind) for c, kind in columns),
        *([PrimaryKeyConstraint(*primary_key)] if primary_key else []),
        prefixes=["TEMPORARY"],
    )
    table.create(conn)
    try:
        load_arrow(conn, table, data.select([c for c, _ in columns]))
        if is_postgres(conn):
            # A fresh temporary table has no statistics; without them the planner may scan
            # the (large) history table instead of probing it once per staged key.
            conn.execute(text(f"ANALYZE {_quote(conn, name)}"))
        yield table
    finally:
        conn.execute(text(f"DROP TABLE IF EXISTS {_quote(conn, name)}"))
