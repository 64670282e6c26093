"""Header mapping against the number of columns: linear, 100k columns read in seconds.

    .venv/bin/python -m bench.bench_headers [--columns 1000,10000,100000] [--rows 5]

For each width it writes a MZ_DIBAO CSV (in memory) whose header holds the contract's columns
and then `width - 10` unknown ones (schema drift a broken export can produce), and times
`read_delivery` on it with the column limit raised (the default refuses more than 16,384
columns, Excel's own maximum). It prints wall and CPU seconds per width, the time per 1,000
columns (flat when mapping is linear), and the machine's load average before and after (the
machine is shared: read the figures against it).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from expectations.contract import get_contract, load_common
from tasks.read import ReadLimits, read_delivery

HEADER = [
    "区划代码",
    "户主姓名",
    "户主身份证号",
    "成员姓名",
    "成员身份证号",
    "保障类别",
    "月保障金（元）",
    "纳入日期",
    "状态",
    "银行账号",
]
ROW = [
    "610327100201",
    "王大",
    "610327196503041216",
    "王大",
    "610327196503041216",
    "农村低保",
    "350.5",
    "2024-01-01",
    "在保",
    "",
]


def wide_csv(columns: int, rows: int) -> bytes:
    """A CSV with `columns` columns: the contract's, then unknown ones, all but the first
    few rows' extra cells empty."""
    extra = columns - len(HEADER)
    header = HEADER + [f"备用列{i}" for i in range(extra)]
    line = ",".join(ROW) + "," * extra
    return "\r\n".join([",".join(header), *[line] * rows]).encode()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", default="1000,10000,100000")
    parser.add_argument("--rows", type=int, default=5)
    args = parser.parse_args()
    contract = get_contract("MZ_DIBAO")
    common = load_common()
    widths = [int(w) for w in args.columns.split(",")]
    limits = ReadLimits(max_columns=max(widths))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'columns':>9} {'MB':>6} {'wall s':>8} {'cpu s':>8} {'ms/1k cols':>11} {'extra':>8}")
    for width in widths:
        content = wide_csv(width, args.rows)
        start, start_cpu = time.perf_counter(), cpu()
        raw = read_delivery(content, "MZ_DIBAO_20250312.csv", contract, common, limits)
        wall, used = time.perf_counter() - start, cpu() - start_cpu
        assert len(raw.frame) == args.rows and len(raw.extra_columns) == width - len(HEADER)
        print(
            f"{width:>9,} {len(content) / 2**20:>6.1f} {wall:>8.2f} {used:>8.2f} "
            f"{wall / width * 1e6:>11.1f} {len(raw.extra_columns):>8,}"
        )
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
