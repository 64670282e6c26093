"""Building a report: figures, rendered as HTML and XLSX, each written aside then renamed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection

from tasks.reports.figures import ReportFigures, report_figures
from tasks.reports.periods import Period
from tasks.reports.render import render_html, render_xlsx
from warehouse.lake import write_bytes_atomic

# --- building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    """What build_report wrote, and the figures it wrote them from."""

    html: Path
    xlsx: Path
    figures: ReportFigures


def build_report(
    conn: Connection, period: Period, out_dir: Path, expected: pd.DataFrame | None = None
) -> ReportFiles:
    """Compute the figures of `period` and write <out_dir>/<周报|月报>_<label>.html and .xlsx.

    Each file is written aside and renamed into place, so a reader sees the old file or the
    whole new one. The caller passes out_dir = <publish_dir>/XC/reports/.
    """
    figures = report_figures(conn, period, expected)
    out_dir = Path(out_dir)
    html_name, xlsx_name = f"{period.name}.html", f"{period.name}.xlsx"
    write_bytes_atomic(out_dir, xlsx_name, render_xlsx(figures))
    write_bytes_atomic(out_dir, html_name, render_html(figures).encode("utf-8"))
    return ReportFiles(html=out_dir / html_name, xlsx=out_dir / xlsx_name, figures=figures)
