"""Row rules: checks across several columns of a row (or, for a few hooks, across a delivery).

Each rule is declared in a contract (`row_rules`) as one of a handful of generic checks; the few
that truly need logic of their own are small named hooks. All work on the *normalised, typed*
frame (see tasks/normalise.py) and return a boolean Series: True where the rule is broken. A rule
whose inputs are missing in a row is not broken there (missing required values are reported as
`required` on their own).

The quarantine engine and the custom Great Expectations expectation `expect_row_rule_to_hold`
both call `row_rule_broken`, so GX and the engine judge a row the same way. It lives beside the
contracts (below the warehouse and the steps), so expectations/gx_custom.py imports it without
reaching up into tasks/; ages and birth dates are the domain's (domain/definitions.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd

from domain.definitions import ages_on, birth_dates, genders
from expectations.contract import Condition, RowRule

Hook = Callable[[pd.DataFrame, RowRule, date], pd.Series]


def _present(values: pd.Series) -> pd.Series:
    present = values.notna()
    if values.dtype == "string" or values.dtype == object:
        present &= values.astype("string").str.len().fillna(0) > 0
    return present.astype(bool)


def _holds(frame: pd.DataFrame, cond: Condition) -> pd.Series:
    values = frame[cond.column]
    if cond.present is not None:
        held = _present(values) if cond.present else ~_present(values)
    elif cond.in_ is not None:
        held = values.isin(list(cond.in_))
    else:
        held = values == cond.equals
    return held.fillna(False).astype(bool)


def _required_when(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    assert rule.when is not None
    missing = pd.Series(False, index=frame.index)
    for col in rule.columns:
        missing |= ~_present(frame[col])
    return _holds(frame, rule.when) & missing


def _not_before(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    later, earlier = (frame[c] for c in rule.columns)
    return (later < earlier).fillna(False).astype(bool)


def _absent_unless(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    assert rule.when is not None
    values = frame[rule.columns[0]]
    present = _present(values)
    if rule.zero_counts_as_absent:
        present &= (values != 0).fillna(False).astype(bool)
    return present & ~_holds(frame, rule.when)


def _difference_equals(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    target, total, *parts = rule.columns
    expected = frame[total].astype("Float64")
    for col in parts:
        expected = expected - frame[col].astype("Float64").fillna(0)
    gap = (frame[target].astype("Float64") - expected).abs()
    # Money is compared to the cent: round the gap to cents before comparing.
    return (gap.round(2) > rule.tolerance + 1e-9).fillna(False).astype(bool)


def _sign_by(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    assert rule.by is not None
    broken = pd.Series(False, index=frame.index)
    for value, sign in rule.signs.items():
        rows = (frame[rule.by] == value).fillna(False).astype(bool)
        for col in rule.columns:
            amounts = frame[col].astype("Float64")
            bad = amounts < 0 if sign == "non_negative" else amounts > 0
            broken |= rows & bad.fillna(False).astype(bool)
    return broken


def _equals_all(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    target, *parts = rule.columns
    all_true = pd.Series(True, index=frame.index, dtype="boolean")
    known = frame[target].notna()
    for col in parts:
        all_true &= frame[col].astype("boolean")
        known &= frame[col].notna()
    return (known & (frame[target].astype("boolean") != all_true)).fillna(False).astype(bool)


def _min_age(frame: pd.DataFrame, rule: RowRule, exchange_date: date) -> pd.Series:
    assert rule.min_age is not None
    ages = ages_on(frame[rule.columns[0]], exchange_date)
    return (ages < rule.min_age).fillna(False).astype(bool)


# --- hooks: logic a contract points to by name -------------------------------------------------


def gender_matches_id(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    """The 17th id digit is odd for 男 and even for 女."""
    gender, id_col = rule.columns
    # An id without a 17th digit (invalid: quarantined by its own rule) implies no gender.
    implied = genders(frame[id_col])
    return (frame[gender].astype("string") != implied).fillna(False).astype(bool)


def birth_date_matches_id(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    """Digits 7-14 of the id are the birth date."""
    birth, id_col = rule.columns
    implied = birth_dates(frame[id_col])
    given = pd.to_datetime(frame[birth])
    return (given.notna() & implied.notna() & (given != implied)).astype(bool)


def one_head_per_household(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    """Every household in the delivery has exactly one 户主.

    A group rule: `frame` must hold each delivered row once (identical duplicates collapsed,
    tasks/validate.py). Where a household has several 户主 rows, those rows break it and its
    other members do not; where it has none, every row of it breaks it, unless some row's
    relation is unknown (a defect of its own, quarantined on its own: that row may be the head).
    """
    household, relation = rule.columns
    in_household = frame[household].notna().to_numpy(dtype=bool)
    is_head = (frame[relation] == "户主").fillna(False).to_numpy(dtype=bool)
    unknown = frame[relation].isna().to_numpy(dtype=bool)
    groups = frame[household]
    heads = pd.Series(is_head.astype(np.int64), index=frame.index).groupby(groups).transform("sum")
    unknowns = pd.Series(unknown, index=frame.index).groupby(groups).transform("any")
    heads_n = heads.fillna(0).to_numpy(dtype=np.int64)
    some_unknown = unknowns.fillna(False).to_numpy(dtype=bool)
    several = (heads_n > 1) & is_head
    headless = (heads_n == 0) & ~some_unknown
    return pd.Series(in_household & (several | headless), index=frame.index)


def unemployed_has_no_job(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    """未就业 rows have no employer and no monthly income above 0."""
    status, employer, income = rule.columns
    unemployed = (frame[status] == "未就业").fillna(False).astype(bool)
    has_job = _present(frame[employer]) | (frame[income].astype("Float64") > 0).fillna(False)
    return unemployed & has_job.astype(bool)


def cert_matches_id_category_level(frame: pd.DataFrame, rule: RowRule, _: date) -> pd.Series:
    """The certificate is the 18-digit id, then the category code, then the level code."""
    cert_col, id_col, category_col, level_col = rule.columns
    categories = {
        "视力": "1",
        "听力": "2",
        "言语": "3",
        "肢体": "4",
        "智力": "5",
        "精神": "6",
        "多重": "7",
    }
    levels = {"一级": "1", "二级": "2", "三级": "3", "四级": "4"}
    cert = frame[cert_col].astype("string")
    expected = (
        frame[id_col].astype("string")
        + frame[category_col].astype("string").map(categories, na_action="ignore").astype("string")
        + frame[level_col].astype("string").map(levels, na_action="ignore").astype("string")
    )
    return (cert != expected).fillna(False).astype(bool)


CHECKS: dict[str, Hook] = {
    "required_when": _required_when,
    "not_before": _not_before,
    "absent_unless": _absent_unless,
    "difference_equals": _difference_equals,
    "sign_by": _sign_by,
    "equals_all": _equals_all,
    "min_age": _min_age,
}

HOOKS: dict[str, Hook] = {
    "gender_matches_id": gender_matches_id,
    "birth_date_matches_id": birth_date_matches_id,
    "one_head_per_household": one_head_per_household,
    "unemployed_has_no_job": unemployed_has_no_job,
    "cert_matches_id_category_level": cert_matches_id_category_level,
}


def row_rule_broken(frame: pd.DataFrame, rule: RowRule, exchange_date: date) -> pd.Series:
    """True for each row of `frame` (normalised, typed) where `rule` is broken."""
    if rule.check == "hook":
        if rule.hook not in HOOKS:
            raise KeyError(
                f"行规则 {rule.id} 指向未知的钩子 {rule.hook!r}：请检查数据集约定中的 hook 名称"
            )
        check = HOOKS[rule.hook]
    else:
        check = CHECKS[rule.check]
    return check(frame, rule, exchange_date).reindex(frame.index).fillna(False).astype(bool)
