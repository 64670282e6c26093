"""XC's reports — 周报, 月报, 季调度, 半年小结, 年度总结 — from one figure engine, as HTML and XLSX.

    Period.parse_week("2025-W11") | Period.parse_month("2025-03") | closing_periods(D)
    report_figures(conn, period, expected=None) ── ReportFigures (frames, as of period.end)
        ├── render_html(figures)   one self-contained page: inline CSS, charts as inline SVG
        └── render_xlsx(figures)   one sheet per section, Chinese headers, typed cells
    build_report(conn, period, out_dir, expected=None) ── ReportFiles
        out_dir/周报_2025-W11.html + .xlsx  (月报_2025-03.*), each written aside then renamed

Everything is computed from the warehouse as it was on period.end (history as of that date, the
ledger's exchange dates, alert_days up to that night); nothing reads a clock, so the same
warehouse gives byte-identical files. The reports are aggregates: no id number, name, phone or
household id is printed; the one per-alert list shows alert_id, rule, town and village.
Definitions (roster, active, monitored, flows, intake lights) are in docs/reports.md.

The package, by concern (this module re-exports the names other modules and tests use):

    common      parameters, labels and columns of the tables shown; small frame helpers
    periods     Period (week … year) and closing_periods
    reading     what the sections read from the warehouse (roster, ledger, last night)
    intake      the intake section: on-time deliveries, lights, quarantine, pending
    alerts      the alerts section: state as of a night, figures by rule and town, trend
    monitoring  the roster sections: monitoring, 三保障 and water, medical, employment
    figures     ReportFigures and report_figures: every section for one period
    charts      the charts, as inline SVG
    render      HTML (jinja2) and XLSX (xlsxwriter) of the figures
    build       build_report: figures, rendered, written aside then renamed
"""

from tasks.reports.alerts import alert_figures, alert_state, alert_trend
from tasks.reports.build import ReportFiles, build_report
from tasks.reports.charts import chart_alert_trend, chart_elimination, chart_intake
from tasks.reports.common import (
    CATEGORIES,
    COLUMNS,
    COMPULSORY_AGES,
    EMPLOYMENT,
    FONT_FAMILY,
    LABOUR_AGES,
    LABOUR_SKILLS,
    LIGHT_COLOURS,
    LIGHT_RATE_MIN_DUE,
    LIGHT_RED_BELOW,
    LIGHT_YELLOW_QUARANTINE,
    NO_TOWN,
    OVERDUE_DAYS,
    PAYMENTS,
    RISK_TYPES,
    RULES,
    SOURCES,
    TOTAL,
    TREND_MIN_DAYS,
    Kind,
)
from tasks.reports.figures import HEADLINE_LABELS, ReportFigures, report_figures
from tasks.reports.intake import (
    change_table,
    explain_lights,
    intake_figures,
    pending_figures,
    top_reject_reasons,
    with_landing_issues,
)
from tasks.reports.monitoring import (
    assurance_figures,
    employment_figures,
    medical_figures,
    monitoring_figures,
)
from tasks.reports.periods import REPORT_KINDS, Period, PeriodKind, closing_periods
from tasks.reports.render import render_html, render_xlsx

__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "COMPULSORY_AGES",
    "EMPLOYMENT",
    "FONT_FAMILY",
    "HEADLINE_LABELS",
    "LABOUR_AGES",
    "LABOUR_SKILLS",
    "LIGHT_COLOURS",
    "LIGHT_RATE_MIN_DUE",
    "LIGHT_RED_BELOW",
    "LIGHT_YELLOW_QUARANTINE",
    "NO_TOWN",
    "OVERDUE_DAYS",
    "PAYMENTS",
    "REPORT_KINDS",
    "RISK_TYPES",
    "RULES",
    "SOURCES",
    "TOTAL",
    "TREND_MIN_DAYS",
    "Kind",
    "Period",
    "PeriodKind",
    "ReportFigures",
    "ReportFiles",
    "alert_figures",
    "alert_state",
    "alert_trend",
    "assurance_figures",
    "build_report",
    "change_table",
    "chart_alert_trend",
    "chart_elimination",
    "chart_intake",
    "closing_periods",
    "employment_figures",
    "explain_lights",
    "intake_figures",
    "medical_figures",
    "monitoring_figures",
    "pending_figures",
    "render_html",
    "render_xlsx",
    "report_figures",
    "top_reject_reasons",
    "with_landing_issues",
]
