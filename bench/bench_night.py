"""Benchmark: whole nights of a synthetic city through the real CLI (issue 13).

    generate   the project's own synthetic county at city scale (build_county + write_night)
    nights     `datashare run --date D` in a subprocess, night after night: night 1 is the first
               load, the next ones ordinary nights (and the weekly enrolment day where the
               generator's schedule puts one); then the last night again, unchanged
    backfill   optionally, N more nights written and run as one `datashare backfill`

Per night it prints wall time, the CPU time and peak RSS of the CLI process (os.wait4), the
CPU of every process on the machine meanwhile (Linux; with the fork server's readers and
workbook writers, which wait4 leaves out), the machine's load average, rows delivered, the
per-stage wall times Prefect recorded for the run's task runs (intake = every take_in task,
alerts, mirror, publish), the publication's tables written and linked, and the bytes
written: the publish folder's growth (hard-linked files counted once), the lake's and the
warehouse's. Usage:

    .venv/bin/python bench/bench_night.py [--households 200000] [--nights 3] \\
        [--backends sqlite,postgresql] [--postgres postgresql://…] [--backfill 30] [--docs]

--postgres defaults to $DATASHARE_TEST_POSTGRES_URL; PostgreSQL runs in a throwaway schema
(dropped afterwards). Everything else lives in a temporary folder (or --home, kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from datashare.synth import build_county, write_night

START = date(2025, 3, 10)  # a Monday
SECRET = "bench-secret-" + "x" * 32
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Night:
    """What one CLI run cost."""

    label: str
    wall: float
    cpu: float
    peak_rss_mb: float
    load: tuple[float, float, float]
    rows_in: int
    stages: dict[str, float] = field(default_factory=dict)
    publish_bytes: int = 0
    lake_bytes: int = 0
    warehouse_bytes: int = 0
    exit_code: int = 0
    machine_cpu: float | None = None  # every process's CPU on the machine (Linux), see below


def machine_cpu_seconds() -> float | None:
    """User + system CPU seconds of every process on the machine so far (/proc/stat), or None
    off Linux. The CLI's own figure (os.wait4) leaves out the fork server's children (the
    SQLite readers, the workbook writers) and Prefect's API process; on a quiet machine the
    difference over a night is theirs."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
        return (int(fields[0]) + int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def disk_bytes(root: Path) -> int:
    """Bytes of the files under a folder, each hard-linked file once, symlinks not followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    if not root.exists():
        return 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            st = path.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def machine_speed() -> float:
    """Seconds for 10^7 Python additions: how fast this machine's cores are today (figures
    from different machines compare only with this beside them)."""
    started = time.process_time()
    total = 0
    for i in range(10**7):
        total += i
    return time.process_time() - started


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("datashare")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, float, float, float]:
    """(exit code, wall s, CPU s, peak RSS MB) of one CLI process and its children.

    Its stderr goes to a file, not a pipe: a pipe is read only after the process ends, and a
    long traceback filled it and held a failed backfill for minutes before it could exit."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*_cli(), *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code != 0:
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace")[-4000:])
    return code, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def stage_times(prefect_db: Path) -> dict[str, float]:
    """Wall time per stage of the latest flow run, from Prefect's own task runs."""
    if not prefect_db.exists():
        return {}
    with sqlite3.connect(prefect_db) as db:
        row = db.execute(
            "SELECT id FROM flow_run WHERE parent_task_run_id IS NULL ORDER BY created DESC"
        ).fetchone()
        if row is None:
            return {}
        runs = db.execute(
            "SELECT name, start_time, end_time FROM task_run WHERE flow_run_id = ?", (row[0],)
        ).fetchall()
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for name, start, end in runs:
        if start is None or end is None:
            continue
        stage = "intake" if name.startswith("take_in") else name.rsplit("-", 1)[0]
        spans.setdefault(stage, []).append(
            (datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end)))
        )
    # A stage of concurrent tasks (the intake) counts from its first start to its last end.
    return {
        stage: (max(e for _, e in s) - min(b for b, _ in s)).total_seconds()
        for stage, s in spans.items()
    }


def rows_delivered(landing: Path, day: date) -> int:
    """Data lines in tonight's delivered files (CSV and JSON lines; XLSX counted as 0)."""
    total = 0
    for path in landing.glob(f"*/*_{day:%Y%m%d}.*"):
        if path.suffix == ".csv":
            with path.open("rb") as f:
                total += max(sum(1 for _ in f) - 1, 0)
    return total


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    schema = f"bench_night_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            for name in conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                {"p": f"pub_{schema[-8:]}_%"},
            ).scalars():
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            for role in conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"),
                {"p": f"ds_{schema[-8:]}_%"},
            ).scalars():
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        engine.dispose()


def warehouse_bytes(url: str, home: Path) -> int:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in home.glob("warehouse.db*"))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def measure(label: str, args: list[str], env: dict[str, str], home: Path, rows: int) -> Night:
    before = (
        disk_bytes(home / "published"),
        disk_bytes(home / "lake"),
        warehouse_bytes(env["DATASHARE_WAREHOUSE_URL"], home),
    )
    load_before = os.getloadavg()
    machine_before = machine_cpu_seconds()
    code, wall, cpu, rss = run_cli(args, env)
    machine_after = machine_cpu_seconds()
    load_after = os.getloadavg()
    night = Night(
        label,
        wall,
        cpu,
        rss,
        tuple(max(a, b) for a, b in zip(load_before, load_after, strict=True)),  # type: ignore[arg-type]
        rows,
        stages=stage_times(Path(env["PREFECT_HOME"]) / "prefect.db"),
        exit_code=code,
        machine_cpu=(
            None
            if machine_before is None or machine_after is None
            else machine_after - machine_before
        ),
    )
    night.publish_bytes = disk_bytes(home / "published") - before[0]
    night.lake_bytes = disk_bytes(home / "lake") - before[1]
    night.warehouse_bytes = warehouse_bytes(env["DATASHARE_WAREHOUSE_URL"], home) - before[2]
    return night


def print_night(backend: str, n: Night) -> None:
    stages = "  ".join(
        f"{k} {v:.1f}s"
        for k, v in sorted(n.stages.items(), key=lambda kv: -kv[1])
        if k in ("intake", "raise_alerts", "mirror_history", "mirror_to_lake", "publish") or v >= 1
    )
    print(
        f"{backend:10} {n.label:22} exit {n.exit_code}  rows in {n.rows_in:>9,}  "
        f"wall {n.wall:7.1f}s  cpu {n.cpu:7.1f}s  peak {n.peak_rss_mb:7.0f} MB  "
        f"load {n.load[0]:.1f}"
        + ("" if n.machine_cpu is None else f"  machine cpu {n.machine_cpu:.1f}s")
        + f"\n{'':10} stages: {stages}\n{'':10} bytes written: publish "
        f"{n.publish_bytes / 1e6:+.1f} MB, lake {n.lake_bytes / 1e6:+.1f} MB, warehouse "
        f"{n.warehouse_bytes / 1e6:+.1f} MB",
        flush=True,
    )


def run_backend(
    backend: str, url: str, home: Path, landing: Path, days: list[date], args: argparse.Namespace
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8] if backend == "sqlite" else url.rsplit("bench_night_", 1)[-1]
    env = {
        **os.environ,
        "DATASHARE_HOME": str(home),
        "DATASHARE_WAREHOUSE_URL": url,
        "DATASHARE_LANDING": str(landing),
        "DATASHARE_ENVIRONMENT": "demo",
        "DATASHARE_SECRET": SECRET,
        "DATASHARE_BUILD_DOCS": "true" if args.docs else "false",
        "DATASHARE_TODAY": (days[-1] + timedelta(days=args.backfill + 1)).isoformat(),
        "DATASHARE_PG_SCHEMA_PREFIX": f"pub_{tag[-8:]}_",
        "DATASHARE_PG_ROLE_PREFIX": f"ds_{tag[-8:]}_",
        "DATASHARE_PUBLISH_KEEP_DAYS": str(args.keep_nights),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    for i, day in enumerate(days):
        label = f"night {i + 1} {day}" + (" (first load)" if i == 0 else "")
        night = measure(
            label, ["run", "--date", day.isoformat()], env, home, rows_delivered(landing, day)
        )
        print_night(backend, night)
    again = measure(
        f"night {len(days)} unchanged", ["run", "--date", days[-1].isoformat()], env, home, 0
    )
    print_night(backend, again)
    if args.backfill:
        county_days = [days[-1] + timedelta(days=n + 1) for n in range(args.backfill)]
        rows = sum(rows_delivered(landing, d) for d in county_days)
        night = measure(
            f"backfill {args.backfill} nights",
            ["backfill", "--from", county_days[0].isoformat(), "--to", county_days[-1].isoformat()],
            env,
            home,
            rows,
        )
        print_night(backend, night)
        versions = len(list((home / "published" / ".versions").iterdir()))
        print(
            f"{'':10} publish folder after the backfill: "
            f"{disk_bytes(home / 'published') / 1e6:.1f} MB in {versions} versions kept",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=200_000)
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--backfill", type=int, default=0, help="then N nights as one backfill")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("DATASHARE_TEST_POSTGRES_URL"))
    parser.add_argument("--home", type=Path, default=None, help="keep everything here")
    parser.add_argument("--keep-nights", type=int, default=7, help="publish retention")
    parser.add_argument("--docs", action="store_true", help="build GX Data Docs (off: faster)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--reuse-landing",
        action="store_true",
        help="with --home: keep the landing files an earlier run of the same city wrote",
    )
    args = parser.parse_args()

    base = args.home or Path(tempfile.mkdtemp(prefix="bench_night_"))
    landing = base / "landing"
    t0 = time.perf_counter()
    days = [START + timedelta(days=n) for n in range(args.nights)]
    every = [*days, *(days[-1] + timedelta(days=n + 1) for n in range(args.backfill))]
    if args.reuse_landing and all(any(landing.glob(f"*/*_{d:%Y%m%d}.*")) for d in every):
        made = "reused"  # the same --seed and --households wrote it before
    else:
        county = build_county(args.seed, args.households)
        for day in every:
            write_night(county, landing, day)
        made = f"generated in {time.perf_counter() - t0:.0f} s"
    print(
        f"city: {args.households:,} households, {len(days)} nights (+{args.backfill} backfill) "
        f"{made}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; landing "
        f"{disk_bytes(landing) / 1e6:.0f} MB; this machine: {machine_speed():.2f} s for 10^7 "
        "Python additions (a fast 2025 core: ~0.5 s)",
        flush=True,
    )
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                run_backend(
                    backend,
                    f"sqlite:///{base / 'sqlite' / 'warehouse.db'}",
                    base / "sqlite",
                    landing,
                    days,
                    args,
                )
            elif backend == "postgresql":
                if not args.postgres:
                    print("postgresql: skipped (no --postgres nor DATASHARE_TEST_POSTGRES_URL)")
                    continue
                with pg_schema(args.postgres) as url:
                    run_backend(backend, url, base / "postgresql", landing, days, args)
    finally:
        if args.home is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
