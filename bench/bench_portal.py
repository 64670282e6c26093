"""Benchmark: every department page of the portal on a city-scale warehouse.

    .venv/bin/python -m bench.bench_portal [--households 222000] [--nights 14]
        [--postgres postgresql://user@host:5432/db [--no-sqlite]] [--consumers MZ,YB]

With --postgres the same warehouse is built and timed on PostgreSQL too (after SQLite; only
there with --no-sqlite), in a throwaway schema of that database, dropped at the end.

How the warehouse is populated (the real intake of 200k households for a fortnight takes hours on
a shared 2-core machine): the synthetic county's first night goes straight into the history tables
(bench/bench_alerts.build: ~2M rows, every row a current version), alerts are raised by the real
`raise_alerts`, the ledger gets one delivery per dataset per night for `--nights` nights with 1.5%
of each dataset's rows quarantined (real rows: their file row number, a column, a rule, the masked
value), and the real `publish` writes every consumer's files. Then each department page is timed
through the application (Starlette's test client: routing, session, SQL, apply_access, templates)
as a logged-in department user: the median of 5 requests after one warm-up, wall and CPU ms, with
the machine's load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine, create_engine, func, select, text

from bench.bench_alerts import SECRET, Clock, build
from expectations.contract import load_contracts
from portal.app import PortalConfig, create_app
from portal.security import hash_password, new_api_token
from tasks.alerts import raise_alerts
from tasks.mask import mask_series
from tasks.publication import publish
from warehouse import portal_store as store
from warehouse.bulk import load_arrow
from warehouse.db import connect, upgrade
from warehouse.publish import default_access
from warehouse.tables import deliveries, history_tables, rejects
from warehouse.tables_alerts import alerts

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "bench-mima-2025"
TARGET_MS = 300
REJECT_SHARE = 0.015


def _ledger(engine: Engine, first: date, nights: int) -> None:
    """One delivery per dataset per night, each with 1.5% of its rows quarantined."""
    contracts = load_contracts()
    rng = np.random.default_rng(15)
    with engine.begin() as conn:
        for dataset, contract in sorted(contracts.items()):
            table = history_tables[dataset]
            checked = [c for c in contract.columns if c.type in ("id18", "date", "enum")]
            column = (checked or contract.columns)[0]
            values = conn.execute(select(table.c[column.name])).scalars().all()
            n = len(values)
            for i in range(nights):
                day = first - timedelta(days=nights - 1 - i)
                did = f"{dataset}_{day:%Y%m%d}_bench{i:02d}"
                bad: np.ndarray = (
                    rng.choice(n, size=int(n * REJECT_SHARE), replace=False)
                    if n
                    else np.array([], dtype=int)
                )
                conn.execute(
                    deliveries.insert().values(
                        delivery_id=did,
                        dept=contract.dept,
                        dataset=dataset,
                        exchange_date=day,
                        source_file=f"{dataset}_{day:%Y%m%d}.csv",
                        location=f"landing/{contract.dept}/{dataset}_{day:%Y%m%d}.csv",
                        sha256=f"{i:02d}{dataset}".ljust(64, "0")[:64],
                        received_at=datetime.combine(
                            day + timedelta(days=1), datetime.min.time(), UTC
                        ),
                        status="loaded",
                        rows_in=n,
                        rows_loaded=n - len(bad),
                        rows_rejected=len(bad),
                        duplicates=0,
                    )
                )
                if not len(bad):
                    continue
                raw = pd.Series([values[j] for j in bad], dtype="string").fillna("")
                masked = mask_series(raw, column.pii) if column.pii else raw
                m = len(bad)
                load_arrow(
                    conn,
                    rejects,
                    pa.table(
                        {
                            "delivery_id": pa.array([did] * m, pa.string()),
                            "dataset": pa.array([dataset] * m, pa.string()),
                            "exchange_date": pa.array([day] * m, pa.date32()),
                            "source_file": pa.array([f"{dataset}_{day:%Y%m%d}.csv"] * m),
                            "source_row": pa.array((np.asarray(bad) + 2).astype("int32")),
                            "column": pa.array([column.name] * m, pa.string()),
                            "rule": pa.array(["check_digit"] * m, pa.string()),
                            "value_masked": pa.array(masked.astype(object).tolist(), pa.string()),
                            "message": pa.array([f"{column.header}校验不通过"] * m, pa.string()),
                        }
                    ),
                )


def _time(client: TestClient, path: str, repeat: int = 5) -> tuple[float, float, int]:
    r = client.get(path)
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        r = client.get(path)
        walls.append((time.perf_counter() - w) * 1000)
        cpus.append((time.process_time() - c) * 1000)
    return statistics.median(walls), statistics.median(cpus), r.status_code


def _login(app: Any, username: str) -> TestClient:
    client = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client


def run(url: str, households: int, nights: int, publish_dir: Path, consumers: list[str]) -> None:
    engine = connect(url)
    upgrade(engine)
    name = engine.dialect.name
    with engine.connect() as conn:
        built = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if built is not None:  # --keep: a warehouse built by an earlier run, timed again
        print(f"[{name}] reusing the warehouse and publication built earlier")
        _time_pages(engine, publish_dir)
        return
    clock = Clock()
    day, total = build(engine, households)
    print(f"[{name}] loaded {total:,} history rows in {clock}")
    clock = Clock()
    with engine.begin() as conn:
        summary = raise_alerts(conn, day)
    print(f"[{name}] raise_alerts: {clock}, {summary.open:,} open alerts")
    clock = Clock()
    _ledger(engine, day, nights)
    with engine.connect() as conn:
        n_rejects = conn.execute(select(rejects.c.rule).with_only_columns(rejects.c.rule)).all()
    print(f"[{name}] ledger of {nights} nights, {len(n_rejects):,} rejects: {clock}")
    clock = Clock()
    matrix = default_access()
    if consumers:  # the department pages read only their consumers' files: publish those
        matrix = matrix.model_copy(
            update={"consumers": {c: matrix.consumers[c] for c in consumers}}
        )
    pub = publish(engine, publish_dir, as_of=day, secret=SECRET, actor="bench", access=matrix)
    print(f"[{name}] publish: {clock}, {pub.files} files, {pub.rows:,} rows")
    with engine.begin() as conn:
        for username, consumer in (("bench_mz", "MZ"), ("bench_yb", "YB"), ("bench_xc", "XC")):
            store.add_account(
                conn,
                username=username,
                consumer=consumer,
                role="bureau" if consumer == "XC" else "department",
                display_name=username,
                password_hash=hash_password(PASSWORD),
                at=datetime.now(UTC),
            )
    _time_pages(engine, publish_dir)


def _time_pages(engine: Engine, publish_dir: Path) -> None:
    name = engine.dialect.name
    with engine.begin() as conn:
        alert_ids = {
            c: conn.execute(
                select(alerts.c.alert_id).where(alerts.c.pushed_to.contains(c)).limit(1)
            ).scalar()
            for c in ("MZ", "YB")
        }
        towns = conn.execute(select(alerts.c.town).distinct().limit(1)).scalar()
    app = create_app(
        PortalConfig(
            engine=engine,
            publish_dir=publish_dir,
            secret=SECRET,
            session_secret="bench-session-secret-0123456789abcdef",
            cookie_secure=False,
        )
    )
    print(f"[{name}] load average {os.getloadavg()}, target {TARGET_MS} ms per page")
    print(f"{'consumer':8} {'page':58} {'wall ms':>8} {'CPU ms':>8}")
    worst = 0.0
    for username, consumer, own in (
        ("bench_mz", "MZ", "MZ_DIBAO"),
        ("bench_yb", "YB", "YB_JIESUAN"),
    ):
        client = _login(app, username)
        first = client.get("/problems").text
        quality = re.search(r'href="(/quality/[^"#]+)', first)
        pages = [
            "/night",
            "/data",
            f"/data/{own}",
            f"/data/{own}?page=200",
            "/data/person_profile",
            "/problems",
            f"/problems?dataset={own}",
            "/problems?page=50",
            "/problems?rule=check_digit&page=20",
            (quality.group(1).replace("&amp;", "&") if quality else "/problems"),
            "/alerts",
            f"/alerts?town={towns}",
            "/alerts?age=overdue&status=open",
            f"/alerts/{alert_ids[consumer]}",
            "/api/v1/alerts?limit=100",
            "/api/v1/rejects?limit=100",
            f"/api/v1/tables/{own}?offset=1000&limit=100",
        ]
        token_id, token, digest = new_api_token()
        with engine.begin() as conn:
            store.add_token(
                conn,
                token_id=token_id,
                consumer=consumer,
                name="bench",
                secret_sha256=digest,
                created_by="bench",
                at=datetime.now(UTC),
            )
        api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        for path in pages:
            wall, cpu, status = _time(api if path.startswith("/api/") else client, path)
            worst = max(worst, wall)
            print(f"{consumer:8} {path[:58]:58} {wall:8.0f} {cpu:8.0f}  {status}")
    xc = _login(app, "bench_xc")
    for path in ("/bureau", "/alerts", "/night"):
        wall, cpu, status = _time(xc, path, repeat=3)
        print(f"{'XC':8} {path:58} {wall:8.0f} {cpu:8.0f}  {status}  (bureau, not in the target)")
    print(f"[{name}] slowest department page: {worst:.0f} ms (target {TARGET_MS} ms)")
    print(f"[{name}] load average after {os.getloadavg()}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=222_000)
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument(
        "--postgres",
        help="also time PostgreSQL: a URL (postgresql://user@host:5432/db); the bench works in "
        "a schema of its own there, dropped at the end",
    )
    parser.add_argument(
        "--no-sqlite", action="store_true", help="time PostgreSQL only (with --postgres)"
    )
    parser.add_argument("--keep", help="build the SQLite warehouse here and keep it (re-timing)")
    parser.add_argument(
        "--consumers",
        default="",
        help="publish only these consumers (comma-separated; default every one). The XC files "
        "of a city take most of the publication's time and no department page reads them",
    )
    args = parser.parse_args()
    consumers = [c.strip().upper() for c in args.consumers.split(",") if c.strip()]
    if args.no_sqlite and not args.postgres:
        parser.error("--no-sqlite needs --postgres")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as scratch:
            tmp = args.keep or scratch
            Path(tmp).mkdir(parents=True, exist_ok=True)
            run(
                f"sqlite:///{Path(tmp) / 'bench.db'}",
                args.households,
                args.nights,
                Path(tmp) / "published",
                consumers,
            )
    if args.postgres:
        with tempfile.TemporaryDirectory() as tmp, _throwaway_schema(args.postgres) as url:
            run(url, args.households, args.nights, Path(tmp) / "published", consumers)


@contextlib.contextmanager
def _throwaway_schema(url: str) -> Iterator[str]:
    """A schema of the bench's own in the database at `url` (it may be shared with other
    work), as bench_alerts does: the URL with that search_path, the schema dropped after."""
    schema = f"bench_portal_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
