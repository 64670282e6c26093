"""Chinese labels for people, stable codes for programs: the one mapping (issue 14, item 3).

Every place a person reads — report HTML and XLSX, CLI lines — turns a code into its label
here; Parquet, the warehouse and the API keep the codes. The mapping is generated from the
declarations, not written twice:

    columns   the contracts' Chinese headers (expectations/contracts/*.yaml)
    rules     alert rules: their id and title (domain/alert_rules.py);
              row-validation rules: RULE_TEXT below (what the department reads; tasks.validate)
    outcomes  XC_HECHA's outcomes: FEEDBACK_STATUS below (tasks.alerts reads it)
    statuses  ledger (deliveries.status), freshness states, alert statuses, severities: below

    label("ledger", "loaded") -> "已入库"       label("severity", "high") -> "高"
    label("rule", "key_conflict") -> "同一主键有多条内容不同的记录"
    column_label("XC_REN", "id_number") -> "身份证号"

An unknown code is returned as it is (a new status shows up, and the English-code scan in
tests/test_labels.py fails until it is given a label here).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from domain.alert_rules import declared_rules
from domain.identity_codes import IDENTITY_RULE_TEXT
from expectations.contract import load_contracts

Kind = Literal["ledger", "freshness", "alert_status", "severity", "rule", "outcome"]

# XC_HECHA's outcomes (its contract's enum) -> the alert status a feedback row gives.
FEEDBACK_STATUS = {"已纳入监测": "confirmed", "核实排除": "dismissed", "数据错误": "data_error"}
LEDGER_STATUS = {
    "loaded": "已入库",
    "failed": "退回",
    "duplicate": "重复文件",
    "unchanged": "无变化",
    "superseded": "已被重报替代",
}
FRESHNESS_STATE = {"on_time": "按时", "late": "迟报", "missing": "缺报", "failed": "退回未重报"}
ALERT_STATUS = {
    "open": "待核实",
    "resolved": "自动解除",
    **{code: outcome.removeprefix("已") for outcome, code in FEEDBACK_STATUS.items()},
}
SEVERITY = {"high": "高", "medium": "中", "low": "低"}
# Delivery-level failures recorded as rules in the rejects (tasks/intake.py, tasks/read.py).
DELIVERY_RULES = {
    "layout": "表格格式无法识别",
    "missing_column": "缺少必填列",
    "unexpected_error": "处理时发生意外错误",
    "unreadable": "文件无法读取",
}

# What each row-validation rule means, as a department reads it in its rejects (tasks.validate).
RULE_TEXT: dict[str, str] = {
    "required": "必填项为空",
    "enum": "取值不在规定范围内",
    "pattern": "格式不符合要求",
    "min": "小于允许的最小值",
    "max": "大于允许的最大值",
    "unparseable": "无法识别",
    **IDENTITY_RULE_TEXT,  # id_* and credit_code*: domain/identity_codes.py
    "key_conflict": "同一主键有多条内容不同的记录",
    "number_cell": "以数字格式导出，末位可能已丢失，请将该列设为文本后重新导出",
    "control_character": "含有不可见的控制字符（如 NUL，显示为 ␀），请清除后重新导出",
}


def _rules() -> dict[str, str]:
    alert_rules = {r.rule_id: f"{r.rule_id} {r.title}" for r in declared_rules()}
    return {**DELIVERY_RULES, **RULE_TEXT, **alert_rules}


def _table(kind: Kind) -> dict[str, str]:
    if kind == "rule":
        return _rules()
    if kind == "outcome":
        return {code: outcome for outcome, code in FEEDBACK_STATUS.items()}
    return {
        "ledger": LEDGER_STATUS,
        "freshness": FRESHNESS_STATE,
        "alert_status": ALERT_STATUS,
        "severity": SEVERITY,
    }[kind]


def label(kind: Kind, code: str) -> str:
    """The Chinese label of a code (the code itself when it has none)."""
    return _table(kind).get(code, code)


def codes(kind: Kind) -> dict[str, str]:
    """Every code of a kind and its label (for docs and the English-code scan)."""
    return dict(_table(kind))


@cache
def column_label(dataset: str, column: str) -> str:
    """A dataset column's Chinese header from its contract (the name itself when unknown)."""
    contract = load_contracts().get(dataset)
    if contract is None:
        return column
    for col in contract.columns:
        if col.name == column:
            return col.header
    return column
