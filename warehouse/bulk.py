"""Bulk moves between Arrow and the warehouse, inside the caller's transaction.

    Arrow ─ load_arrow ─▶ table      PostgreSQL: COPY ... FROM STDIN (CSV written by Arrow)
                                     SQLite:     one executemany
    table ─ fetch_arrow ─▶ Arrow     PostgreSQL: the ADBC driver on a connection of its own
                                                 (warehouse.pg_reads) while the caller's
                                                 transaction has written nothing; else
                                                 COPY (SELECT ...) TO STDOUT, parsed by Arrow
                                     SQLite:     the ADBC driver in a reader process
                                                 (warehouse.sqlite_reads) when it sees what the
                                                 caller sees; else the rows as JSON lines, built
                                                 by SQLite (json_object, group_concat), parsed
                                                 by Arrow
    staging(...)                     a temporary table, loaded as above, dropped afterwards

On PostgreSQL COPY loads 233k-275k rows/s (bench/bench_merge.py, 1M history rows) where
pandas.to_sql manages ~35k and executemany ~57k. Values cross as text only there, in forms both
sides agree on (ISO dates, `12.50`, true/false). Nothing here knows about datasets.
"""

from __future__ import annotations

import io
import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from sqlalchemy import (
    Column,
    Connection,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    Table,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.sql import ColumnElement, Executable
from sqlalchemy.types import TypeEngine

from warehouse import pg_reads, sqlite_reads

_COPY_BATCH_ROWS = 100_000
# Rows per SQLite page of JSON lines: one page is one value, and SQLite's values stop at 1e9
# bytes (SQLITE_MAX_LENGTH); a history row is 300-400 bytes of JSON.
_SQLITE_PAGE_ROWS = 500_000
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


def _json_type(kind: pa.DataType) -> pa.DataType:
    """How a column reads from SQLite's JSON: integers and text as they are; dates (ISO text)
    and floats (`_json_value`) as text, flags (0/1) as integers, cast to their type after."""
    if pa.types.is_boolean(kind):
        return pa.int64()
    if pa.types.is_integer(kind) or pa.types.is_string(kind):
        return kind
    return pa.string()


def _json_value(column: ColumnElement[Any], kind: pa.DataType) -> ColumnElement[Any]:
    """A float as text with 17 significant digits, which name one double exactly (SQLite's
    JSON writes 15: 87.07000000000001 would come back as 87.07)."""
    if not pa.types.is_floating(kind):
        return column
    return case((column.is_(None), None), else_=func.printf(literal_column("'%!.17g'"), column))


def _sqlite_page(statement: Select[Any], schema: pa.Schema, offset: int, limit: int) -> Select[Any]:
    """`limit` of the statement's rows from `offset` as one value of JSON lines, one row a line,
    keys '0', '1', ... by position: `SELECT count(*), CAST(group_concat(json_object(...),
    char(10)) AS BLOB)`. SQLite builds the text in C; Python sees one value a page."""
    rows = statement.subquery("rows")
    pairs = [
        part
        for i, (c, f) in enumerate(zip(rows.c, schema, strict=True))
        for part in (literal_column(f"'{i}'"), _json_value(c, f.type))
    ]
    page = (
        select(func.json_object(*pairs).label("j"))
        .select_from(rows)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    return select(
        func.count(), cast(func.group_concat(page.c.j, literal_column("char(10)")), LargeBinary)
    )


def _sqlite_arrow(conn: Connection, statement: Select[Any], schema: pa.Schema) -> pa.Table:
    """fetch_arrow on SQLite. Python's sqlite3 makes a Python object of every value (4.4 s for
    a 0.7M-row, 19-column history read on the city); SQLite's own JSON functions and Arrow's
    JSON reader take 2 s for the same rows, in the same connection and transaction (a second
    copy of SQLite in the process, as ADBC's driver links, is not safe: docs/scaling.md).

    Exact for what the warehouse holds: text, integers, flags and ISO dates as stored, and
    REALs through 17 significant digits (SQLite 3.40's printf works in long double: every one
    of 0.9M random doubles below 1e100 came back the same; larger ones may differ in the last
    place, and no amount is near that). A page whose text would pass SQLite's limit on one
    value (1e9 bytes: rows wider than 2 kB) is read again in halves."""
    read = pa.schema([pa.field(str(i), _json_type(f.type)) for i, f in enumerate(schema)])
    options = pajson.ParseOptions(explicit_schema=read, unexpected_field_behavior="error")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    tables: list[pa.Table] = []
    offset, limit = 0, _SQLITE_PAGE_ROWS
    try:
        while True:
            page = _literal_sql(conn, _sqlite_page(statement, schema, offset, limit))
            try:
                count, lines = cursor.execute(page).fetchone()
            except sqlite3.DataError:  # SQLITE_TOOBIG: "string or blob too big"
                if limit == 1:
                    raise
                limit //= 2
                continue
            if count:
                tables.append(pajson.read_json(pa.BufferReader(lines), parse_options=options))
            if count < limit:
                break
            offset += limit
    finally:
        cursor.close()
    if not tables:
        return schema.empty_table()
    rows = pa.concat_tables(tables)
    return pa.Table.from_arrays(
        [rows.column(i).cast(f.type) for i, f in enumerate(schema)], schema=schema
    )


def fetch_arrow_all(
    conn: Connection, reads: Sequence[tuple[Executable, pa.Schema]], *, at_once: int = 3
) -> list[pa.Table]:
    """fetch_arrow of each (statement, schema), several at once when other connections see
    what `conn` sees: on PostgreSQL while its transaction has written nothing (each read by
    the ADBC driver on a connection of its own, warehouse.pg_reads), on SQLite while a reader
    process may read (warehouse.sqlite_reads). Otherwise, and for a read the reader cannot do,
    one after the other on `conn`. The same tables in the same order either way.

    A night's sixteen narrow reads of every dataset's names (3.1M rows of a city) went one at
    a time: on PostgreSQL the database formatted each COPY while the client waited.
    """
    if len(reads) < 2:
        return [fetch_arrow(conn, s, schema) for s, schema in reads]
    if is_postgres(conn):
        if _has_written(conn):
            return [fetch_arrow(conn, s, schema) for s, schema in reads]  # its own writes
        uri = pg_reads.uri_of(conn)
        sqls = [_literal_sql(conn, s) for s, _ in reads]
        with ThreadPoolExecutor(min(at_once, len(reads))) as pool:
            found = list(
                pool.map(pg_reads.read, itertools.repeat(uri), sqls, (r[1] for r in reads))
            )
        return [
            rows if rows is not None else _copy_read(conn, sql, schema)
            for rows, sql, (_, schema) in zip(found, sqls, reads, strict=True)
        ]
    database = sqlite_reads.database_file(conn)
    if database is None or not all(isinstance(s, Select) for s, _ in reads):
        return [fetch_arrow(conn, s, schema) for s, schema in reads]
    sqls = [_literal_sql(conn, s) for s, _ in reads]
    with ThreadPoolExecutor(min(at_once, len(reads))) as pool:
        found = list(
            pool.map(
                sqlite_reads.read_file, itertools.repeat(database), sqls, (r[1] for r in reads)
            )
        )
    return [
        rows if rows is not None else _sqlite_arrow(conn, s, schema)  # type: ignore[arg-type]
        for rows, (s, schema) in zip(found, reads, strict=True)
    ]


def fetch_arrow(conn: Connection, statement: Executable, schema: pa.Schema) -> pa.Table:
    """Run a SELECT and return its rows as Arrow, typed by `schema` (names in select order)."""
    if is_postgres(conn):
        sql = _literal_sql(conn, statement)
        if not _has_written(conn):  # another connection sees what this one sees
            found = pg_reads.read(pg_reads.uri_of(conn), sql, schema)
            if found is not None:
                return found
        return _copy_read(conn, sql, schema)
    if not isinstance(statement, Select):
        raise TypeError("fetch_arrow on SQLite reads a SELECT (sqlalchemy.select)")
    found = sqlite_reads.read(conn, _literal_sql(conn, statement), schema)
    if found is not None:
        return found
    return _sqlite_arrow(conn, statement, schema)


def _has_written(conn: Connection) -> bool:
    """Whether the PostgreSQL connection's transaction has written (then only it sees that)."""
    return conn.exec_driver_sql("SELECT txid_current_if_assigned()").scalar() is not None


def _copy_read(conn: Connection, sql: str, schema: pa.Schema) -> pa.Table:
    """The rows of `sql` on the caller's own PostgreSQL connection: COPY as CSV, parsed by
    Arrow."""
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
