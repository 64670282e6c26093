"""Row-level validation: required, enum, pattern, min/max, credit codes, every row rule,
identical duplicates, key conflicts, masked rejects and conservation."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from expectations.contract import get_contract, load_common, load_contracts
from tasks.checks import id18_check_char
from tasks.validate import validate_rows

D = date(2025, 3, 12)
COMMON = load_common()


def vid(first17: str) -> str:
    return first17 + id18_check_char(pd.Series([first17]))[0]


P1, P2, P3 = vid("61032719900101123"), vid("61032719850505431"), vid("61032720150601002")
HEAD = vid("61032719600101001")


def run(dataset: str, rows: list[dict[str, object]], *, first_row: int = 2):
    frame = pd.DataFrame(rows).astype("string")
    frame["source_row"] = range(first_row, first_row + len(frame))
    return validate_rows(frame, get_contract(dataset), COMMON, exchange_date=D, excel=False)


DIBAO = dict(
    village_code="610327100201",
    head_name="张大山",
    head_id_number=HEAD,
    name="张三华",
    id_number=P1,
    assistance_type="农村低保",
    monthly_amount="500",
    start_date="2020-01-01",
    status="在保",
    bank_account="6222020200112233445",
)


def test_clean_rows_are_accepted() -> None:
    v = run("MZ_DIBAO", [DIBAO, DIBAO | {"id_number": P2, "name": "李四"}])
    assert (v.rows_loaded, v.rows_quarantined, v.duplicates) == (2, 0, 0)
    assert v.rejects.empty


@pytest.mark.parametrize(
    ("change", "column", "rule"),
    [
        ({"name": None}, "name", "required"),
        ({"name": "-"}, "name", "required"),
        ({"status": "在保中"}, "status", "enum"),
        ({"village_code": "61032710020"}, "village_code", "pattern"),
        ({"monthly_amount": "-1"}, "monthly_amount", "min"),
        ({"monthly_amount": "5000.01"}, "monthly_amount", "max"),
        ({"start_date": "2025-02-30"}, "start_date", "unparseable"),
        ({"id_number": P1[:17] + ("1" if P1[17] != "1" else "2")}, "id_number", "id_checksum"),
        ({"id_number": "6.10327E+17"}, "id_number", "id_excel_float"),
        ({"end_date": "2019-12-31"}, "end_date", "end_not_before_start"),
        ({"support_mode": "集中供养"}, "support_mode", "support_mode_only_tekun"),
    ],
)
def test_defect_is_quarantined_with_rule_and_row(
    change: dict[str, object], column: str, rule: str
) -> None:
    v = run("MZ_DIBAO", [DIBAO | {"id_number": P2}, DIBAO | change], first_row=4)
    assert (v.rows_loaded, v.rows_quarantined) == (1, 1)
    assert v.rejects[["source_row", "column", "rule"]].values.tolist() == [[5, column, rule]]


def test_near_misses_are_accepted() -> None:
    rows = [
        DIBAO | {"monthly_amount": "5000", "end_date": "2020-01-01"},  # max and same-day end
        DIBAO | {"id_number": P2, "assistance_type": "农村特困", "support_mode": "分散供养"},
        DIBAO | {"id_number": P3, "monthly_amount": "0"},
    ]
    v = run("MZ_DIBAO", rows)
    assert v.rows_loaded == 3, v.rejects.to_dict("records")


def test_rejects_mask_personal_values_and_hide_never_forms() -> None:
    bad_id = P1[:17] + ("1" if P1[17] != "1" else "2")
    v = run("MZ_DIBAO", [DIBAO | {"id_number": bad_id, "bank_account": "bad"}])
    reject = v.rejects.iloc[0]
    assert reject["value_masked"] == bad_id[:6] + "********" + bad_id[-4:]
    assert bad_id not in reject["message"] and "张三华" not in reject["message"]
    assert "身份证号校验位错误" in reject["message"]


def test_identical_duplicates_collapse_after_normalisation() -> None:
    same = DIBAO | {"start_date": "2020/1/1", "monthly_amount": "500.00", "name": " 张三华"}
    v = run("MZ_DIBAO", [DIBAO, same, DIBAO])
    assert (v.rows_in, v.rows_loaded, v.rows_quarantined, v.duplicates) == (3, 1, 0, 2)


def test_key_conflicts_quarantine_every_row_of_the_key() -> None:
    v = run("MZ_DIBAO", [DIBAO, DIBAO | {"monthly_amount": "600"}, DIBAO | {"id_number": P2}])
    assert (v.rows_loaded, v.rows_quarantined) == (1, 2)
    assert v.rejects["rule"].tolist() == ["key_conflict", "key_conflict"]
    assert v.rejects["source_row"].tolist() == [2, 3]


def test_same_person_under_two_assistance_types_is_no_conflict() -> None:
    v = run("MZ_DIBAO", [DIBAO, DIBAO | {"assistance_type": "农村特困"}])
    assert v.rows_loaded == 2


def test_conservation_holds_on_a_mixed_delivery() -> None:
    rows = [
        DIBAO,
        DIBAO,
        DIBAO | {"id_number": P2, "status": "x"},
        DIBAO | {"id_number": P3},
        DIBAO | {"id_number": P3, "name": "王五"},
    ]
    v = run("MZ_DIBAO", rows)
    assert v.rows_in == v.rows_loaded + v.rows_quarantined + v.duplicates
    assert (v.rows_loaded, v.rows_quarantined, v.duplicates) == (1, 3, 1)


# --- the row rules of every contract -----------------------------------------------------------

HU = dict(
    household_id="HH001",
    town="城关镇",
    village="东关村",
    village_code="610327100201",
    head_name="张大山",
    head_id_number=HEAD,
    household_size="3",
    household_type="脱贫户",
    income_per_capita="9000",
)
REN = dict(
    household_id="HH001",
    name="张大山",
    id_number=HEAD,
    relation="户主",
    gender="男",
    birth_date="1960-01-01",
)
JIESUAN = dict(
    settlement_id="S1",
    settle_kind="正常",
    name="张三华",
    id_number=P1,
    visit_type="住院",
    settle_date="2025-03-01",
    total_cost="1000",
    fund_paid="600",
    critical_illness_paid="100",
    self_burden="300",
)
JIUYE = dict(
    name="张三华",
    id_number=P1,
    employment_status="县内务工",
    employer="某公司",
    monthly_income="3000",
)
CANJI = dict(
    name="张三华",
    id_number=P1,
    cert_no=P1 + "42",
    category="肢体",
    level="二级",
    cert_status="有效",
    care_subsidy="100",
)
YINSHUI = dict(
    head_id_number=HEAD,
    village_code="610327100201",
    supply_mode="集中供水入户",
    quantity_ok="是",
    quality_ok="是",
    convenience_ok="是",
    reliability_ok="是",
    water_safe="是",
    survey_date="2025-01-05",
)


@pytest.mark.parametrize(
    ("dataset", "rows", "broken"),
    [
        ("XC_HU", [HU | {"monitoring_category": "边缘易致贫户"}], "monitored_needs_identification"),
        (
            "XC_HU",
            [
                HU
                | {
                    "monitoring_category": "边缘易致贫户",
                    "identified_month": "2024-01",
                    "risk_types": "因病",
                    "risk_eliminated": "是",
                }
            ],
            "eliminated_needs_method",
        ),
        (
            "XC_HU",
            [
                HU
                | {
                    "monitoring_category": "边缘易致贫户",
                    "identified_month": "2024-05",
                    "risk_types": "因病",
                    "risk_eliminated": "是",
                    "elimination_method": "帮扶消除",
                    "eliminated_month": "2024-04",
                }
            ],
            "eliminated_after_identified",
        ),
        ("XC_REN", [REN | {"gender": "女"}], "gender_matches_id"),
        ("XC_REN", [REN | {"birth_date": "1960-01-02"}], "birth_date_matches_id"),
        (
            "XC_REN",
            [REN, REN | {"id_number": P2, "name": "李四", "gender": None, "birth_date": None}],
            "one_head_per_household",
        ),
        ("YB_JIESUAN", [JIESUAN | {"self_burden": "300.02"}], "self_burden_balances"),
        ("YB_JIESUAN", [JIESUAN | {"settle_kind": "冲销"}], "amount_sign_by_kind"),
        (
            "YB_JIESUAN",
            [JIESUAN | {"admit_date": "2025-02-10", "discharge_date": "2025-02-09"}],
            "discharge_not_before_admit",
        ),
        ("RS_JIUYE", [JIUYE | {"employment_status": "未就业"}], "unemployed_has_no_job"),
        ("RS_JIUYE", [JIUYE | {"id_number": P3}], "worker_at_least_16"),
        ("CL_CANJI", [CANJI | {"level": "三级"}], "cert_matches_id_category_level"),
        ("CL_CANJI", [CANJI | {"cert_no": P1 + "43", "level": "三级"}], "care_subsidy_only_severe"),
        ("SL_YINSHUI", [YINSHUI | {"quality_ok": "否"}], "water_safe_iff_all_indicators"),
    ],
)
def test_row_rule_broken(dataset: str, rows: list[dict[str, object]], broken: str) -> None:
    v = run(dataset, rows)
    assert broken in set(v.rejects["rule"]), v.rejects.to_dict("records")


@pytest.mark.parametrize(
    ("dataset", "rows"),
    [
        ("XC_HU", [HU]),
        (
            "XC_HU",
            [
                HU
                | {
                    "monitoring_category": "边缘易致贫户",
                    "identified_month": "2024-05",
                    "risk_types": "因病",
                    "risk_eliminated": "是",
                    "elimination_method": "帮扶消除",
                    "eliminated_month": "2024-05",
                }
            ],
        ),
        (
            "XC_REN",
            [
                REN,
                REN
                | {
                    "id_number": P2,
                    "name": "李四",
                    "relation": "配偶",
                    "gender": None,
                    "birth_date": None,
                },
            ],
        ),
        ("YB_JIESUAN", [JIESUAN | {"self_burden": "300.01"}]),  # within a cent
        (
            "YB_JIESUAN",
            [
                JIESUAN
                | {
                    "settle_kind": "冲销",
                    "total_cost": "-1000",
                    "fund_paid": "-600",
                    "critical_illness_paid": "-100",
                    "self_burden": "-300",
                }
            ],
        ),
        (
            "RS_JIUYE",
            [JIUYE | {"employment_status": "未就业", "employer": None, "monthly_income": "0"}],
        ),
        ("RS_JIUYE", [JIUYE | {"id_number": vid("61032720090312001")}]),  # 16 on the day
        ("CL_CANJI", [CANJI]),
        ("CL_CANJI", [CANJI | {"id_number": None}]),  # id derived from the certificate
        ("SL_YINSHUI", [YINSHUI | {"quality_ok": "否", "water_safe": "否"}]),
    ],
)
def test_row_rule_near_misses(dataset: str, rows: list[dict[str, object]]) -> None:
    v = run(dataset, rows)
    assert v.rows_quarantined == 0, v.rejects.to_dict("records")


def test_cl_id_is_derived_from_certificate() -> None:
    v = run("CL_CANJI", [CANJI | {"id_number": "—"}])
    assert v.accepted["id_number"].tolist() == [P1]


def test_every_contract_validates_an_empty_frame() -> None:
    for name, contract in load_contracts().items():
        frame = pd.DataFrame({c: pd.Series(dtype="string") for c in contract.column_names})
        frame["source_row"] = pd.Series(dtype="int64")
        v = validate_rows(frame, contract, COMMON, exchange_date=D, excel=False)
        assert v.rows_in == 0, name
