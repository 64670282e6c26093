"""fetch_arrow on SQLite (JSON lines built by SQLite, parsed by Arrow) against the driver's own
rows: every value the warehouse can hold comes back the same, in the statement's order, over
pages, in the caller's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
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
    Engine,
    MetaData,
    Numeric,
    Table,
    Text,
    insert,
    select,
    text,
)

from warehouse import bulk
from warehouse.bulk import fetch_arrow
from warehouse.db import connect

META = MetaData()
ROWS = Table(
    "rows",
    META,
    Column("k", BigInteger, primary_key=True),
    Column("t", Text),
    Column("n", BigInteger),
    Column("x", Numeric(14, 2)),
    Column("d", Date),
    Column("b", Boolean),
)
SCHEMA = pa.schema(
    [
        ("k", pa.int64()),
        ("t", pa.string()),
        ("n", pa.int64()),
        ("x", pa.float64()),
        ("d", pa.date32()),
        ("b", pa.bool_()),
    ]
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("bulk") / "w.db"
    eng = connect(f"sqlite:///{path}")
    META.create_all(eng)
    yield eng
    eng.dispose()


def _driver_rows(engine: Engine, statement: Any) -> list[dict[str, Any]]:
    """The oracle: the driver's rows, typed by hand (ISO text dates, 0/1 flags)."""
    with engine.connect() as conn:
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        rows = conn.exec_driver_sql(sql).all()
    out = []
    for row in rows:
        k, t, n, x, d, b = row
        out.append(
            {
                "k": k,
                "t": t,
                "n": n,
                "x": None if x is None else float(x),
                "d": None if d is None else date.fromisoformat(d),
                "b": None if b is None else bool(b),
            }
        )
    return out


def _put(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(ROWS.delete())
        if rows:
            # the driver's own binding: SQLAlchemy's Numeric would round the floats
            conn.exec_driver_sql(
                "INSERT INTO rows (k, t, n, x, d, b) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        r["k"],
                        r["t"],
                        r["n"],
                        r["x"],
                        None if r["d"] is None else r["d"].isoformat(),
                        None if r["b"] is None else int(r["b"]),
                    )
                    for r in rows
                ],
            )


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
amounts = st.one_of(
    st.integers(-(10**12), 10**12).map(lambda cents: round(cents / 100, 2)),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "t": st.none() | texts,
            "n": st.none() | st.integers(-(2**63), 2**63 - 1),
            "x": st.none() | amounts,
            "d": st.none() | st.dates(date(1900, 1, 1), date(2099, 12, 31)),
            "b": st.none() | st.booleans(),
        }
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, page=st.integers(1, 7))
def test_every_value_comes_back_as_the_driver_reads_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]], page: int
) -> None:
    keyed = [{"k": i * 7 % 101, **r} for i, r in enumerate(rows)]  # keys not in insert order
    _put(engine, keyed)
    monkeypatch.setattr(bulk, "_SQLITE_PAGE_ROWS", page)
    for statement in (
        select(ROWS).order_by(ROWS.c.k.desc()),
        select(ROWS).where(ROWS.c.n.is_not(None)).order_by(ROWS.c.t, ROWS.c.k),
    ):
        with engine.connect() as conn:
            got = fetch_arrow(conn, statement, SCHEMA)
        assert got.schema == SCHEMA
        assert got.to_pylist() == _driver_rows(engine, statement)


def test_amounts_come_back_to_the_bit(engine: Engine) -> None:
    # SQLite's JSON writes 15 significant digits; the reader asks for 17.
    values = [87.07000000000001, 0.1 + 0.2, -23342.92, 5e-324, 1e99, -0.0, 2.0**53 + 2]
    _put(
        engine,
        [
            {"k": i, "t": None, "n": None, "x": v, "d": None, "b": None}
            for i, v in enumerate(values)
        ],
    )
    with engine.connect() as conn:
        got = fetch_arrow(
            conn, select(ROWS.c.x).order_by(ROWS.c.k), pa.schema([("x", pa.float64())])
        )
    assert [repr(v) for v in got["x"].to_pylist()] == [
        repr(abs(v) if v == 0 else v) for v in values
    ]


def test_it_reads_the_callers_transaction_and_duplicate_names(engine: Engine) -> None:
    _put(engine, [])
    other = ROWS.alias("other")
    statement = (
        select(ROWS.c.k, other.c.k, ROWS.c.t)
        .join_from(ROWS, other, other.c.k == ROWS.c.n)
        .order_by(ROWS.c.k)
    )
    schema = pa.schema([("k", pa.int64()), ("k2", pa.int64()), ("t", pa.string())])
    with engine.begin() as conn:
        conn.execute(
            insert(ROWS),
            [{"k": 1, "n": 2, "t": "一"}, {"k": 2, "n": 1, "t": "二"}, {"k": 3, "n": 9, "t": "三"}],
        )
        got = fetch_arrow(conn, statement, schema)  # not yet committed
        assert (
            fetch_arrow(
                conn, select(ROWS.c.k).where(text("0")), pa.schema([("k", pa.int64())])
            ).num_rows
            == 0
        )
        conn.rollback()
    assert got.to_pylist() == [{"k": 1, "k2": 2, "t": "一"}, {"k": 2, "k2": 1, "t": "二"}]


def test_it_reads_only_selects(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(TypeError):
        fetch_arrow(conn, text("SELECT 1"), pa.schema([("a", pa.int64())]))


def test_a_page_over_sqlites_limit_on_one_value_is_read_in_halves(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite refuses a value over its length limit (1e9 bytes by default); rows wider than
    # 2 kB would pass it at 500k rows a page. Here the limit is lowered to 3,000 bytes.
    rows = [{"k": i, "t": "字" * 40, "n": i, "x": i / 4, "d": None, "b": True} for i in range(90)]
    _put(engine, rows)
    monkeypatch.setattr(bulk, "_SQLITE_PAGE_ROWS", 64)
    statement = select(ROWS).order_by(ROWS.c.k)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        before = driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3_000)  # type: ignore[union-attr]
        try:
            got = fetch_arrow(conn, statement, SCHEMA)
            with pytest.raises(sqlite3.DataError):  # one row alone over the limit still fails
                driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)  # type: ignore[union-attr]
                fetch_arrow(conn, statement, SCHEMA)
        finally:
            driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before)  # type: ignore[union-attr]
    assert got.to_pylist() == _driver_rows(engine, statement)
