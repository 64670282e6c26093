"""fetch_arrow_all: several reads at once (other connections, reader processes) give what
fetch_arrow gives one after the other, on SQLite and PostgreSQL; the caller's own uncommitted
writes are read by the caller."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from sqlalchemy import BigInteger, Column, Engine, MetaData, Numeric, Table, Text, insert, select

from warehouse.bulk import fetch_arrow, fetch_arrow_all
from warehouse.db import connect

META = MetaData()
ROWS = Table(
    "many_rows",
    META,
    Column("k", BigInteger, primary_key=True),
    Column("t", Text),
    Column("x", Numeric(14, 2)),
)


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = connect(warehouse_url)
    META.create_all(eng)
    with eng.begin() as conn:
        conn.execute(
            insert(ROWS),
            [{"k": k, "t": f"第{k}行" if k % 7 else None, "x": k / 4} for k in range(1, 2001)],
        )
    yield eng
    eng.dispose()


def _reads() -> list[tuple[object, pa.Schema]]:
    r = ROWS.c
    return [
        (
            select(r.k, r.t).where(r.k.between(i * 700 + 1, i * 700 + 700)).order_by(r.k),
            pa.schema([("k", pa.int64()), ("t", pa.string())]),
        )
        for i in range(3)
    ] + [
        (
            select(r.k, r.x).where(r.k > 1990).order_by(r.k),
            pa.schema([("k", pa.int64()), ("x", pa.float64())]),
        ),
        (select(r.k).where(r.k < 0), pa.schema([("k", pa.int64())])),
    ]


def test_reads_at_once_are_the_reads_one_after_the_other(engine: Engine) -> None:
    with engine.connect() as conn:
        one_by_one = [fetch_arrow(conn, s, schema) for s, schema in _reads()]
        at_once = fetch_arrow_all(conn, _reads())  # type: ignore[arg-type]
    assert [t.num_rows for t in at_once] == [700, 700, 600, 10, 0]
    assert at_once == one_by_one


def test_the_callers_own_writes_are_read(engine: Engine) -> None:
    r = ROWS.c
    reads = [
        (select(r.k).where(r.k > 2000).order_by(r.k), pa.schema([("k", pa.int64())])),
        (select(r.t).where(r.k == 2001), pa.schema([("t", pa.string())])),
    ]
    with engine.begin() as conn:
        conn.execute(insert(ROWS), [{"k": 2001, "t": "未提交"}, {"k": 2002, "t": None}])
        got = fetch_arrow_all(conn, reads)  # type: ignore[arg-type]
        conn.rollback()
    assert got[0].column("k").to_pylist() == [2001, 2002]
    assert got[1].column("t").to_pylist() == ["未提交"]
    with engine.connect() as conn:
        assert fetch_arrow_all(conn, reads)[0].num_rows == 0  # type: ignore[arg-type]
