"""Benchmark: merge a 1,000,000-row snapshot onto a 1,000,000-row current table.

    night 1  1M MZ_DIBAO rows into an empty history          (the initial load)
    night 2  the same keys with 5% changed, 1% gone, 1% new  (the nightly merge; target < 10 s)
             on PostgreSQL after VACUUM ANALYZE, as autovacuum leaves it (--no-vacuum: without)
    COPY     1M history rows into an unindexed PostgreSQL table (target >= 150,000 rows/s)

Runs on SQLite (a file under a temporary folder) and, when a URL is given, on PostgreSQL (a
throwaway schema, dropped afterwards). Usage:

    .venv/bin/python bench/bench_merge.py [--rows 1000000] [--postgres postgresql://...]

--postgres defaults to $DATASHARE_TEST_POSTGRES_URL; without either, PostgreSQL is skipped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine, create_engine, text

from expectations.contract import get_contract
from tasks.checks import id18_check_char
from warehouse.bulk import load_arrow
from warehouse.db import connect, upgrade
from warehouse.history import MergeStats, accepted_schema, history_rows, merge_delivery
from warehouse.tables import history_tables

DATASET = "MZ_DIBAO"
NIGHT1, NIGHT2 = date(2025, 3, 11), date(2025, 3, 12)
SECRET = b"bench-secret"


def _ids(first: int, count: int) -> np.ndarray:
    """`count` distinct, checksum-valid id numbers (synthetic: 610327 + birth date + serial)."""
    n = np.arange(first, first + count)
    born = pd.Timestamp("1940-01-01") + pd.to_timedelta(n // 900, unit="D")
    prefix = pd.Series(born.strftime("610327%Y%m%d")) + pd.Series(n % 900 + 100).astype(str)
    return (prefix + id18_check_char(prefix)).to_numpy(dtype=str)


def snapshot(rows: int, seed: int, first_id: int = 0) -> dict[str, np.ndarray]:
    """Columns of a synthetic MZ_DIBAO snapshot, households of three."""
    rng = np.random.default_rng(seed)
    ids = _ids(first_id, rows)
    surnames = np.array(list("王李张刘陈杨赵黄周吴"))
    given = np.array(["华", "明", "芳", "强", "丽", "军", "䶮", "堃", "静", "伟"])
    names = np.char.add(
        np.char.add(surnames[rng.integers(0, 10, rows)], given[rng.integers(0, 10, rows)]),
        given[rng.integers(0, 10, rows)],
    )
    head = np.arange(rows) - np.arange(rows) % 3
    return {
        "village_code": np.char.add("6103271002", (np.arange(rows) % 90 + 10).astype(str)),
        "head_name": names[head],
        "head_id_number": ids[head],
        "name": names,
        "id_number": ids,
        "assistance_type": np.full(rows, "农村低保"),
        "support_mode": np.where(rng.random(rows) < 0.7, "按户", "按人"),
        "monthly_amount": np.round(rng.uniform(100, 900, rows), 2),
        "start_date": (
            np.datetime64("2015-01-01") + rng.integers(0, 3650, rows).astype("timedelta64[D]")
        ),
        "status": np.full(rows, "在保"),
        "bank_account": np.char.add("622202", rng.integers(10**12, 10**13, rows).astype(str)),
    }


def to_arrow(columns: dict[str, np.ndarray], delivery_id: str) -> pa.Table:
    """Accepted rows as intake writes them (canonical columns plus lineage)."""
    schema = accepted_schema(get_contract(DATASET))
    rows = len(columns["id_number"])
    data = {
        **columns,
        "end_date": pa.nulls(rows, pa.date32()),
        "delivery_id": np.full(rows, delivery_id),
        "source_file": np.full(rows, "MZ_DIBAO.csv"),
        "source_row": np.arange(2, rows + 2),
    }
    return pa.Table.from_arrays(
        [
            pa.array(data[f.name]).cast(f.type)
            if not isinstance(data[f.name], pa.Array)
            else data[f.name]
            for f in schema
        ],
        schema=schema,
    )


def nights(rows: int) -> tuple[pa.Table, pa.Table]:
    """Night 1, and night 2 = 5% changed, 1% gone, 1% new keys (still `rows` rows)."""
    first = snapshot(rows, seed=1)
    rng = np.random.default_rng(2)
    order = rng.permutation(rows)
    gone, changed = order[: rows // 100], order[rows // 100 : rows // 100 + rows // 20]
    keep = np.ones(rows, dtype=bool)
    keep[gone] = False
    second = {k: v.copy() for k, v in first.items()}
    second["monthly_amount"][changed] += 50
    second["status"][changed[: len(changed) // 5]] = "暂停"
    fresh = snapshot(rows // 100, seed=3, first_id=rows * 2)
    second = {k: np.concatenate([v[keep], fresh[k]]) for k, v in second.items()}
    return to_arrow(first, "MZ_DIBAO_20250311_bench"), to_arrow(second, "MZ_DIBAO_20250312_bench")


def timed_merge(engine: Engine, table: pa.Table, day: date) -> tuple[MergeStats, float]:
    started = time.perf_counter()
    with engine.begin() as conn:
        stats = merge_delivery(
            conn,
            get_contract(DATASET),
            table,
            delivery_id=str(table["delivery_id"][0]),
            exchange_date=day,
            secret=SECRET,
        )
    return stats, time.perf_counter() - started


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A throwaway schema on the server; yields a URL whose search_path points at it."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(name: str, url: str, night1: pa.Table, night2: pa.Table, vacuum: bool) -> None:
    engine = connect(url)
    upgrade(engine)
    stats1, load_s = timed_merge(engine, night1, NIGHT1)
    print(
        f"{name:10s} night 1 (initial load) {load_s:6.2f} s  "
        f"{night1.num_rows / load_s:9,.0f} rows/s  inserted={stats1.inserted:,}"
    )
    if vacuum and engine.dialect.name == "postgresql":
        # What autovacuum does between two nights after a bulk load: hint bits, visibility map
        # and statistics. Without it the first scan of the fresh table rewrites every page.
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(
            f"{name:10s} VACUUM ANALYZE between the nights {time.perf_counter() - started:.2f} s"
            " (not counted)"
        )
    stats2, merge_s = timed_merge(engine, night2, NIGHT2)
    print(
        f"{name:10s} night 2 (merge)        {merge_s:6.2f} s  inserted={stats2.inserted:,} "
        f"changed={stats2.changed:,} closed={stats2.closed:,} "
        f"unchanged={stats2.unchanged:,}"
    )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            rows = history_rows(conn, DATASET)
            h = history_tables[DATASET]
            conn.execute(
                text(f"CREATE TEMPORARY TABLE copy_target (LIKE {h.name} INCLUDING DEFAULTS)")
            )
            started = time.perf_counter()
            load_arrow(conn, "copy_target", rows.slice(0, night1.num_rows))
            copy_s = time.perf_counter() - started
        print(
            f"{name:10s} COPY {min(rows.num_rows, night1.num_rows):,} history rows "
            f"(unindexed table) {copy_s:6.2f} s  "
            f"{min(rows.num_rows, night1.num_rows) / copy_s:9,.0f} rows/s"
        )
    engine.dispose()


def main() -> None:
    """Time the nightly snapshot merge on SQLite and PostgreSQL; print seconds and rows/s."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("DATASHARE_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="merge night 2 straight after the bulk load (worst case)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    night1, night2 = nights(args.rows)
    print(
        f"generated {night1.num_rows:,} + {night2.num_rows:,} rows "
        f"in {time.perf_counter() - started:.1f} s ({os.cpu_count()} cores)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", f"sqlite:///{Path(tmp) / 'warehouse.db'}", night1, night2, False)
    if args.postgres:
        with postgres_schema(args.postgres) as url:
            run("postgresql", url, night1, night2, not args.no_vacuum)
    else:
        print("postgresql skipped: no --postgres URL and no DATASHARE_TEST_POSTGRES_URL")


if __name__ == "__main__":
    main()
