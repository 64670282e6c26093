"""Benchmark: the whole intake of large deliveries, one process per case.

    (a) intake:  read → normalise → validate → quarantine → GX verdict (+ Data Docs) → gates
                 → Parquet + ledger + rejects                       <- the issue's figure
    (b) merge:   the loaded delivery merged into history (an empty SQLite warehouse); that is
                 bench/bench_merge.py's subject, shown here as extra information only

Cases (MZ_DIBAO, 1% defects, messy forms, identical duplicates):
    csv-utf8      1,000,000 rows, UTF-8 CSV
    csv-gb18030   1,000,000 rows, GB18030 CSV (Excel "ANSI" export), transcoded while parsed
    xlsx            200,000 rows, one sheet, real date and number cells

Each file is generated in a process of its own and taken in by a fresh process, so neither the
generation nor another case counts in a case's peak memory (max RSS of the intake process,
imports included; "after imports" is the same process before the file is read). The stage
times come from the intake's own calls, wrapped with a timer: wall time (perf_counter) and the
process's CPU time (getrusage, user + system, all threads). The figure (a) is the intake's
wall time without the merge, its peak RSS is the peak when the merge starts; the merge's own
peak is measured after resetting the peak (/proc/self/clear_refs). Usage:

    .venv/bin/python -m bench.bench_intake [--rows 1000000] [--xlsx-rows 200000]
        [--cases csv-utf8,csv-gb18030,xlsx] [--no-docs] [--no-merge] [--keep DIR]

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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _hwm_mb() -> int | None:
    """Peak RSS since the last reset (VmHWM), None where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux: writing 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _timed(
    stages: dict[str, float],
    cpu: dict[str, float],
    peaks: dict[str, int],
    name: str,
    fn: Callable[..., Any],
) -> Callable[..., Any]:
    """`fn`, adding its wall and CPU time to stages[name] and cpu[name] and recording the
    process's peak RSS (MB) after it in peaks[name] (the peak only grows: the stage where it
    jumps is the one to blame)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu_started = time.perf_counter(), _cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] += time.perf_counter() - started
            cpu[name] += _cpu() - cpu_started
            peaks[name] = _peak_mb()

    return wrapper


def intake(path: Path, work: Path, build_docs: bool, merge: bool = True) -> dict[str, object]:
    """Take in one file with the real intake; what it did, how fast, how much memory."""
    import pyarrow as pa

    import tasks.intake as intake_module
    from expectations.contract import get_contract, load_common
    from tasks.intake import IntakeOptions, intake_delivery
    from tasks.landing import DeliveryRef
    from warehouse.db import connect, upgrade

    stages: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    peaks: dict[str, int] = {}
    for attr, name in (
        ("read_delivery", "read"),
        ("validate_rows", "validate"),
        ("validate_delivery_gx", "gx"),
        ("to_arrow_table", "arrow"),
        ("write_parquet_atomic", "parquet"),
    ):
        setattr(intake_module, attr, _timed(stages, cpu, peaks, name, getattr(intake_module, attr)))
    # The merge belongs to bench_merge: its time and memory are kept out of the intake's.
    real_merge = intake_module.merge_delivery
    at_merge: dict[str, Any] = {}

    def merge_delivery(*args: Any, **kwargs: Any) -> Any:
        at_merge.update(
            until=time.perf_counter(), until_cpu=_cpu(), peak=_peak_mb(), reset=_reset_peak()
        )
        started, cpu_started = time.perf_counter(), _cpu()
        try:
            return real_merge(*args, **kwargs) if merge else None
        finally:
            at_merge.update(
                seconds=time.perf_counter() - started,
                cpu=_cpu() - cpu_started,
                merge_peak=_hwm_mb() if at_merge["reset"] else _peak_mb(),
            )

    intake_module.merge_delivery = merge_delivery

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
    started, cpu_started = time.perf_counter(), _cpu()
    content = path.read_bytes()
    summary = intake_delivery(ref, content, contract, common, engine, options)
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (whole run)
    engine.dispose()
    # (a) ends where the merge starts (the ledger row and rejects are written by then; their
    # commit comes with the merge's and is counted there).
    merge_s = at_merge.get("seconds", 0.0)
    intake_s = at_merge["until"] - started if at_merge else seconds
    intake_cpu = at_merge["until_cpu"] - cpu_started if at_merge else cpu_seconds
    return {
        "intake_seconds": round(intake_s, 2),
        "intake_cpu_seconds": round(intake_cpu, 2),
        "intake_rows_per_s": round(summary.rows_in / intake_s),
        "intake_peak_rss_mb": at_merge.get("peak", round(peak / 1024)),
        "arrow_pool": pa.default_memory_pool().backend_name,
        "merge_seconds": round(merge_s, 2) if at_merge else None,
        "merge_cpu_seconds": round(at_merge["cpu"], 2) if at_merge else None,
        "merge_peak_rss_mb": at_merge.get("merge_peak"),
        "merged": merge and bool(at_merge),
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
        "stages_cpu": {k: round(v, 2) for k, v in cpu.items()},
        "peak_after_mb": peaks,
    }


def run_case(
    case: str, rows: int, work: Path, build_docs: bool, merge: bool = True
) -> dict[str, object]:
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
    if not merge:
        argv.append("--no-merge")
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["generated_s"] = round(generated, 1)
    return result


def report(case: str, r: dict[str, Any]) -> str:
    stages = ", ".join(
        f"{k} {v} s / cpu {r['stages_cpu'].get(k)} s (peak {r['peak_after_mb'].get(k)} MB)"
        for k, v in r["stages"].items()
    )
    verdict = ""
    if case.startswith("csv"):
        fast = r["intake_rows_per_s"] >= CSV_TARGET_ROWS_PER_S
        small = r["intake_peak_rss_mb"] < TARGET_PEAK_MB
        verdict = (
            f"  [target >= {CSV_TARGET_ROWS_PER_S:,} rows/s: {'met' if fast else 'MISSED'}; "
            f"< {TARGET_PEAK_MB} MB: {'met' if small else 'MISSED'}]"
        )
    cpu_rate = round(r["rows_in"] / r["intake_cpu_seconds"]) if r["intake_cpu_seconds"] else 0
    merge = (
        f"(b) merge into history (bench_merge's subject, not part of (a)): "
        f"{r['merge_seconds']} s wall, cpu {r['merge_cpu_seconds']} s, "
        f"its own peak RSS {r['merge_peak_rss_mb']} MB"
        if r["merged"]
        else "(b) merge into history: skipped (--no-merge)"
    )
    return (
        f"{case:12s} {r['rows_in']:>9,} rows, {r['file_mb']} MB\n"
        f"{'':12s} (a) intake without merge: {r['intake_seconds']} s wall = "
        f"{r['intake_rows_per_s']:,} rows/s; cpu {r['intake_cpu_seconds']} s "
        f"(= {cpu_rate:,} rows per cpu-second); peak RSS {r['intake_peak_rss_mb']} MB "
        f"(after imports {r['rss_after_imports_mb']} MB; Arrow pool {r['arrow_pool']}){verdict}\n"
        f"{'':12s} stages (wall / cpu): {stages}\n"
        f"{'':12s} {merge}\n"
        f"{'':12s} status {r['status']}: loaded {r['rows_loaded']:,}, quarantined "
        f"{r['rows_rejected']:,}, duplicates {r['duplicates']:,}; whole run {r['seconds']} s; "
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
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="skip the merge into history (not part of the intake figure)",
    )
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--_intake", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._intake:
        print(
            json.dumps(
                intake(
                    Path(args._intake[0]),
                    Path(args._intake[1]),
                    build_docs=not args.no_docs,
                    merge=not args.no_merge,
                ),
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
        result = run_case(case, rows, work, build_docs=not args.no_docs, merge=not args.no_merge)
        print(report(case, result), flush=True)
        failed |= result["status"] != "loaded"
    if failed:
        sys.exit("a benchmark delivery was not loaded")


if __name__ == "__main__":
    main()
