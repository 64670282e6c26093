"""What every report section shares: parameters (docs/reports.md), the labels and types of the
columns shown, and small frame helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from domain import definitions as dd
from domain.alert_rules import declared_rules
from expectations.contract import load_contracts

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
