"""Normalisation: every accepted form of the spec becomes its canonical value; defects a code."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from expectations.contract import get_contract, load_common
from tasks.checks import credit_code_valid, id18_check_char, id18_valid, upgrade_id15
from tasks.normalise import clean_text, normalise_column

D = date(2025, 3, 12)
COMMON = load_common()


def valid_id(first17: str) -> str:
    return first17 + id18_check_char(pd.Series([first17]))[0]


GOOD = valid_id("61032719900101123")
GOOD_X = next(
    valid_id(f"6103271985050543{i}")
    for i in range(10)
    if valid_id(f"6103271985050543{i}").endswith("X")
)


def norm(dataset: str, column: str, values: list[str | None], *, excel: bool = False):
    col = get_contract(dataset).column(column)
    return normalise_column(
        pd.Series(values, dtype="string"), col, COMMON, exchange_date=D, excel=excel
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  张三  ", "张三"),
        ("\u200b张三\u200d", "张三"),
        ("\u00a0张三\u3000", "张三"),
        ("'张三", "张三"),
        ("ＡＢＣ１２３", "ABC123"),
        ("䶮", "䶮"),
        ("𠇔堃", "𠇔堃"),
    ],
)
def test_text_is_cleaned(raw: str, expected: str) -> None:
    assert clean_text(pd.Series([raw]), COMMON.null_tokens).tolist() == [expected]


@pytest.mark.parametrize(
    "token", ["", "-", "—", "--", "/", "无数据", "NULL", "null", "None", "nan"]
)
def test_null_tokens_are_null(token: str) -> None:
    assert clean_text(pd.Series([token]), COMMON.null_tokens).isna().all()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GOOD, GOOD),
        ("'" + GOOD, GOOD),
        (GOOD.translate(str.maketrans("0123456789", "０１２３４５６７８９")), GOOD),
        (GOOD_X.lower(), GOOD_X),
        (GOOD[:6] + GOOD[8:17], GOOD),  # 15-digit old number upgraded
        (GOOD + "41", GOOD),  # 20-digit certificate number
        (f" {GOOD}\u200b", GOOD),
    ],
)
def test_id18_accepted_forms(raw: str, expected: str) -> None:
    result = norm("MZ_DIBAO", "id_number", [raw])
    assert result.values.tolist() == [expected]
    assert result.defects.isna().all()


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (GOOD[:17] + ("0" if GOOD[17] != "0" else "1"), "id_checksum"),
        (valid_id("61032718890101123"), "id_birth_date"),  # before 1900
        (valid_id("61032720990101123"), "id_birth_date"),  # after the exchange date
        (valid_id("61032719900231123"), "id_birth_date"),  # 31 February
        (GOOD[:16], "id_length"),
        (GOOD + "1", "id_length"),
        ("6103271990010112AB", "id_chars"),  # letters: a character defect, not length
        ("6.10327E+17", "id_excel_float"),
        ("6.10327199001011E+17", "id_excel_float"),
        ("610327199001011000", "id_excel_float"),  # 18 digits ending 000, check fails
    ],
)
def test_id18_defects(raw: str, rule: str) -> None:
    result = norm("MZ_DIBAO", "id_number", [raw])
    assert result.values.isna().all()
    assert result.defects.tolist() == [rule]


def test_15_digit_upgrade_matches_gb11643() -> None:
    # The example of GB 11643: 110105491231002 is 11010519491231002X.
    assert upgrade_id15(pd.Series(["110105491231002"])).tolist() == ["11010519491231002X"]
    assert id18_valid(pd.Series(["11010519491231002X"])).all()


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("91350100M000100Y43", True),
        ("91350100M000100Y44", False),
        ("9135010OM000100Y43", False),
    ],
)
def test_credit_code_check(code: str, ok: bool) -> None:
    assert credit_code_valid(pd.Series([code])).tolist() == [ok]


@pytest.mark.parametrize(
    "raw",
    [
        "2025-03-01",
        "2025/3/1",
        "2025.3.1",
        "20250301",
        "2025年3月1日",
        "2025-03-01 08:30:00",
        "２０２５-０３-０１",
    ],
)
def test_date_forms(raw: str) -> None:
    result = norm("MZ_DIBAO", "start_date", [raw])
    assert result.values.tolist() == [pd.Timestamp("2025-03-01")]
    assert result.defects.isna().all()


def test_excel_serial_is_a_date_in_xlsx_only() -> None:
    assert norm("ZJ_FANGWU", "assessed_date", ["45717"], excel=True).values.tolist() == [
        pd.Timestamp("2025-03-01")
    ]
    assert norm("MZ_DIBAO", "start_date", ["45717"], excel=False).defects.tolist() == [
        "unparseable"
    ]


@pytest.mark.parametrize("raw", ["2025-02-30", "2025-13-01", "三月一日", "2025/03-01", "1.5.2025"])
def test_unparseable_dates(raw: str) -> None:
    assert norm("MZ_DIBAO", "start_date", [raw]).defects.tolist() == ["unparseable"]


@pytest.mark.parametrize("raw", ["202503", "2025-03", "2025年3月", "2025年03月"])
def test_month_forms(raw: str) -> None:
    assert norm("XC_HU", "identified_month", [raw]).values.tolist() == ["2025-03"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1234.5", 1234.5),
        ("1,234.50", 1234.5),
        ("1234元", 1234.0),
        ("１２３４", 1234.0),
        ("-12.345", -12.35),
    ],
)
def test_decimal_forms(raw: str, expected: float) -> None:
    assert norm("MZ_DIBAO", "monthly_amount", [raw]).values.tolist() == [expected]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(t, True) for t in ["是", "Y", "y", "1", "√", "有", "true", "TRUE", "True"]],
        *[(f, False) for f in ["否", "N", "n", "0", "×", "无", "false", "FALSE", "False"]],
    ],
)
def test_bool_synonyms(raw: str, expected: bool) -> None:
    assert norm("SL_YINSHUI", "water_safe", [raw]).values.tolist() == [expected]


def test_bool_unparseable() -> None:
    assert norm("SL_YINSHUI", "water_safe", ["可能"]).defects.tolist() == ["unparseable"]


@pytest.mark.parametrize(
    ("dataset", "column", "raw", "expected"),
    [
        ("ZJ_FANGWU", "grade", "C级", "C"),
        ("ZJ_FANGWU", "grade", "d", "D"),
        ("ZJ_FANGWU", "grade", "整幢危房", "D"),
        ("JT_XUEJI", "enrolment_status", "在籍在校", "在读"),
        ("CL_CANJI", "category", "4", "肢体"),
        ("CL_CANJI", "level", "2", "二级"),
        ("NY_CHANYE", "project_status", "绝收", "失败"),
        ("MZ_DIBAO", "assistance_type", "农村低保", "农村低保"),
    ],
)
def test_enum_values_synonyms_and_codes(dataset: str, column: str, raw: str, expected: str) -> None:
    assert norm(dataset, column, [raw]).values.tolist() == [expected]


def test_enum_outside_set() -> None:
    assert norm("MZ_DIBAO", "status", ["在保中"]).defects.tolist() == ["enum"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("因病、因学", "因病、因学"),
        ("因学,因病", "因病、因学"),
        ("因病；务工就业不稳", "因病、因务工就业不稳"),
        ("因灾|因缺劳动力", "因自然灾害、缺劳动力"),
    ],
)
def test_enum_multi(raw: str, expected: str) -> None:
    assert norm("XC_HU", "risk_types", [raw]).values.tolist() == [expected]


def test_int_forms_and_defects() -> None:
    result = norm("XC_HU", "household_size", ["3", "３", "4.0", "3.5", "三"])
    assert result.values.tolist()[:3] == [3, 3, 4]
    assert result.defects.tolist()[3:] == ["unparseable", "unparseable"]


def test_distinct_value_parsing_spreads_back_correctly() -> None:
    values = ["2025-03-01", None, "2025/3/2", "2025-03-01", "x", None, "2025/3/2"]
    result = norm("MZ_DIBAO", "start_date", values)
    as_text = result.values.astype("string")
    assert as_text.astype(object).where(as_text.notna(), None).tolist() == [
        "2025-03-01",
        None,
        "2025-03-02",
        "2025-03-01",
        None,
        None,
        "2025-03-02",
    ]
    assert result.defects.fillna("ok").tolist() == ["ok"] * 4 + ["unparseable", "ok", "ok"]
