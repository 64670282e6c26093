"""Byte-for-byte comparison of two runs' published output (issue 12: pure moves change nothing).

    make OUT      build a small synthetic county, run N nights in this process (a temporary
                  Prefect API, SQLite warehouse) and the week/month/quarter reports, then keep
                  under OUT: published/<night>/… (each night's publication version, its
                  stable paths resolved) and tables/<table>.csv (every warehouse table, sorted)
    A B           compare two such folders: every file byte for byte; print the files compared
                  and each difference (exit 1 when any)

The run must not depend on when it ran: the exchange dates are the county's, Settings.today is
frozen, and the wall clock that publication and intake stamp (warehouse.published.utc_now, the
received/loaded/started columns) is frozen to FROZEN_AT in both runs. Columns that still hold
the machine's own facts (durations, process ids, lock owners, file paths under OUT) are
dropped from the table dumps: RUN_TIME_COLUMNS names them. Usage:

    .venv/bin/python bench/compare_published.py make /tmp/before [--households 40] [--nights 3]
    .venv/bin/python bench/compare_published.py /tmp/before /tmp/after
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

FROZEN_AT = datetime(2025, 3, 20, 2, 0, tzinfo=UTC)
SECRET = "compare-secret-" + "x" * 32
# Columns whose values are facts about the machine or the folder, not about the county.
RUN_TIME_COLUMNS = {
    "duration_seconds",
    "pid",
    "host",
    "owner",
    "heartbeat_at",
    "acquired_at",
    "path",
    "lake_path",
    "location",
    "source_path",
    "flow_run_id",
}


class _FrozenDatetime(datetime):
    """datetime whose now()/utcnow() are FROZEN_AT (dates and arithmetic unchanged)."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def]
        return FROZEN_AT if tz is not None else FROZEN_AT.replace(tzinfo=None)

    @classmethod
    def utcnow(cls):  # type: ignore[no-untyped-def]
        return FROZEN_AT.replace(tzinfo=None)


@contextmanager
def _frozen_clock() -> Iterator[None]:
    """Freeze `datetime.now` in every module of ours that imported `datetime` (not Prefect's)."""
    ours = ("datashare", "domain", "expectations", "warehouse", "tasks", "flows")
    patches = [
        mock.patch.object(module, "datetime", _FrozenDatetime)
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ours and getattr(module, "datetime", None) is datetime
    ]
    for p in patches:
        p.start()
    try:
        yield
    finally:
        for p in reversed(patches):
            p.stop()


def make(out: Path, households: int, nights: int) -> None:
    """Run `nights` nights of a small county and keep each publication and the tables."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    import flows.nightly
    import flows.report
    import tasks.reports
    from datashare.settings import Settings
    from datashare.synth import build_county, write_night
    from warehouse import published as files

    if out.exists():
        shutil.rmtree(out)
    home, landing = out / "run", out / "run" / "landing"
    county = build_county(11, households)
    dates = [county.start + timedelta(days=i) for i in range(nights)]
    for day in dates:
        write_night(county, landing, day)
    for key, value in {
        "HOME": str(home),
        "WAREHOUSE_URL": f"sqlite:///{home / 'warehouse.db'}",
        "LANDING": str(landing),
        "ENVIRONMENT": "test",
        "SECRET": SECRET,
        "BUILD_DOCS": "false",
        "MAX_WORKERS": "1",
        "PUBLISH_WORKERS": "1",
        "TODAY": str(dates[-1] + timedelta(days=1)),
    }.items():
        os.environ[f"DATASHARE_{key}"] = value
    settings = Settings()
    publish_dir = Path(str(settings.publish_dir))
    kept = out / "published"
    with prefect_test_harness(server_startup_timeout=120):
        for i, day in enumerate(dates):
            with _frozen_clock(), mock.patch.object(files, "utc_now", lambda: FROZEN_AT):
                flows.nightly.run_nightly(day, settings)
            version = files.version_dir(publish_dir, str(files.current_publication(publish_dir)))
            shutil.copytree(version, kept / f"night{i + 1}", symlinks=False)
    with _frozen_clock():
        last = dates[-1]
        periods = [
            tasks.reports.Period.parse("week", f"{last:%G-W%V}"),
            tasks.reports.Period.parse("month", f"{last:%Y-%m}"),
            tasks.reports.Period.parse("quarter", f"{last.year}-Q{(last.month - 1) // 3 + 1}"),
        ]
        written = flows.report.write_reports(settings, periods)
    for path in written:
        target = kept / "reports" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    _dump_tables(home / "warehouse.db", out / "tables")
    print(f"{len(dates)} nights, {len(written)} report files; kept in {out}")


def _dump_tables(db: Path, into: Path) -> None:
    """Every table as CSV, rows sorted, run-time columns dropped."""
    into.mkdir(parents=True)
    con = sqlite3.connect(db)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for name in sorted(names):
            cur = con.execute(f'SELECT * FROM "{name}"')
            columns = [d[0] for d in cur.description]
            keep = [i for i, c in enumerate(columns) if c not in RUN_TIME_COLUMNS]
            rows = sorted(
                ([repr(row[i]) for i in keep] for row in cur.fetchall()),
            )
            with (into / f"{name}.csv").open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([columns[i] for i in keep])
                writer.writerows(rows)
    finally:
        con.close()


def _kept(root: Path) -> set[Path]:
    """The files to compare: those `make` kept (published/, tables/), else every file."""
    kept = [root / "published", root / "tables"]
    tops = [k for k in kept if k.is_dir()] or [root]
    return {p.relative_to(root) for top in tops for p in top.rglob("*") if p.is_file()}


def compare(a: Path, b: Path) -> int:
    """Print every file compared and every difference; the number of differences."""
    files_a, files_b = _kept(a), _kept(b)
    differences = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    differences += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    both = sorted(files_a & files_b)
    differences += [f"differs: {p}" for p in both if (a / p).read_bytes() != (b / p).read_bytes()]
    kinds: dict[str, int] = {}
    for p in both:
        top = p.parts[0]
        kinds[top] = kinds.get(top, 0) + 1
    by_top = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"files compared: {len(both)} ({by_top})")
    print(f"bytes compared: {sum((a / p).stat().st_size for p in both)}")
    print(f"differences: {len(differences)}")
    for line in differences:
        print("  " + line)
    return len(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="'make' to run a county, or the first folder to compare")
    parser.add_argument("second", help="the folder to make, or the second folder to compare")
    parser.add_argument("--households", type=int, default=40)
    parser.add_argument("--nights", type=int, default=3)
    args = parser.parse_args()
    if args.first == "make":
        make(Path(args.second).resolve(), args.households, args.nights)
        return
    sys.exit(1 if compare(Path(args.first), Path(args.second)) else 0)


if __name__ == "__main__":
    main()
