"""fetch_arrow on SQLite against the driver's own rows, by both of its ways: the ADBC driver in a
reader process (warehouse.sqlite_reads) and JSON lines built by SQLite and parsed by Arrow in the
caller's connection. Every value the warehouse can hold comes back the same, in the statement's
order, over pages; the caller's own uncommitted writes and temporary tables are read by the
caller; readers beside writers leave the database whole."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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

from warehouse import bulk, sqlite_reads
from warehouse.bulk import _literal_sql, fetch_arrow
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
        expected = _driver_rows(engine, statement)
        with engine.connect() as conn:
            by_reader = sqlite_reads.read(conn, _literal_sql(conn, statement), SCHEMA)
            in_process = bulk._sqlite_arrow(conn, statement, SCHEMA)
            got = fetch_arrow(conn, statement, SCHEMA)
        assert by_reader is not None  # committed rows of a file: the reader process reads them
        for table in (by_reader, in_process, got):
            assert table.schema == SCHEMA
            assert table.to_pylist() == expected


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
    statement = select(ROWS.c.x).order_by(ROWS.c.k)
    schema = pa.schema([("x", pa.float64())])
    with engine.connect() as conn:
        both = [
            sqlite_reads.read(conn, _literal_sql(conn, statement), schema),
            bulk._sqlite_arrow(conn, statement, schema),
        ]
    for got in both:
        assert got is not None
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
        # a reader process would not see them: the caller reads its own writes
        assert sqlite_reads.read(conn, _literal_sql(conn, statement), schema) is None
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
            got = bulk._sqlite_arrow(conn, statement, SCHEMA)  # the in-process way
            with pytest.raises(sqlite3.DataError):  # one row alone over the limit still fails
                driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)  # type: ignore[union-attr]
                bulk._sqlite_arrow(conn, statement, SCHEMA)
        finally:
            driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before)  # type: ignore[union-attr]
    assert got.to_pylist() == _driver_rows(engine, statement)


def test_a_temporary_table_or_a_database_in_memory_is_read_by_the_caller(engine: Engine) -> None:
    _put(engine, [{"k": 1, "t": "甲", "n": 1, "x": 1.5, "d": None, "b": False}])
    schema = pa.schema([("k", pa.int64()), ("t", pa.string())])
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE only_here AS SELECT k, t FROM rows")
        only_here = Table("only_here", MetaData(), Column("k", BigInteger), Column("t", Text))
        statement = select(only_here)
        assert sqlite_reads.read(conn, _literal_sql(conn, statement), schema) is None
        assert fetch_arrow(conn, statement, schema).to_pylist() == [{"k": 1, "t": "甲"}]
        conn.exec_driver_sql("DROP TABLE only_here")
    memory = connect("sqlite://")
    META.create_all(memory)
    with memory.begin() as conn:
        conn.execute(insert(ROWS), [{"k": 5, "t": "乙"}])
    with memory.connect() as conn:
        statement = select(ROWS.c.k, ROWS.c.t)
        assert sqlite_reads.read(conn, _literal_sql(conn, statement), schema) is None
        assert fetch_arrow(conn, statement, schema).to_pylist() == [{"k": 5, "t": "乙"}]


def test_reader_processes_beside_writers_leave_the_database_whole(tmp_path: Path) -> None:
    # ADBC's driver links its own copy of SQLite; inside the night's process it dropped the
    # POSIX locks of the intake's connections (SIGBUS on the city's first load). In reader
    # processes it is one more client of the file: writers and readers together, then SQLite's
    # own integrity check and every committed row.
    eng = connect(f"sqlite:///{tmp_path / 'w.db'}")
    META.create_all(eng)
    _put(eng, [{"k": i, "t": "初", "n": i, "x": None, "d": None, "b": None} for i in range(2000)])
    statement = select(ROWS.c.k, ROWS.c.t)
    schema = pa.schema([("k", pa.int64()), ("t", pa.string())])
    failures: list[BaseException] = []
    counts: list[int] = []

    def write(worker: int) -> None:
        try:
            for i in range(60):
                with eng.begin() as conn:
                    conn.execute(insert(ROWS), [{"k": 10_000 + worker * 1_000 + i, "t": "写"}])
        except BaseException as exc:  # reported below
            failures.append(exc)

    def read() -> None:
        try:
            for _ in range(15):
                with eng.connect() as conn:
                    got = sqlite_reads.read(conn, _literal_sql(conn, statement), schema)
                assert got is not None
                counts.append(got.num_rows)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(counts) == 30 and min(counts) >= 2000 and max(counts) <= 2180
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("SELECT count(*) FROM rows").scalar() == 2180
    eng.dispose()


def test_the_alerts_digest_is_of_values_whichever_way_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What lies under a null in an Arrow column is undefined: the reader process's dates of
    # rows without one differed from read to read, so a digest of Arrow's buffers told the
    # same alerts apart, and a re-run published the profiles again (test_publish_incremental
    # failed one run in three). The digest is of the values, equal both ways, every time.
    from warehouse.db import upgrade
    from warehouse.publish.incremental import _alerts_digest
    from warehouse.tables_alerts import alert_runs, alerts

    eng = connect(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade(eng)
    day = date(2025, 3, 11)
    with eng.begin() as conn:
        conn.execute(
            insert(alert_runs),
            [
                {
                    "exchange_date": day,
                    "province": "52",
                    "income_threshold": 7000,
                    "medical_burden_household_12m": 10000,
                    **dict.fromkeys(("findings", "open", "new", "reopened", "resolved"), 0),
                    "closed": 0,
                }
            ],
        )
        conn.execute(
            insert(alerts),
            [
                {
                    "alert_id": f"YB01-{i:010d}",
                    "rule_id": "YB-01",
                    "risk_type": "因病",
                    "subject_type": "household",
                    "subject": f"H{i}",
                    "household_id": f"H{i}",
                    "name": None if i % 3 else "",  # NULL and the empty text apart
                    "severity": "high",
                    "status": "resolved" if i % 2 else "open",
                    "first_raised": date(2025, 3, 1),
                    "last_seen": day,
                    "resolved_on": day if i % 2 else None,
                    "evidence": "证据",
                    "pushed_to": "YB,XC",
                    "feedback_date": None if i % 5 else day,
                    "as_of": day,
                    "opened_on": date(2025, 3, 1),
                }
                for i in range(300)
            ],
        )
    with eng.connect() as conn:
        by_reader = {_alerts_digest(conn, day) for _ in range(8)}
    with monkeypatch.context() as patch, eng.connect() as conn:
        patch.setattr(sqlite_reads, "read", lambda *_: None)  # the in-process way
        in_process = {_alerts_digest(conn, day) for _ in range(3)}
        # one value changed (NULL for the empty text): another digest
        conn.execute(
            alerts.update().where(alerts.c.alert_id == "YB01-0000000003").values(name=None)
        )
        changed = _alerts_digest(conn, day)
        conn.rollback()
    eng.dispose()
    assert len(by_reader) == 1 and by_reader == in_process
    assert changed not in by_reader


def test_a_reader_process_that_died_is_replaced_and_its_read_done_in_process(
    engine: Engine,
) -> None:
    rows = [
        {"k": i, "t": f"行{i}", "n": i, "x": i / 8, "d": None, "b": i % 2 == 0} for i in range(50)
    ]
    _put(engine, rows)
    statement = select(ROWS).order_by(ROWS.c.k)
    expected = _driver_rows(engine, statement)
    with engine.connect() as conn:
        assert sqlite_reads.read(conn, _literal_sql(conn, statement), SCHEMA) is not None
    pool = sqlite_reads._pool
    assert isinstance(pool, ProcessPoolExecutor)
    for process in list(pool._processes.values()):  # as the kernel's OOM killer would
        process.kill()
        process.join()
    with engine.connect() as conn:
        assert fetch_arrow(conn, statement, SCHEMA).to_pylist() == expected
        again = sqlite_reads.read(conn, _literal_sql(conn, statement), SCHEMA)
    assert sqlite_reads._pool is not pool  # a new pool of readers
    assert again is not None and again.to_pylist() == expected


def test_the_rows_travel_beside_the_database_and_leave_nothing_there(tmp_path: Path) -> None:
    # The rows file holds personal data: it lies beside the warehouse, not in the system's
    # temporary folder, and is gone after the read; one a killed run left is removed.
    folder = tmp_path / "w"
    folder.mkdir()
    eng = connect(f"sqlite:///{folder / 'w.db'}")
    META.create_all(eng)
    _put(eng, [{"k": 1, "t": "甲", "n": 1, "x": 0.5, "d": date(2025, 3, 1), "b": True}])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = folder / f"datashare-read-{dead.pid}-x.arrow"  # its process is gone
    live = folder / f"datashare-read-{os.getppid()}-y.arrow"  # another process still reading
    left.write_bytes(b"rows")
    live.write_bytes(b"rows")
    seen: list[set[str]] = []
    statement = select(ROWS)
    real_submit = ProcessPoolExecutor.submit

    def watching(pool: ProcessPoolExecutor, fn: Any, *args: Any) -> Any:
        seen.append({p.name for p in folder.iterdir()})
        return real_submit(pool, fn, *args)

    with pytest.MonkeyPatch.context() as patch, eng.connect() as conn:
        patch.setattr(ProcessPoolExecutor, "submit", watching)
        got = sqlite_reads.read(conn, _literal_sql(conn, statement), SCHEMA)
    eng.dispose()
    assert got is not None and got.num_rows == 1
    during = seen[0] - {"w.db", "w.db-wal", "w.db-shm", live.name}
    assert len(during) == 1 and next(iter(during)).startswith(f"datashare-read-{os.getpid()}-")
    assert not left.exists() and live.exists()
    assert {p.name for p in folder.iterdir()} <= {"w.db", "w.db-wal", "w.db-shm", live.name}


def test_a_warehouse_folder_the_process_cannot_write_is_read_in_process(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(engine, [{"k": 9, "t": "丙", "n": 9, "x": 2.25, "d": None, "b": None}])
    statement = select(ROWS)

    def refused(*_: Any, **__: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sqlite_reads.tempfile, "mkstemp", refused)
    with engine.connect() as conn:
        assert sqlite_reads.read(conn, _literal_sql(conn, statement), SCHEMA) is None
        assert fetch_arrow(conn, statement, SCHEMA).to_pylist() == _driver_rows(engine, statement)
