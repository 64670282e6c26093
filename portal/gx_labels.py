"""Chinese for the GX validation results on the data-quality page (issue 15): what a department
reads instead of GX's expectation codes.

    expectation_label("expect_column_values_to_not_be_null", {}) -> "不能为空"
    suite_label("MZ_DIBAO.delivery") -> "报送检查"

One entry per expectation type the suites of expectations/gx_suite.py build (GX's built-ins
and the project's own in expectations/gx_custom.py); tests/test_portal.py fails when a suite
uses a type without one. It belongs beside the labels of tasks/labels.py (being moved to
domain/labels.py): move it there with them. An unknown type reads "其他校验", never its code.
"""

from __future__ import annotations

from typing import Any

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
UNKNOWN = "其他校验"
SUITE_LABEL = {"delivery": "报送检查", "contract": "数据规范"}


def expectation_label(kind: str, meta: dict[str, Any]) -> str:
    """A short Chinese sentence for one expectation (its `meta` names the gates and rules)."""
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
    label = EXPECTATION_LABEL.get(kind, UNKNOWN)
    message = meta.get("message")
    if kind == "expect_row_rule_to_hold" and isinstance(message, str) and message:
        return f"{label}：{message}"
    return label


def suite_label(suite: str) -> str:
    """'MZ_DIBAO.contract' -> '数据规范' (the part after the dataset)."""
    return SUITE_LABEL.get(suite.rpartition(".")[2], UNKNOWN)
