"""Chinese labels for people, stable codes for programs: the one mapping (issue 14, item 3).

Every place a person reads — report HTML and XLSX, CLI lines — turns a code into its label
here; Parquet, the warehouse and the API keep the codes. The mapping is generated from the
declarations, not written twice:

    columns   the contracts' Chinese headers (expectations/contracts/*.yaml)
    rules     alert rules: their id and title (domain/alert_rules.py);
              row-validation rules: RULE_TEXT below (what the department reads; tasks.validate);
              the contracts' row rules: their message
    outcomes  XC_HECHA's outcomes: FEEDBACK_STATUS below (tasks.alerts reads it)
    statuses  ledger (deliveries.status), freshness states, alert statuses, severities, the
              audit log's actions and forms of personal data: below
    tables    which column of which published table holds which kind of code (CODED_COLUMNS);
              a sheet's name from a table's title (sheet_name)
    GX        the expectation types of the GX suites (expectation_label, suite_label)

    label("ledger", "loaded") -> "已入库"       label("severity", "high") -> "高"
    label("rule", "key_conflict") -> "同一主键有多条内容不同的记录"
    column_label("XC_REN", "id_number") -> "身份证号"
    sheet_name("户信息 (roster households, export of …)") -> "户信息"

An unknown code is returned as it is (a new status shows up, and the English-code scan in
tests/test_labels.py fails until it is given a label here).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal, get_args

from domain.alert_rules import declared_rules
from domain.identity_codes import IDENTITY_RULE_TEXT
from expectations.contract import load_contracts

Kind = Literal[
    "ledger",
    "freshness",
    "alert_status",
    "severity",
    "rule",
    "outcome",
    "risk",
    "audit_action",
    "personal",
]
KINDS: tuple[Kind, ...] = get_args(Kind)

# XC_HECHA's outcomes (its contract's enum) -> the alert status a feedback row gives.
FEEDBACK_STATUS = {"已纳入监测": "confirmed", "核实排除": "dismissed", "数据错误": "data_error"}
LEDGER_STATUS = {
    "loaded": "已入库",
    "failed": "退回",
    "duplicate": "重复文件",
    "unchanged": "无变化",
    "superseded": "已被重报替代",
    "missing": "未报送",  # the portal's night page: a delivery expected and not received
}
FRESHNESS_STATE = {"on_time": "按时", "late": "迟报", "missing": "缺报", "failed": "退回未重报"}
ALERT_STATUS = {
    "open": "待核实",
    "resolved": "自动解除",
    **{code: outcome.removeprefix("已") for outcome, code in FEEDBACK_STATUS.items()},
}
SEVERITY = {"high": "高", "medium": "中", "low": "低"}
RISK = {"DQ": "数据质量"}  # the other risk types are rules.md's Chinese words already
# The audit log (warehouse/tables_publish.py): what was done, and the strongest form of
# personal data in it (publishing.md).
AUDIT_ACTION = {
    "publication": "发布",
    "file": "发布文件",
    "sql": "发布数据库表",
    "prune": "清理旧版本",
    "export": "导出",
    "download": "下载",
    "lookup": "一人一档查询",
    "verify": "记录核实结果",
    "opinion": "提交核实意见",
}
PERSONAL_FORM = {"plain": "明文", "masked": "脱敏", "key": "人员标识", "none": "无个人信息"}
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
    row_rules: dict[str, str] = {}
    for contract in load_contracts().values():
        for rule in contract.row_rules:
            row_rules.setdefault(rule.id, rule.message)
    return {**DELIVERY_RULES, **RULE_TEXT, **row_rules, **alert_rules}


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
        "risk": RISK,
        "audit_action": AUDIT_ACTION,
        "personal": PERSONAL_FORM,
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


# --- published tables, as people read them -------------------------------------------------------

# Which column of which published table holds which kind of code. Parquet, CSV and the API keep
# the code; the XLSX files and the portal's pages show its label (warehouse.publish.people).
CODED_COLUMNS: dict[str, dict[str, Kind]] = {
    "alerts": {"risk_type": "risk", "severity": "severity", "status": "alert_status"},
    "deliveries": {"status": "ledger"},
    "rejects": {"rule": "rule"},
    "audit_log": {"action": "audit_action", "personal": "personal"},
}
# The published columns' types (catalog.json "type"), as the portal's column list shows them.
COLUMN_TYPE = {
    "text": "文本",
    "id18": "身份证号",
    "key": "人员标识",
    "date": "日期",
    "int": "整数",
    "decimal": "数值",
    "ratio": "比率",
    "bool": "是/否",
    "timestamp": "时间",
}
# Columns holding a dataset's column name (rejects.column): shown as that column's header, read
# from the contract of the row's dataset (the second name).
NAMED_COLUMNS: dict[str, tuple[str, str]] = {"rejects": ("column", "dataset")}


def header_of(dataset: str | None, column: str) -> str:
    """The Chinese header of a column named in a row ("id_number" -> "证件号码"); names joined
    by commas are each translated. A name no contract knows is returned as it is."""
    parts = [p.strip() for p in column.split(",")]
    out = []
    for part in parts:
        if dataset is not None and (found := column_label(dataset, part)) != part:
            out.append(found)
            continue
        out.append(_any_header().get(part, part))
    return "、".join(out)


# Columns every delivery's rows carry besides the contract's (lineage; the GX suites check them).
LINEAGE_HEADER = {
    "source_row": "原文件行号",
    "source_file": "文件名",
    "delivery_id": "交付编号",
    "exchange_date": "交换日期",
}


@cache
def _any_header() -> dict[str, str]:
    headers: dict[str, str] = dict(LINEAGE_HEADER)
    for contract in load_contracts().values():
        for col in contract.columns:
            headers.setdefault(col.name, col.header)
    return headers


def labelled(table: str, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The coded columns of a published table's rows as people read them: each code as its
    label (CODED_COLUMNS), each column name as its header (NAMED_COLUMNS). Only the columns
    that change are returned; None stays None."""
    out: dict[str, list[Any]] = {}
    for name, kind in CODED_COLUMNS.get(table, {}).items():
        if name in columns:
            mapping = _table(kind)
            out[name] = [None if v is None else mapping.get(v, v) for v in columns[name]]
    if table in NAMED_COLUMNS:
        name, dataset_column = NAMED_COLUMNS[table]
        if name in columns:
            datasets = columns.get(dataset_column) or [None] * len(columns[name])
            out[name] = [
                None if v is None or v == "" else header_of(d, str(v))
                for v, d in zip(columns[name], datasets, strict=True)
            ]
    return out


_LATIN_ASIDE = re.compile(r"\s*[(（][^)）]*[A-Za-z][^)）]*[)）]")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
SHEET_MAX = 31  # Excel's limit on a sheet's name


def table_title(title: str) -> str:
    """A table's title as people read it: an English aside dropped, brackets full-width.

    "户信息 (roster households, export …)" -> "户信息";  "户籍变动 (死亡、迁移、出生)" ->
    "户籍变动（死亡、迁移、出生）"."""
    title = _LATIN_ASIDE.sub("", title).strip()
    return re.sub(r"\s*\(([^)]*)\)", r"（\1）", title)


def sheet_name(title: str) -> str:
    """An XLSX sheet's name from a table's title: table_title, without the characters Excel
    refuses, within 31 characters (a Chinese aside is dropped rather than cut)."""
    name = _SHEET_FORBIDDEN.sub(" ", table_title(title)).strip()
    if len(name) > SHEET_MAX:
        name = re.sub(r"（[^）]*）", "", name).strip()
    return name[:SHEET_MAX] or "数据"


# --- GX validation results (the portal's data-quality page) ---------------------------------------

EXPECTATION_LABEL = {
    "expect_column_to_exist": "文件含有此列",
    "expect_table_row_count_to_be_between": "行数在允许范围内",
    "expect_column_values_to_not_be_null": "不能为空",
    "expect_column_values_to_be_in_set": "取值须为规定的选项",
    "expect_personal_values_to_be_in_set": "取值须为规定的选项",
    "expect_column_values_to_match_regex": "格式须符合规范",
    "expect_personal_values_to_match_regex": "格式须符合规范",
    "expect_column_values_to_be_between": "数值须在合理范围内",
    "expect_personal_values_to_be_between": "数值须在合理范围内",
    "expect_column_values_to_be_valid_id18": "身份证号须有效（校验码、出生日期）",
    "expect_column_values_to_be_valid_credit_code": "统一社会信用代码须有效",
    "expect_row_rule_to_hold": "同一行的填报逻辑",
}
UNKNOWN_EXPECTATION = "其他校验"
SUITE_LABEL = {"delivery": "报送检查", "contract": "数据规范"}


def expectation_label(kind: str, meta: dict[str, Any]) -> str:
    """A short Chinese sentence for one GX expectation (its `meta` names the gates and rules).

    One entry per expectation type the suites of expectations/gx_suite.py build (GX's
    built-ins and the project's own in expectations/gx_custom.py); tests/test_portal.py fails
    when a suite uses a type without one. An unknown type reads "其他校验", never its code.

        expectation_label("expect_column_values_to_not_be_null", {}) -> "不能为空"
    """
    gate = meta.get("gate")
    if gate == "quarantine_share":
        threshold = meta.get("quarantine_threshold")
        limit = f"{float(threshold) * 100:g}%" if isinstance(threshold, int | float) else "阈值"
        return f"问题行不超过 {limit}（超过则整批退回）"
    if gate == "truncated_snapshot":
        previous = meta.get("previous_rows")
        return f"全量行数未比上次（{previous} 行）明显减少" if previous else "全量行数未明显减少"
    if gate == "record_only":
        return "记录本次行数"
    text = EXPECTATION_LABEL.get(kind, UNKNOWN_EXPECTATION)
    message = meta.get("message")
    if kind == "expect_row_rule_to_hold" and isinstance(message, str) and message:
        return f"{text}：{message}"
    return text


def suite_label(suite: str) -> str:
    """'MZ_DIBAO.contract' -> '数据规范' (the part after the dataset)."""
    return SUITE_LABEL.get(suite.rpartition(".")[2], UNKNOWN_EXPECTATION)
