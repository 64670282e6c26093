"""The report flow: the weekly (周报) and monthly (月报) reports for XC, on demand.

The nightly run builds them itself when a week or month closes (tasks.reports.closing_periods);
this flow is for a person asking for one (`datashare report --week 2025-W11`, or the `report`
deployment). Settings are read at the flow's entry, as in flows/nightly.py.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from datashare.settings import Settings, current_settings
from tasks.reports import Period, build_report
from warehouse.db import connect, upgrade


def periods_asked(
    week: str | None,
    month: str | None,
    quarter: str | None = None,
    half: str | None = None,
    year: str | None = None,
) -> list[Period]:
    """The periods named by --week / --month / --quarter / --half / --year (ValueError, in
    Chinese, when none or a bad label)."""
    asked = {"week": week, "month": month, "quarter": quarter, "half": half, "year": year}
    periods = [Period.parse(kind, text) for kind, text in asked.items() if text]  # type: ignore[arg-type]
    if not periods:
        raise ValueError(
            "请指定报告期：--week 2025-W11、--month 2025-03、--quarter 2025-Q1、"
            "--half 2025-H1 或 --year 2025"
        )
    return periods


def write_reports(settings: Settings, periods: list[Period]) -> list[Path]:
    """Build the reports into <publish_dir>/XC/reports/ and return the files written."""
    engine = connect(str(settings.warehouse_url))
    out_dir = Path(str(settings.publish_dir)) / "XC" / "reports"
    written: list[Path] = []
    try:
        upgrade(engine)
        with engine.connect() as conn:
            for period in periods:
                files = build_report(conn, period, out_dir)
                written += [files.html, files.xlsx]
    finally:
        engine.dispose()
    return written


def _report_name() -> str:
    from prefect.runtime import flow_run

    asked = [str(v) for k, v in sorted(flow_run.parameters.items()) if v]
    return f"report {' '.join(asked)}" if asked else "report"


@flow(name="report", flow_run_name=_report_name, log_prints=False)
def report(
    week: str | None = None,
    month: str | None = None,
    quarter: str | None = None,
    half: str | None = None,
    year: str | None = None,
) -> list[str]:
    """Build XC's reports for the periods asked (HTML with charts, and XLSX)."""
    written = write_reports(current_settings(), periods_asked(week, month, quarter, half, year))
    get_run_logger().info("报告已生成：%s", "，".join(p.name for p in written))
    return [str(p) for p in written]
