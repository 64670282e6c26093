"""The alert rule registry: one declaration per rule of rules.md, read by everything else.

    Rule(rule_id, risk_type, subject, pushed_to, severities, params, summary_column, ...)
    RULES                 the declarations, in rules.md's order
    implements(rule_id)   decorator binding a rule's function (tasks/alerts.py) to its declaration
    function_of(rule_id)  that function (evaluate_rules calls each declared rule's)
    param_names()         every parameter the declared rules need, in declaration order

What reads the declarations: evaluation, the findings' rule_id / risk_type / pushed_to and the
check of their severities (tasks/alerts.py), the parameters and their defaults
(load_rule_params), the report's rule table and trend (tasks/reports.py `RULES`), town_summary's
open-alert columns (warehouse/publish.py `RISK_COLUMNS`), the portal (through the published
alerts) and docs/alerts.md. Adding a rule is one declaration here and one function decorated
with `@implements(<rule_id>)` in tasks/alerts.py (docs/alerts.md walks through one).

Pure data: this module imports nothing above `domain`, so the warehouse may read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

Severity = Literal["high", "medium", "low"]
RuleFunction = Callable[[Any], pd.DataFrame]  # (tasks.alerts.RuleInput) -> findings


@dataclass(frozen=True)
class Param:
    """A rule parameter: per province and year in expectations/reference/rule_params.yaml.

    `default` applies where the reference data gives no value; None means there is none
    (the run fails, naming parameter, province and year, until an operator sets it).
    """

    name: str
    default: float | None
    description: str


@dataclass(frozen=True)
class Rule:
    """One rule of rules.md, declared once."""

    rule_id: str  # e.g. "YB-01"; the alert id's prefix drops the dash
    risk_type: str  # rules.md's risk type, or "DQ" for data-quality findings
    subject: Literal["household", "person"]
    pushed_to: tuple[str, ...]  # departments always pushed to, XC first
    severities: tuple[Severity, ...]  # the severities a finding of this rule may have
    title: str  # what it finds, in Chinese (docs, reports)
    params: tuple[Param, ...] = ()
    # town_summary's open_alerts_<slug> column (None: not a risk, not summarised) and its place
    # among those columns (publishing.md's order, which is not rules.md's).
    summary_column: str | None = None
    summary_position: int = 0
    # Some rules add departments per finding (GA-01: whoever pays; DQ-01: whoever holds the id).
    pushed_to_varies: bool = False

    @property
    def unit(self) -> str:
        """The subject's unit as reports print it: 户 or 人."""
        return "户" if self.subject == "household" else "人"

    @property
    def is_risk(self) -> bool:
        """A risk rule (monitored-for-the-same-risk households are skipped), not a DQ finding."""
        return self.risk_type != "DQ"


MEDICAL_BURDEN = Param(
    "medical_burden_household_12m",
    10000.0,
    "YB-01: a household's twelve-month self-paid medical burden strictly above it alerts, "
    "above twice it with severity high (yuan)",
)
INCOME_THRESHOLD = Param(
    "income_threshold",
    None,
    "INC-01: 防返贫监测收入标准, yuan per person per year; set for every year, never defaulted",
)

RULES: tuple[Rule, ...] = (
    Rule(
        "YB-01",
        "因病",
        "household",
        ("XC", "YB"),
        ("high", "medium"),
        "户内在册成员近12个月医保个人负担高",
        (MEDICAL_BURDEN,),
        "illness",
        1,
    ),
    Rule(
        "ZJ-01",
        "因安全住房",
        "household",
        ("XC", "ZJ"),
        ("high", "medium"),
        "户主房屋鉴定为C/D级且未竣工或验收",
        summary_column="housing",
        summary_position=4,
    ),
    Rule(
        "JT-01",
        "因学",
        "person",
        ("XC", "JT"),
        ("high", "medium"),
        "义务教育阶段在册人员辍学或无学籍",
        summary_column="education",
        summary_position=2,
    ),
    Rule(
        "CL-01",
        "因残",
        "person",
        ("XC", "CL"),
        ("high", "medium"),
        "在册人员持有效一级、二级残疾人证",
        summary_column="disability",
        summary_position=3,
    ),
    Rule(
        "RS-01",
        "因务工就业不稳",
        "household",
        ("XC", "RS"),
        ("medium",),
        "户内在务工名单中的劳动力均未就业",
        summary_column="employment",
        summary_position=6,
    ),
    Rule(
        "SL-01",
        "因安全饮水",
        "household",
        ("XC", "SL"),
        ("medium",),
        "户主饮水安全核查结论为不安全",
        summary_column="water",
        summary_position=5,
    ),
    Rule(
        "NY-01",
        "因产业项目失败",
        "household",
        ("XC", "NY"),
        ("medium",),
        "户主本年或上年产业帮扶项目失败",
        summary_column="industry",
        summary_position=7,
    ),
    Rule(
        "INC-01",
        "收入",
        "household",
        ("XC",),
        ("medium",),
        "未纳入监测户人均纯收入低于监测收入标准",
        (INCOME_THRESHOLD,),
        "income",
        8,
    ),
    Rule(
        "MZ-01",
        "兜底核查",
        "person",
        ("XC", "MZ"),
        ("medium",),
        "低保在保人员不在册、已死亡或所在户既非脱贫户也非监测户",
        summary_column="assistance",
        summary_position=9,
    ),
    Rule(
        "GA-01",
        "DQ",
        "person",
        ("XC",),
        ("high",),
        "死亡后仍在保或仍领取残疾人补贴",
        pushed_to_varies=True,
    ),
    Rule("GA-02", "DQ", "person", ("XC",), ("low",), "已死亡人员仍在家庭成员名单中"),
    Rule(
        "DQ-01",
        "DQ",
        "person",
        ("XC",),
        ("low",),
        "同一身份证号姓名不一致或属于两个及以上户",
        pushed_to_varies=True,
    ),
)

_declared: list[Rule] = list(RULES)
_functions: dict[str, RuleFunction] = {}


def declared_rules() -> tuple[Rule, ...]:
    """The declared rules (RULES plus any added with `extra_rule`), in declaration order."""
    return tuple(_declared)


def rule(rule_id: str) -> Rule:
    """The declaration of `rule_id` (KeyError naming it when there is none)."""
    for declared in _declared:
        if declared.rule_id == rule_id:
            return declared
    raise KeyError(f"预警规则 {rule_id!r} 未声明：请先在 domain/alert_rules.py 的 RULES 中声明")


def implements(rule_id: str) -> Callable[[RuleFunction], RuleFunction]:
    """Bind the decorated function to the declared rule `rule_id` (one function per rule)."""
    rule(rule_id)  # an undeclared id fails at import, not at night

    def bind(function: RuleFunction) -> RuleFunction:
        bound = _functions.get(rule_id)
        same = bound is not None and (bound.__module__, bound.__qualname__) == (
            function.__module__,
            function.__qualname__,
        )  # the same function again (a module reloaded) is not a second one
        if bound is not None and not same:
            raise ValueError(f"预警规则 {rule_id} 有两个实现函数（@implements），只能有一个")
        _functions[rule_id] = function
        return function

    return bind


def function_of(rule_id: str) -> RuleFunction:
    """The function of a declared rule; a declaration without one fails naming it."""
    try:
        return _functions[rule_id]
    except KeyError:
        raise LookupError(
            f"预警规则 {rule_id} 已声明，但没有实现它的函数：请在 tasks/alerts/ 中用 "
            f"@implements({rule_id!r}) 标注其函数"
        ) from None


def param_names() -> tuple[str, ...]:
    """Every parameter the declared rules read, in declaration order, each once."""
    return tuple(dict.fromkeys(p.name for r in _declared for p in r.params))


def param_defaults() -> dict[str, float | None]:
    """Parameter -> its declared default (None: no default)."""
    return {p.name: p.default for r in _declared for p in r.params}


def risk_columns() -> dict[str, str]:
    """town_summary's open-alert columns: risk type -> column slug, in publishing.md's order."""
    summarised = [r for r in _declared if r.summary_column is not None]
    ordered = sorted(summarised, key=lambda r: r.summary_position)
    return {r.risk_type: str(r.summary_column) for r in ordered}


@contextmanager
def extra_rule(declaration: Rule, function: RuleFunction) -> Iterator[Rule]:
    """Declare and implement one more rule for the duration of a block (tests, trials).

    Modules that derive constants from the registry at import (reports' RULES, town_summary's
    columns) see a rule only when it is declared before they are imported: a rule that ships
    is written into RULES above.
    """
    if any(r.rule_id == declaration.rule_id for r in _declared):
        raise ValueError(f"预警规则 {declaration.rule_id} 已声明过，不能重复声明")
    _declared.append(declaration)
    _functions[declaration.rule_id] = function
    try:
        yield declaration
    finally:
        _declared.remove(declaration)
        _functions.pop(declaration.rule_id, None)
