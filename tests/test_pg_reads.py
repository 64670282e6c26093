"""PostgreSQL reads by the ADBC driver (warehouse.pg_reads, issue 13): every value as the COPY
read and psycopg give it; the caller's uncommitted writes are still read on its own
connection; a read holds no lock afterwards; a forked child never uses the parent's
connections; a driver that cannot connect leaves the read to COPY."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    MetaData,
    Numeric,
    Table,
    Text,
    delete,
    insert,
    select,
    text,
)

from tests.conftest import pg_schema_url
from warehouse import bulk, pg_reads
from warehouse.bulk import _literal_sql, fetch_arrow
from warehouse.db import connect

META = MetaData()
ROWS = Table(
    "pg_rows",
    META,
    Column("k", BigInteger, primary_key=True),
    Column("t", Text),
    Column("x", Float(53)),
    Column("m", Numeric(14, 2)),
    Column("d", Date),
    Column("b", Boolean),
    Column("at", DateTime(timezone=True)),
)
SCHEMA = pa.schema(
    [
        ("k", pa.int64()),
        ("t", pa.string()),
        ("x", pa.float64()),
        ("m", pa.float64()),
        ("d", pa.date32()),
        ("b", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with pg_schema_url() as url:
        eng = connect(url)
        META.create_all(eng)
        yield eng
        eng.dispose()


_ROW = st.fixed_dictionaries(
    {
        "t": st.one_of(st.none(), st.just(""), st.text(st.characters(exclude_characters="\x00"))),
        "x": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "m": st.one_of(
            st.none(), st.decimals(-(10**11), 10**11, places=2, allow_nan=False).map(Decimal)
        ),
        "d": st.one_of(st.none(), st.dates(date(1900, 1, 1), date(2200, 1, 1))),
        "b": st.one_of(st.none(), st.booleans()),
        "at": st.one_of(
            st.none(),
            st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
        ),
    }
)


def _put(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(ROWS))
        if rows:
            conn.execute(insert(ROWS), [{"k": i, **r} for i, r in enumerate(rows)])


def _expected(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(ROWS).order_by(ROWS.c.k))]
    for r in rows:
        r["m"] = None if r["m"] is None else float(r["m"])
    return rows


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_ROW, max_size=30))
def test_every_value_comes_back_as_copy_and_the_driver_read_it(
    engine: Engine, rows: list[dict[str, Any]]
) -> None:
    _put(engine, rows)
    statement = select(ROWS).order_by(ROWS.c.k)
    with engine.connect() as conn:
        sql = _literal_sql(conn, statement)
        by_adbc = pg_reads.read(pg_reads.uri_of(conn), sql, SCHEMA)
        by_copy = bulk._copy_read(conn, sql, SCHEMA)
        got = fetch_arrow(conn, statement, SCHEMA)
    assert by_adbc is not None  # committed rows, a plain SELECT: the driver reads them
    assert by_adbc.schema == SCHEMA
    assert by_adbc.equals(by_copy)
    assert got.equals(by_adbc)
    assert by_adbc.to_pylist() == _expected(engine)


def test_the_callers_uncommitted_rows_are_read_on_its_own_connection(engine: Engine) -> None:
    _put(engine, [])
    statement = select(ROWS.c.k, ROWS.c.t).order_by(ROWS.c.k)
    schema = pa.schema([("k", pa.int64()), ("t", pa.string())])
    with engine.begin() as conn:
        conn.execute(insert(ROWS), [{"k": 1, "t": "未提交"}])
        got = fetch_arrow(conn, statement, schema)
        # the driver's own connection does not see them: reading there would lose the row
        assert pg_reads.read(pg_reads.uri_of(conn), _literal_sql(conn, statement), schema) == (
            schema.empty_table()
        )
        conn.rollback()
    assert got.to_pylist() == [{"k": 1, "t": "未提交"}]


def test_a_read_holds_no_lock_afterwards(engine: Engine) -> None:
    """The publication renames and moves tables (SET SCHEMA) in its last transaction: a pooled
    connection that read one must not keep it locked."""
    _put(engine, [{"t": "x"}])
    with engine.connect() as conn:
        assert fetch_arrow(conn, select(ROWS.c.k), pa.schema([("k", pa.int64())])).num_rows == 1
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            conn.execute(text("ALTER TABLE pg_rows RENAME TO pg_rows_moved"))
            conn.execute(text("ALTER TABLE pg_rows_moved RENAME TO pg_rows"))
    finally:
        pg_reads._pool.close()  # were a lock held, the schema could not be dropped after


def test_a_forked_child_reads_on_connections_of_its_own(engine: Engine) -> None:
    _put(engine, [{"t": "父"}, {"t": "子"}])
    statement = select(ROWS.c.t).order_by(ROWS.c.k)
    schema = pa.schema([("t", pa.string())])
    with engine.connect() as conn:
        uri, sql = pg_reads.uri_of(conn), _literal_sql(conn, statement)
    before = pg_reads.read(uri, sql, schema)  # leaves a pooled connection in this process
    pid = os.fork()
    if pid == 0:  # the child: a read of its own, then out without running the parent's atexit
        found = pg_reads.read(uri, sql, schema)
        os._exit(0 if found is not None and found.equals(before) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    after = pg_reads.read(uri, sql, schema)  # the parent's pooled connection still works
    assert before is not None and after is not None
    assert after.column("t").to_pylist() == ["父", "子"]


def test_a_driver_that_cannot_connect_leaves_the_read_to_copy(engine: Engine) -> None:
    _put(engine, [{"t": "仍可读"}])
    statement = select(ROWS.c.t)
    schema = pa.schema([("t", pa.string())])
    with engine.connect() as conn:
        unreachable = "postgresql://postgres@127.0.0.1:1/none"
        assert pg_reads.read(unreachable, _literal_sql(conn, statement), schema) is None
        own = conn.engine.url
        conn.engine.url = own.set(port=1)  # the driver's connection fails …
        try:
            got = fetch_arrow(conn, statement, schema)  # … the caller's own still reads
        finally:
            conn.engine.url = own
    assert got.column("t").to_pylist() == ["仍可读"]


def test_idle_connections_are_bounded(engine: Engine) -> None:
    """A test run reads a new schema's URI per test, a portal many: beyond a few, the idle
    connections are closed (unbounded, they exhausted PostgreSQL's max_connections in CI)."""
    _put(engine, [{"t": "x"}])
    statement = select(ROWS.c.t)
    schema = pa.schema([("t", pa.string())])
    with engine.connect() as conn:
        uri, sql = pg_reads.uri_of(conn), _literal_sql(conn, statement)
        mark = f"bounded_{os.getpid()}"
        sep = "&" if "?" in uri else "?"
        for i in range(pg_reads._IDLE + 3):
            assert pg_reads.read(f"{uri}{sep}application_name={mark}_{i}", sql, schema)
        still = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE :m"),
            {"m": f"{mark}_%"},
        ).scalar_one()
    pg_reads._pool.close()
    assert still == pg_reads._IDLE
