"""One definition of each idea of the monitoring domain (rules.md, "Terms").

Rules (tasks/alerts.py), profiles (tasks/profiles.py), reports (tasks/reports.py) and
publication (warehouse/publish.py) import these instead of restating them, so "age", "labour
member", "monitored", "a C/D house" or "a severe disability" mean the same in an alert, a
profile, a report figure and a published summary. Everything here is pure and vectorised: it
takes Series and returns Series on the same index, never reads a table.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

# --- persons -------------------------------------------------------------------------------------

LABOUR_AGES = (16, 60)  # labour member: an active roster person of these ages (inclusive) ...
LABOUR_SKILLS = ("技能劳动力", "普通劳动力")  # ... whose labour_skill is one of these
COMPULSORY_SCHOOL_AGES = (6, 15)  # 义务教育 (JT-01, the reports' out-of-school figures)
DEATH = "死亡"  # GA_BIANDONG change_type that ends a person's activity on the roster


def birth_dates(ids: pd.Series) -> pd.Series:
    """The birth dates inside id numbers (digits 7-14); NaT where they are not a real date."""
    return pd.to_datetime(ids.astype("string").str.slice(6, 14), format="%Y%m%d", errors="coerce")


def genders(ids: pd.Series) -> pd.Series:
    """The gender an id number implies: its 17th digit odd 男, even 女 (string; NA without one)."""
    digit = pd.to_numeric(ids.astype("string").str.slice(16, 17), errors="coerce")
    known = digit.notna().to_numpy(dtype=bool)
    odd = (digit.fillna(0).to_numpy(dtype="int64") % 2) == 1
    implied = pd.Series(np.where(odd, "男", "女"), index=ids.index, dtype="string")
    return implied.where(known, pd.NA)


def ages_on(ids: pd.Series, on: date) -> pd.Series:
    """Age on `on` in whole years from the birth date inside each id (Int64; NA if unknown).

    A birthday on `on` counts (born 2010-03-10 is 15 on 2025-03-10); 29 February birthdays
    are reached on 1 March in other years.
    """
    births = birth_dates(ids)
    before_birthday = (births.dt.month * 100 + births.dt.day) > (on.month * 100 + on.day)
    return (on.year - births.dt.year - before_birthday.astype("Int64")).astype("Int64")


def is_labour(active: pd.Series, ages: pd.Series, labour_skill: pd.Series) -> pd.Series:
    """Labour member: active, aged LABOUR_AGES and labour_skill in LABOUR_SKILLS (bool)."""
    lo, hi = LABOUR_AGES
    in_ages = ages.between(lo, hi).fillna(False).astype(bool)
    skilled = labour_skill.isin(LABOUR_SKILLS).fillna(False).astype(bool)
    return (active.astype(bool) & in_ages & skilled).astype(bool)


def of_school_age(ages: pd.Series) -> pd.Series:
    """Aged COMPULSORY_SCHOOL_AGES (inclusive) (bool; False where the age is unknown)."""
    lo, hi = COMPULSORY_SCHOOL_AGES
    return ages.between(lo, hi).fillna(False).astype(bool)


def died_by(change_type: pd.Series, change_date: pd.Series, on: date) -> pd.Series:
    """GA_BIANDONG rows that are a death dated on or before `on` (bool)."""
    dead = (change_type == DEATH).fillna(False).astype(bool)
    return (dead & (change_date <= pd.Timestamp(on)).fillna(False).astype(bool)).astype(bool)


# --- households: identified, monitored, eliminated ----------------------------------------------

RISK_SEPARATOR = "、"  # risk_types as stored (the contract's enum_multi, normalised)


def identified(monitoring_category: pd.Series) -> pd.Series:
    """监测对象: the roster household has a monitoring_category (bool)."""
    text = monitoring_category.astype("string")
    return (text.notna() & (text.str.strip() != "")).fillna(False).astype(bool)


def eliminated(monitoring_category: pd.Series, risk_eliminated: pd.Series) -> pd.Series:
    """Identified, and its risk is eliminated (风险已消除) (bool)."""
    done = risk_eliminated.astype("boolean").fillna(False).astype(bool)
    return (identified(monitoring_category) & done).astype(bool)


def monitored(monitoring_category: pd.Series, risk_eliminated: pd.Series) -> pd.Series:
    """Monitored (rules.md): identified and the risk not eliminated (bool)."""
    return (
        identified(monitoring_category) & ~eliminated(monitoring_category, risk_eliminated)
    ).astype(bool)


def has_risk(risk_types: pd.Series, risk: str) -> pd.Series:
    """`risk` is one of the household's risk_types (bool)."""
    wrapped = RISK_SEPARATOR + risk_types.astype("string").fillna("") + RISK_SEPARATOR
    return wrapped.str.contains(f"{RISK_SEPARATOR}{risk}{RISK_SEPARATOR}", regex=False).astype(bool)


# --- houses, water, disability, settlements ------------------------------------------------------

UNSAFE_HOUSE_GRADES = ("C", "D")  # 危房 (ZJ_FANGWU grade)
RENOVATION_DONE = ("竣工", "验收")  # renovation finished
VALID_CERTIFICATE = "有效"  # CL_CANJI cert_status
SEVERE_DISABILITY_LEVELS = ("一级", "二级")
UNEMPLOYED = "未就业"  # RS_JIUYE employment_status
ON_DIBAO = "在保"  # MZ_DIBAO status
SETTLEMENT_NORMAL, SETTLEMENT_REVERSAL = "正常", "冲销"  # YB_JIESUAN settle_kind


def _among(values: pd.Series, allowed: tuple[str, ...] | list[object]) -> pd.Series:
    return values.isin(list(allowed)).fillna(False).astype(bool)


def latest_assessments(fangwu: pd.DataFrame) -> pd.DataFrame:
    """Each head's latest house assessment: the row with the greatest assessed_date among the
    head's rows (ZJ_FANGWU: head_person_key, assessed_date, ...), ordered by head_person_key."""
    return fangwu.sort_values(["head_person_key", "assessed_date"]).drop_duplicates(
        "head_person_key", keep="last"
    )


def unsafe_house(grade: pd.Series) -> pd.Series:
    """A C or D house (bool)."""
    return _among(grade, UNSAFE_HOUSE_GRADES)


def renovation_done(renovation_status: pd.Series) -> pd.Series:
    """Renovation 竣工 or 验收 (bool; a missing status is not done)."""
    return _among(renovation_status, RENOVATION_DONE)


def severely_disabled(cert_status: pd.Series, level: pd.Series) -> pd.Series:
    """A valid (有效) certificate of level 一级 or 二级 (bool)."""
    valid = (cert_status == VALID_CERTIFICATE).fillna(False).astype(bool)
    return (valid & _among(level, SEVERE_DISABILITY_LEVELS)).astype(bool)


def unemployed(employment_status: pd.Series) -> pd.Series:
    """RS_JIUYE 未就业 (bool)."""
    return (employment_status == UNEMPLOYED).fillna(False).astype(bool)


def on_dibao(status: pd.Series) -> pd.Series:
    """MZ_DIBAO 在保 (bool)."""
    return (status == ON_DIBAO).fillna(False).astype(bool)


def counted_settlements(
    settlement_id: pd.Series, settle_kind: pd.Series, cancelled: pd.Series
) -> pd.Series:
    """YB_JIESUAN rows that count: 正常, not flagged cancelled by history, and not reversed by a
    冲销 with the same settlement_id among the given rows (bool)."""
    reversed_ids = settlement_id.loc[(settle_kind == SETTLEMENT_REVERSAL).fillna(False)]
    normal = (settle_kind == SETTLEMENT_NORMAL).fillna(False).astype(bool)
    not_cancelled = ~cancelled.astype("boolean").fillna(False).astype(bool)
    not_reversed = ~settlement_id.isin(reversed_ids).fillna(False).astype(bool)
    return (normal & not_cancelled & not_reversed).astype(bool)
