"""Benchmark: every alert rule and the lifecycle on a city-scale warehouse.

    .venv/bin/python bench/bench_alerts.py [--households 222000] [--postgres URL]

Builds the synthetic county's first night (build_county; ~200k roster households, ~2M rows
across the sixteen datasets) straight into the history tables with warehouse.bulk.load_arrow
(no intake, no diff: every row a current version valid from the first exchange date), then
times, on SQLite (and PostgreSQL when a URL is given):

    evaluate_rules(D)   the rules alone
    raise_alerts(D)     first night: rules + alert_days + alerts (empty state before)
    raise_alerts(D+1)   second night: the alerts table is advanced by one run
    raise_alerts(D)     a re-run of a past date (state derived from alert_days)
    person_profile(D), household_profile(D)   the profiles the night publishes

person_sources (identity: who is seen where) is filled as the merge would, so person_profile
has its ~1M persons. Each figure is wall time, then the process's CPU time: the machine may be
shared, and CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine, create_engine, insert, text

from datashare.synth.county import build_county, dataset_rows
from expectations.contract import load_contracts
from tasks.alerts import evaluate_rules, load_rule_params, raise_alerts
from tasks.profiles import household_profile, person_profile
from warehouse.bulk import load_arrow
from warehouse.db import connect, upgrade
from warehouse.history import history_schema
from warehouse.identity import person_keys
from warehouse.tables import (
    history_merges,
    history_tables,
    id_columns,
    person_key_column,
    person_sources,
)

SECRET = b"bench-secret"


class Clock:
    """Wall and CPU seconds since start (the process's CPU: this thread and DuckDB's)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __str__(self) -> str:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return f"{wall:.1f} s (CPU {cpu:.1f} s)"


def _history_rows(dataset: str, frame: pd.DataFrame, day: date) -> pa.Table:
    contract = load_contracts()[dataset]
    schema = history_schema(contract)
    did = f"{dataset}_{day:%Y%m%d}_bench"
    n = len(frame)
    columns: dict[str, pa.Array] = {}
    for column in contract.columns:
        values = frame[column.name]
        kind = schema.field(column.name).type
        if pa.types.is_date(kind):
            values = pd.to_datetime(values).dt.date
        columns[column.name] = pa.array(
            values.astype(object).where(values.notna(), None).tolist(), kind
        )
    for id_column in id_columns(contract):
        columns[person_key_column(id_column)] = person_keys(columns[id_column], SECRET)
    columns |= {
        "delivery_id": pa.array([did] * n, pa.string()),
        "source_file": pa.array([f"{dataset}_{day:%Y%m%d}.csv"] * n, pa.string()),
        "source_row": pa.array(np.arange(2, n + 2), pa.int64()),
        "row_hash": pa.array(["0" * 32] * n, pa.string()),
        "valid_from": pa.array([day] * n, pa.date32()),
        "valid_to": pa.nulls(n, pa.date32()),
        "is_current": pa.array([True] * n, pa.bool_()),
    }
    if contract.merge_hook == "cancel_reversals":
        kind = frame["settle_kind"].to_numpy()
        reversed_ids = set(frame.loc[kind == "冲销", "settlement_id"])
        cancelled = (kind == "正常") & frame["settlement_id"].isin(reversed_ids).to_numpy()
        columns["cancelled"] = pa.array(cancelled, pa.bool_())
        columns["cancelled_by"] = pa.array(np.where(cancelled, did, None), pa.string())
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def _person_sources(dataset: str, rows: pa.Table, day: date) -> pa.Table:
    """The identity rows a merge records: each (person, id column) of the dataset once."""
    contract = load_contracts()[dataset]
    parts = []
    for id_column in id_columns(contract):
        frame = pd.DataFrame(
            {
                "person_key": rows.column(person_key_column(id_column)).to_pandas(),
                "id_number": rows.column(id_column).to_pandas(),
            }
        )
        frame = frame.dropna().drop_duplicates("person_key")
        parts.append(frame.assign(id_column=id_column))
    frame = pd.concat(parts, ignore_index=True)
    n = len(frame)
    return pa.table(
        {
            "person_key": pa.array(frame["person_key"].tolist(), pa.string()),
            "dataset": pa.array([dataset] * n, pa.string()),
            "id_column": pa.array(frame["id_column"].tolist(), pa.string()),
            "dept": pa.array([contract.dept] * n, pa.string()),
            "id_number": pa.array(frame["id_number"].tolist(), pa.string()),
            "first_seen": pa.array([day] * n, pa.date32()),
        }
    )


def build(engine: Engine, households: int) -> tuple[date, int]:
    county = build_county(11, households)
    day = county.start
    total = 0
    with engine.begin() as conn:
        for dataset in sorted(load_contracts()):
            if dataset == "XC_HECHA":
                continue
            rows = _history_rows(dataset, dataset_rows(county, dataset, day), day)
            total += load_arrow(conn, history_tables[dataset], rows)
            load_arrow(conn, person_sources, _person_sources(dataset, rows, day))
            conn.execute(
                insert(history_merges).values(
                    dataset=dataset,
                    exchange_date=day,
                    delivery_id=f"{dataset}_bench",
                    inserted=rows.num_rows,
                    changed=0,
                    closed=0,
                    unchanged=0,
                    reopened=0,
                    cancelled=0,
                )
            )
    return day, total


def run(url: str, households: int) -> None:
    engine = connect(url)
    upgrade(engine)
    clock = Clock()
    day, total = build(engine, households)
    print(f"[{engine.dialect.name}] loaded {total:,} history rows in {clock}")
    params = load_rule_params("61", day.year)
    with engine.connect() as conn:
        clock = Clock()
        found = evaluate_rules(conn, day, params)
        print(
            f"[{engine.dialect.name}] evaluate_rules: {clock}, "
            f"{len(found):,} findings, by rule "
            f"{found.groupby('rule_id').size().to_dict()}"
        )
    for label, when in (
        ("night 1", day),
        ("night 2", day + timedelta(days=1)),
        ("re-run of night 1", day),
    ):
        with engine.begin() as conn:
            clock = Clock()
            summary = raise_alerts(conn, when)
            print(
                f"[{engine.dialect.name}] raise_alerts {label}: "
                f"{clock} (open {summary.open:,}, new {summary.new:,})"
            )
    with engine.connect() as conn:
        for profile in (person_profile, household_profile):
            clock = Clock()
            rows = profile(conn, day)
            print(f"[{engine.dialect.name}] {profile.__name__}: {clock}, {len(rows):,} rows")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--households",
        type=int,
        default=222_000,
        help="synthetic households (about 90%% are on the roster)",
    )
    parser.add_argument("--postgres", help="a PostgreSQL URL (an empty database or schema)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.households)
    if args.postgres:
        # A throwaway schema: the database may be shared with other work.
        schema = f"bench_alerts_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.postgres else "?"
        try:
            run(f"{args.postgres}{sep}options=-csearch_path%3D{schema}", args.households)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
