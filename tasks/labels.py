"""Chinese labels for people, stable codes for programs: the one mapping (issue 14, item 3).

Every place a person reads — report HTML and XLSX, CLI lines — turns a code into its label
here; Parquet, the warehouse and the API keep the codes. The mapping is generated from the
declarations, not written twice:

    columns   the contracts' Chinese headers (expectations/contracts/*.yaml)
    rules     alert rules: their id and title (domain/alert_rules.py);
              row-validation rules: tasks.validate.RULE_TEXT (what the department reads)
    outcomes  XC_HECHA's outcomes, from its contract (tasks.alerts.FEEDBACK_STATUS)
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
from expectations.contract import load_contracts
from tasks.alerts import FEEDBACK_STATUS
from tasks.freshness import STATES
from tasks.validate import RULE_TEXT

Kind = Literal["ledger", "freshness", "alert_status", "severity", "rule", "outcome"]

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

assert set(FRESHNESS_STATE) == set(STATES), "every freshness state needs a label"


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
