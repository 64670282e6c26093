"""Benchmark: the whole intake of a 1,000,000-row GB18030 CSV delivery.

    read → normalise → validate → quarantine → GX verdict → Parquet + ledger + rejects

Prints rows/s and peak memory (max RSS of the process doing the intake; the file is generated
in a separate process so that generation does not count). Usage:

    python3 dev.py -- python bench/bench_intake.py [--rows 1000000] [--keep DIR]

Target (issue "Nightly intake"): >= 150,000 rows/s on 2 cores, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

DAY = date(2025, 3, 12)


def generate(path: Path, rows: int) -> None:
    from datashare.synth import write_big_csv

    write_big_csv(path, rows=rows, seed=1, dataset="MZ_DIBAO", encoding="gb18030")


def intake(path: Path, work: Path) -> dict[str, object]:
    from expectations.contract import get_contract, load_common
    from tasks.intake import IntakeOptions, intake_delivery
    from tasks.landing import DeliveryRef
    from warehouse.db import connect, upgrade

    engine = connect(f"sqlite:///{work / 'warehouse.db'}")
    upgrade(engine)
    contract = get_contract("MZ_DIBAO")
    ref = DeliveryRef(dept="MZ", dataset="MZ_DIBAO", exchange_date=DAY, file_name=path.name,
                      location=str(path))
    options = IntakeOptions(lake_root=work / "lake", gx_root=work / "gx", build_docs=True)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    content = path.read_bytes()
    summary = intake_delivery(ref, content, contract, load_common(), engine, options)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "rows_in": summary.rows_in, "rows_loaded": summary.rows_loaded,
        "rows_rejected": summary.rows_rejected, "duplicates": summary.duplicates,
        "status": summary.status, "seconds": round(seconds, 2),
        "rows_per_s": round(summary.rows_in / seconds), "file_mb": round(len(content) / 2**20, 1),
        "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(base_rss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--_intake", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._intake:
        print(json.dumps(intake(Path(args._intake[0]), Path(args._intake[1]))))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-intake-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"MZ_DIBAO_{DAY:%Y%m%d}.csv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c",
                    f"from bench.bench_intake import generate; from pathlib import Path; "
                    f"generate(Path({str(csv)!r}), {args.rows})"], check=True,
                   cwd=Path(__file__).resolve().parents[1])
    print(f"generated {args.rows:,} rows ({csv.stat().st_size / 2**20:.0f} MB GB18030) "
          f"in {time.perf_counter() - t0:.1f} s")
    out = subprocess.run([sys.executable, __file__, "--_intake", str(csv), str(work)],
                         check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"intake: {result['rows_in']:,} rows in {result['seconds']} s = "
          f"{result['rows_per_s']:,} rows/s; peak RSS {result['peak_rss_mb']} MB "
          f"(status {result['status']}: loaded {result['rows_loaded']:,}, "
          f"quarantined {result['rows_rejected']:,}, duplicates {result['duplicates']:,})")


if __name__ == "__main__":
    main()
