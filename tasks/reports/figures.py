"""ReportFigures: every section of one report, computed as of the period's end (report_figures)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, func, select

from tasks.alerts import read_current
from tasks.freshness import expected_frame, load_calendar
from tasks.reports.alerts import alert_figures, alert_state, alert_trend
from tasks.reports.common import OVERDUE_DAYS, PAYMENTS, Kind, _ratio
from tasks.reports.intake import (
    _rejects,
    change_table,
    explain_lights,
    intake_figures,
    pending_figures,
    top_reject_reasons,
    with_landing_issues,
)
from tasks.reports.monitoring import (
    _eliminated,
    _identified,
    assurance_figures,
    employment_figures,
    medical_figures,
    monitoring_figures,
)
from tasks.reports.periods import Period
from tasks.reports.reading import (
    _households,
    _last_night,
    _ledger,
    _roster_baseline,
    _roster_persons,
    _town_order,
    _undelivered,
    _undelivered_note,
)
from warehouse.tables import deliveries, history_tables
from warehouse.tables_alerts import alert_runs
from warehouse.tables_ops import landing_issues_frame

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
