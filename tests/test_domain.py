"""domain/definitions.py: the one definition of age, labour member, monitored, house grades,
severe disability and counted settlements, on tiny inline frames and against a plain-Python
oracle (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import definitions as dd
from tasks.checks import id18_check_char

ON = date(2025, 3, 10)


def id_born(birth: date) -> str:
    first17 = f"610327{birth:%Y%m%d}001"
    return first17 + id18_check_char(pd.Series([first17]))[0]


def years_between(birth: date, on: date) -> int:
    """The oracle: whole years, counted the way people count birthdays."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(2010, 3, 10), ON, 15),  # birthday today: counts
        (date(2010, 3, 11), ON, 14),  # tomorrow: not yet
        (date(2000, 2, 29), date(2025, 2, 28), 24),  # leap-day births: 1 March elsewhere
        (date(2000, 2, 29), date(2025, 3, 1), 25),
        (date(2000, 2, 29), date(2024, 2, 29), 24),
        (date(1925, 12, 31), ON, 99),
    ],
)
def test_age_in_whole_years_from_the_id(birth: date, on: date, age: int) -> None:
    assert dd.ages_on(pd.Series([id_born(birth)]), on).tolist() == [age]


def test_an_id_without_a_real_birth_date_has_no_age() -> None:
    ids = pd.Series(["610327199902310011", None, "61032719", "610327199013010011"])
    assert dd.ages_on(ids, ON).isna().all()
    assert str(dd.ages_on(ids, ON).dtype) == "Int64"
    assert dd.birth_dates(ids).isna().all()


@settings(max_examples=200, deadline=None)
@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 3, 10)),
    days=st.integers(min_value=0, max_value=40000),
)
def test_ages_agree_with_counting_birthdays(birth: date, days: int) -> None:
    on = birth + timedelta(days=days)
    assert dd.ages_on(pd.Series([id_born(birth)]), on).tolist() == [years_between(birth, on)]


def test_labour_member_is_active_aged_16_to_60_with_a_labour_skill() -> None:
    frame = pd.DataFrame(
        {
            "active": [True, True, True, True, False, True, True],
            "age": pd.array([16, 60, 15, 61, 30, 30, pd.NA], dtype="Int64"),
            "skill": [
                "技能劳动力",
                "普通劳动力",
                "普通劳动力",
                "普通劳动力",
                "普通劳动力",
                "无劳动力",
                "普通劳动力",
            ],
        }
    )
    labour = dd.is_labour(frame["active"], frame["age"], frame["skill"])
    assert labour.tolist() == [True, True, False, False, False, False, False]
    assert labour.dtype == bool


def test_school_age_is_6_to_15() -> None:
    ages = pd.Series([5, 6, 15, 16, None], dtype="Int64")
    assert dd.of_school_age(ages).tolist() == [False, True, True, False, False]


def test_identified_monitored_eliminated() -> None:
    category = pd.Series(
        ["边缘易致贫户", "边缘易致贫户", None, "", "突发严重困难户"], dtype="string"
    )
    done = pd.Series([False, True, False, True, None], dtype="boolean")
    assert dd.identified(category).tolist() == [True, True, False, False, True]
    assert dd.eliminated(category, done).tolist() == [False, True, False, False, False]
    assert dd.monitored(category, done).tolist() == [True, False, False, False, True]


def test_a_risk_is_one_of_the_risk_types_never_a_part_of_one() -> None:
    risks = pd.Series(["因病、因学", "因病", "因病致贫", None], dtype="string")
    assert dd.has_risk(risks, "因病").tolist() == [True, True, False, False]
    assert dd.has_risk(risks, "因学").tolist() == [True, False, False, False]


def test_death_counts_on_or_before_the_date() -> None:
    kind = pd.Series(["死亡", "死亡", "迁出", None])
    when = pd.Series(pd.to_datetime(["2025-03-10", "2025-03-11", "2025-03-01", "2025-03-01"]))
    assert dd.died_by(kind, when, ON).tolist() == [True, False, False, False]


def test_houses_disability_employment_dibao() -> None:
    assert dd.unsafe_house(pd.Series(["A", "B", "C", "D", None])).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]
    assert dd.renovation_done(pd.Series(["竣工", "验收", "在建", None])).tolist() == [
        True,
        True,
        False,
        False,
    ]
    status = pd.Series(["有效", "有效", "有效", "注销", None])
    level = pd.Series(["一级", "二级", "三级", "一级", "一级"])
    assert dd.severely_disabled(status, level).tolist() == [True, True, False, False, False]
    assert dd.unemployed(pd.Series(["未就业", "县内务工", None])).tolist() == [True, False, False]
    assert dd.on_dibao(pd.Series(["在保", "停保", None])).tolist() == [True, False, False]


def test_a_reversal_cancels_its_settlement_and_is_not_counted_itself() -> None:
    ids = pd.Series(["S1", "S1", "S2", "S3", "S4"])
    kind = pd.Series(["正常", "冲销", "正常", "正常", None])
    cancelled = pd.Series([False, False, True, None, False], dtype="boolean")
    assert dd.counted_settlements(ids, kind, cancelled).tolist() == [
        False,
        False,
        False,
        True,
        False,
    ]


def test_inputs_are_not_changed_and_the_index_is_kept() -> None:
    category = pd.Series([" ", "边缘易致贫户"], index=[7, 9], dtype="string")
    before = category.copy()
    result = dd.identified(category)
    assert result.index.tolist() == [7, 9] and result.tolist() == [False, True]
    pd.testing.assert_series_equal(category, before)


def test_gender_from_the_17th_digit() -> None:
    ids = pd.Series(["610327199001010011", "610327199001010028", "6103271990", None])
    assert dd.genders(ids).tolist() == ["男", "女", pd.NA, pd.NA]


def test_the_latest_assessment_of_each_head() -> None:
    fangwu = pd.DataFrame(
        {
            "head_person_key": ["k2", "k1", "k1", "k2"],
            "assessed_date": pd.to_datetime(
                ["2024-05-01", "2023-01-01", "2024-01-01", "2022-01-01"]
            ),
            "grade": ["B", "D", "C", "D"],
        }
    )
    latest = dd.latest_assessments(fangwu)
    assert latest["head_person_key"].tolist() == ["k1", "k2"]
    assert latest["grade"].tolist() == ["C", "B"]
