"""Alert rules (rules.md): each rule on a subject that triggers it and on its near misses; the
lifecycle (raised once, resolved, re-opened, closed by feedback); re-runs and rebuilt ranges
equal the nights; parameters from reference data — on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Connection, Engine, func, select

from datashare.errors import ConfigurationError
from expectations.contract import get_contract
from tasks.alerts import (
    PUBLISHED_COLUMNS,
    AlertSummary,
    alert_ids,
    alerts_frame,
    evaluate_rules,
    load_rule_params,
    raise_alerts,
    rebuild_alerts,
)
from tasks.checks import id18_check_char
from warehouse.db import connect, upgrade
from warehouse.history import accepted_schema, merge_delivery
from warehouse.identity import person_key
from warehouse.tables_alerts import alert_days, alerts

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

SECRET = b"alerts-secret"
D = date(2025, 3, 10)
PARAMS = load_rule_params("61", 2025)
Rows = Mapping[str, Sequence[Mapping[str, object]]]
_serial = itertools.count(1)


def pid(birth: date, male: bool = True) -> str:
    """A valid id number born on `birth` (unique within the test run)."""
    n = next(_serial)
    first17 = f"610327{birth:%Y%m%d}{n % 100:02d}{(2 * (n % 5) + (1 if male else 0))}"
    return first17 + id18_check_char(pd.Series([first17]))[0]


def born(years: int, days: int = 0) -> date:
    """A birth date `years` before D, shifted by `days` (positive = later, i.e. younger)."""
    return date(D.year - years, D.month, D.day) + timedelta(days=days)


def key(id18: str) -> str:
    return person_key(id18, SECRET)


def delivery(dataset: str, day: date, rows: Sequence[Mapping[str, object]]) -> pa.Table:
    schema = accepted_schema(get_contract(dataset))
    did = f"{dataset}_{day:%Y%m%d}_t"
    full = [
        {
            **dict.fromkeys(schema.names),
            **row,
            "delivery_id": did,
            "source_file": f"{dataset}_{day:%Y%m%d}.csv",
            "source_row": i + 2,
        }
        for i, row in enumerate(rows)
    ]
    return pa.Table.from_pylist(full, schema=schema)


def load(engine: Engine, day: date, data: Rows) -> None:
    with engine.begin() as conn:
        for dataset, rows in data.items():
            table = delivery(dataset, day, rows)
            merge_delivery(
                conn,
                get_contract(dataset),
                table,
                delivery_id=f"{dataset}_{day:%Y%m%d}_t",
                exchange_date=day,
                secret=SECRET,
            )


def hu(hid: str, head: str, **more: object) -> dict[str, object]:
    return {
        "household_id": hid,
        "town": "城关镇",
        "village": "东关村",
        "village_code": "610327100200",
        "head_name": f"户主{hid}",
        "head_id_number": head,
        "household_size": 1,
        "household_type": "一般农户",
        "income_per_capita": 20000.0,
        **more,
    }


def ren(
    hid: str, id18: str, relation: str = "户主", name: str | None = None, **more: object
) -> dict[str, object]:
    return {
        "household_id": hid,
        "name": name or f"户主{hid}",
        "id_number": id18,
        "relation": relation,
        **more,
    }


def roster(*households: tuple[dict[str, object], list[dict[str, object]]]) -> dict[str, list]:
    return {
        "XC_HU": [h for h, _ in households],
        "XC_REN": [m for _, members in households for m in members],
    }


def home(
    hid: str, head: str | None = None, members: Sequence[tuple[str, str]] = (), **more: object
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """A roster household: its head (a 40-year-old by default) and members (id, relation)."""
    head = head or pid(born(40))
    people = [ren(hid, head, labour_skill=more.pop("head_skill", None))]
    people += [
        ren(hid, m, relation, name=f"成员{hid}{i}") for i, (m, relation) in enumerate(members)
    ]
    return hu(hid, head, household_size=len(people), **more), people


MONITORED = {"monitoring_category": "边缘易致贫户", "identified_month": "2024-01"}


def monitored(risk: str, **more: object) -> dict[str, object]:
    return {**MONITORED, "risk_types": risk, **more}


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = connect(warehouse_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def findings(engine: Engine, rule: str, day: date = D) -> pd.DataFrame:
    with engine.connect() as conn:
        found = evaluate_rules(conn, day, PARAMS)
    return found.loc[found["rule_id"] == rule].set_index("subject")


def subjects(engine: Engine, rule: str, day: date = D) -> set[str]:
    return set(findings(engine, rule, day).index)


def ga_death(id18: str, when: date, event: str | None = None) -> dict[str, object]:
    return {
        "event_id": event or f"E{id18[-6:]}",
        "name": "某人",
        "id_number": id18,
        "change_type": "死亡",
        "change_date": when,
    }


# --- parameters ---------------------------------------------------------------------------------


def test_parameters_come_from_reference_data() -> None:
    p24, p25 = load_rule_params("61", 2024), load_rule_params("61", 2025)
    assert (p24.income_threshold, p25.income_threshold) == (7200.0, 7500.0)
    assert p25.medical_burden_household_12m == 10000.0
    assert p25.cents("income_threshold") == 750000


@pytest.mark.parametrize(
    ("province", "year", "named"),
    [("61", 2030, "income_threshold"), ("99", 2025, "99"), ("61", 2019, "2019")],
)
def test_a_missing_parameter_is_a_configuration_error(province: str, year: int, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_rule_params(province, year)
    message = str(info.value)
    assert named in message and str(year) in message and province in message


def test_raise_alerts_without_a_threshold_fails_before_writing(engine: Engine) -> None:
    day = date(2030, 1, 2)
    load(engine, day, roster(home("H1", income_per_capita=100.0)))
    with engine.begin() as conn, pytest.raises(ConfigurationError, match="income_threshold"):
        raise_alerts(conn, day)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert_days)).scalar_one() == 0


# --- YB-01 --------------------------------------------------------------------------------------


def settlement(
    sid: str,
    id18: str,
    burden: float,
    when: date = D - timedelta(days=30),
    kind: str = "正常",
    **more: object,
) -> dict[str, object]:
    sign = -1 if kind == "冲销" else 1
    return {
        "settlement_id": sid,
        "settle_kind": kind,
        "name": "某人",
        "id_number": id18,
        "visit_type": "住院",
        "settle_date": when,
        "total_cost": sign * burden,
        "fund_paid": 0.0,
        "self_burden": sign * burden,
        **more,
    }


def test_yb01_household_medical_burden(engine: Engine) -> None:
    ids = {h: pid(born(50)) for h in ("H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H9", "H10")}
    member9 = pid(born(20))
    homes = [home(h, ids[h]) for h in ("H1", "H2", "H3", "H4", "H7", "H8")]
    homes += [
        home("H5", ids["H5"], **monitored("因病")),
        home("H6", ids["H6"], **monitored("因学")),
        home("H9", ids["H9"], members=[(member9, "之子")]),
        home(
            "H10",
            ids["H10"],
            **monitored("因病"),
            risk_eliminated=True,
            elimination_method="帮扶消除",
            eliminated_month="2024-12",
        ),
    ]
    yb = [
        settlement("S1a", ids["H1"], 6000.00),
        settlement("S1b", ids["H1"], 4000.01),
        settlement("S2a", ids["H2"], 6000.00),
        settlement("S2b", ids["H2"], 4000.00),
        settlement("S3a", ids["H3"], 5000.00),
        settlement("S3b", ids["H3"], 10000.00),
        settlement("S3b", ids["H3"], 10000.00, kind="冲销"),
        settlement("S4", ids["H4"], 20000.01, diagnosis="J18.900"),
        settlement("S5", ids["H5"], 15000.00),
        settlement("S6", ids["H6"], 15000.00),
        settlement("S7", ids["H7"], 15000.00, when=D - timedelta(days=365)),
        settlement("S8", ids["H8"], 15000.00, when=D - timedelta(days=364)),
        settlement("S9", member9, 15000.00),
        settlement("S10", ids["H10"], 15000.00),
        settlement("S11", ids["H1"], 9000.00, when=D + timedelta(days=1)),
    ]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "YB_JIESUAN": yb,
            "GA_BIANDONG": [ga_death(member9, D - timedelta(days=3))],
        },
    )
    found = findings(engine, "YB-01")
    # H2 exactly at the threshold, H3 after its 冲销, H5 monitored for 因病, H7 outside the
    # twelve months, H9 a dead member's bills; H1 at 10000.01, H10 whose risk was removed.
    assert set(found.index) == {"H1", "H4", "H6", "H8", "H10"}
    assert found.loc["H4", "severity"] == "high" and found.loc["H1", "severity"] == "medium"
    assert found.loc["H1", "pushed_to"] == "XC,YB"
    assert "10000.01" in found.loc["H1", "evidence"]
    assert "YB_JIESUAN_20250310_t" in found.loc["H1", "evidence"]
    assert found.loc["H1", "person_key"] == key(ids["H1"])
    assert not found["evidence"].str.contains("J18").any()


# --- ZJ-01 --------------------------------------------------------------------------------------


def house(
    head: str, grade: str, status: str | None, when: date = date(2024, 6, 1), **more: object
) -> dict[str, object]:
    return {
        "head_name": "某户主",
        "head_id_number": head,
        "assessed_date": when,
        "grade": grade,
        "renovation_status": status,
        "address": "东关村三组88号",
        **more,
    }


def test_zj01_unsafe_house_of_the_head(engine: Engine) -> None:
    h = {n: pid(born(45)) for n in range(1, 9)}
    member = pid(born(20))
    homes = [home(f"H{n}", h[n]) for n in (1, 2, 3, 4, 6, 7)]
    homes += [
        home("H5", h[5], **monitored("因安全住房")),
        home("H8", h[8], members=[(member, "之子")]),
    ]
    zj = [
        house(h[1], "C", "未开工"),
        house(h[2], "D", "未开工", when=date(2023, 1, 1)),
        house(h[2], "A", "无需改造"),
        house(h[3], "D", "竣工"),
        house(h[4], "C", "验收"),
        house(h[5], "C", "在建"),
        house(h[6], "D", "在建"),
        house(h[7], "C", None),
        house(member, "D", "未开工"),  # not the head's house
    ]
    load(engine, D, {**roster(*homes), "ZJ_FANGWU": zj})
    found = findings(engine, "ZJ-01")
    assert set(found.index) == {"H1", "H6", "H7"}
    assert found.loc["H6", "severity"] == "high" and found.loc["H1", "severity"] == "medium"
    assert not found["evidence"].str.contains("东关村三组").any()


# --- JT-01 --------------------------------------------------------------------------------------


def pupil(id18: str, status: str) -> dict[str, object]:
    return {
        "name": "学生",
        "id_number": id18,
        "stage": "初中",
        "enrolment_status": status,
        "status_date": date(2024, 9, 1),
    }


def test_jt01_children_out_of_school(engine: Engine) -> None:
    six, five = pid(born(6)), pid(born(6, days=1))  # 6 today; 6 tomorrow
    fifteen, sixteen = pid(born(16, days=1)), pid(born(16))  # 15 until tomorrow; 16 today
    ten_ok, ten_mon, ten_dead = pid(born(10)), pid(born(10)), pid(born(10))
    homes = [
        home(
            "H1",
            members=[
                (six, "之子"),
                (five, "之女"),
                (fifteen, "之子"),
                (sixteen, "之女"),
                (ten_ok, "之子"),
                (ten_dead, "之子"),
            ],
        ),
        home("H2", members=[(ten_mon, "之子")], **monitored("因学")),
    ]
    load(engine, D - timedelta(days=1), roster(*homes))
    load(
        engine,
        D,
        {
            **roster(*homes),
            "JT_XUEJI": [
                pupil(fifteen, "辍学"),
                pupil(sixteen, "辍学"),
                pupil(ten_ok, "在读"),
                pupil(ten_mon, "辍学"),
                pupil(ten_dead, "辍学"),
            ],
            "GA_BIANDONG": [ga_death(ten_dead, D - timedelta(days=2))],
        },
    )
    found = findings(engine, "JT-01")
    assert set(found.index) == {key(six), key(fifteen)}
    assert found.loc[key(fifteen), "severity"] == "high"
    assert "辍学" in found.loc[key(fifteen), "evidence"]
    assert "不在最新学籍名单" in found.loc[key(six), "evidence"]
    assert found.loc[key(six), "household_id"] == "H1"
    # Before any JT_XUEJI was delivered, absence proves nothing.
    assert subjects(engine, "JT-01", D - timedelta(days=1)) == set()


# --- CL-01 --------------------------------------------------------------------------------------


def cert(id18: str, level: str, status: str = "有效", **more: object) -> dict[str, object]:
    code = {"一级": "1", "二级": "2", "三级": "3", "四级": "4"}[level]
    return {
        "name": "某人",
        "id_number": id18,
        "cert_no": f"{id18}4{code}",
        "category": "肢体",
        "level": level,
        "cert_status": status,
        **more,
    }


def test_cl01_severe_disability(engine: Engine) -> None:
    one, two, three, cancelled, monitored_one = (pid(born(30)) for _ in range(5))
    off_roster = pid(born(30))
    homes = [
        home("H1", members=[(one, "之子"), (two, "之女"), (three, "之子"), (cancelled, "之女")]),
        home("H2", members=[(monitored_one, "之子")], **monitored("因残")),
    ]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "CL_CANJI": [
                cert(one, "一级"),
                cert(two, "二级"),
                cert(three, "三级"),
                cert(cancelled, "一级", "注销"),
                cert(monitored_one, "一级"),
                cert(off_roster, "一级"),
            ],
        },
    )
    found = findings(engine, "CL-01")
    assert set(found.index) == {key(one), key(two)}
    assert found.loc[key(one), "severity"] == "high"
    assert found.loc[key(two), "pushed_to"] == "XC,CL"


# --- RS-01 --------------------------------------------------------------------------------------


def job(id18: str, status: str) -> dict[str, object]:
    return {"name": "某人", "id_number": id18, "employment_status": status}


def test_rs01_every_listed_labour_member_unemployed(engine: Engine) -> None:
    skill = {"labour_skill": "普通劳动力"}
    a1, a2, b1, b2, c1, d_old, d1, e1, e2, f1, g1 = (pid(born(30)) for _ in range(11))
    d_old = pid(born(61))
    homes = []
    for hid, people, more in [
        ("H1", [a1, a2], {}),
        ("H2", [b1, b2], {}),
        ("H3", [c1], {}),
        ("H4", [d_old, d1], {}),
        ("H5", [e1, e2], {}),
        ("H6", [f1], monitored("因务工就业不稳")),
    ]:
        h, members = home(hid, **more)
        members += [ren(hid, p, "之子", name="成员", **skill) for p in people]
        homes.append((h, members))
    h7, m7 = home("H7")
    m7.append(ren("H7", g1, "之子", name="成员", labour_skill="弱劳动力或半劳动力"))
    homes.append((h7, m7))
    load(
        engine,
        D,
        {
            **roster(*homes),
            "RS_JIUYE": [
                job(a1, "未就业"),
                job(a2, "未就业"),
                job(b1, "未就业"),
                job(b2, "县内务工"),
                job(d_old, "未就业"),
                job(e1, "未就业"),
                job(f1, "未就业"),
                job(g1, "未就业"),
            ],
        },
    )
    # H3: nobody listed; H4: the listed idle person is 61; H7: not a labour member.
    assert subjects(engine, "RS-01") == {"H1", "H5"}


# --- SL-01 --------------------------------------------------------------------------------------


def water(head: str, safe: bool) -> dict[str, object]:
    return {
        "head_name": "某户主",
        "head_id_number": head,
        "village_code": "610327100200",
        "supply_mode": "分散供水",
        "quantity_ok": True,
        "quality_ok": safe,
        "convenience_ok": True,
        "reliability_ok": True,
        "water_safe": safe,
        "survey_date": date(2024, 10, 1),
    }


def test_sl01_unsafe_water_of_the_head(engine: Engine) -> None:
    h1, h2, h3, member = (pid(born(50)) for _ in range(4))
    homes = [
        home("H1", h1),
        home("H2", h2),
        home("H3", h3, **monitored("因安全饮水")),
        home("H4", members=[(member, "之子")]),
    ]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "SL_YINSHUI": [
                water(h1, False),
                water(h2, True),
                water(h3, False),
                water(member, False),
            ],
        },
    )
    found = findings(engine, "SL-01")
    assert set(found.index) == {"H1"}
    assert "水质" in found.loc["H1", "evidence"]


# --- NY-01 --------------------------------------------------------------------------------------


def project(pid_: str, head: str, year: int, status: str) -> dict[str, object]:
    return {
        "project_id": pid_,
        "head_name": "某户主",
        "head_id_number": head,
        "industry": "养殖",
        "support_mode": "奖补",
        "amount": 5000.0,
        "year": year,
        "project_status": status,
    }


def test_ny01_failed_project_this_year_or_last(engine: Engine) -> None:
    h = {n: pid(born(50)) for n in range(1, 7)}
    member = pid(born(20))
    homes = [home(f"H{n}", h[n]) for n in (1, 2, 3, 4)]
    homes += [
        home("H5", h[5], **monitored("因产业项目失败")),
        home("H6", h[6], members=[(member, "之子")]),
    ]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "NY_CHANYE": [
                project("P1", h[1], 2025, "失败"),
                project("P1b", h[1], 2024, "失败"),
                project("P2", h[2], 2024, "失败"),
                project("P3", h[3], 2023, "失败"),
                project("P4", h[4], 2025, "已完成"),
                project("P5", h[5], 2025, "失败"),
                project("P6", member, 2025, "失败"),
            ],
        },
    )
    found = findings(engine, "NY-01")
    assert set(found.index) == {"H1", "H2"}
    assert "P1" in found.loc["H1", "evidence"] and "P1b" in found.loc["H1", "evidence"]


# --- INC-01 -------------------------------------------------------------------------------------


def test_inc01_income_below_the_threshold_of_the_year(engine: Engine) -> None:
    homes = [
        home("H1", income_per_capita=7499.99),
        home("H2", income_per_capita=7500.00),
        home("H3", income_per_capita=7000.00, **monitored("因病")),
        home("H4", income_per_capita=7300.00),
        home("H5", income_per_capita=7199.99),
    ]
    load(engine, D, roster(*homes))
    found = findings(engine, "INC-01")
    assert set(found.index) == {"H1", "H4", "H5"}
    assert found.loc["H1", "pushed_to"] == "XC"
    with engine.connect() as conn:  # 2024's threshold is 7200: only H5 is below it
        f24 = evaluate_rules(conn, D, load_rule_params("61", 2024))
    assert set(f24.loc[f24["rule_id"] == "INC-01", "subject"]) == {"H5"}


# --- MZ-01 --------------------------------------------------------------------------------------


def dibao(
    id18: str, status: str = "在保", kind: str = "农村低保", **more: object
) -> dict[str, object]:
    return {
        "village_code": "610327100201",
        "head_id_number": id18,
        "name": "某人",
        "id_number": id18,
        "assistance_type": kind,
        "monthly_amount": 400.0,
        "start_date": date(2023, 1, 1),
        "status": status,
        "bank_account": "6228480000012345",
        **more,
    }


def test_mz01_dibao_outside_the_roster_or_unmonitored(engine: Engine) -> None:
    off, stopped, general, tuopin, mon, elim, dead = (pid(born(40)) for _ in range(7))
    homes = [
        home("H1", general),
        home("H2", tuopin, household_type="脱贫户"),
        home("H3", mon, **monitored("因病")),
        home("H4", elim, **monitored("因病"), risk_eliminated=True),
        home("H5", members=[(dead, "之父")], household_type="脱贫户"),
    ]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "MZ_DIBAO": [
                dibao(off),
                dibao(stopped, "停保"),
                dibao(general),
                dibao(tuopin),
                dibao(mon),
                dibao(elim),
                dibao(dead),
                dibao(off, kind="农村特困"),
            ],
            "GA_BIANDONG": [ga_death(dead, D - timedelta(days=40))],
        },
    )
    found = findings(engine, "MZ-01")
    assert set(found.index) == {key(off), key(general), key(elim), key(dead)}
    assert found.loc[key(off), "town"] == "城关镇"  # from the division code MZ gives
    assert pd.isna(found.loc[key(off), "household_id"])
    assert found.loc[key(general), "household_id"] == "H1"
    assert not found["evidence"].str.contains("6228").any()


# --- GA-01, GA-02 -------------------------------------------------------------------------------


def test_ga01_benefits_after_death_and_ga02_roster_keeps_the_dead(engine: Engine) -> None:
    mz_dead, cl_dead, both_dead, later, zero, voided, roster_dead = (
        pid(born(70)) for _ in range(7)
    )
    homes = [home("H1", members=[(roster_dead, "之父"), (later, "之母")])]
    load(
        engine,
        D,
        {
            **roster(*homes),
            "GA_BIANDONG": [
                ga_death(p, D - timedelta(days=10))
                for p in (mz_dead, cl_dead, both_dead, zero, voided, roster_dead)
            ]
            + [ga_death(later, D + timedelta(days=5))],
            "MZ_DIBAO": [dibao(mz_dead), dibao(both_dead), dibao(later)],
            "CL_CANJI": [
                cert(cl_dead, "三级", living_subsidy=80.0),
                cert(both_dead, "一级", care_subsidy=100.0),
                cert(zero, "一级", living_subsidy=0.0, care_subsidy=0.0),
                cert(voided, "一级", "注销", living_subsidy=80.0),
                cert(later, "二级", care_subsidy=100.0),
            ],
        },
    )
    ga01 = findings(engine, "GA-01")
    assert set(ga01.index) == {key(mz_dead), key(cl_dead), key(both_dead)}
    assert ga01.loc[key(mz_dead), "pushed_to"] == "XC,MZ"
    assert ga01.loc[key(cl_dead), "pushed_to"] == "XC,CL"
    assert ga01.loc[key(both_dead), "pushed_to"] == "XC,MZ,CL"
    assert (ga01["risk_type"] == "DQ").all() and (ga01["severity"] == "high").all()
    assert subjects(engine, "GA-02") == {key(roster_dead)}


# --- DQ-01 --------------------------------------------------------------------------------------


def test_dq01_names_differ_across_departments_or_two_households(engine: Engine) -> None:
    clash, spaced, same_dept, two_homes = (pid(born(35)) for _ in range(4))
    homes = [
        home("H1", members=[(clash, "之子"), (spaced, "之女"), (same_dept, "之子")]),
        home("H3", members=[(two_homes, "之子")]),
    ]
    h, members = roster(*homes)["XC_HU"], roster(*homes)["XC_REN"]
    names = {clash: "张三", spaced: "李 四", same_dept: "王五"}
    members = [{**m, "name": names.get(str(m["id_number"]), m["name"])} for m in members]
    # A roster person is listed once in XC_REN; as the head of another XC_HU household the
    # same id belongs to two households.
    load(
        engine,
        D,
        {
            "XC_HU": [
                *h,
                hu("H2", two_homes, head_name="成员H30"),
                hu("H9", same_dept, head_name="王伍"),
            ],  # XC both times: one department
            "XC_REN": members,
            "MZ_DIBAO": [dibao(clash, name="张叁"), dibao(spaced, name="李四")],
            "RS_JIUYE": [{**job(spaced, "县内务工"), "name": "ＬＩ四".replace("ＬＩ", "李")}],
        },
    )
    found = findings(engine, "DQ-01")
    assert set(found.index) == {key(clash), key(two_homes), key(same_dept)}
    assert "张三" in found.loc[key(clash), "evidence"]
    assert "张叁" in found.loc[key(clash), "evidence"]
    assert found.loc[key(clash), "pushed_to"] == "XC,MZ"
    assert "H2" in found.loc[key(two_homes), "evidence"]
    # same_dept: only XC spells it two ways, but the id heads H9 and is a member of H1.
    assert "H9" in found.loc[key(same_dept), "evidence"]
    assert "姓名不一致" not in found.loc[key(same_dept), "evidence"]


# --- alert ids ----------------------------------------------------------------------------------


def test_alert_ids_are_stable_quotable_and_free_of_ids() -> None:
    rules = pd.Series(["YB-01", "INC-01", "YB-01"])
    subjects_ = pd.Series(["H1", "H1", "H2"])
    first = alert_ids(rules, subjects_)
    assert list(first) == list(alert_ids(rules[::-1], subjects_[::-1])[::-1])
    assert all(re.fullmatch(r"[A-Z]+\d\d-[0-9A-HJKMNP-TV-Z]{10}", a) for a in first)
    assert first[0].startswith("YB01-") and first[1].startswith("INC01-")
    assert len(set(first)) == 3


# --- lifecycle ----------------------------------------------------------------------------------

NIGHTS = [D + timedelta(days=i) for i in range(10)]
LOW, HIGH = 5000.0, 20000.0
# Household income per night: H1 low, then recovers on night 4, low again from night 5 (the
# same alert re-opens); H2 low throughout (feedback closes it on night 6).
INCOMES = {"H1": [LOW, LOW, LOW, HIGH, LOW, LOW, LOW, LOW, LOW, LOW], "H2": [LOW] * 10}


def night(
    engine: Engine,
    i: int,
    incomes: Mapping[str, list[float]] = INCOMES,
    feedback: Sequence[Mapping[str, object]] = (),
) -> AlertSummary:
    day = NIGHTS[i]
    heads = {"H1": "610327198001010015", "H2": "610327198001010023"}
    homes = [home(h, heads[h], income_per_capita=values[i]) for h, values in incomes.items()]
    data: dict[str, Sequence[Mapping[str, object]]] = roster(*homes)
    if feedback:
        data["XC_HECHA"] = feedback
    load(engine, day, data)
    with engine.begin() as conn:
        return raise_alerts(conn, day)


def table(conn: Connection) -> list[dict[str, object]]:
    return [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.alert_id))]


def inc_id(hid: str) -> str:
    return str(alert_ids(pd.Series(["INC-01"]), pd.Series([hid]))[0])


def test_an_alert_is_raised_once_resolved_and_reopened(engine: Engine) -> None:
    summaries = [night(engine, i) for i in range(6)]
    assert [s.new for s in summaries] == [2, 0, 0, 0, 0, 0]
    assert summaries[3].resolved == 1 and summaries[4].reopened == 1
    with engine.connect() as conn:
        rows = {r["alert_id"]: r for r in table(conn)}
        assert len(rows) == 2
        h1 = rows[inc_id("H1")]
        assert (
            h1["status"],
            h1["first_raised"],
            h1["last_seen"],
            h1["resolved_on"],
            h1["opened_on"],
        ) == ("open", NIGHTS[0], NIGHTS[5], None, NIGHTS[4])
        # As of night 3 (a past date) it was resolved on that night.
        past = alerts_frame(conn, NIGHTS[3]).set_index("alert_id").loc[inc_id("H1")]
        assert (past["status"], past["last_seen"], past["resolved_on"]) == (
            "resolved",
            pd.Timestamp(NIGHTS[2]),
            pd.Timestamp(NIGHTS[3]),
        )
        days = conn.execute(
            select(func.count())
            .select_from(alert_days)
            .where(alert_days.c.alert_id == inc_id("H1"))
        ).scalar_one()
        assert days == 5


@pytest.mark.quick_sample("postgres")
def test_feedback_closes_for_good_until_a_new_episode(engine: Engine) -> None:
    for i in range(6):
        night(engine, i)
    dismissed = {"alert_id": inc_id("H2"), "outcome": "核实排除", "checked_date": NIGHTS[6]}
    confirmed = {"alert_id": inc_id("H1"), "outcome": "已纳入监测", "checked_date": NIGHTS[6]}
    unknown = {"alert_id": "INC01-0000000000", "outcome": "数据错误", "checked_date": NIGHTS[6]}
    summary = night(engine, 6, feedback=[dismissed, confirmed, unknown])
    assert summary.closed == 2 and summary.feedback_unknown == 1
    night(engine, 7)  # the same evidence goes on: still closed
    # H2 recovers on night 8 and is low again on night 9: a new episode re-opens it.
    incomes = {**INCOMES, "H2": [LOW] * 8 + [HIGH, LOW]}
    night(engine, 8, incomes)
    with engine.connect() as conn:
        rows = {r["alert_id"]: r for r in table(conn)}
        assert rows[inc_id("H1")]["status"] == "confirmed"
        assert rows[inc_id("H2")]["status"] == "dismissed"
        assert rows[inc_id("H2")]["feedback_outcome"] == "核实排除"
    night(engine, 9, incomes)
    with engine.connect() as conn:
        rows = {r["alert_id"]: r for r in table(conn)}
        assert rows[inc_id("H1")]["status"] == "confirmed"
        h2 = rows[inc_id("H2")]
        assert (h2["status"], h2["first_raised"], h2["opened_on"]) == ("open", NIGHTS[0], NIGHTS[9])


def _published(engine: Engine, day: date) -> pd.DataFrame:
    with engine.connect() as conn:
        return alerts_frame(conn, day)


@pytest.mark.quick_sample("sqlite")
def test_rerun_and_rebuild_give_the_nightly_alerts(engine: Engine) -> None:
    feedback = [{"alert_id": inc_id("H2"), "outcome": "数据错误", "checked_date": NIGHTS[6]}]
    snapshots = {}
    for i in range(8):
        night(engine, i, feedback=feedback if i == 6 else ())
        snapshots[i] = _published(engine, NIGHTS[i])
    with engine.connect() as conn:
        nightly = table(conn)
    # Every past date, derived again from alert_days, equals what that night published.
    for i, frame in snapshots.items():
        pd.testing.assert_frame_equal(_published(engine, NIGHTS[i]), frame)
    # Re-run the last night: the same.
    with engine.begin() as conn:
        raise_alerts(conn, NIGHTS[7])
    with engine.connect() as conn:
        assert table(conn) == nightly
    # Re-run night 2 alone: alerts as of night 2; then the later nights in order: the same.
    with engine.begin() as conn:
        raise_alerts(conn, NIGHTS[2])
        assert {r["as_of"] for r in table(conn)} == {NIGHTS[2]}
        pd.testing.assert_frame_equal(alerts_frame(conn, NIGHTS[2]), snapshots[2])
        for day in NIGHTS[3:8]:
            raise_alerts(conn, day)
    with engine.connect() as conn:
        assert table(conn) == nightly
    with engine.begin() as conn:
        rebuilt = rebuild_alerts(conn, NIGHTS[1], NIGHTS[7])
    assert [s.as_of for s in rebuilt] == NIGHTS[1:8]
    with engine.connect() as conn:
        assert table(conn) == nightly


def test_published_columns(engine: Engine) -> None:
    night(engine, 0)
    frame = _published(engine, NIGHTS[0])
    assert list(frame.columns) == [*PUBLISHED_COLUMNS, "pushed_to"]
    assert PUBLISHED_COLUMNS == [
        "alert_id",
        "rule_id",
        "risk_type",
        "household_id",
        "person_key",
        "id_number",
        "name",
        "town",
        "village",
        "severity",
        "status",
        "first_raised",
        "last_seen",
        "resolved_on",
        "evidence",
    ]
    assert set(frame["status"]) == {"open"}
    assert str(frame["first_raised"].dtype) == "datetime64[s]"
