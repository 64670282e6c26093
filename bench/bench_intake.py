"""Benchmark: the whole intake of large deliveries, one process per case.

    read → normalise → validate → quarantine → GX verdict (+ Data Docs) → gates
         → Parquet + ledger + rejects + merge into history (an empty SQLite warehouse)

Cases (MZ_DIBAO, 1% defects, messy forms, identical duplicates):
    csv-utf8      1,000,000 rows, UTF-8 CSV
    csv-gb18030   1,000,000 rows, GB18030 CSV (Excel "ANSI" export), transcoded while parsed
    xlsx            200,000 rows, one sheet, real date and number cells

Each file is generated in a process of its own and taken in by a fresh process, so neither the
generation nor another case counts in a case's peak memory (max RSS of the intake process,
imports included; "after imports" is the same process before the file is read). The stage
times come from the intake's own calls, wrapped with a timer. Usage:

    .venv/bin/python -m bench.bench_intake [--rows 1000000] [--xlsx-rows 200000]
        [--cases csv-utf8,csv-gb18030,xlsx] [--no-docs] [--keep DIR]

Targets (issue "Nightly intake"): CSV >= 150,000 rows/s on 2 cores, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

DAY = date(2025, 3, 12)
DATASET = "MZ_DIBAO"
ROOT = Path(__file__).resolve().parents[1]
# case -> (format, encoding, rows option)
CASES: dict[str, tuple[str, str | None, str]] = {
    "csv-utf8": ("csv", "utf-8", "rows"),
    "csv-gb18030": ("csv", "gb18030", "rows"),
    "xlsx": ("xlsx", None, "xlsx_rows"),
}
CSV_TARGET_ROWS_PER_S = 150_000
TARGET_PEAK_MB = 2048


def generate(path: Path, rows: int, fmt: str, encoding: str | None) -> None:
    """Write the delivery of one case (run in a process of its own)."""
    from datashare.synth import write_big_delivery

    write_big_delivery(
        path, rows, seed=1, dataset=DATASET, fmt=fmt, encoding=encoding, exchange_date=DAY
    )


def _timed(
    stages: dict[str, float], peaks: dict[str, int], name: str, fn: Callable[..., Any]
) -> Callable[..., Any]:
    """`fn`, adding its wall time to stages[name] and recording the process's peak RSS (MB)
    after it in peaks[name] (the peak only grows: the stage where it jumps is the one to blame)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] += time.perf_counter() - started
            peaks[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    return wrapper


def intake(path: Path, work: Path, build_docs: bool) -> dict[str, object]:
    """Take in one file with the real intake; what it did, how fast, how much memory."""
    import tasks.intake as intake_module
    from expectations.contract import get_contract, load_common
    from tasks.intake import IntakeOptions, intake_delivery
    from tasks.landing import DeliveryRef
    from warehouse.db import connect, upgrade

    stages: dict[str, float] = defaultdict(float)
    peaks: dict[str, int] = {}
    for attr, name in (
        ("read_delivery", "read"),
        ("validate_rows", "validate"),
        ("validate_delivery_gx", "gx"),
        ("write_parquet_atomic", "parquet"),
        ("merge_delivery", "merge"),
    ):
        setattr(intake_module, attr, _timed(stages, peaks, name, getattr(intake_module, attr)))

    engine = connect(f"sqlite:///{work / 'warehouse.db'}")
    upgrade(engine)
    contract = get_contract(DATASET)
    common = load_common()
    ref = DeliveryRef(
        dept=contract.dept,
        dataset=DATASET,
        exchange_date=DAY,
        file_name=path.name,
        location=str(path),
    )
    options = IntakeOptions(
        lake_root=work / "lake", gx_root=work / "gx", build_docs=build_docs, secret=b"bench-secret"
    )
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    content = path.read_bytes()
    summary = intake_delivery(ref, content, contract, common, engine, options)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    engine.dispose()
    return {
        "rows_in": summary.rows_in,
        "rows_loaded": summary.rows_loaded,
        "rows_rejected": summary.rows_rejected,
        "duplicates": summary.duplicates,
        "status": summary.status,
        "reason": summary.reason,
        "seconds": round(seconds, 2),
        "rows_per_s": round(summary.rows_in / seconds),
        "file_mb": round(len(content) / 2**20, 1),
        "peak_rss_mb": round(peak / 1024),
        "rss_after_imports_mb": round(base_rss / 1024),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "peak_after_mb": peaks,
    }


def run_case(case: str, rows: int, work: Path, build_docs: bool) -> dict[str, object]:
    """Generate the case's file, then take it in in a fresh process."""
    fmt, encoding, _ = CASES[case]
    folder = work / case
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DATASET}_{DAY:%Y%m%d}.{fmt}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.bench_intake import generate; from pathlib import Path; "
            f"generate(Path({str(path)!r}), {rows}, {fmt!r}, {encoding!r})",
        ],
        check=True,
        cwd=ROOT,
    )
    generated = time.perf_counter() - started
    argv = [sys.executable, "-m", "bench.bench_intake", "--_intake", str(path), str(folder)]
    if not build_docs:
        argv.append("--no-docs")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["generated_s"] = round(generated, 1)
    return result


def report(case: str, r: dict[str, Any]) -> str:
    stages = ", ".join(
        f"{k} {v} s (peak {r['peak_after_mb'].get(k)} MB)" for k, v in r["stages"].items()
    )
    core = sum(r["stages"].get(k, 0.0) for k in ("read", "validate", "gx"))
    verdict = ""
    if case.startswith("csv"):
        fast = r["rows_per_s"] >= CSV_TARGET_ROWS_PER_S
        small = r["peak_rss_mb"] < TARGET_PEAK_MB
        verdict = (
            f"  [target >= {CSV_TARGET_ROWS_PER_S:,} rows/s: {'met' if fast else 'MISSED'}; "
            f"< {TARGET_PEAK_MB} MB: {'met' if small else 'MISSED'}]"
        )
    return (
        f"{case:12s} {r['rows_in']:>9,} rows, {r['file_mb']} MB: {r['seconds']} s = "
        f"{r['rows_per_s']:,} rows/s; peak RSS {r['peak_rss_mb']} MB "
        f"(after imports {r['rss_after_imports_mb']} MB){verdict}\n"
        f"{'':12s} read+validate+GX alone: {core:.2f} s = "
        f"{round(r['rows_in'] / core) if core else 0:,} rows/s\n"
        f"{'':12s} status {r['status']}: loaded {r['rows_loaded']:,}, quarantined "
        f"{r['rows_rejected']:,}, duplicates {r['duplicates']:,}; stages: {stages}; "
        f"file generated in {r['generated_s']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each CSV case")
    parser.add_argument("--xlsx-rows", type=int, default=200_000, help="rows of the XLSX case")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    parser.add_argument("--no-docs", action="store_true", help="skip building GX Data Docs")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--_intake", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._intake:
        print(
            json.dumps(
                intake(Path(args._intake[0]), Path(args._intake[1]), build_docs=not args.no_docs),
                ensure_ascii=False,
            )
        )
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-intake-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"intake benchmark, {DATASET}, Data Docs {'off' if args.no_docs else 'on'}, "
        f"work folder {work}"
    )
    failed = False
    for case in cases:
        rows = getattr(args, CASES[case][2])
        result = run_case(case, rows, work, build_docs=not args.no_docs)
        print(report(case, result), flush=True)
        failed |= result["status"] != "loaded"
    if failed:
        sys.exit("a benchmark delivery was not loaded")


if __name__ == "__main__":
    main()
