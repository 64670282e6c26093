"""Benchmark: reading a large XLSX sheet as text, python-calamine (what the intake uses) against
openpyxl in read-only mode (the usual choice), on the same generated file.

    .venv/bin/python -m bench.bench_xlsx [--rows 200000] [--keep DIR]

Each reader produces every cell of the sheet as a Python value (what the intake then turns
into text); the figure is the wall time of that, rows per second, and the process's peak RSS.
Each reader runs in a fresh process, so neither counts the other's memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_intake import DATASET, DAY, ROOT, generate


def read_calamine(path: Path) -> int:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    rows = book.get_sheet_by_index(0).to_python(skip_empty_area=False)
    return len(rows)


def read_openpyxl(path: Path) -> int:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    n = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True))
    book.close()
    return n


READERS = {"python-calamine": read_calamine, "openpyxl (read_only)": read_openpyxl}


def one(reader: str, path: Path) -> dict[str, float]:
    started = time.perf_counter()
    rows = READERS[reader](path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "seconds": round(seconds, 2), "peak_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--keep", type=Path, help="keep the generated file in this folder")
    parser.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        print(json.dumps(one(args._one[0], Path(args._one[1]))))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-xlsx-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DATASET}_{DAY:%Y%m%d}.xlsx"
    if not path.exists():
        generate(path, args.rows, "xlsx", None)
    print(f"xlsx readers, {path} ({path.stat().st_size / 2**20:.1f} MB)")
    for reader in READERS:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_xlsx", "--_one", reader, str(path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {reader:22s} {r['rows']:>9,} rows in {r['seconds']} s = "
            f"{r['rows'] / r['seconds']:,.0f} rows/s, peak RSS {r['peak_mb']} MB"
        )


if __name__ == "__main__":
    main()
