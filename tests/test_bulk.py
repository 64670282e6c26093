"""warehouse.bulk.fetch_arrow on SQLite: the ADBC read-only path gives what sqlite3 gives, and is
taken only when a second connection sees what the caller sees (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    insert,
    select,
    text,
)

from warehouse import bulk
from warehouse.bulk import fetch_arrow
from warehouse.db import connect

META = MetaData()
THINGS = Table(
    "things",
    META,
    Column("n", Integer, primary_key=True),
    Column("label", String),  # NULL in the first 3000 rows, text after (past one ADBC batch)
    Column("amount", Numeric(12, 2)),  # 12 is stored as an integer, 12.5 as a real
    Column("day", Date),
    Column("flag", Boolean),
    Column("never", String),  # always NULL
)
SCHEMA = pa.schema(
    [
        ("n", pa.int64()),
        ("label", pa.string()),
        ("amount", pa.float64()),
        ("day", pa.date32()),
        ("flag", pa.bool_()),
        ("never", pa.string()),
    ]
)
ROWS = [
    {
        "n": i,
        "label": None if i < 3000 else f"名称{i}",
        "amount": (i if i % 2 else i + 0.5) if i % 7 else None,
        "day": date(2025, 1, 1 + i % 28) if i % 5 else None,
        "flag": (i % 3 == 0) if i % 11 else None,
        "never": None,
    }
    for i in range(5000)
]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = connect(f"sqlite:///{tmp_path / 'w.db'}")
    META.create_all(eng)
    with eng.begin() as conn:
        conn.execute(insert(THINGS), ROWS)
    yield eng
    eng.dispose()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per fetch_arrow call on SQLite: whether the ADBC path answered."""
    calls: list[bool] = []
    real = bulk._fetch_sqlite_arrow

    def spy(conn, sql, schema):  # type: ignore[no-untyped-def]
        found = real(conn, sql, schema)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(bulk, "_fetch_sqlite_arrow", spy)
    return calls


def _through_sqlite3(monkeypatch: pytest.MonkeyPatch, engine: Engine, query) -> pa.Table:  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(bulk, "_fetch_sqlite_arrow", lambda *_: None)
        with engine.connect() as conn:
            return fetch_arrow(conn, query, SCHEMA)


def test_adbc_reads_what_sqlite3_reads(
    engine: Engine, taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    query = select(THINGS).order_by(THINGS.c.n)
    with engine.connect() as conn:
        fast = fetch_arrow(conn, query, SCHEMA)
    assert taken == [True]
    slow = _through_sqlite3(monkeypatch, engine, query)
    assert fast.schema == SCHEMA
    assert fast.equals(slow)
    assert fast.num_rows == len(ROWS)
    row = fast.slice(4001, 1).to_pylist()[0]
    assert row == {
        "n": 4001,
        "label": "名称4001",
        "amount": 4001.0,
        "day": date(2025, 1, 1 + 4001 % 28),
        "flag": False,
        "never": None,
    }
    assert fast.column("amount").to_pylist()[2] == 2.5
    assert fast.column("never").null_count == len(ROWS)


def test_adbc_empty_and_filtered(engine: Engine, taken: list[bool]) -> None:
    with engine.connect() as conn:
        none = fetch_arrow(conn, select(THINGS).where(THINGS.c.n < 0), SCHEMA)
        some = fetch_arrow(
            conn, select(THINGS).where(THINGS.c.n.between(10, 12)).order_by(THINGS.c.n), SCHEMA
        )
    assert none.num_rows == 0 and none.schema == SCHEMA
    assert some.column("n").to_pylist() == [10, 11, 12]
    assert taken[-1] is True


def test_uncommitted_writes_are_read_by_the_callers_connection(
    engine: Engine, taken: list[bool]
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(THINGS), [{**ROWS[0], "n": 99_999, "label": "新"}])
        got = fetch_arrow(conn, select(THINGS).where(THINGS.c.n == 99_999), SCHEMA)
        assert got.column("label").to_pylist() == ["新"]  # a second connection would not see it
        conn.rollback()
    assert taken == [False]


def test_a_temporary_table_is_read_by_the_callers_connection(
    engine: Engine, taken: list[bool]
) -> None:
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE scratch (n INTEGER)"))
        conn.execute(text("INSERT INTO scratch VALUES (7)"))
        conn.commit()
        got = fetch_arrow(conn, text("SELECT n FROM scratch"), pa.schema([("n", pa.int64())]))
    assert got.column("n").to_pylist() == [7]
    assert taken == [False]


def test_a_database_in_memory_is_read_through_sqlite3(taken: list[bool]) -> None:
    eng = create_engine("sqlite://")
    META.create_all(eng)
    with eng.begin() as conn:
        conn.execute(insert(THINGS), ROWS[:3])
    with eng.connect() as conn:
        got = fetch_arrow(conn, select(THINGS).order_by(THINGS.c.n), SCHEMA)
    eng.dispose()
    assert got.column("n").to_pylist() == [0, 1, 2]
    assert taken == [False]


def test_the_adbc_connection_cannot_write(engine: Engine) -> None:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    with engine.connect() as conn:
        uri = bulk._sqlite_read_uri(conn)
    assert uri is not None and uri.endswith("?mode=ro")
    with (
        adbc_sqlite.connect(uri, autocommit=True) as db,
        db.cursor() as cursor,
        pytest.raises(adbc_sqlite.Error),
    ):
        cursor.execute("DELETE FROM things")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM things")).scalar_one() == len(ROWS)


def test_a_later_batch_that_does_not_fit_falls_back_to_sqlite3(
    engine: Engine, taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # label is NULL in the first 3000 rows: with batches of 1000 the driver takes it for an
    # integer column, then meets text
    monkeypatch.setattr(bulk, "_ADBC_BATCH_ROWS", 1000)
    query = select(THINGS).order_by(THINGS.c.n)
    with engine.connect() as conn:
        got = fetch_arrow(conn, query, SCHEMA)
    assert taken == [False]
    assert got.equals(_through_sqlite3(monkeypatch, engine, query))
    assert got.column("label").to_pylist()[4999] == "名称4999"
