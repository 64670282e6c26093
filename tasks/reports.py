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
"""

from __future__ import annotations

import calendar
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd
import xlsxwriter
from matplotlib import rc_context
from matplotlib.figure import Figure
from sqlalchemy import Connection, func, select

from domain import definitions as dd
from domain.alert_rules import declared_rules
from expectations.contract import load_common, load_contracts
from expectations.divisions import town_order
from tasks.alerts import FEEDBACK_STATUS, alerts_frame, read_current, read_feedback
from tasks.freshness import ACCEPTED, Calendar, expected_frame, load_calendar
from tasks.labels import column_label, label
from warehouse.lake import write_bytes_atomic
from warehouse.tables import deliveries, history_merges, history_tables, rejects
from warehouse.tables_alerts import alert_days, alert_runs
from warehouse.tables_ops import landing_issues_frame, nights

# --- parameters (documented in docs/reports.md) -------------------------------------------------

OVERDUE_DAYS = 15  # open alerts older than this (识别时限) are listed
LIGHT_RED_BELOW = 0.80  # on-time rate below this (over LIGHT_RATE_MIN_DUE or more due): red
LIGHT_RATE_MIN_DUE = 5  # fewer due deliveries say too little for a rate: late is then yellow
LIGHT_YELLOW_QUARANTINE = 0.05  # quarantined share of rows above this: yellow
TREND_MIN_DAYS = 28  # the open-alert trend covers at least this many nights
COMPULSORY_AGES = dd.COMPULSORY_SCHOOL_AGES  # the domain's definitions (domain/definitions.py)
LABOUR_AGES = dd.LABOUR_AGES
LABOUR_SKILLS = dd.LABOUR_SKILLS

# The roster's categories and risk types, in the contract's order (departments are data).
_ROSTER = load_contracts()["XC_HU"]
CATEGORIES = tuple(_ROSTER.column("monitoring_category").values)
RISK_TYPES = tuple(_ROSTER.column("risk_types").values)
# rules.md, in its order: rule_id -> (risk_type, subject unit), from the rule registry
RULES: dict[str, tuple[str, str]] = {r.rule_id: (r.risk_type, r.unit) for r in declared_rules()}
EMPLOYMENT = {
    "省外务工": "emp_out_province",
    "省内县外务工": "emp_in_province",
    "县内务工": "emp_in_county",
    "公益岗位": "emp_public_post",
    "自主创业": "emp_self_employed",
}
PAYMENTS = ("fund_paid", "critical_illness_paid", "medical_aid_paid", "other_paid")
# The datasets the report's figures are computed from (XC_HECHA feedback is optional).
SOURCES = (
    "XC_HU",
    "XC_REN",
    "GA_BIANDONG",
    "YB_CANBAO",
    "JT_XUEJI",
    "ZJ_FANGWU",
    "SL_YINSHUI",
    "YB_JIESUAN",
    "RS_JIUYE",
)
TOTAL = "合计"
NO_TOWN = "（未落户）"
FONT_FAMILY = [
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
    "WenQuanYi Micro Hei",
    "sans-serif",
]
LIGHT_COLOURS = {"绿": "#2e7d32", "黄": "#f9a825", "红": "#c62828", "—": "#bdbdbd"}

# Column name -> (Chinese header, kind); kind drives formatting in HTML and cell types in XLSX.
Kind = Literal["text", "int", "delta", "money", "ratio", "date"]
COLUMNS: dict[str, tuple[str, Kind]] = {
    "town": ("乡镇", "text"),
    "dept": ("部门代码", "text"),
    "dept_name": ("部门", "text"),
    "dataset": ("数据集", "text"),
    "exchange_date": ("交换日期", "date"),
    "source_file": ("文件", "text"),
    "reason": ("原因", "text"),
    "received_on": ("接收日期", "date"),
    # intake
    "deliveries": ("交付批次", "int"),
    "accepted": ("接收批次", "int"),
    "failed": ("退回批次", "int"),
    "failed_open": ("退回未重报", "int"),
    "duplicate": ("重复文件", "int"),
    "missing": ("缺报批次", "int"),
    "landing_issues": ("未接收文件", "int"),
    "rows_loaded": ("入库行数", "int"),
    "rows_quarantined": ("隔离行数", "int"),
    "quarantine_rate": ("隔离率", "ratio"),
    "due": ("应报批次", "int"),
    "on_time": ("按时批次", "int"),
    "on_time_rate": ("按时率", "ratio"),
    "light": ("信号灯", "text"),
    "light_reason": ("说明", "text"),
    # alerts
    "rule_id": ("规则", "text"),
    "risk_type": ("风险类型", "text"),
    "unit": ("单位", "text"),
    "opening": ("期初未结", "int"),
    "new": ("本期新增", "int"),
    "reopened": ("本期重新打开", "int"),
    "resolved": ("本期自动解除", "int"),
    "confirmed": ("本期纳入监测", "int"),
    "dismissed": ("本期核实排除", "int"),
    "data_error": ("本期数据错误", "int"),
    "open": ("期末未结", "int"),
    "overdue": ("超15天未结", "int"),
    "ytd_new": ("年度新增", "int"),
    "ytd_resolved": ("年度自动解除", "int"),
    "ytd_confirmed": ("年度纳入监测", "int"),
    "ytd_dismissed": ("年度核实排除", "int"),
    "ytd_data_error": ("年度数据错误", "int"),
    "alert_id": ("预警编号", "text"),
    "village": ("行政村", "text"),
    "first_raised": ("首次预警日期", "date"),
    "days_open": ("持续天数", "int"),
    "night": ("日期", "date"),
    "pending": ("待核实", "int"),
    "current": ("本期", "int"),
    "previous": ("上期", "int"),
    "change": ("变化", "delta"),
    "pending_overdue": ("其中超15天", "int"),
    "oldest": ("最早预警日期", "date"),
    "oldest_days": ("最长已等待（天）", "int"),
    "rule_text": ("问题原因", "text"),
    "column_label": ("列", "text"),
    "rows": ("行数", "int"),
    # monitoring
    "category": ("监测对象类别", "text"),
    "identified_hh": ("监测对象户数", "int"),
    "identified_persons": ("监测对象人数", "int"),
    "monitored_hh": ("未消除风险户数", "int"),
    "monitored_persons": ("未消除风险人数", "int"),
    "eliminated_hh": ("已消除风险户数", "int"),
    "eliminated_persons": ("已消除风险人数", "int"),
    "elim_rate_hh": ("风险消除率（户）", "ratio"),
    "elim_rate_persons": ("风险消除率（人）", "ratio"),
    "new_hh": ("本期新识别户数", "int"),
    "new_persons": ("本期新识别人数", "int"),
    "new_elim_hh": ("本期消除户数", "int"),
    "new_elim_persons": ("本期消除人数", "int"),
    "ytd_new_hh": ("年度新识别户数", "int"),
    "ytd_new_persons": ("年度新识别人数", "int"),
    "ytd_elim_hh": ("年度消除户数", "int"),
    "ytd_elim_persons": ("年度消除人数", "int"),
    "share_hh": ("占未消除户比例", "ratio"),
    # 三保障 and water
    "roster_persons": ("在册人数", "int"),
    "insured": ("参保人数", "int"),
    "uninsured": ("未参保人数", "int"),
    "insured_rate": ("参保率", "ratio"),
    "children": ("义务教育适龄人数（6–15岁）", "int"),
    "dropout": ("辍学人数", "int"),
    "not_enrolled": ("无学籍人数", "int"),
    "out_of_school": ("失学辍学合计（人）", "int"),
    "out_of_school_hh": ("失学辍学涉及户数", "int"),
    "cd_hh": ("C/D级危房户数", "int"),
    "cd_done": ("已竣工或验收", "int"),
    "cd_building": ("在建", "int"),
    "cd_not_started": ("未开工", "int"),
    "cd_other": ("其他或未填", "int"),
    "renovation_rate": ("改造完成率", "ratio"),
    "water_unsafe_hh": ("饮水不安全户数", "int"),
    "water_unsafe_persons": ("饮水不安全人数", "int"),
    "water_unsurveyed_hh": ("未入户核查户数", "int"),
    # medical
    "settlements": ("住院人次", "int"),
    "persons": ("住院人数", "int"),
    "households": ("涉及户数", "int"),
    "total_cost": ("医疗费总额（元）", "money"),
    "in_policy_cost": ("政策范围内费用（元）", "money"),
    "fund_paid": ("统筹基金（元）", "money"),
    "critical_illness_paid": ("大病保险（元）", "money"),
    "medical_aid_paid": ("医疗救助（元）", "money"),
    "other_paid": ("其他支付（元）", "money"),
    "reimbursed": ("报销合计（元）", "money"),
    "self_burden": ("个人负担（元）", "money"),
    "actual_ratio": ("实际报销比例", "ratio"),
    "policy_ratio": ("政策范围内报销比例", "ratio"),
    # employment
    "labour": ("劳动力人数", "int"),
    "emp_out_province": ("省外务工", "int"),
    "emp_in_province": ("省内县外务工", "int"),
    "emp_in_county": ("县内务工", "int"),
    "emp_public_post": ("公益岗位", "int"),
    "emp_self_employed": ("自主创业", "int"),
    "employed": ("务工就业合计", "int"),
    "unemployed": ("未就业", "int"),
    "unregistered": ("无就业登记", "int"),
    "employment_rate": ("务工就业率", "ratio"),
    "labour_hh": ("有劳动力户数", "int"),
    "employed_hh": ("有务工就业户数", "int"),
    # headline
    "item": ("指标", "text"),
    "value": ("数值", "text"),
}


# --- periods --------------------------------------------------------------------------------------

PeriodKind = Literal["week", "month", "quarter", "half", "year"]
REPORT_KINDS: dict[str, str] = {
    "week": "周报",
    "month": "月报",
    "quarter": "季调度",
    "half": "半年小结",
    "year": "年度总结",
}


@dataclass(frozen=True)
class Period:
    """A report period: an ISO week (Monday–Sunday) or a calendar month."""

    kind: PeriodKind
    start: date
    end: date
    label: str  # 2025-W11 | 2025-03 | 2025-Q1 | 2025-H1 | 2025

    @classmethod
    def parse(cls, kind: PeriodKind, text: str) -> Period:
        """A period of `kind` from its label (2025-W11, 2025-03, 2025-Q1, 2025-H1, 2025)."""
        return {
            "week": cls.parse_week,
            "month": cls.parse_month,
            "quarter": cls.parse_quarter,
            "half": cls.parse_half,
            "year": cls.parse_year,
        }[kind](text)

    @classmethod
    def _months(cls, kind: PeriodKind, year: int, first: int, count: int, label: str) -> Period:
        last = first + count - 1
        end = date(year, last, calendar.monthrange(year, last)[1])
        return cls(kind, date(year, first, 1), end, label)

    @classmethod
    def parse_quarter(cls, text: str) -> Period:
        """A calendar quarter, "2025-Q1" (季调度)."""
        m = re.fullmatch(r"(\d{4})-Q([1-4])", text.strip())
        if not m:
            raise ValueError(f"季度应写作 YYYY-Qn（如 2025-Q1），收到 {text!r}")
        q = int(m[2])
        return cls._months("quarter", int(m[1]), 3 * q - 2, 3, f"{m[1]}-Q{q}")

    @classmethod
    def parse_half(cls, text: str) -> Period:
        """A half year, "2025-H1" (半年小结)."""
        m = re.fullmatch(r"(\d{4})-H([12])", text.strip())
        if not m:
            raise ValueError(f"半年应写作 YYYY-H1 或 YYYY-H2（如 2025-H1），收到 {text!r}")
        h = int(m[2])
        return cls._months("half", int(m[1]), 6 * h - 5, 6, f"{m[1]}-H{h}")

    @classmethod
    def parse_year(cls, text: str) -> Period:
        """A calendar year, "2025" (年度总结)."""
        m = re.fullmatch(r"(\d{4})", text.strip())
        if not m:
            raise ValueError(f"年度应写作 YYYY（如 2025），收到 {text!r}")
        return cls._months("year", int(m[1]), 1, 12, m[1])

    @classmethod
    def of(cls, kind: PeriodKind, day: date) -> Period:
        """The period of `kind` that contains `day`."""
        if kind == "week":
            return cls.week_of(day)
        label = {
            "month": f"{day:%Y-%m}",
            "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}",
            "half": f"{day.year}-H{1 if day.month <= 6 else 2}",
            "year": f"{day.year}",
        }[kind]
        return cls.parse(kind, label)

    @classmethod
    def parse_week(cls, text: str) -> Period:
        """An ISO week, "2025-W11" (Monday 2025-03-10 to Sunday 2025-03-16)."""
        m = re.fullmatch(r"(\d{4})-W(\d{2})", text.strip())
        if not m:
            raise ValueError(f"周应写作 YYYY-Www（如 2025-W11），收到 {text!r}")
        year, week = int(m[1]), int(m[2])
        try:
            start = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(f"{text!r}：{year} 年没有第 {week} 周（ISO 周）") from None
        return cls("week", start, start + timedelta(days=6), f"{year}-W{week:02d}")

    @classmethod
    def parse_month(cls, text: str) -> Period:
        """A calendar month, "2025-03"."""
        m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not m or not 1 <= int(m[2]) <= 12:
            raise ValueError(f"月份应写作 YYYY-MM（如 2025-03），收到 {text!r}")
        year, month = int(m[1]), int(m[2])
        last = calendar.monthrange(year, month)[1]
        return cls("month", date(year, month, 1), date(year, month, last), f"{year}-{month:02d}")

    @classmethod
    def week_of(cls, day: date) -> Period:
        """The ISO week that contains `day`."""
        iso = day.isocalendar()
        return cls.parse_week(f"{iso.year}-W{iso.week:02d}")

    @classmethod
    def month_of(cls, day: date) -> Period:
        """The calendar month that contains `day`."""
        return cls.parse_month(f"{day:%Y-%m}")

    @property
    def year_start(self) -> date:
        """First day of the year to date: 1 January of the year of `end`."""
        return date(self.end.year, 1, 1)

    @property
    def ytd_start(self) -> date:
        """First day of the year-to-date span: year_start, or the period's start when the period
        begins in the previous year (2025-W01 starts 2024-12-30), so the year to date always
        contains the period."""
        return min(self.year_start, self.start)

    def previous(self) -> Period:
        """The period of the same kind that ends the day before this one starts."""
        return Period.of(self.kind, self.start - timedelta(days=1))

    @property
    def report_kind(self) -> str:
        """What the report is called: 周报, 月报, 季调度, 半年小结, 年度总结."""
        return REPORT_KINDS[self.kind]

    @property
    def name(self) -> str:
        """The files' base name: 周报_2025-W11, 月报_2025-03, 季调度_2025-Q1, 半年小结_2025-H1,
        年度总结_2025."""
        return f"{self.report_kind}_{self.label}"

    @property
    def title(self) -> str:
        """Chinese title: 2025年第11周（3月10日至3月16日）, 2025年3月, 2025年第1季度,
        2025年上半年, 2025年."""
        y = self.start.year
        if self.kind == "month":
            return f"{y}年{self.start.month}月"
        if self.kind == "quarter":
            return f"{y}年第{self.label[-1]}季度"
        if self.kind == "half":
            return f"{y}年{'上' if self.label.endswith('H1') else '下'}半年"
        if self.kind == "year":
            return f"{y}年"
        year, week = self.label.split("-W")
        return (
            f"{year}年第{int(week)}周（{self.start.month}月{self.start.day}日至"
            f"{self.end.month}月{self.end.day}日）"
        )


def closing_periods(exchange_date: date) -> list[Period]:
    """The periods whose last day is `exchange_date`: its week on a Sunday, its month on the
    last day of a month, its quarter (季调度) at a quarter's end, the first half (半年小结) on
    30 June and the year (年度总结) on 31 December — the year's own summary stands for its
    second half, so H2 is built only on demand."""
    closing = []
    if exchange_date.weekday() == 6:
        closing.append(Period.week_of(exchange_date))
    for kind in ("month", "quarter", "half", "year"):
        period = Period.of(kind, exchange_date)
        if period.end == exchange_date and period.label[-2:] != "H2":
            closing.append(period)
    return closing


# --- figures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFigures:
    """Every number of one report, as of period.end; both renderers and the tests read these.

    Frames use the English column names of COLUMNS (Chinese headers are the renderers' job).
    By-town frames end with a 合计 row. Ratios are floats (NaN when the denominator is 0).
    """

    period: Period
    towns: list[str]
    headline: dict[str, float]
    intake: pd.DataFrame  # per department, the period
    intake_ytd: pd.DataFrame  # per department, year to date
    intake_days: pd.DataFrame  # dept x day of the period: the day's light (for the chart)
    failed_deliveries: pd.DataFrame
    missing_deliveries: pd.DataFrame
    alerts_by_rule: pd.DataFrame
    alerts_by_town: pd.DataFrame
    alerts_overdue: pd.DataFrame  # alert_id, rule_id, town, village, first_raised, days_open
    alerts_trend: pd.DataFrame  # night x rule_id: open alerts that night
    monitoring_by_town: pd.DataFrame
    monitoring_by_category: pd.DataFrame
    unresolved_by_risk: pd.DataFrame
    assurance_by_town: pd.DataFrame
    medical_by_town: pd.DataFrame
    medical_ytd_by_town: pd.DataFrame
    employment_by_town: pd.DataFrame
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)  # item, current, previous, change
    pending_by_town: pd.DataFrame = field(default_factory=pd.DataFrame)
    pending_by_dept: pd.DataFrame = field(default_factory=pd.DataFrame)
    top_rejects: pd.DataFrame = field(default_factory=pd.DataFrame)
    light_reasons: list[str] = field(default_factory=list)  # every non-green light, in words
    notes: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)  # SOURCES with no accepted delivery
    # The last processed night on or before period.end: every figure is as of this date (a
    # report built mid-period judges only the nights that have run). None: period.end.
    as_of: date | None = None

    @property
    def data_end(self) -> date:
        """The date the figures are as of ("数据截至")."""
        return self.as_of or self.period.end

    def sections(self) -> list[tuple[str, list[tuple[str, pd.DataFrame]]]]:
        """(section title, [(table title, frame)]) in report order; one XLSX sheet each."""
        p, end = self.period, self.data_end
        span = f"{p.start:%m月%d日}至{end:%m月%d日}"
        ytd = f"{p.ytd_start:%Y年%m月%d日}至{end:%m月%d日}"
        return [
            (
                "待办事项",
                [
                    ("与上期相比", self.changes),
                    ("待核实预警（按乡镇，含最早一条的预警日期）", self.pending_by_town),
                    ("待核实预警（按推送部门）", self.pending_by_dept),
                    (f"超过{OVERDUE_DAYS}天未结的预警（乡村振兴局逐条督办）", self.alerts_overdue),
                    ("各部门本期问题数据的主要原因（前三）", self.top_rejects),
                ],
            ),
            (
                "交换接收",
                [
                    (f"本期各部门交换情况（{span}）", self.intake),
                    (f"年度累计（{ytd}）", self.intake_ytd),
                    ("本期退回的交付", self.failed_deliveries),
                    ("本期缺报的交付", self.missing_deliveries),
                ],
            ),
            (
                "风险预警",
                [
                    ("按规则", self.alerts_by_rule),
                    ("按乡镇", self.alerts_by_town),
                    ("每日未结预警（按规则）", self.alerts_trend),
                ],
            ),
            (
                "监测对象",
                [
                    ("按乡镇（户、人）", self.monitoring_by_town),
                    ("按监测对象类别", self.monitoring_by_category),
                    ("未消除风险的监测对象按风险类型（一户可有多种风险）", self.unresolved_by_risk),
                ],
            ),
            ("三保障和饮水安全", [("按乡镇", self.assurance_by_town)]),
            (
                "医疗保障",
                [
                    (f"本期住院结算（{span}）", self.medical_by_town),
                    (f"年度累计住院结算（{ytd}）", self.medical_ytd_by_town),
                ],
            ),
            ("务工就业", [("在册劳动力务工就业（按乡镇）", self.employment_by_town)]),
        ]


HEADLINE_LABELS: dict[str, tuple[str, Kind]] = {
    "monitored_hh": ("未消除风险监测户", "int"),
    "monitored_persons": ("未消除风险监测人口", "int"),
    "elim_rate_hh": ("风险消除率（户）", "ratio"),
    "elim_rate_persons": ("风险消除率（人）", "ratio"),
    "new_hh": ("本期新识别监测户", "int"),
    "new_elim_hh": ("本期消除风险户", "int"),
    "alerts_new": ("本期新增预警", "int"),
    "alerts_open": ("期末未结预警", "int"),
    "alerts_overdue": (f"超{OVERDUE_DAYS}天未结预警", "int"),
    "deliveries": ("本期交付批次", "int"),
    "on_time_rate": ("本期按时率", "ratio"),
    "failed": ("本期退回批次", "int"),
    "missing": ("本期缺报批次", "int"),
    "insured_rate": ("在册人口参保率", "ratio"),
    "out_of_school": ("义务教育阶段失学辍学（人）", "int"),
    "cd_open": ("C/D级危房未完成改造（户）", "int"),
    "water_unsafe_hh": ("饮水不安全（户）", "int"),
    "actual_ratio": ("本期住院实际报销比例", "ratio"),
    "policy_ratio": ("本期住院政策范围内报销比例", "ratio"),
    "employed": ("务工就业劳动力（人）", "int"),
}


def report_figures(
    conn: Connection, period: Period, expected: pd.DataFrame | None = None
) -> ReportFigures:
    """Every figure of the report for `period`, from the warehouse as of period.end.

    expected: the deliveries due, one row per (dept, dataset, exchange_date); rows outside the
    period and the year to date are ignored. None: the delivery calendar's
    (tasks.freshness.expected_frame). Either way nothing is due before the ledger's first
    exchange date (the exchange had not started).
    """
    as_of = _last_night(conn, period.end)
    asked, period = period, (period if as_of >= period.end else replace(period, end=as_of))
    end = period.end
    hu = _households(conn, end)
    ren = _roster_persons(conn, end, hu)
    towns = _town_order(hu)
    undelivered = _undelivered(conn, end)
    notes: list[str] = [_undelivered_note(undelivered, end)] if undelivered else []
    if end < asked.end:
        notes.append(
            f"本期尚未结束：数据截至 {end:%Y-%m-%d}（最后一个已运行的夜间批次），"
            f"{end + timedelta(days=1):%Y-%m-%d} 起尚未运行的日期不计缺报，预警天数算至 "
            f"{end:%Y-%m-%d}。"
        )

    previous = asked.previous()
    lo = min(period.ytd_start, previous.start)
    ledger = _ledger(conn, lo, end)
    calendar = load_calendar()
    if expected is None:
        expected = expected_frame(lo, end, calendar)
    # Nothing was due before the exchange started (the ledger's first exchange date).
    go_live = conn.execute(select(func.min(deliveries.c.exchange_date))).scalar_one_or_none()
    expected = expected.loc[
        pd.to_datetime(expected["exchange_date"])
        >= (
            pd.Timestamp(go_live)
            if go_live is not None
            else pd.Timestamp(end) + pd.Timedelta(days=1)
        )
    ]
    intake, days, failed, missing = intake_figures(ledger, expected, period.start, end, calendar)
    intake_ytd, _, _, _ = intake_figures(ledger, expected, period.ytd_start, end, calendar)
    issues = landing_issues_frame(conn, lo, end)
    intake = explain_lights(with_landing_issues(intake, issues, period.start, end))
    intake_ytd = explain_lights(with_landing_issues(intake_ytd, issues, period.ytd_start, end))
    intake_prev, _, _, _ = intake_figures(ledger, expected, previous.start, previous.end, calendar)

    state = alert_state(conn, end)
    before_state = alert_state(conn, period.start - timedelta(days=1))
    by_rule, by_town, overdue = alert_figures(state, period, towns, before=before_state)
    pending_town, pending_dept = pending_figures(state, end, towns)
    top_rejects = top_reject_reasons(_rejects(conn, period.start, end))
    trend = alert_trend(conn, period)
    first_run = conn.execute(select(func.min(alert_runs.c.exchange_date))).scalar_one_or_none()
    if first_run is not None and period.start <= pd.Timestamp(first_run).date() <= end:
        notes.append(
            f"预警自 {pd.Timestamp(first_run):%Y-%m-%d} 首次运行，此前没有可比较的基准："
            "当晚发现的预警全部计为本期新增。"
        )

    baseline_day = _roster_baseline(conn, period.start, end)
    baseline = hu if baseline_day is None else _households(conn, baseline_day)
    if baseline_day is not None and baseline_day >= period.start:
        notes.append(
            f"本期开始前仓库中尚无户信息：本期新识别和消除以首次入库"
            f"（{baseline_day:%Y-%m-%d}）的户信息为基准。"
        )
    mon_town, mon_cat, by_risk = monitoring_figures(hu, baseline, ren, period, towns)
    had_roster = baseline_day is not None and baseline_day < period.start
    prev_end = pd.Timestamp(previous.end)
    prev_open = before_state.loc[before_state["status_end"] == "open"]
    rule_total, intake_none = by_rule.iloc[-1], intake_prev["due"].sum() == 0
    changes = change_table(
        [
            (
                "未消除风险监测户",
                mon_town.iloc[-1]["monitored_hh"],
                (_identified(baseline) & ~_eliminated(baseline)).sum() if had_roster else None,
            ),
            (
                "新增预警",
                rule_total["new"],
                state["first_raised"].between(pd.Timestamp(previous.start), prev_end).sum(),
            ),
            ("期末未结预警（待核实）", rule_total["open"], rule_total["opening"]),
            (
                f"超{OVERDUE_DAYS}天未结预警",
                rule_total["overdue"],
                ((prev_end - prev_open["first_raised"]).dt.days > OVERDUE_DAYS).sum(),
            ),
            (
                "缺报批次",
                intake["missing"].sum(),
                None if intake_none else intake_prev["missing"].sum(),
            ),
            (
                "退回批次",
                intake["failed"].sum(),
                None if intake_none else intake_prev["failed"].sum(),
            ),
        ]
    )

    assurance = assurance_figures(
        hu,
        ren,
        end,
        towns,
        canbao=read_current(conn, "YB_CANBAO", end, ["person_key", "year", "status"]),
        xueji=read_current(conn, "JT_XUEJI", end, ["person_key", "enrolment_status"]),
        fangwu=read_current(
            conn,
            "ZJ_FANGWU",
            end,
            ["head_person_key", "assessed_date", "grade", "renovation_status"],
        ),
        yinshui=read_current(conn, "SL_YINSHUI", end, ["head_person_key", "water_safe"]),
    )
    jiesuan = read_current(
        conn,
        "YB_JIESUAN",
        end,
        [
            "person_key",
            "settle_kind",
            "visit_type",
            "settle_date",
            "cancelled",
            "total_cost",
            "in_policy_cost",
            *PAYMENTS,
            "self_burden",
        ],
        where=history_tables["YB_JIESUAN"].c.settle_date >= period.ytd_start,
    )
    medical = medical_figures(jiesuan, ren, period.start, end, towns)
    medical_ytd = medical_figures(jiesuan, ren, period.ytd_start, end, towns)
    employment = employment_figures(
        ren, read_current(conn, "RS_JIUYE", end, ["person_key", "employment_status"]), towns
    )

    total = mon_town.iloc[-1]
    headline = {
        "monitored_hh": total["monitored_hh"],
        "monitored_persons": total["monitored_persons"],
        "elim_rate_hh": total["elim_rate_hh"],
        "elim_rate_persons": total["elim_rate_persons"],
        "new_hh": total["new_hh"],
        "new_elim_hh": total["new_elim_hh"],
        "alerts_new": by_rule.iloc[-1]["new"],
        "alerts_open": by_rule.iloc[-1]["open"],
        "alerts_overdue": by_rule.iloc[-1]["overdue"],
        "deliveries": intake["deliveries"].sum(),
        "on_time_rate": _ratio(intake["on_time"].sum(), intake["due"].sum()),
        "failed": intake["failed"].sum(),
        "missing": intake["missing"].sum(),
        "insured_rate": assurance.iloc[-1]["insured_rate"],
        "out_of_school": assurance.iloc[-1]["out_of_school"],
        "cd_open": assurance.iloc[-1]["cd_hh"] - assurance.iloc[-1]["cd_done"],
        "water_unsafe_hh": assurance.iloc[-1]["water_unsafe_hh"],
        "actual_ratio": medical.iloc[-1]["actual_ratio"],
        "policy_ratio": medical.iloc[-1]["policy_ratio"],
        "employed": employment.iloc[-1]["employed"],
    }
    return ReportFigures(
        period=asked,
        towns=towns,
        headline={k: float(v) for k, v in headline.items()},
        intake=intake,
        intake_ytd=intake_ytd,
        intake_days=days,
        failed_deliveries=failed,
        missing_deliveries=missing,
        alerts_by_rule=by_rule,
        alerts_by_town=by_town,
        alerts_overdue=overdue,
        alerts_trend=trend,
        monitoring_by_town=mon_town,
        monitoring_by_category=mon_cat,
        unresolved_by_risk=by_risk,
        assurance_by_town=assurance,
        medical_by_town=medical,
        medical_ytd_by_town=medical_ytd,
        employment_by_town=employment,
        changes=changes,
        pending_by_town=pending_town,
        pending_by_dept=pending_dept,
        top_rejects=top_rejects,
        light_reasons=[
            f"{r.dept_name}：{r.light}灯，{r.light_reason}"
            for r in intake.itertuples()
            if r.light in ("红", "黄")
        ],
        notes=notes,
        undelivered=undelivered,
        as_of=end,
    )


# --- reading the warehouse ------------------------------------------------------------------------


def _last_night(conn: Connection, end: date) -> date:
    """The last processed night on or before `end`: the latest exchange date a night completed,
    alerts ran or a delivery was recorded for. `end` itself when nothing has run yet."""
    latest = [
        conn.execute(select(func.max(col)).where(col <= end)).scalar_one_or_none()
        for col in (
            nights.c.exchange_date,
            alert_runs.c.exchange_date,
            deliveries.c.exchange_date,
        )
    ]
    found = [pd.Timestamp(d).date() for d in latest if d is not None]
    return max(found) if found else end


def _undelivered(conn: Connection, end: date) -> list[str]:
    """The report's SOURCES with no accepted delivery on or before `end` (in SOURCES order):
    a county's first week or month, or a department that has not started delivering."""
    d = deliveries.c
    delivered = set(
        conn.execute(
            select(d.dataset)
            .where(d.status.in_(ACCEPTED), d.exchange_date <= end, d.dataset.in_(SOURCES))
            .distinct()
        ).scalars()
    )
    return [s for s in SOURCES if s not in delivered]


def _undelivered_note(datasets: Sequence[str], end: date) -> str:
    """The report's note naming the departments (and their datasets) not delivered yet."""
    contracts = load_contracts()
    departments = load_common().departments
    by_dept: dict[str, list[str]] = {}
    for name in datasets:
        contract = contracts[name]
        by_dept.setdefault(contract.dept, []).append(
            f"{name} {contract.title.split(' (')[0].strip()}"
        )
    listed = "；".join(
        f"{departments.get(dept, dept)}（{'、'.join(items)}）" for dept, items in by_dept.items()
    )
    return (
        f"以下部门尚未报送（截至 {end:%Y-%m-%d} 无已接收的交付）：{listed}。"
        "相关指标按尚无数据计算，待报送后可用 datashare report 重新生成本报告。"
    )


def _households(conn: Connection, day: date) -> pd.DataFrame:
    """Roster households on `day` (XC_HU as of that date), the columns the report needs."""
    cols = [
        "household_id",
        "town",
        "village",
        "head_person_key",
        "monitoring_category",
        "risk_types",
        "risk_eliminated",
        "identified_month",
        "eliminated_month",
    ]
    return read_current(conn, "XC_HU", day, cols)[cols].reset_index(drop=True)


def _roster_persons(conn: Connection, day: date, hu: pd.DataFrame) -> pd.DataFrame:
    """Roster persons on `day` with household, town, age and whether they are active.

    Active: no GA_BIANDONG 死亡 event dated on or before `day`. The id number is read only to
    compute the age and is not kept.
    """
    cols = ["person_key", "household_id", "id_number", "labour_skill"]
    ren = read_current(conn, "XC_REN", day, cols)[cols].merge(
        hu[["household_id", "town"]], on="household_id", how="inner"
    )
    ga = read_current(
        conn,
        "GA_BIANDONG",
        day,
        ["person_key", "change_type", "change_date"],
        where=history_tables["GA_BIANDONG"].c.change_type == dd.DEATH,
    )
    dead = ga.loc[dd.died_by(ga["change_type"], ga["change_date"], day), "person_key"]
    return (
        ren.drop(columns="id_number")
        .assign(
            age=dd.ages_on(ren["id_number"], day).astype("float64"),  # NaN where unknown
            active=~ren["person_key"].isin(dead),
        )
        .reset_index(drop=True)
    )


def _town_order(hu: pd.DataFrame) -> list[str]:
    """Towns in the order of the county's division codes, then any others by name."""
    return town_order(hu["town"].dropna())


def _roster_baseline(conn: Connection, start: date, end: date) -> date | None:
    """The roster date period flows are measured from: the day before `start`; the first
    roster load when that falls inside the period; None when there is no roster by `end`."""
    hm = history_merges.c
    first = conn.execute(
        select(func.min(hm.exchange_date)).where(hm.dataset == "XC_HU")
    ).scalar_one_or_none()
    if first is None:
        return None
    first = pd.Timestamp(first).date()
    if first < start:
        return start - timedelta(days=1)
    return first if first <= end else None


def _ledger(conn: Connection, since: date, end: date) -> pd.DataFrame:
    d = deliveries.c
    frame = pd.read_sql(
        select(
            d.dept,
            d.dataset,
            d.exchange_date,
            d.source_file,
            d.status,
            d.rows_loaded,
            d.rows_rejected,
            d.received_at,
            d.reason,
        )
        .where(d.exchange_date >= since, d.exchange_date <= end)
        .order_by(d.exchange_date, d.dataset, d.received_at, d.delivery_id),
        conn,
    )
    return frame.assign(
        exchange_date=pd.to_datetime(frame["exchange_date"]).dt.normalize(),
        # SQLite hands back naive values of DateTime(timezone=True); the ledger writes UTC.
        received_at=pd.to_datetime(frame["received_at"], utc=True),
    )


# --- intake ---------------------------------------------------------------------------------------


def _deadlines(pairs: pd.DataFrame, calendar: Calendar) -> pd.Series:
    """When each (dataset, exchange_date) had to be taken in to count as on time (UTC): its due
    time in the delivery calendar (the calendar's defaults for datasets it never expects) plus
    the intake grace."""
    out = pd.Series(pd.NaT, index=pairs.index, dtype="datetime64[us, UTC]")
    for dataset, rows in pairs.groupby("dataset"):
        entry = calendar.datasets.get(str(dataset))
        offset = calendar.defaults.day_offset
        by = calendar.defaults.by
        if entry is not None:
            offset = offset if entry.day_offset is None else entry.day_offset
            by = entry.by or by
        local = (
            rows["exchange_date"]
            + pd.Timedelta(days=offset)
            + pd.Timedelta(hours=by.hour, minutes=by.minute, seconds=by.second)
        )
        due = local.dt.tz_localize(calendar.timezone).dt.tz_convert("UTC") + calendar.grace
        out.loc[rows.index] = due.astype("datetime64[us, UTC]")
    return out


def intake_figures(
    ledger: pd.DataFrame,
    expected: pd.DataFrame,
    start: date,
    end: date,
    calendar: Calendar | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per department over [start, end]: (table, day lights, failed list, missing list).

    A (dataset, exchange date) is *due* when expected or delivered; *missing* when expected and
    absent from the ledger; *on time* when its first accepted delivery (tasks.freshness
    ACCEPTED) was taken in by the calendar's due time plus grace (as tasks.freshness judges);
    *failed open* when it has a failed delivery and none accepted. Rows loaded and quarantined
    count the standing (status loaded) deliveries. Light: red on a missing or failed-open
    delivery, or an on-time rate below LIGHT_RED_BELOW over LIGHT_RATE_MIN_DUE or more due;
    yellow on any late or failed delivery or quarantined rows above LIGHT_YELLOW_QUARANTINE;
    else green; "—" when nothing was due.
    """
    calendar = calendar or load_calendar()
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    led = ledger.loc[ledger["exchange_date"].between(lo, hi)]
    exp = expected.assign(exchange_date=pd.to_datetime(expected["exchange_date"]).dt.normalize())
    exp = exp.loc[exp["exchange_date"].between(lo, hi), ["dept", "dataset", "exchange_date"]]
    pair = ["dept", "dataset", "exchange_date"]

    accepted = led.loc[led["status"].isin(ACCEPTED)]
    first_ok = accepted.groupby(pair)["received_at"].min().rename("first_ok")
    statuses = led.groupby(pair)["status"].agg(lambda s: ",".join(sorted(set(s))))
    pairs = pd.concat([exp, led[pair]]).drop_duplicates().set_index(pair)
    pairs_frame = pairs.join(first_ok).join(statuses.rename("statuses")).reset_index()
    delivered = pairs_frame["statuses"].notna()
    ok = pairs_frame["first_ok"].notna()
    on_time = ok & (pairs_frame["first_ok"] <= _deadlines(pairs_frame, calendar))
    has_failed = pairs_frame["statuses"].fillna("").str.contains("failed")
    pairs_frame = pairs_frame.assign(
        missing=~delivered,
        on_time=on_time,
        failed_open=has_failed & ~ok,
        day_light=np.select(
            [~delivered | (has_failed & ~ok), has_failed | ~on_time], ["红", "黄"], "绿"
        ),
    )

    departments = load_common().departments
    by_status = led.groupby(["dept", "status"]).size().unstack(fill_value=0)

    def status_count(*names: str) -> pd.Series:
        return sum(
            (by_status[n] for n in names if n in by_status), pd.Series(0, index=by_status.index)
        )

    standing = (
        led.loc[led["status"] == "loaded"].groupby("dept")[["rows_loaded", "rows_rejected"]].sum()
    )
    per_pair = pairs_frame.groupby("dept")[["missing", "on_time", "failed_open"]].sum()
    table = pd.DataFrame({"dept": list(departments)})
    dept = table["dept"]
    table = table.assign(
        dept_name=dept.map(departments),
        deliveries=dept.map(led.groupby("dept").size()),
        accepted=dept.map(status_count(*ACCEPTED)),
        failed=dept.map(status_count("failed")),
        failed_open=dept.map(per_pair["failed_open"]),
        duplicate=dept.map(status_count("duplicate")),
        missing=dept.map(per_pair["missing"]),
        rows_loaded=dept.map(standing["rows_loaded"]),
        rows_quarantined=dept.map(standing["rows_rejected"]),
        due=dept.map(pairs_frame.groupby("dept").size()),
        on_time=dept.map(per_pair["on_time"]),
    )
    counts = [c for c in table.columns if c not in ("dept", "dept_name")]
    table[counts] = table[counts].fillna(0).astype("int64")
    table = table.assign(
        quarantine_rate=_ratio(
            table["rows_quarantined"], table["rows_loaded"] + table["rows_quarantined"]
        ),
        on_time_rate=_ratio(table["on_time"], table["due"]),
    )
    rate = table["on_time_rate"].fillna(1.0)
    table = table.assign(
        light=np.select(
            [
                table["due"] == 0,
                (table["missing"] > 0)
                | (table["failed_open"] > 0)
                | ((rate < LIGHT_RED_BELOW) & (table["due"] >= LIGHT_RATE_MIN_DUE)),
                (table["failed"] > 0)
                | (table["on_time"] < table["due"])
                | (table["quarantine_rate"].fillna(0) > LIGHT_YELLOW_QUARANTINE),
            ],
            ["—", "红", "黄"],
            "绿",
        )
    )
    table = table[
        [
            "dept",
            "dept_name",
            "deliveries",
            "accepted",
            "failed",
            "failed_open",
            "duplicate",
            "missing",
            "rows_loaded",
            "rows_quarantined",
            "quarantine_rate",
            "due",
            "on_time",
            "on_time_rate",
            "light",
        ]
    ]

    order = {"绿": 0, "黄": 1, "红": 2}
    days = (
        pairs_frame.assign(rank=pairs_frame["day_light"].map(order))
        .groupby(["dept", "exchange_date"])["rank"]
        .max()
        .map({v: k for k, v in order.items()})
        .rename("light")
        .reset_index()
    )
    failed = led.loc[led["status"] == "failed"]
    failed = failed.assign(
        received_on=failed["received_at"]
        .dt.tz_convert(calendar.timezone)
        .dt.tz_localize(None)
        .dt.normalize()
    )[["dept", "dataset", "exchange_date", "source_file", "received_on", "reason"]]
    missing = pairs_frame.loc[pairs_frame["missing"], ["dept", "dataset", "exchange_date"]]
    return (
        table,
        days,
        failed.reset_index(drop=True),
        missing.sort_values(["exchange_date", "dataset"]).reset_index(drop=True),
    )


def change_table(items: Sequence[tuple[str, Any, Any]]) -> pd.DataFrame:
    """(label, this period, previous period or None when unknown) as a table with the change."""
    current = pd.Series([float(c) for _, c, _ in items], dtype="float64")
    previous = pd.Series([np.nan if p is None else float(p) for *_, p in items], dtype="float64")
    return pd.DataFrame(
        {
            "item": [name for name, *_ in items],
            "current": current,
            "previous": previous,
            "change": current - previous,
        }
    )


def with_landing_issues(
    table: pd.DataFrame, issues: pd.DataFrame, start: date, end: date
) -> pd.DataFrame:
    """The intake table with `landing_issues`: files in a department's landing folder over
    [start, end] that were not taken in (a name that does not parse, another department's
    dataset, two files for one dataset and date…; warehouse.tables_ops.landing_issues_frame).
    Files outside every department's folder are the bureau's (XC) to sort out."""
    days = pd.to_datetime(issues["exchange_date"])
    within = issues.loc[days.between(pd.Timestamp(start), pd.Timestamp(end))]
    per_dept = within["dept"].fillna("XC").value_counts()
    counts = table["dept"].map(per_dept).fillna(0).astype("int64")
    at = list(table.columns).index("missing") + 1
    table = pd.concat(
        [table.iloc[:, :at], counts.rename("landing_issues"), table.iloc[:, at:]], axis=1
    )
    # A file left untaken is something to look at: a green light turns yellow.
    untaken = (counts > 0) & (table["light"] == "绿")
    return table.assign(light=table["light"].where(~untaken, "黄"))


def explain_lights(table: pd.DataFrame) -> pd.DataFrame:
    """The intake table with `light_reason`: why each department has its light, in words
    (every condition of intake_figures' light that holds, worst first)."""

    def why(r: Any) -> str:
        if r.light == "—":
            return "本期无应报的交付"
        parts = []
        if r.missing:
            parts.append(f"缺报 {r.missing} 批")
        if r.failed_open:
            parts.append(f"退回后未重报 {r.failed_open} 批")
        late = r.due - r.on_time - r.missing - r.failed_open
        if r.due >= LIGHT_RATE_MIN_DUE and r.on_time_rate < LIGHT_RED_BELOW:
            parts.append(f"按时率 {r.on_time_rate:.1%}，低于 {LIGHT_RED_BELOW:.0%}")
        if late > 0:
            parts.append(f"迟报 {late} 批")
        if r.failed > r.failed_open:
            parts.append(f"曾退回 {r.failed - r.failed_open} 批（已重报）")
        if getattr(r, "landing_issues", 0):
            parts.append(f"交换区另有 {r.landing_issues} 个文件未接收（见交换台账）")
        if r.quarantine_rate > LIGHT_YELLOW_QUARANTINE:
            parts.append(f"问题数据占 {r.quarantine_rate:.1%}，超过 {LIGHT_YELLOW_QUARANTINE:.0%}")
        return "；".join(parts) if parts else "全部按时报送，问题数据不超过 5%"

    return table.assign(light_reason=[why(r) for r in table.itertuples()])


def _rejects(conn: Connection, start: date, end: date) -> pd.DataFrame:
    """Quarantined rows of the deliveries of [start, end]: dept, dataset, column, rule."""
    r, d = rejects.c, deliveries.c
    return pd.read_sql(
        select(d.dept, r.dataset, r.column, r.rule, func.count().label("rows"))
        .select_from(rejects.join(deliveries, r.delivery_id == d.delivery_id))
        .where(r.exchange_date >= start, r.exchange_date <= end)
        .group_by(d.dept, r.dataset, r.column, r.rule),
        conn,
    )


def top_reject_reasons(counts: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Each department's `top` most frequent (dataset, column, rule) among its quarantined rows,
    in Chinese: the column's header from the contract, the rule's text (tasks.labels)."""
    departments = load_common().departments
    cols = ["dept_name", "dataset", "column_label", "rule_text", "rows"]
    if counts.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "rows" else object) for c in cols})
    order = {d: i for i, d in enumerate(departments)}
    ranked = counts.assign(
        rows=counts["rows"].astype("int64"),
        order=counts["dept"].map(order).fillna(len(order)),
    ).sort_values(["order", "rows", "dataset", "column", "rule"], ascending=[1, 0, 1, 1, 1])
    ranked = ranked.groupby("dept", sort=False).head(top)
    return pd.DataFrame(
        {
            "dept_name": [departments.get(d, d) for d in ranked["dept"]],
            "dataset": ranked["dataset"].to_numpy(),
            "column_label": [
                column_label(ds, c) if c else "（整个文件）"
                for ds, c in zip(ranked["dataset"], ranked["column"], strict=True)
            ],
            "rule_text": [label("rule", str(x)) for x in ranked["rule"]],
            "rows": ranked["rows"].to_numpy(),
        }
    )[cols].reset_index(drop=True)


def pending_figures(
    state: pd.DataFrame, end: date, towns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts awaiting verification (待核实: open on `end`) by town, and by each department they
    were pushed to: how many, how many older than OVERDUE_DAYS, the oldest and its wait.

    By department an alert pushed to several departments counts under each; the 合计 row
    counts each alert once."""
    p = state.loc[state["status_end"] == "open"]
    age = (pd.Timestamp(end) - p["first_raised"]).dt.days
    p = p.assign(age=age, over=age > OVERDUE_DAYS)

    def summary(frame: pd.DataFrame) -> dict[str, Any]:
        return {
            "pending": len(frame),
            "pending_overdue": int(frame["over"].sum()),
            "oldest": frame["first_raised"].min() if len(frame) else pd.NaT,
            "oldest_days": frame["age"].max() if len(frame) else np.nan,
        }

    def table(key: str, index: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
        rows = [{key: k, **summary(frame.loc[frame[key] == k])} for k in index]
        rows.append({key: TOTAL, **summary(frame.drop_duplicates("alert_id"))})
        out = pd.DataFrame(rows)
        return out.astype(
            {"pending": "int64", "pending_overdue": "int64", "oldest_days": "float64"}
        ).assign(oldest=pd.to_datetime(out["oldest"]))

    town_list = list(towns) + sorted(set(p["town"]) - set(towns))
    by_town = table("town", town_list, p)
    departments = load_common().departments
    pushed = p.assign(dept=p["pushed_to"].str.split(",")).explode("dept")
    pushed = pushed.loc[pushed["dept"].fillna("") != ""]
    depts = [d for d in departments if d in set(pushed["dept"])]
    depts += sorted(set(pushed["dept"]) - set(depts))
    by_dept = table("dept", depts, pushed.assign(alert_id=pushed["alert_id"]))
    total = by_dept.index[-1]
    by_dept.loc[total] = pd.Series({"dept": TOTAL, **summary(p)})
    by_dept = by_dept.astype({"pending": "int64", "pending_overdue": "int64"})
    by_dept.insert(1, "dept_name", [departments.get(d, "") for d in by_dept["dept"]])
    return by_town, by_dept


# --- alerts ---------------------------------------------------------------------------------------


def alert_state(conn: Connection, end: date) -> pd.DataFrame:
    """Every alert raised by `end`, with its status on `end` (the alert engine's lifecycle:
    tasks.alerts.alerts_frame of the last run on or before `end`) and the day it closed:
    resolved_on, or the checked_date of the XC_HECHA feedback that closed it."""
    frame = alerts_frame(conn, end)
    feedback = read_feedback(conn, end).drop_duplicates("alert_id", keep="last")
    status = frame["status"].astype(str)
    checked = _lookup(frame["alert_id"], feedback.set_index("alert_id")["checked_date"])
    resolved = pd.to_datetime(frame["resolved_on"]).astype("datetime64[s]")
    closed_on = resolved.where(
        status == "resolved", checked.where(status.isin(list(FEEDBACK_STATUS.values())))
    )
    return pd.DataFrame(
        {
            "alert_id": frame["alert_id"].astype(str),
            "rule_id": frame["rule_id"].astype(str),
            "town": frame["town"].astype(object).where(frame["town"].notna(), NO_TOWN),
            "village": frame["village"].astype(object),
            "first_raised": pd.to_datetime(frame["first_raised"]),
            "status_end": status,
            "closed_on": closed_on,
            "pushed_to": frame["pushed_to"].astype(object).fillna("").astype(str),
        }
    )


def alert_figures(
    state: pd.DataFrame,
    period: Period,
    towns: Sequence[str],
    before: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Alerts by rule and by town (period and year-to-date flows, stock on period.end), and the
    open alerts older than OVERDUE_DAYS on period.end.

    Flows are read from the status on period.end: new = first raised in the span; resolved /
    confirmed / dismissed / data_error = has that status on period.end and closed in the span
    (an alert closed and re-opened within the span counts as open only).
    before: alert_state on the day before the period (None: nothing was open). opening = open
    then; reopened = first raised before the period, not open then, and open on period.end or
    closed in the span; so 期末未结 = opening + new + reopened − the four closed flows.
    """
    end = pd.Timestamp(period.end)
    open_before = (
        set() if before is None else set(before.loc[before["status_end"] == "open", "alert_id"])
    )
    was_open = state["alert_id"].isin(open_before)

    def flows(lo: date, prefix: str) -> pd.DataFrame:
        span = (pd.Timestamp(lo), end)
        closed = state["closed_on"].between(*span)
        return pd.DataFrame(
            {
                f"{prefix}new": state["first_raised"].between(*span),
                **{
                    f"{prefix}{s}": closed & (state["status_end"] == s)
                    for s in ("resolved", "confirmed", "dismissed", "data_error")
                },
            }
        )

    age = (end - state["first_raised"]).dt.days
    is_open = state["status_end"] == "open"
    period_flows = flows(period.start, "")
    closed_in_span = period_flows[["resolved", "confirmed", "dismissed", "data_error"]].any(axis=1)
    reopened = (
        (state["first_raised"] < pd.Timestamp(period.start))
        & ~was_open
        & (is_open | closed_in_span)
    )
    marks = pd.concat(
        [
            pd.DataFrame({"opening": was_open}),
            period_flows.iloc[:, :1],
            pd.DataFrame({"reopened": reopened}),
            period_flows.iloc[:, 1:],
            pd.DataFrame({"open": is_open, "overdue": is_open & (age > OVERDUE_DAYS)}),
            flows(period.ytd_start, "ytd_"),
        ],
        axis=1,
    ).astype("int64")
    cols = list(marks.columns)

    rules = list(RULES) + sorted(set(state["rule_id"]) - set(RULES))
    by_rule = marks.groupby(state["rule_id"]).sum().reindex(rules, fill_value=0)
    by_rule = by_rule.rename_axis("rule_id").reset_index()
    by_rule.insert(1, "risk_type", by_rule["rule_id"].map(lambda r: RULES.get(r, ("", ""))[0]))
    by_rule.insert(2, "unit", by_rule["rule_id"].map(lambda r: RULES.get(r, ("", "条"))[1]))
    by_rule = _with_total(by_rule, "rule_id", cols)

    town_list = list(towns) + sorted(set(state["town"]) - set(towns))
    by_town = marks.groupby(state["town"]).sum().reindex(town_list, fill_value=0)
    by_town = _with_total(by_town.rename_axis("town").reset_index(), "town", cols)

    # Ages of the selected rows only: assigning the whole `age` Series to an empty selection
    # gives the frame age's index (pandas), i.e. one empty row per alert — the 175 rows of "—".
    selected = marks["overdue"] == 1
    overdue = state.loc[selected].assign(days_open=age.loc[selected].to_numpy())
    overdue = overdue.sort_values(["first_raised", "alert_id"])[
        ["alert_id", "rule_id", "town", "village", "first_raised", "days_open"]
    ]
    return by_rule, by_town, overdue.astype({"days_open": "int64"}).reset_index(drop=True)


def alert_trend(conn: Connection, period: Period) -> pd.DataFrame:
    """Open alerts by rule on each alert run date of the trend window (at least
    TREND_MIN_DAYS days ending period.end, or the period).

    Open on run date n (as tasks.alerts.with_status decides): held on n, and not closed by
    feedback checked on or before n during the episode that n belongs to.
    """
    lo = min(period.start, period.end - timedelta(days=TREND_MIN_DAYS - 1))
    runs = [
        pd.Timestamp(d)
        for d in conn.execute(
            select(alert_runs.c.exchange_date)
            .where(alert_runs.c.exchange_date <= period.end)
            .order_by(alert_runs.c.exchange_date)
        ).scalars()
    ]
    ad = alert_days.c
    in_window = select(ad.alert_id).where(ad.exchange_date >= lo, ad.exchange_date <= period.end)
    held = pd.read_sql(
        select(ad.alert_id, ad.rule_id, ad.exchange_date).where(
            ad.exchange_date <= period.end, ad.alert_id.in_(in_window)
        ),
        conn,
    )
    held = held.assign(night=pd.to_datetime(held["exchange_date"]))
    run_no = {r: i for i, r in enumerate(runs)}
    held = held.assign(run=held["night"].map(run_no)).dropna(subset=["run"])
    held = held.sort_values(["alert_id", "night"])
    held = held.assign(episode=held["run"] - held.groupby("alert_id").cumcount())
    held = held.assign(opened_on=held.groupby(["alert_id", "episode"])["night"].transform("min"))
    feedback = read_feedback(conn, period.end).drop_duplicates("alert_id", keep="last")
    checked = _lookup(held["alert_id"], feedback.set_index("alert_id")["checked_date"])
    governed = checked.notna() & (checked <= held["night"]) & (held["opened_on"] <= checked)
    shown = held.loc[~governed & (held["night"] >= pd.Timestamp(lo))]
    trend = shown.groupby(["night", "rule_id"]).size().unstack(fill_value=0)
    nights = pd.DatetimeIndex([r for r in runs if r >= pd.Timestamp(lo)], name="night")
    trend = trend.reindex(nights, fill_value=0)
    rules = [r for r in RULES if r in trend.columns] + sorted(set(trend.columns) - set(RULES))
    return trend[rules].astype("int64").reset_index().rename_axis(columns=None)


# --- monitoring -----------------------------------------------------------------------------------


def _identified(hu: pd.DataFrame) -> pd.Series:
    return dd.identified(hu["monitoring_category"])


def _eliminated(hu: pd.DataFrame) -> pd.Series:
    return dd.eliminated(hu["monitoring_category"], hu["risk_eliminated"])


def monitoring_figures(
    hu: pd.DataFrame,
    baseline: pd.DataFrame,
    ren: pd.DataFrame,
    period: Period,
    towns: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Monitoring stock on period.end and flows: by town, by category, unresolved by risk type.

    Identified (监测对象): a roster household with a monitoring_category; monitored: identified
    and risk not eliminated; 风险消除率 = eliminated / identified, households and persons.
    Persons are a household's active roster members. Period flows compare the roster on the day
    before the period with period.end (new: identified now, not then; eliminated: eliminated
    now, not then); year-to-date flows use identified_month / eliminated_month.
    """
    members = ren.loc[ren["active"]].groupby("household_id").size()
    ym_lo, ym_hi = f"{period.ytd_start:%Y-%m}", f"{period.end:%Y-%m}"
    was_identified = set(baseline.loc[_identified(baseline), "household_id"])
    was_eliminated = set(baseline.loc[_eliminated(baseline), "household_id"])
    ident, elim = _identified(hu), _eliminated(hu)
    h = pd.DataFrame(
        {
            "town": hu["town"],
            "category": hu["monitoring_category"],
            "persons": _pick(hu["household_id"], members).fillna(0).astype("int64"),
            "identified": ident,
            "monitored": ident & ~elim,
            "eliminated": elim,
            "new": ident & ~hu["household_id"].isin(was_identified),
            "new_elim": elim & ~hu["household_id"].isin(was_eliminated),
            # The year to date contains the period: a household the period saw identified is
            # identified this year even when its identified_month says otherwise.
            "ytd_new": ident
            & (
                hu["identified_month"].between(ym_lo, ym_hi)
                | ~hu["household_id"].isin(was_identified)
            ),
            "ytd_elim": elim
            & (
                hu["eliminated_month"].between(ym_lo, ym_hi)
                | ~hu["household_id"].isin(was_eliminated)
            ),
        }
    )
    flags = {
        "identified": "identified",
        "monitored": "monitored",
        "eliminated": "eliminated",
        "new": "new",
        "new_elim": "new_elim",
        "ytd_new": "ytd_new",
        "ytd_elim": "ytd_elim",
    }

    def counts(by: str, index: Sequence[str]) -> pd.DataFrame:
        out = {}
        for name, flag in flags.items():
            sel = h.loc[h[flag]]
            out[f"{name}_hh"] = sel.groupby(by).size()
            out[f"{name}_persons"] = sel.groupby(by)["persons"].sum()
        table = pd.DataFrame(out).reindex(list(index)).fillna(0).astype("int64")
        return table.rename_axis(by).reset_index()

    def rates(table: pd.DataFrame) -> pd.DataFrame:
        table = table.assign(
            elim_rate_hh=_ratio(table["eliminated_hh"], table["identified_hh"]),
            elim_rate_persons=_ratio(table["eliminated_persons"], table["identified_persons"]),
        )
        return table

    cols = [
        "identified_hh",
        "identified_persons",
        "monitored_hh",
        "monitored_persons",
        "eliminated_hh",
        "eliminated_persons",
        "elim_rate_hh",
        "elim_rate_persons",
        "new_hh",
        "new_persons",
        "new_elim_hh",
        "new_elim_persons",
    ]
    ytd = ["ytd_new_hh", "ytd_new_persons", "ytd_elim_hh", "ytd_elim_persons"]
    count_cols = [c for c in cols + ytd if "rate" not in c]
    by_town = counts("town", towns)
    by_town = rates(_with_total(by_town, "town", count_cols))[["town", *cols, *ytd]]
    cats = list(CATEGORIES) + sorted(set(h["category"].dropna()) - set(CATEGORIES))
    by_cat = counts("category", cats)
    by_cat = rates(_with_total(by_cat, "category", count_cols))[["category", *cols]]

    monitored = h.loc[h["monitored"]]
    risks = hu.loc[monitored.index, "risk_types"].fillna("").astype(str).str.split("、").explode()
    risks = risks.loc[risks != ""]
    per_risk = pd.DataFrame({"risk": risks, "persons": monitored["persons"].reindex(risks.index)})
    names = list(RISK_TYPES) + sorted(set(risks) - set(RISK_TYPES))
    by_risk = pd.DataFrame(
        {
            "risk_type": names,
            "monitored_hh": per_risk.groupby("risk").size().reindex(names).fillna(0).to_numpy(),
            "monitored_persons": per_risk.groupby("risk")["persons"]
            .sum()
            .reindex(names)
            .fillna(0)
            .to_numpy(),
        }
    )
    by_risk = by_risk.astype({"monitored_hh": "int64", "monitored_persons": "int64"})
    by_risk = by_risk.assign(share_hh=_ratio(by_risk["monitored_hh"], len(monitored)))
    return by_town, by_cat, by_risk


# --- 三保障 and water -----------------------------------------------------------------------------


def assurance_figures(
    hu: pd.DataFrame,
    ren: pd.DataFrame,
    end: date,
    towns: Sequence[str],
    *,
    canbao: pd.DataFrame,
    xueji: pd.DataFrame,
    fangwu: pd.DataFrame,
    yinshui: pd.DataFrame,
) -> pd.DataFrame:
    """By town on `end`, over active roster persons and roster households.

    Insured: a YB_CANBAO row of end's year with status 正常参保. Out of school: aged 6–15 and
    辍学 in JT_XUEJI, or absent from it. Houses: the head's latest assessment (greatest
    assessed_date) is C or D; done = 竣工 or 验收. Water: the head's SL_YINSHUI water_safe is 否;
    unsurveyed: no SL_YINSHUI row for the head.
    """
    active = ren.loc[ren["active"]]
    insured_keys = canbao.loc[
        (canbao["year"] == end.year) & (canbao["status"] == "正常参保"), "person_key"
    ]
    status = _pick(
        active["person_key"],
        xueji.drop_duplicates("person_key").set_index("person_key")["enrolment_status"],
    )
    lo, hi = COMPULSORY_AGES
    child = active["age"].between(lo, hi)
    p = pd.DataFrame(
        {
            "town": active["town"],
            "household_id": active["household_id"],
            "roster_persons": True,
            "insured": active["person_key"].isin(insured_keys),
            "children": child,
            "dropout": child & _among(status, ["辍学"]),
            "not_enrolled": child & status.isna(),
        }
    )
    p = p.assign(uninsured=~p["insured"], out_of_school=p["dropout"] | p["not_enrolled"])
    persons = p.groupby("town")[
        [
            "roster_persons",
            "insured",
            "uninsured",
            "children",
            "dropout",
            "not_enrolled",
            "out_of_school",
        ]
    ].sum()
    persons["out_of_school_hh"] = (
        p.loc[p["out_of_school"]].groupby("town")["household_id"].nunique()
    )

    latest = dd.latest_assessments(fangwu).set_index("head_person_key")
    grade = _pick(hu["head_person_key"], latest["grade"])
    reno = _pick(hu["head_person_key"], latest["renovation_status"])
    cd = _among(grade, list(dd.UNSAFE_HOUSE_GRADES))
    water = _pick(
        hu["head_person_key"],
        yinshui.drop_duplicates("head_person_key").set_index("head_person_key")["water_safe"],
    )
    members = active.groupby("household_id").size()
    unsafe = _among(water, [False])
    h = pd.DataFrame(
        {
            "town": hu["town"],
            "cd_hh": cd,
            "cd_done": cd & _among(reno, list(dd.RENOVATION_DONE)),
            "cd_building": cd & _among(reno, ["在建"]),
            "cd_not_started": cd & _among(reno, ["未开工"]),
            "water_unsafe_hh": unsafe,
            "water_unsafe_persons": _pick(hu["household_id"], members).fillna(0).where(unsafe, 0),
            "water_unsurveyed_hh": water.isna(),
        }
    )
    h = h.assign(cd_other=h["cd_hh"] & ~(h["cd_done"] | h["cd_building"] | h["cd_not_started"]))
    houses = h.groupby("town").sum()
    cols = [
        "roster_persons",
        "insured",
        "uninsured",
        "children",
        "dropout",
        "not_enrolled",
        "out_of_school",
        "out_of_school_hh",
        "cd_hh",
        "cd_done",
        "cd_building",
        "cd_not_started",
        "cd_other",
        "water_unsafe_hh",
        "water_unsafe_persons",
        "water_unsurveyed_hh",
    ]
    table = persons.join(houses, how="outer").reindex(list(towns)).fillna(0).astype("int64")
    table = _with_total(table.rename_axis("town").reset_index(), "town", cols)
    table = table.assign(
        insured_rate=_ratio(table["insured"], table["roster_persons"]),
        renovation_rate=_ratio(table["cd_done"], table["cd_hh"]),
    )
    order = [
        "town",
        "roster_persons",
        "insured",
        "uninsured",
        "insured_rate",
        "children",
        "dropout",
        "not_enrolled",
        "out_of_school",
        "out_of_school_hh",
        "cd_hh",
        "cd_done",
        "cd_building",
        "cd_not_started",
        "cd_other",
        "renovation_rate",
        "water_unsafe_hh",
        "water_unsafe_persons",
        "water_unsurveyed_hh",
    ]
    return table[order]


# --- medical and employment -----------------------------------------------------------------------


def medical_figures(
    jiesuan: pd.DataFrame, ren: pd.DataFrame, lo: date, hi: date, towns: Sequence[str]
) -> pd.DataFrame:
    """Inpatient settlements of roster persons settled in [lo, hi], by town.

    Counted: settle_kind 正常, not cancelled by a 冲销 (as of the warehouse date), visit_type 住院,
    the person on the roster on period.end (deceased included). Missing amounts count as 0.
    实际报销比例 = (fund + critical illness + medical aid + other) / total cost;
    政策范围内报销比例 = the same / in_policy_cost.
    """
    town_of = ren.drop_duplicates("person_key").set_index("person_key")
    s = jiesuan.loc[
        (jiesuan["settle_kind"] == "正常")
        & ~jiesuan.get("cancelled", pd.Series(False, index=jiesuan.index))
        .fillna(False)
        .astype(bool)
        & (jiesuan["visit_type"] == "住院")
        & jiesuan["settle_date"].between(pd.Timestamp(lo), pd.Timestamp(hi))
        & jiesuan["person_key"].isin(town_of.index)
    ]
    money = ["total_cost", "in_policy_cost", *PAYMENTS, "self_burden"]
    s = s[["person_key", *money]].fillna({c: 0.0 for c in money})
    s = s.assign(
        town=_pick(s["person_key"], town_of["town"]),
        household_id=_pick(s["person_key"], town_of["household_id"]),
        reimbursed=s[list(PAYMENTS)].sum(axis=1),
    )
    g = s.groupby("town")
    table = pd.DataFrame(
        {
            "settlements": g.size(),
            "persons": g["person_key"].nunique(),
            "households": g["household_id"].nunique(),
        }
    )
    sums = g[[*money, "reimbursed"]].sum()
    table = table.join(sums).reindex(list(towns))
    ints = ["settlements", "persons", "households"]
    table[ints] = table[ints].fillna(0).astype("int64")
    table = table.fillna(0.0).rename_axis("town").reset_index()
    total = {
        "town": TOTAL,
        "settlements": len(s),
        "persons": s["person_key"].nunique(),
        "households": s["household_id"].nunique(),
        **{c: s[c].sum() for c in [*money, "reimbursed"]},
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    money_cols = [*money, "reimbursed"]
    table[money_cols] = table[money_cols].astype("float64").round(2)
    table = table.assign(
        actual_ratio=_ratio(table["reimbursed"], table["total_cost"]),
        policy_ratio=_ratio(table["reimbursed"], table["in_policy_cost"]),
    )
    return table[
        [
            "town",
            "settlements",
            "persons",
            "households",
            "total_cost",
            "in_policy_cost",
            *PAYMENTS,
            "reimbursed",
            "self_burden",
            "actual_ratio",
            "policy_ratio",
        ]
    ]


def employment_figures(
    ren: pd.DataFrame, jiuye: pd.DataFrame, towns: Sequence[str]
) -> pd.DataFrame:
    """Labour members (active roster persons aged 16–60, 技能/普通劳动力) by their RS_JIUYE
    employment_status on the report date, by town; employed = every status but 未就业."""
    lab = ren.loc[dd.is_labour(ren["active"], ren["age"], ren["labour_skill"])]
    status = _pick(
        lab["person_key"],
        jiuye.drop_duplicates("person_key").set_index("person_key")["employment_status"],
    )
    p = pd.DataFrame(
        {
            "town": lab["town"],
            "household_id": lab["household_id"],
            "labour": True,
            **{col: _among(status, [s]) for s, col in EMPLOYMENT.items()},
            "unemployed": _among(status, ["未就业"]),
            "unregistered": status.isna(),
        }
    )
    p = p.assign(employed=p[list(EMPLOYMENT.values())].any(axis=1))
    cols = ["labour", *EMPLOYMENT.values(), "employed", "unemployed", "unregistered"]
    table = p.groupby("town")[cols].sum()
    table["labour_hh"] = p.groupby("town")["household_id"].nunique()
    table["employed_hh"] = p.loc[p["employed"]].groupby("town")["household_id"].nunique()
    cols += ["labour_hh", "employed_hh"]
    table = table.reindex(list(towns)).fillna(0).astype("int64").rename_axis("town")
    total = {c: int(p[c].sum()) for c in cols[:-2]}
    total |= {
        "labour_hh": p["household_id"].nunique(),
        "employed_hh": p.loc[p["employed"], "household_id"].nunique(),
    }
    table = pd.concat(
        [table.reset_index(), pd.DataFrame([{"town": TOTAL, **total}])], ignore_index=True
    )
    return table.assign(employment_rate=_ratio(table["employed"], table["labour"]))


# --- small helpers --------------------------------------------------------------------------------


def _ratio(num: Any, den: Any) -> Any:
    """num / den as float, NaN where den is 0 (works on scalars and Series)."""
    if isinstance(num, pd.Series) or isinstance(den, pd.Series):
        n = pd.Series(num, dtype="float64") if not isinstance(num, pd.Series) else num
        d = den if isinstance(den, pd.Series) else pd.Series(den, index=n.index)
        return (n.astype("float64") / d.astype("float64").where(d != 0)).astype("float64")
    return float(num) / float(den) if den else float("nan")


def _lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """values[key] for each key (missing: NaT/NaN), as datetime64[s] when values are dates.

    Series.map with a datetime Series fails on an empty input (pandas 3.1); reindex does not.
    """
    found = pd.Series(values.reindex(keys.to_numpy()).to_numpy(), index=keys.index)
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or values.empty:
        found = pd.to_datetime(found).astype("datetime64[s]")
    return found


def _pick(keys: pd.Series, values: pd.Series) -> pd.Series:
    """values[key] for each key (missing where absent), in the dtype of `values`.

    Series.map infers the result's type from what it finds: when nothing matches (a dataset not
    delivered yet, or with no row for the roster) it gives float NaN, and comparing that with
    strings fails in Arrow. Reindexing keeps the values' own type, empty or not.
    """
    found = values.reindex(keys.to_numpy())
    return pd.Series(found.array, index=keys.index, name=values.name)


def _among(values: pd.Series, wanted: Sequence[Any]) -> pd.Series:
    """Plain bool: the value is one of `wanted` (missing is not)."""
    hit = values.isin(list(wanted)) & values.notna()
    return hit.fillna(False).astype(bool)


def _with_total(table: pd.DataFrame, label: str, columns: Sequence[str]) -> pd.DataFrame:
    """Append a 合计 row summing `columns` (other columns empty)."""
    total = {label: TOTAL, **{c: table[c].sum() for c in columns}}
    out = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    out[list(columns)] = out[list(columns)].astype("int64")
    return out


# --- charts (inline SVG) --------------------------------------------------------------------------

_RC: Any = {
    "svg.fonttype": "none",
    "svg.hashsalt": "datashare-report",
    "font.family": "sans-serif",
    "font.sans-serif": [*FONT_FAMILY[:-1], "DejaVu Sans"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(fig: Figure) -> str:
    """A figure as inline SVG: text stays text (the browser's CJK fonts draw it), no XML
    prologue, no metadata, no namespace URLs, deterministic ids."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Without a CJK font installed here, matplotlib measures 中文 with a fallback glyph and
        # says so; the text is still written as text and the viewer's fonts render it.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    return svg.replace("'DejaVu Sans', ", "")


def chart_alert_trend(trend: pd.DataFrame) -> str:
    """Open alerts night by night, one small panel per rule that had any (small multiples: a
    dozen lines in one chart cannot be read), each titled with its last night's count and its
    change over the window; every panel has its own scale."""
    rules = [c for c in trend.columns if c != "night" and trend[c].sum() > 0]
    cols, panel_w, panel_h = 4, 1.85, 1.25
    rows = max(1, -(-len(rules) // cols))
    with rc_context(_RC):
        fig = Figure(figsize=(8.0, rows * panel_h + 0.65))
        fig.text(
            0.01,
            1 - 0.08 / fig.get_size_inches()[1],
            "每日未结预警（按规则；各小图纵轴刻度不同）",
            ha="left",
            va="top",
            fontsize=9.5,
        )
        if not rules:
            fig.text(0.5, 0.4, "无未结预警", ha="center", va="center")
        nights = trend["night"]
        for k, rule in enumerate(rules):
            r, c = divmod(k, cols)
            ax = fig.add_axes(
                (
                    (0.35 + c * (panel_w + 0.12)) / 8.0,
                    1 - ((r + 1) * panel_h + 0.35) / fig.get_size_inches()[1],
                    (panel_w - 0.3) / 8.0,
                    (panel_h - 0.55) / fig.get_size_inches()[1],
                )
            )
            values = trend[rule]
            ax.fill_between(nights, values, color="#bbdefb", linewidth=0)
            ax.plot(nights, values, color="#1565c0", linewidth=1.2)
            change = int(values.iloc[-1] - values.iloc[0])
            title = f"{rule} {RULES.get(rule, ('', ''))[0]}".strip()
            ax.set_title(
                f"{title}：{int(values.iloc[-1])} 条（{change:+d}）", loc="left", fontsize=7.5
            )
            ax.set_ylim(0, max(1, int(values.max())) * 1.15)
            ax.set_yticks([0, max(1, int(values.max()))])
            ax.tick_params(labelsize=6.5, length=2)
            ax.set_xticks(
                [nights.iloc[0], nights.iloc[-1]],
                [f"{nights.iloc[0]:%m-%d}", f"{nights.iloc[-1]:%m-%d}"],
            )
        return _svg(fig)


def _axes_box(fig: Figure, left: float, bottom: float, right: float, top: float) -> Any:
    """Axes placed by margins in inches (no text measuring: CJK metrics vary by machine)."""
    w, h = fig.get_size_inches()
    return fig.add_axes((left / w, bottom / h, 1 - (left + right) / w, 1 - (bottom + top) / h))


def chart_elimination(by_town: pd.DataFrame) -> str:
    """风险消除率 by town, households and persons (towns with no monitoring object left out)."""
    rows = by_town.loc[by_town["identified_hh"] > 0].iloc[::-1]
    with rc_context(_RC):
        fig = Figure(figsize=(8.0, 0.36 * max(len(rows), 1) + 1.3))
        ax = _axes_box(fig, 1.1, 0.6, 0.3, 0.4)
        y = np.arange(len(rows))
        hh = rows["elim_rate_hh"].fillna(0).to_numpy() * 100
        pp = rows["elim_rate_persons"].fillna(0).to_numpy() * 100
        ax.barh(y + 0.2, hh, height=0.38, color="#1565c0", label="户")
        ax.barh(y - 0.2, pp, height=0.38, color="#90caf9", label="人")
        bases = zip(y, hh, rows["eliminated_hh"], rows["identified_hh"], strict=True)
        for yi, v, done, base in bases:
            # the base count beside the rate: 50 % of 2 households is not 50 % of 200
            ax.text(v + 0.8, yi + 0.2, f"{v:.1f}%（{done}/{base} 户）", va="center", fontsize=7)
        ax.set_yticks(y, list(rows["town"]))
        ax.set_xlim(0, 125)
        ax.set_xticks([0, 20, 40, 60, 80, 100])
        ax.set_xlabel("风险消除率（%）")
        ax.set_title("各乡镇风险消除率（已消除 / 监测对象）", loc="left")
        if len(rows):
            ax.legend(loc="lower right", frameon=False)
        else:
            ax.text(56, 0, "无监测对象", ha="center", va="center")
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        return _svg(fig)


def chart_intake(intake: pd.DataFrame, days: pd.DataFrame, period: Period) -> str:
    """Intake lights: department x day (worst light of its deliveries due that day), and the
    department's light for the period."""
    depts = list(intake["dept"])
    dates = pd.date_range(period.start, period.end, freq="D")
    lookup = {(r.dept, r.exchange_date): r.light for r in days.itertuples()}
    period_light = intake.set_index("dept")["light"]
    with rc_context(_RC):
        fig = Figure(figsize=(max(6.0, 2.0 + 0.24 * (len(dates) + 2)), 0.3 * len(depts) + 1.1))
        ax = _axes_box(fig, 1.7, 0.45, 0.2, 0.5)
        for yi, dept in enumerate(reversed(depts)):
            colours = [LIGHT_COLOURS[lookup.get((dept, d), "—")] for d in dates]
            ax.scatter(np.arange(len(dates)), [yi] * len(dates), c=colours, s=42, marker="s")
            ax.scatter(
                [len(dates) + 1], [yi], c=[LIGHT_COLOURS[period_light[dept]]], s=120, marker="o"
            )
        names = intake.set_index("dept")["dept_name"]
        ax.set_yticks(np.arange(len(depts)), [names[d] for d in reversed(depts)])
        step = 1 if len(dates) <= 10 else 3
        xt = list(range(0, len(dates), step))
        ax.set_xticks([*xt, len(dates) + 1], [f"{dates[i]:%m-%d}" for i in xt] + ["本期"])
        ax.set_xlim(-0.8, len(dates) + 1.8)
        ax.set_ylim(-0.7, len(depts) - 0.3)
        ax.tick_params(length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        # At the figure's left edge: a week's chart is narrower than this title.
        fig.text(
            0.01,
            1 - 0.12 / fig.get_size_inches()[1],
            "交换信号灯（绿：按时；黄：迟报或曾退回；红：缺报或退回未重报；灰：无应报）",
            ha="left",
            va="top",
            fontsize=8.5,
        )
        return _svg(fig)


# --- rendering ------------------------------------------------------------------------------------


def _fmt(value: Any, kind: Kind) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "—"
    if kind == "delta":
        return f"{int(value):+,}" if value else "0"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{float(value):,.2f}"
    if kind == "ratio":
        return f"{float(value):.1%}"
    if kind == "date":
        return f"{pd.Timestamp(value):%Y-%m-%d}"
    return str(value)


def _column(name: str) -> tuple[str, Kind]:
    if name in COLUMNS:
        return COLUMNS[name]
    return name, "int"  # rule columns of the trend table: counts


def _html_table(frame: pd.DataFrame) -> dict[str, Any]:
    heads = [(_column(c)[0], _column(c)[1]) for c in frame.columns]
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for (_, kind), value, col in zip(heads, record, frame.columns, strict=True):
            cells.append(
                {
                    "text": _fmt(value, kind),
                    "num": kind != "text" and kind != "date",
                    "light": value if col == "light" else None,
                }
            )
        rows.append({"cells": cells, "total": str(record[0]) == TOTAL})
    return {"heads": heads, "rows": rows}


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "report_templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_html(figures: ReportFigures) -> str:
    """The report as one self-contained HTML page (no external script, style, font or image)."""
    charts = {
        "交换接收": chart_intake(figures.intake, figures.intake_days, figures.period),
        "风险预警": chart_alert_trend(figures.alerts_trend),
        "监测对象": chart_elimination(figures.monitoring_by_town.iloc[:-1]),
    }
    sections = [
        {
            "title": title,
            "chart": charts.get(title),
            "tables": [{"title": t, **_html_table(f)} for t, f in tables],
        }
        for title, tables in figures.sections()
    ]
    headline = [
        (label, _fmt(figures.headline[k], kind)) for k, (label, kind) in HEADLINE_LABELS.items()
    ]
    return _ENV.get_template("report.html.j2").render(
        period=figures.period,
        data_end=figures.data_end,
        kind=figures.period.report_kind,
        headline=headline,
        sections=sections,
        notes=figures.notes,
        font_family=", ".join(f'"{f}"' if " " in f else f for f in FONT_FAMILY),
        colours=LIGHT_COLOURS,
        overdue_days=OVERDUE_DAYS,
    )


def render_xlsx(figures: ReportFigures) -> bytes:
    """The report as XLSX: 概览 then one sheet per section; numbers as numbers, dates as dates."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "nan_inf_to_errors": False})
    # A fixed creation date keeps the file byte-identical for the same figures.
    stamp = datetime(figures.period.end.year, figures.period.end.month, figures.period.end.day)
    book.set_properties(
        {
            "title": f"{figures.period.title}防返贫动态监测{figures.period.report_kind}",
            "author": "datashare",
            "created": stamp,
        }
    )
    fmt = {
        "title": book.add_format({"bold": True, "font_size": 14}),
        "sub": book.add_format({"bold": True, "font_size": 11}),
        "head": book.add_format(
            {
                "bold": True,
                "bg_color": "#e3f2fd",
                "border": 1,
                "text_wrap": True,
                "valign": "vcenter",
            }
        ),
        "text": book.add_format({"border": 1, "text_wrap": True, "valign": "top"}),
        "wrap": book.add_format({"text_wrap": True, "valign": "top"}),
        "int": book.add_format({"border": 1, "num_format": "#,##0"}),
        "money": book.add_format({"border": 1, "num_format": "#,##0.00"}),
        "ratio": book.add_format({"border": 1, "num_format": "0.0%"}),
        "delta": book.add_format({"border": 1, "num_format": "+#,##0;-#,##0;0"}),
        "date": book.add_format({"border": 1, "num_format": "yyyy-mm-dd"}),
        "note": book.add_format({"italic": True, "font_color": "#555555"}),
    }
    sheet = book.add_worksheet("概览")
    sheet.write_string(
        0,
        0,
        f"{figures.period.title} 防返贫动态监测{figures.period.report_kind}",
        fmt["title"],
    )
    sheet.write_string(1, 0, f"数据截至 {figures.data_end:%Y-%m-%d}", fmt["note"])
    sheet.write_row(3, 0, ["指标", "数值"], fmt["head"])
    for i, (key, (head, kind)) in enumerate(HEADLINE_LABELS.items(), start=4):
        sheet.write_string(i, 0, head, fmt["text"])
        _write_cell(sheet, i, 1, figures.headline[key], kind, fmt)
    for j, note in enumerate(figures.notes, start=5 + len(HEADLINE_LABELS)):
        sheet.write_string(j, 0, note, fmt["note"])
    sheet.set_column(0, 0, 34)
    sheet.set_column(1, 1, 14)
    _page_setup(sheet, header_row=3, first_col=0)

    for title, tables in figures.sections():
        sheet = book.add_worksheet(title)
        sheet.write_string(0, 0, title, fmt["title"])
        row, widths = 2, {0: 10.0}
        for sub, frame in tables:
            sheet.write_string(row, 0, sub, fmt["sub"])
            row += 1
            heads = [_column(c) for c in frame.columns]
            sheet.write_row(row, 0, [h[0] for h in heads], fmt["head"])
            sheet.set_row(row, 30)
            row += 1
            for record in frame.itertuples(index=False):
                for col, (value, (_, kind)) in enumerate(zip(record, heads, strict=True)):
                    _write_cell(sheet, row, col, value, kind, fmt)
                    shown = _fmt(value, kind)
                    widths[col] = max(widths.get(col, 8.0), _display_width(shown) + 1.5)
                row += 1
            for col, (head, _) in enumerate(heads):
                # headers wrap (two lines of 30 pt): half their width is enough
                widths[col] = max(widths.get(col, 8.0), _display_width(head) / 2 + 1.5)
            if frame.empty:
                sheet.write_string(row, 0, "（无）", fmt["note"])
                row += 1
            row += 1
        # Wide enough for what is shown, but a long reason wraps instead of widening the
        # page (fit to width would shrink every column to unreadable).
        for col, width in widths.items():
            sheet.set_column(col, col, min(width, 36.0), fmt["wrap"] if width > 36 else None)
        _page_setup(sheet, header_row=3, first_col=1)
    book.close()
    return buf.getvalue()


def _display_width(text: str) -> float:
    """Width in Excel character units: a CJK (full-width) character counts two."""
    return float(sum(2 if ord(ch) > 0x2E7F else 1 for ch in text))


def _page_setup(sheet: Any, header_row: int, first_col: int) -> None:
    """A4 landscape, one page wide, the title and first table's header repeated on every
    printed page, and frozen below that header (and right of the town/department column)."""
    sheet.set_paper(9)  # A4
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    sheet.repeat_rows(0, header_row)
    sheet.freeze_panes(header_row + 1, first_col)
    sheet.set_footer("&C第 &P 页，共 &N 页")


def _write_cell(
    sheet: Any, row: int, col: int, value: Any, kind: Kind, fmt: dict[str, Any]
) -> None:
    missing = value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value))
    if missing:
        sheet.write_blank(row, col, None, fmt[kind if kind != "text" else "text"])
    elif kind == "date":
        sheet.write_datetime(row, col, pd.Timestamp(value).to_pydatetime(), fmt["date"])
    elif kind in ("int", "delta", "money", "ratio"):
        sheet.write_number(row, col, float(value), fmt[kind])
    else:
        sheet.write_string(row, col, str(value), fmt["text"])


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
