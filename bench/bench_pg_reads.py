"""Benchmark: reading PostgreSQL rows into Arrow, by COPY as CSV on the caller's connection and
by the ADBC driver on a connection of its own (warehouse.pg_reads, issue 13).

    .venv/bin/python -m bench.bench_pg_reads [--rows 3000000] [--postgres URL]

A throwaway schema gets a table of person-like rows (a 32-character key, a name, a dataset and
department code, a date, a number); both ways read it whole, three times each. Prints wall and
CPU seconds of this process per read, with the machine's load and speed beside them.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import pyarrow as pa
from sqlalchemy import column, create_engine, select, table, text

from bench.bench_night import machine_speed
from warehouse import bulk, pg_reads
from warehouse.db import normalise_url

SCHEMA = pa.schema(
    [
        ("person_key", pa.string()),
        ("name", pa.string()),
        ("dataset", pa.string()),
        ("dept", pa.string()),
        ("d", pa.date32()),
        ("n", pa.int64()),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--postgres", default=os.environ.get("DATASHARE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("--postgres or DATASHARE_TEST_POSTGRES_URL is needed")
    name = f"bench_pg_reads_{uuid.uuid4().hex[:8]}"
    engine = create_engine(normalise_url(args.postgres))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
        conn.execute(
            text(
                f'CREATE TABLE "{name}".t AS SELECT md5(i::text) AS person_key, '
                "'姓名' || i AS name, 'XC_REN' AS dataset, 'XC' AS dept, "
                "date '2025-01-01' + i % 300 AS d, i::bigint AS n "
                "FROM generate_series(1, :n) i"
            ),
            {"n": args.rows},
        )
    rows = table("t", *[column(c) for c in SCHEMA.names], schema=name)
    try:
        print(
            f"{args.rows:,} rows; machine {machine_speed():.2f} s for 10^7 Python additions; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        with engine.connect() as conn:
            sql = bulk._literal_sql(conn, select(rows))
            uri = pg_reads.uri_of(conn)
            for way, read in (
                ("COPY as CSV", lambda: bulk._copy_read(conn, sql, SCHEMA)),
                ("ADBC driver", lambda: pg_reads.read(uri, sql, SCHEMA)),
            ):
                for _ in range(3):
                    cpu, wall = time.process_time(), time.perf_counter()
                    got = read()
                    assert got is not None and got.num_rows == args.rows
                    print(
                        f"{way:12} wall {time.perf_counter() - wall:5.2f} s  "
                        f"cpu {time.process_time() - cpu:5.2f} s  load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
