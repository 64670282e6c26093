"""Publishing: the access matrix, forms of personal data, files, atomic switch and audit trail.

The input is hand-built (the profile and alert providers are not needed): every table the
publisher takes, with recognisable plain ids, names, a phone number and values of the never form
planted in it; the tests then scan everything a consumer can read for them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, insert, select, text

from expectations.contract import load_contracts
from tasks.checks import id18_check_char
from tasks.publication import collect_shared_tables, publish, town_summary
from warehouse import published as files
from warehouse.db import connect, upgrade
from warehouse.identity import person_key
from warehouse.ledger import DeliveryRecord, record
from warehouse.publish import (
    SHARED_TABLES,
    AccessMatrix,
    PublishError,
    apply_access,
    check_access,
    default_access,
    prepare,
    table_def,
)
from warehouse.publish import version as version_module
from warehouse.tables_publish import audit_log, publications

SECRET = b"publish-test-secret"
OTHER_SECRET = b"another-secret"
AS_OF = date(2025, 3, 12)
DEPARTMENTS = ("XC", "MZ", "ZJ", "JT", "YB", "WJ", "RS", "NY", "CL", "SL", "GA")
CONSUMERS = (*DEPARTMENTS, "PUBLIC")


def vid(first17: str) -> str:
    return first17 + str(id18_check_char(pd.Series([first17]))[0])


# Persons: id, name, household (None: not on the roster), head of household.
P1 = vid("61032719800315001")  # head of H001, phone planted in XC_HU
P2 = vid("61032720120520002")  # child of H001, 12 on AS_OF: JT gets it
P3 = vid("61032720000101003")  # head of H002, 25: too old for JT's grant
P4 = vid("61032719550707004")  # H002, deceased, on 低保, certificate holder
P5 = vid("61032720220601005")  # H002, 2 years old: too young for JT's grant
P6 = vid("61032719700202006")  # not on the roster: 低保, 临时救助, employment
PERSONS = {
    P1: ("张三华", "H001"),
    P2: ("李四", "H001"),
    P3: ("欧阳娜娜", "H002"),
    P4: ("䶮堃", "H002"),
    P5: ("钱小七", "H002"),
    P6: ("孙八八", None),
}
HEADS = {"H001": P1, "H002": P3}
CHECKER = "周九九"
PHONE = "13800138000"
IDS = tuple(PERSONS)
NAMES = (*(n for n, _ in PERSONS.values()), CHECKER)
# Values of the never form: they must not appear anywhere, in any form.
BANK = "6222020200112233445"
DIAGNOSIS = "J45.901"
DISEASE = "高血压病三级"
ADDRESS = "龙泉镇幸福村三组十八号"
NEVER_VALUES = (BANK, DIAGNOSIS, DISEASE, ADDRESS)

ROWS: dict[str, list[str]] = {  # dataset -> the persons (or heads) its rows are about
    "XC_HU": [P1, P3],
    "XC_REN": [P1, P2, P3, P4, P5],
    "XC_HECHA": [P1],
    "MZ_DIBAO": [P4, P6],
    "MZ_LINSHI": [P6],
    "ZJ_FANGWU": [P1, P3],
    "JT_XUEJI": [P2],
    "JT_ZIZHU": [P2],
    "YB_CANBAO": [P1, P2],
    "YB_JIESUAN": [P1],
    "WJ_MANBING": [P4],
    "RS_JIUYE": [P1, P6],
    "NY_CHANYE": [P3],
    "CL_CANJI": [P4],
    "SL_YINSHUI": [P1, P3],
    "GA_BIANDONG": [P4, P2],
}
OVERRIDES: dict[str, dict[str, list[object]]] = {
    "GA_BIANDONG": {"change_type": ["死亡", "迁入"]},
    "XC_HU": {"monitoring_category": ["边缘易致贫户", None]},
    "XC_REN": {"relation": ["户主", "之子", "户主", "之父", "之孙女"]},
}


def _value(dataset: str, column: object, pid: str, i: int) -> object:
    name = column.name  # type: ignore[attr-defined]
    household = PERSONS[pid][1]
    head = HEADS.get(household or "", pid)
    special: dict[str, object] = {
        "id_number": pid,
        "name": PERSONS[pid][0],
        "head_id_number": head,
        "head_name": PERSONS[head][0],
        "household_id": household or "H999",
        "bank_account": BANK,
        "diagnosis": DIAGNOSIS,
        "disease": DISEASE,
        "address": ADDRESS,
        "phone": PHONE,
        "checker": CHECKER,
        "cert_no": f"{pid}41",
        "village_code": "610327100201",
        "town": "龙泉镇",
        "village": "幸福村",
    }
    if name in special:
        return special[name]
    kind = column.type  # type: ignore[attr-defined]
    if kind in ("enum", "enum_multi"):
        return column.values[0]  # type: ignore[attr-defined]
    return {
        "date": pd.Timestamp(2024, 1, 1 + i),
        "month": "2024-01",
        "int": 2025,
        "decimal": 100.5 + i,
        "bool": True,
    }.get(kind, f"{name}-{i}")


def dataset_frame(dataset: str) -> pd.DataFrame:
    """Current rows of one dataset as warehouse.history.current_rows gives them (in part)."""
    contract = load_contracts()[dataset]
    rows = []
    for i, pid in enumerate(ROWS[dataset]):
        row = {c.name: _value(dataset, c, pid, i) for c in contract.columns}
        for column, values in OVERRIDES.get(dataset, {}).items():
            row[column] = values[i]
        row |= {"delivery_id": f"{dataset}_1", "source_file": f"{dataset}.csv", "source_row": i}
        rows.append(row)
    return pd.DataFrame(rows)


def person_profile_frame() -> pd.DataFrame:
    rows = []
    for pid, (name, household) in PERSONS.items():
        rows.append(
            {
                "person_key": "stale-key-from-elsewhere",
                "id_number": pid,
                "name": name,
                "household_id": household,
                "gender": "男",
                "birth_date": pd.Timestamp(pid[6:14]),
                "age": 30,
                "village_code": "610327100201",
                "town": "龙泉镇",
                "in_roster": household is not None,
                "household_type": "脱贫户",
                "monitoring_category": "边缘易致贫户" if household == "H001" else None,
                "deceased": pid == P4,
                "death_date": pd.Timestamp(2025, 1, 5) if pid == P4 else None,
                "dibao_status": "在保" if pid in (P4, P6) else None,
                "assistance_type": "农村低保" if pid in (P4, P6) else None,
                "disability_category": "肢体" if pid == P4 else None,
                "disability_level": "一级" if pid == P4 else None,
                "school_stage": "小学" if pid == P2 else None,
                "enrolment_status": "在读" if pid == P2 else None,
                "insured_status": "正常参保",
                "self_burden_12m": 12000.5,
                "employment_status": "县内务工" if pid in (P1, P6) else None,
                "monthly_income": 3000.0 if pid in (P1, P6) else None,
                "sources": "MZ,XC",
                "as_of": pd.Timestamp(AS_OF),
            }
        )
    return pd.DataFrame(rows)


def household_profile_frame() -> pd.DataFrame:
    rows = []
    for household, head in HEADS.items():
        rows.append(
            {
                "household_id": household,
                "village_code": "610327100201",
                "town": "龙泉镇",
                "village": "幸福村",
                "head_person_key": None,
                "head_id_number": head,
                "head_name": PERSONS[head][0],
                "household_size": 3,
                "active_members": 2,
                "household_type": "脱贫户",
                "monitoring_category": "边缘易致贫户" if household == "H001" else None,
                "risk_types": "因病",
                "risk_eliminated": False,
                "income_per_capita": 6000.0,
                "house_grade": "C",
                "renovation_status": "未开工",
                "water_safe": True,
                "members_on_dibao": 1,
                "members_severely_disabled": 0,
                "labour_members": 1,
                "labour_members_employed": 1,
                "self_burden_12m": 12000.5,
                "open_alerts": 1,
                "as_of": pd.Timestamp(AS_OF),
            }
        )
    return pd.DataFrame(rows)


def alerts_frame() -> pd.DataFrame:
    def alert(
        aid: str, rule: str, risk: str, pid: str | None, household: str, pushed: str
    ) -> dict[str, object]:
        return {
            "alert_id": aid,
            "rule_id": rule,
            "risk_type": risk,
            "household_id": household,
            "person_key": None,
            "id_number": pid,
            "name": PERSONS[pid][0] if pid else None,
            "town": "龙泉镇",
            "village": "幸福村",
            "severity": "high",
            "status": "open",
            "first_raised": pd.Timestamp(2025, 3, 1),
            "last_seen": pd.Timestamp(AS_OF),
            "resolved_on": None,
            "evidence": f"{rule}: 近12个月个人负担 12000.50 元",
            "pushed_to": pushed,
        }

    return pd.DataFrame(
        [
            alert("A-YB-01-H001", "YB-01", "因病", P1, "H001", "XC,YB"),
            alert("A-JT-01-P2", "JT-01", "因学", P2, "H001", "XC,JT"),
            alert("A-GA-01-P4", "GA-01", "DQ", P4, "H002", "MZ,CL,XC"),
            alert("A-MZ-01-P6", "MZ-01", "兜底核查", P6, "H999", "XC,MZ"),
        ]
    )


def deliveries_frame() -> pd.DataFrame:
    rows = []
    for i, dataset in enumerate(sorted(ROWS)):
        rows.append(
            {
                "delivery_id": f"{dataset}_1",
                "dept": dataset[:2],
                "dataset": dataset,
                "exchange_date": AS_OF,
                "source_file": f"{dataset}_20250312.csv",
                "sha256": f"{i:064x}",
                "received_at": datetime(2025, 3, 12, 1, i, tzinfo=UTC),
                "status": "loaded",
                "rows_in": 2,
                "rows_loaded": 2,
                "rows_rejected": 0,
                "duplicates": 0,
                "reason": None,
            }
        )
    return pd.DataFrame(rows)


def rejects_frame() -> pd.DataFrame:
    def reject(dataset: str, row: int, column: str, value: str) -> dict[str, object]:
        return {
            "delivery_id": f"{dataset}_1",
            "dataset": dataset,
            "exchange_date": AS_OF,
            "source_file": f"{dataset}_20250312.csv",
            "source_row": row,
            "column": column,
            "rule": "pattern",
            "value_masked": value,
            "message": "格式不符",
        }

    # An intake that masked badly: the publisher masks again from the contract's marks.
    return pd.DataFrame(
        [
            reject("MZ_DIBAO", 3, "bank_account", BANK),
            reject("MZ_DIBAO", 4, "id_number", P6),
            reject("YB_JIESUAN", 2, "diagnosis", DIAGNOSIS),
            reject("ZJ_FANGWU", 2, "grade", "E"),
        ]
    )


def shared_tables() -> dict[str, pd.DataFrame]:
    """Every table publish takes, plain, with the planted values."""
    tables = {
        "person_profile": person_profile_frame(),
        "household_profile": household_profile_frame(),
        "alerts": alerts_frame(),
        "deliveries": deliveries_frame(),
        "rejects": rejects_frame(),
    }
    return tables | {dataset: dataset_frame(dataset) for dataset in ROWS}


# --- scanning what consumers can read ------------------------------------------------------------


def plain_allowed(consumer: str, table: str) -> bool:
    """publishing.md, independently of access.yaml: where may plain ids and names appear?"""
    if consumer == "XC" or table == "alerts":
        return True
    contracts = load_contracts()
    return table in contracts and contracts[table].dept == consumer


def published_cells(folder: Path) -> Iterator[tuple[str, str, str]]:
    """(table, column or header, text) for every non-empty cell of every file in a folder."""
    for path in sorted(folder.iterdir()):
        if path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
            for column in frame.columns:
                yield path.stem, column, column
                for value in frame[column].dropna():
                    yield path.stem, column, str(value)
        elif path.suffix == ".xlsx":
            book = openpyxl.load_workbook(path, read_only=True)
            for sheet in book.worksheets:
                rows = list(sheet.iter_rows(values_only=True))
                headers = [str(h) for h in rows[0]] if rows else []
                for row in rows:
                    for header, value in zip(headers, row, strict=True):
                        if value is not None:
                            yield path.stem, header, str(value)
            book.close()
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                for row in csv.reader(f):
                    for value in row:
                        yield path.stem, "", value
        elif path.suffix == ".json":
            yield path.stem, "", path.read_text(encoding="utf-8")


def assert_no_leaks(consumer: str, cells: Iterator[tuple[str, str, str]]) -> int:
    """No never-form value anywhere; no plain id, name or phone where the spec forbids it."""
    seen = 0
    for table, column, value in cells:
        seen += 1
        where = f"{consumer}/{table}.{column}"
        for planted in NEVER_VALUES:
            assert planted not in value, f"never-form value in {where}"
        assert column not in ("bank_account", "diagnosis", "disease", "address"), where
        if consumer == "PUBLIC":
            assert "*" not in value or value == "<5", f"masked value in {where}"
        if not plain_allowed(consumer, table) and table != "catalog":
            for planted in (*IDS, *NAMES, PHONE):
                assert planted not in value, f"plain personal data in {where}"
    return seen


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path, object]]:
    """One publication of the sample tables, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("published")
    engine = connect(f"sqlite:///{root / 'warehouse.db'}")
    upgrade(engine)
    publication = publish(
        engine, root / "pub", as_of=AS_OF, secret=SECRET, tables=shared_tables(), actor="tester"
    )
    yield engine, root / "pub", publication
    engine.dispose()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible(publish_dir: Path) -> dict[str, str]:
    """What consumers see at the stable paths: relative path -> sha256."""
    return {
        str(p.relative_to(publish_dir)): sha(p)
        for p in sorted(publish_dir.glob("*/*"))
        if p.is_file() and not p.parent.name.startswith(".") and p.parent.name != "current"
    }


# --- the matrix ----------------------------------------------------------------------------------


def test_the_access_matrix_loads_and_follows_publishing_md() -> None:
    matrix = default_access()
    assert tuple(matrix.consumers) == CONSUMERS
    assert check_access(matrix) == []
    assert list(matrix.consumers["PUBLIC"]) == ["town_summary"]
    for dept in DEPARTMENTS[1:]:
        profile = matrix.consumers[dept]["person_profile"].columns
        assert profile["id_number"] == profile["name"] == "masked"
        assert profile["person_key"] == "key"
        assert "household_profile" not in matrix.consumers[dept]
    assert set(matrix.consumers["XC"]) >= {*SHARED_TABLES} - {"town_summary"} | set(ROWS)


def _mutated(change: dict[str, object]) -> AccessMatrix:
    data = default_access().model_dump(by_alias=True)
    for path, value in change.items():
        *parents, leaf = path.split(".")
        node = data["consumers"]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return AccessMatrix.model_validate(data)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"MZ.XC_REN": {"grant": "x", "columns": {"id_number": "plain"}}}, "不能以明文（plain）给"),
        ({"MZ.XC_REN": {"columns": {"person_key": "key"}}}, "须写明 grant"),
        ({"MZ.person_profile": {"columns": {"name": "plain"}}}, "不能以明文（plain）给"),
        ({"PUBLIC.person_profile": {"columns": {"person_key": "key"}}}, "只能得到 town_summary"),
        ({"XC.MZ_DIBAO": {"columns": {"bank_account": "masked"}}}, "永不发布"),
        ({"XC.XC_HU": {"columns": {"town": "masked"}}}, "没有脱敏形式"),
        ({"XC.XC_HU": {"columns": {"head_id_number": "key"}}}, "不能是 key"),
        ({"XC.XC_HU": {"columns": {"nonsense": "plain"}}}, "未知的列 nonsense"),
        ({"XC.NOPE": {"columns": {"*": "plain"}}}, "未知的表"),
        (
            {
                "XC.XC_HU": {
                    "rows": [{"column": "town", "age": [1, 2]}, {"column": "zz", "in": ["a"]}],
                    "columns": {"*": "plain"},
                }
            },
            "行条件用了未知的列 zz",
        ),
    ],
)
def test_a_matrix_that_breaks_a_rule_is_refused(change: dict[str, object], problem: str) -> None:
    problems = check_access(_mutated(change))
    assert any(problem in p for p in problems), problems


# --- apply_access: rows, columns, forms ---------------------------------------------------------


def test_masked_forms_are_exactly_those_of_publishing_md() -> None:
    frame = pd.DataFrame(
        {
            "household_id": ["H1", "H2"],
            "county": None,
            "town": "镇",
            "village": "村",
            "village_code": "610327100201",
            "head_name": ["张三华", "张三"],
            "head_id_number": ["610327199001011234", "61032719900101123X"],
            "household_size": 3,
            "household_type": "脱贫户",
            "monitoring_category": None,
            "risk_types": None,
            "identified_month": None,
            "risk_eliminated": None,
            "elimination_method": None,
            "eliminated_month": None,
            "income_per_capita": 1.0,
            "wage_income": None,
            "business_income": None,
            "property_income": None,
            "transfer_income": None,
            "compliant_self_pay": None,
            "phone": PHONE,
        }
    )
    data = default_access().model_dump(by_alias=True)
    data["consumers"]["XC"]["XC_HU"] = {"columns": {"*": "masked"}}
    matrix = AccessMatrix.model_validate(data)
    out = apply_access("XC", "XC_HU", frame, SECRET, access=matrix)
    assert out is not None
    assert out["head_id_number"].tolist() == ["610327********1234", "610327********123X"]
    assert out["head_name"].tolist() == ["张*华", "张*"]
    assert out["phone"].tolist() == ["138****8000"] * 2
    assert out["head_person_key"].tolist() == [
        person_key("610327199001011234", SECRET),
        person_key("61032719900101123X", SECRET),
    ]
    assert out["town"].tolist() == ["镇", "镇"]


def test_departments_get_masked_profiles_and_their_own_columns() -> None:
    tables = shared_tables()
    mz = apply_access("MZ", "person_profile", tables["person_profile"], SECRET)
    assert mz is not None
    assert list(mz.columns) == [
        "person_key",
        "id_number",
        "name",
        "in_roster",
        "household_type",
        "monitoring_category",
        "deceased",
        "dibao_status",
        "assistance_type",
        "as_of",
    ]
    assert mz["id_number"].str.fullmatch(r"610327\*{8}\d{3}[\dX]").all()
    assert set(mz["name"]) == {"张*华", "李*", "欧**娜", "䶮*", "钱*七", "孙*八"}
    assert apply_access("MZ", "household_profile", tables["household_profile"], SECRET) is None
    assert apply_access("PUBLIC", "person_profile", tables["person_profile"], SECRET) is None
    xc = apply_access("XC", "person_profile", tables["person_profile"], SECRET)
    assert xc is not None and set(xc["id_number"]) == set(IDS)
    assert list(xc.columns) == list(table_def("person_profile").names)


def test_grants_publish_only_the_rows_a_legal_duty_names() -> None:
    tables = shared_tables()

    def rows(consumer: str, table: str) -> pd.DataFrame:
        out = apply_access(consumer, table, tables[table], SECRET, as_of=AS_OF, tables=tables)
        assert out is not None
        return out

    children = rows("JT", "XC_REN")  # aged 3-22 on AS_OF: P2 only (P5 is 2, P3 is 25)
    assert children["person_key"].tolist() == [person_key(P2, SECRET)]
    assert children["id_number"].tolist() == [P2[:6] + "*" * 8 + P2[-4:]]
    # A mask is a mask: the age in whole years, never the birth date (the hidden digits).
    assert "birth_date" not in children and children["age"].tolist() == [12]
    deaths = rows("MZ", "GA_BIANDONG")
    assert deaths["change_type"].tolist() == ["死亡"]
    assert deaths["person_key"].tolist() == [person_key(P4, SECRET)]
    holders = rows("CL", "MZ_DIBAO")  # only MZ_DIBAO rows of CL_CANJI's persons
    assert holders["person_key"].tolist() == [person_key(P4, SECRET)]
    assert "monthly_amount" not in holders and "bank_account" not in holders
    monitored = rows("YB", "XC_HU")
    assert monitored["household_id"].tolist() == ["H001"]
    assert apply_access("RS", "XC_HU", tables["XC_HU"], SECRET) is None
    mz_alerts = rows("MZ", "alerts")
    assert mz_alerts["alert_id"].tolist() == ["A-GA-01-P4", "A-MZ-01-P6"]
    assert set(mz_alerts["id_number"]) == {P4, P6}  # plain: MZ must act on them
    assert rows("MZ", "deliveries")["dept"].unique().tolist() == ["MZ"]
    assert set(rows("MZ", "rejects")["dataset"]) == {"MZ_DIBAO"}
    own = rows("MZ", "MZ_DIBAO")
    assert set(own["id_number"]) == {P4, P6} and "bank_account" not in own
    assert "diagnosis" not in rows("XC", "YB_JIESUAN")
    assert "disease" not in rows("WJ", "WJ_MANBING")
    assert "address" not in rows("XC", "ZJ_FANGWU")


def test_rejects_never_show_more_than_the_masked_form() -> None:
    out = apply_access("XC", "rejects", rejects_frame(), SECRET)
    assert out is not None
    by_column = dict(zip(out["column"], out["value_masked"], strict=True))
    assert by_column["bank_account"] == "***"
    assert by_column["diagnosis"] == "***"
    assert by_column["id_number"] == P6[:6] + "*" * 8 + P6[-4:]
    assert by_column["grade"] == "E"


def test_prepared_rows_are_in_key_order_and_ties_are_broken_by_the_other_columns() -> None:
    frame = person_profile_frame()
    shuffled = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    unique = prepare("person_profile", shuffled, SECRET)
    assert unique.equals(prepare("person_profile", frame, SECRET))
    assert unique["id_number"].is_monotonic_increasing and unique["id_number"].is_unique
    # The same person twice (one id, so one person_key): the other columns decide, in
    # column order (the name before the household).
    twice = pd.concat([frame.assign(name="乙"), frame.assign(name="甲")], ignore_index=True)
    tied = prepare("person_profile", twice.sample(frac=1, random_state=5), SECRET)
    assert tied["id_number"].is_monotonic_increasing
    pairs = tied.groupby("id_number", sort=False)["name"].agg(list)
    assert pairs.tolist() == [["乙", "甲"]] * len(frame)  # by code point: 乙 U+4E59 < 甲 U+7532


def test_an_input_without_a_declared_column_is_refused_by_name() -> None:
    frame = person_profile_frame().drop(columns=["deceased"])
    with pytest.raises(PublishError, match="deceased") as info:
        prepare("person_profile", frame, SECRET)
    assert P1 not in str(info.value)
    with pytest.raises(PublishError, match="birth_date") as info:
        prepare("person_profile", person_profile_frame().assign(birth_date=P1), SECRET)
    assert P1 not in str(info.value)


def test_town_summary_suppresses_counts_below_five() -> None:
    households = pd.DataFrame(
        {
            "household_id": [f"H{i}" for i in range(12)],
            "town": ["城关镇"] * 10 + ["龙泉镇"] * 2,
            "monitoring_category": ["边缘易致贫户"] * 9 + [None] + ["脱贫不稳定户"] * 2,
            "risk_eliminated": [True] * 6 + [False] * 6,
        }
    )
    persons = pd.DataFrame(
        {
            "household_id": [f"H{i}" for i in range(12) for _ in range(2)],
            "in_roster": True,
            "deceased": [False, True] * 12,
        }
    )
    alerts = pd.DataFrame(
        {
            "town": ["城关镇"] * 6 + ["龙泉镇"],
            "risk_type": ["因病"] * 5 + ["因学", "因病"],
            "status": ["open"] * 4 + ["resolved"] + ["open"] * 2,
        }
    )
    summary = town_summary(households, persons, alerts).set_index("town")
    assert summary.loc["城关镇", "monitored_households"] == "9"
    assert summary.loc["城关镇", "eliminated_households"] == "6"
    assert summary.loc["城关镇", "monitored_persons"] == "9"
    assert summary.loc["城关镇", "elimination_rate_households"] == pytest.approx(0.6667)
    assert summary.loc["城关镇", "open_alerts_illness"] == "<5"
    assert summary.loc["龙泉镇", "monitored_households"] == "<5"
    assert pd.isna(summary.loc["龙泉镇", "elimination_rate_households"])
    assert set(summary.columns) == set(SHARED_TABLES["town_summary"].names) - {"town"}


# --- publish: files, leaks, keys -----------------------------------------------------------------


def test_no_consumer_can_read_what_the_matrix_denies(published: tuple) -> None:
    _, out, publication = published
    assert publication.consumers == CONSUMERS
    for consumer in CONSUMERS:
        assert assert_no_leaks(consumer, published_cells(out / consumer)) > 0
    assert sorted(p.name for p in (out / "PUBLIC").iterdir()) == [
        "catalog.json",
        "town_summary.parquet",
        "town_summary.xlsx",
    ]
    # Plain data does reach those who need it (the scan would pass on empty files too).
    xc = pq.read_table(out / "XC" / "MZ_DIBAO.parquet").to_pandas()
    assert set(xc["id_number"]) == {P4, P6} and "bank_account" not in xc
    jt = pq.read_table(out / "JT" / "XC_REN.parquet").to_pandas()
    assert jt["name"].tolist() == ["李*"]
    assert not (out / "ZJ" / "JT_XUEJI.parquet").exists()
    catalog = json.loads((out / "catalog.json").read_text(encoding="utf-8"))
    assert catalog["publication_id"] == publication.publication_id
    assert catalog["exchange_date"] == "2025-03-12"
    entry = next(
        t for t in catalog["tables"] if t["consumer"] == "MZ" and t["table"] == "person_profile"
    )
    assert entry["rows"] == len(PERSONS) and entry["personal"] == "masked"
    assert {"name": "id_number", "label": "身份证号", "type": "id18", "form": "masked"} in entry[
        "columns"
    ]
    for f in entry["files"]:
        assert sha(out / f["path"]) == f["sha256"]
    own = json.loads((out / "MZ" / "catalog.json").read_text(encoding="utf-8"))
    assert {t["consumer"] for t in own["tables"]} == {"MZ"}


def test_the_leak_scan_finds_what_it_looks_for(published: tuple) -> None:
    out = published[1]
    with pytest.raises(AssertionError, match="plain personal data"):
        assert_no_leaks("MZ", published_cells(out / "XC"))  # XC's files seen as MZ's
    with pytest.raises(AssertionError, match="never-form"):
        assert_no_leaks("XC", iter([("MZ_DIBAO", "x", f"账号 {BANK}")]))


def _keys_by_id(folder: Path) -> dict[str, set[str]]:
    """Every (masked or plain) id -> the person keys published beside it, in every table."""
    found: dict[str, set[str]] = {}
    for path in folder.glob("*/*.parquet"):
        frame = pq.read_table(path).to_pandas()
        for key_col in [c for c in frame.columns if c.endswith("person_key")]:
            id_col = key_col.removesuffix("person_key") + "id_number"
            if id_col in frame:
                for ident, key in zip(frame[id_col], frame[key_col], strict=True):
                    if ident is not None and key is not None:
                        found.setdefault(ident[:6] + ident[-4:], set()).add(key)
    return found


def test_person_key_is_the_same_everywhere_and_changes_with_the_secret(
    published: tuple, engine: Engine, tmp_path: Path
) -> None:
    keys = _keys_by_id(published[1])
    for pid in IDS:
        assert keys[pid[:6] + pid[-4:]] == {person_key(pid, SECRET)}, "one key per person"
    publish(engine, tmp_path / "b", as_of=AS_OF, secret=OTHER_SECRET, tables=shared_tables())
    other = _keys_by_id(tmp_path / "b")
    for pid in IDS:
        assert other[pid[:6] + pid[-4:]] == {person_key(pid, OTHER_SECRET)}
        assert other[pid[:6] + pid[-4:]].isdisjoint(keys[pid[:6] + pid[-4:]])


def test_xlsx_has_chinese_headers_dates_as_dates_and_ids_as_text(published: tuple) -> None:
    out = published[1]
    book = openpyxl.load_workbook(out / "XC" / "person_profile.xlsx")
    sheet = book.active
    assert sheet.title == "一人一档"
    headers = [c.value for c in sheet[1]]
    assert headers == [c.label for c in table_def("person_profile").columns]
    rows = {
        r[1]: dict(zip(headers, r, strict=True))
        for r in sheet.iter_rows(min_row=2, values_only=True)
    }
    first = rows[P1]
    assert isinstance(first["身份证号"], str) and first["身份证号"] == P1
    assert isinstance(first["出生日期"], datetime) and first["出生日期"].date() == date(1980, 3, 15)
    cell = next(c for c in sheet["F"] if c.row == 2)
    assert cell.is_date and cell.number_format == "yyyy-mm-dd"
    assert first["是否在册"] == "是" and first["近12个月医疗个人负担"] == pytest.approx(12000.5)
    assert first["数据日期"].date() == AS_OF
    book.close()
    ledger = openpyxl.load_workbook(out / "XC" / "deliveries.xlsx").active
    received = [r[5] for r in ledger.iter_rows(min_row=2, values_only=True)]
    assert all(isinstance(v, datetime) and v.hour == 9 for v in received), "Beijing time"


def test_tables_above_the_row_limit_are_csv_with_bom(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    tables = shared_tables()
    tables["person_profile"] = tables["person_profile"].assign(sources="=HYPERLINK(1)")
    publish(engine, out, as_of=AS_OF, secret=SECRET, tables=tables, xlsx_max_rows=3)
    assert (out / "XC" / "person_profile.csv").exists()
    assert not (out / "XC" / "person_profile.xlsx").exists()
    assert (out / "XC" / "XC_HU.xlsx").exists()  # two rows: still a workbook
    raw = (out / "XC" / "person_profile.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][:3] == ["人员标识", "身份证号", "姓名"]
    assert {r[1] for r in rows[1:]} == set(IDS)
    assert {r[rows[0].index("数据来源部门")] for r in rows[1:]} == {"'=HYPERLINK(1)"}
    assert_no_leaks("MZ", published_cells(out / "MZ"))


def test_the_csv_says_what_the_cells_say(tmp_path: Path) -> None:
    """The Arrow CSV writer against the cell-by-cell rules it replaced (written out here):
    是/否, Beijing time, ISO dates, NaN and None as empty, formulas defused, quotes, commas and
    line breaks inside a cell kept."""
    from warehouse.published import write_csv_bom

    utc = UTC
    table = pa.table(
        {
            "text": ["张三", "=HYPERLINK(1)", "+1", "@x", "a,b", 'say "hi"', "two\nlines", None],
            "flag": [True, False, None, True, False, True, False, True],
            "at": [datetime(2025, 3, 12, 17, 30, tzinfo=utc)] * 7 + [None],
            "day": [date(2025, 3, 12)] * 7 + [None],
            "ratio": [0.3636, float("nan"), None, 1.0, 2.5, -0.25, 1e-3, 12345.678],
            "count": [1, 2, None, 4, 5, 6, 7, 8],
            "minus": ["-1", "-", "a-b", "x", "y", "z", "w", "v"],
        },
        schema=pa.schema(
            [
                ("text", pa.string()),
                ("flag", pa.bool_()),
                ("at", pa.timestamp("us", tz="UTC")),
                ("day", pa.date32()),
                ("ratio", pa.float64()),
                ("count", pa.int64()),
                ("minus", pa.string()),
            ]
        ),
    )
    path = tmp_path / "t.csv"
    write_csv_bom(path, table, ["文本", "是否", "时间", "日期", "比例", "数量", "减号"])
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["文本", "是否", "时间", "日期", "比例", "数量", "减号"]

    def expected(value: Any, kind: str) -> str:
        if value is None:
            return ""
        if kind == "flag":
            return "是" if value else "否"
        if kind == "at":
            return value.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
        if kind == "day":
            return value.isoformat()
        if kind in ("text", "minus") and value.startswith(("=", "+", "@", "\t", "\r")):
            return "'" + value
        return str(value)

    body = rows[1:]
    assert len(body) == table.num_rows
    for name in ("text", "flag", "at", "day", "count", "minus"):
        column = table.column(name).to_pylist()
        index = table.column_names.index(name)
        assert [r[index] for r in body] == [expected(v, name) for v in column], name
    ratios = [r[table.column_names.index("ratio")] for r in body]
    assert ratios[1] == "" and ratios[2] == ""  # NaN and None
    assert [float(v) for i, v in enumerate(ratios) if i not in (1, 2)] == [
        0.3636,
        1.0,
        2.5,
        -0.25,
        1e-3,
        12345.678,
    ]


def test_bulk_tables_are_workbooks_only_while_a_person_could_scroll_them(
    engine: Engine, tmp_path: Path
) -> None:
    """XLSX only where a person opens it: above the bulk limit the profiles and datasets are
    CSV (with the Parquet); the tables a department acts on stay workbooks up to the (higher)
    limit of every table."""
    out = tmp_path / "pub"
    tables = shared_tables()
    rows = {name: len(frame) for name, frame in tables.items()}
    assert rows["person_profile"] > 1 and rows["alerts"] > 1 and rows["XC_HU"] > 1
    publish(
        engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=tables,
        xlsx_max_rows=1_000,
        xlsx_bulk_max_rows=1,
    )
    for bulk in ("person_profile", "household_profile", "XC_HU"):
        assert (out / "XC" / f"{bulk}.csv").exists(), bulk
        assert not (out / "XC" / f"{bulk}.xlsx").exists(), bulk
        assert (out / "XC" / f"{bulk}.parquet").exists(), bulk
    for opened in ("alerts", "rejects", "deliveries"):
        assert (out / "XC" / f"{opened}.xlsx").exists(), opened
        assert not (out / "XC" / f"{opened}.csv").exists(), opened
    catalog = json.loads((out / "XC" / "catalog.json").read_text("utf-8"))
    formats = {t["table"]: {f["format"] for f in t["files"]} for t in catalog["tables"]}
    assert formats["person_profile"] == {"parquet", "csv"}
    assert formats["alerts"] == {"parquet", "xlsx"}


def test_the_same_state_gives_byte_identical_files(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    first = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    before = {p.relative_to(first.path): sha(p) for p in first.path.rglob("*.*")}
    again = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    assert again.publication_id != first.publication_id
    after = {p.relative_to(again.path): sha(p) for p in again.path.rglob("*.*")}
    assert before.keys() == after.keys()
    # The audit log grows with each publication and the catalogs name the publication.
    changing = {p for p in before if p.name.startswith(("audit_log", "catalog"))}
    assert changing == {
        Path("catalog.json"),
        Path("XC/audit_log.parquet"),
        Path("XC/audit_log.xlsx"),
        *(Path(c, "catalog.json") for c in CONSUMERS),
    }
    assert {p: h for p, h in before.items() if p not in changing} == {
        p: h for p, h in after.items() if p not in changing
    }


def test_workbooks_written_in_processes_are_the_same_bytes(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large workbooks go to worker processes (issue 13): every workbook sent there, the
    version holds the same files as when each is written in the publishing process."""
    here = publish(engine, tmp_path / "here", as_of=AS_OF, secret=SECRET, tables=shared_tables())
    monkeypatch.setattr(version_module, "XLSX_PROCESS_CELLS", -1)
    sent: list[object] = []
    get = version_module._LazyProcesses.get

    def counted(self: object) -> object:
        sent.append(self)
        return get(self)  # type: ignore[arg-type]

    monkeypatch.setattr(version_module._LazyProcesses, "get", counted)
    apart = publish(engine, tmp_path / "apart", as_of=AS_OF, secret=SECRET, tables=shared_tables())
    books = sorted(p.relative_to(here.path) for p in here.path.rglob("*.xlsx"))
    assert len(books) > 10
    # every workbook written went to a worker process (the same one for several consumers is
    # written once, hard-linked for the others)
    assert len(sent) == len({(apart.path / rel).stat().st_ino for rel in books})
    for rel in books:
        if rel.name.startswith("audit_log"):  # names the publication before it
            continue
        assert sha(here.path / rel) == sha(apart.path / rel), rel
    assert sorted(p.relative_to(apart.path) for p in apart.path.rglob("*.xlsx")) == books


def test_stable_paths_resolve_to_the_current_publication(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    (out / "XC" / "reports").mkdir(parents=True)
    (out / "XC" / "reports" / "周报.html").write_text("report", encoding="utf-8")
    (out / "XC" / "deliveries.parquet").write_bytes(b"written by the old layout")
    first = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    assert (out / "XC" / "reports" / "周报.html").read_text(encoding="utf-8") == "report"
    assert os.path.realpath(out / "current") == str(first.path)
    assert pq.read_table(out / "XC" / "deliveries.parquet").num_rows == len(ROWS)
    assert (out / "XC" / "deliveries.parquet").is_symlink()
    # A table that is no longer published disappears from the stable paths.
    fewer = {k: v for k, v in shared_tables().items() if k != "MZ_LINSHI"}
    second = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=fewer)
    assert os.path.realpath(out / "current") == str(second.path)
    assert not (out / "MZ" / "MZ_LINSHI.parquet").exists()
    assert not (out / "MZ" / "MZ_LINSHI.parquet").is_symlink()
    assert (out / "MZ" / "MZ_DIBAO.parquet").exists()
    assert (out / "XC" / "reports" / "周报.html").exists()
    assert (
        json.loads((out / "catalog.json").read_text(encoding="utf-8"))["publication_id"]
        == second.publication_id
    )


def test_without_symlinks_files_are_copied_onto_the_stable_paths(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "symlinks_supported", lambda _dir: False)
    out = tmp_path / "pub"
    publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    fewer = {k: v for k, v in shared_tables().items() if k != "MZ_LINSHI"}
    second = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=fewer)
    assert not (out / "current").exists()
    assert (out / files.POINTER).read_text(encoding="utf-8").strip() == second.publication_id
    stable = out / "MZ" / "MZ_DIBAO.parquet"
    assert not stable.is_symlink() and sha(stable) == sha(second.path / "MZ" / "MZ_DIBAO.parquet")
    assert not (out / "MZ" / "MZ_LINSHI.parquet").exists()


def test_a_failing_publication_leaves_the_previous_one(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    first = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    seen = visible(out)

    def fail(consumer: str) -> None:
        if consumer == "JT":
            raise RuntimeError("disk full")

    changed = shared_tables()
    changed["XC_HU"] = changed["XC_HU"].assign(town="新镇")
    with pytest.raises(RuntimeError, match="disk full"):
        publish(engine, out, as_of=AS_OF, secret=SECRET, tables=changed, on_consumer=fail)
    assert visible(out) == seen
    assert [p.name for p in (out / files.VERSIONS).iterdir()] == [first.publication_id]
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(publications.c.publication_id, publications.c.status)).all()
        )
    assert statuses == {first.publication_id: "published", "20250312-02": "abandoned"}


KILL_SCRIPT = textwrap.dedent("""
    import pickle, sys, time
    from pathlib import Path
    from warehouse.db import connect
    from tasks.publication import publish

    tables, secret, as_of = pickle.loads(Path(sys.argv[2]).read_bytes())

    def slow(consumer):
        print(consumer, flush=True)
        if consumer == "JT":
            time.sleep(60)

    publish(connect(sys.argv[1]), Path(sys.argv[3]), as_of=as_of, secret=secret,
            tables=tables, on_consumer=slow)
""")


def test_a_publication_killed_midway_leaves_the_previous_one(
    engine: Engine, tmp_path: Path
) -> None:
    import pickle

    out = tmp_path / "pub"
    first = publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    seen = visible(out)
    changed = shared_tables()
    changed["XC_HU"] = changed["XC_HU"].assign(town="新镇")
    changed["person_profile"] = changed["person_profile"].assign(age=99)
    payload = tmp_path / "input.pickle"
    payload.write_bytes(pickle.dumps((changed, SECRET, AS_OF)))
    url = str(engine.url)
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, url, str(payload), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert child.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while "JT" not in lines and time.monotonic() < deadline:
            line = child.stdout.readline().strip()
            if not line and child.poll() is not None:
                break
            lines.append(line)
        assert lines[:4] == ["XC", "MZ", "ZJ", "JT"], child.stderr.read() if child.stderr else ""
        # Midway: XC's, MZ's and ZJ's new files exist aside, nothing is switched.
        aside = out / files.VERSIONS / "20250312-02"
        assert (aside / "XC" / "XC_HU.parquet").exists()
        assert visible(out) == seen
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    assert visible(out) == seen
    assert os.path.realpath(out / "current") == str(first.path)
    profile = pq.read_table(out / "XC" / "person_profile.parquet").to_pandas()
    assert set(profile["age"]) == {30}
    # The next run clears the remains and switches to a complete publication.
    # (A reader may still hold the first, replaced seconds ago: the grace keeps it.)
    third = publish(
        engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=changed,
        retention=files.Retention(grace_seconds=3600),
    )
    assert third.publication_id == "20250312-03"
    assert sorted(p.name for p in (out / files.VERSIONS).iterdir()) == [
        first.publication_id,
        third.publication_id,
    ]
    assert set(pq.read_table(out / "XC" / "XC_HU.parquet").column("town").to_pylist()) == {"新镇"}
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(publications.c.publication_id, publications.c.status)).all()
        )
    assert statuses["20250312-02"] == "abandoned"


def test_two_publishers_cannot_write_the_same_folder(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    with files.publish_lock(out), pytest.raises(files.PublishLocked):
        publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())


def test_old_publications_are_pruned_but_never_the_current_one(
    engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "pub"
    grace = files.Retention(grace_seconds=3600)  # the replaced one is kept for its readers
    for _ in range(2):
        publish(
            engine,
            out,
            as_of=AS_OF,
            secret=SECRET,
            tables=shared_tables(),
            xlsx_max_rows=0,
            retention=grace,
        )
    assert len(list((out / files.VERSIONS).iterdir())) == 2
    last = publish(
        engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=shared_tables(),
        keep_days=0,
        xlsx_max_rows=0,
    )
    assert [p.name for p in (out / files.VERSIONS).iterdir()] == [last.publication_id]


# --- the audit trail -----------------------------------------------------------------------------


def test_every_publication_and_file_is_audited_and_the_log_is_append_only(
    engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "pub"
    first = publish(
        engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=shared_tables(),
        actor="tester",
        xlsx_max_rows=0,
    )
    with engine.connect() as conn:
        rows = pd.read_sql(select(audit_log), conn)
    assert set(rows["actor"]) == {"tester"}
    [whole] = rows[rows["action"] == "publication"].to_dict("records")
    assert whole["publication_id"] == first.publication_id and whole["personal"] == "plain"
    assert whole["sha256"] == sha(first.path / "catalog.json")
    filed = rows[rows["action"] == "file"]
    assert len(filed) == first.files
    for record_ in filed.to_dict("records"):
        assert sha(out / record_["object"]) == record_["sha256"]
    plain = filed[filed["personal"] == "plain"]
    assert {"XC/MZ_DIBAO.parquet", "MZ/MZ_DIBAO.parquet", "MZ/alerts.csv"} <= set(plain["object"])
    assert "MZ/person_profile.parquet" not in set(plain["object"])
    assert set(filed.loc[filed["consumer"] == "PUBLIC", "personal"]) == {"none"}
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit_log SET actor = 'someone else'"))
    with engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("DELETE FROM audit_log"))
    # XC reads the log: the next publication carries everything up to this one.
    publish(engine, out, as_of=AS_OF, secret=SECRET, tables=shared_tables())
    published_log = pq.read_table(out / "XC" / "audit_log.parquet").to_pandas()
    assert len(published_log) == len(rows)
    assert set(published_log["publication_id"]) == {first.publication_id}


# --- input from the warehouse --------------------------------------------------------------------


def test_collect_shared_tables_reads_the_warehouse_and_the_providers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = types.ModuleType("tasks.profiles")
    profiles.person_profile = lambda conn, as_of: person_profile_frame()  # type: ignore[attr-defined]
    profiles.household_profile = lambda conn, as_of: household_profile_frame()  # type: ignore[attr-defined]
    alerts = types.ModuleType("tasks.alerts")
    alerts.alerts_frame = lambda conn, as_of: alerts_frame()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tasks.profiles", profiles)
    monkeypatch.setitem(sys.modules, "tasks.alerts", alerts)
    import tasks

    monkeypatch.setattr(tasks, "profiles", profiles, raising=False)
    monkeypatch.setattr(tasks, "alerts", alerts, raising=False)
    rec = DeliveryRecord(
        delivery_id="MZ_DIBAO_20250312_x",
        dept="MZ",
        dataset="MZ_DIBAO",
        exchange_date=AS_OF,
        source_file="MZ_DIBAO_20250312.csv",
        location="test",
        sha256="a" * 64,
        received_at=datetime(2025, 3, 12, 1, tzinfo=UTC),
        status="loaded",
        rows_in=1,
        rows_loaded=1,
        rows_rejected=0,
        duplicates=0,
    )
    later = DeliveryRecord(
        **{
            **rec.__dict__,
            "delivery_id": "later",
            "exchange_date": date(2025, 3, 13),
            "sha256": "b" * 64,
        }
    )
    with engine.begin() as conn:
        record(
            conn,
            rec,
            pd.DataFrame(
                {
                    "source_row": [2],
                    "column": ["id_number"],
                    "rule": ["id18"],
                    "value_masked": ["610327****"],
                    "message": ["校验位错误"],
                }
            ),
        )
        record(conn, later, pd.DataFrame())
    with engine.connect() as conn:
        tables = collect_shared_tables(conn, AS_OF)
    assert {
        "person_profile",
        "household_profile",
        "alerts",
        "deliveries",
        "rejects",
    } <= tables.keys()
    assert set(ROWS) <= tables.keys()
    assert tables["deliveries"]["delivery_id"].tolist() == [rec.delivery_id]
    assert tables["rejects"]["rule"].tolist() == ["id18"]
    for name, frame in tables.items():
        prepare(name, frame, SECRET)  # every table has the declared columns


def test_publish_ledger_still_writes_xc_deliveries_and_rejects(
    engine: Engine, tmp_path: Path
) -> None:
    rec = DeliveryRecord(
        delivery_id="XC_HU_20250312_x",
        dept="XC",
        dataset="XC_HU",
        exchange_date=AS_OF,
        source_file="XC_HU_20250312.xlsx",
        location="test",
        sha256="c" * 64,
        received_at=datetime(2025, 3, 12, 1, tzinfo=UTC),
        status="failed",
        rows_in=3,
        rows_loaded=0,
        rows_rejected=3,
        duplicates=0,
        reason="整批退回",
    )
    with engine.begin() as conn:
        record(
            conn,
            rec,
            pd.DataFrame(
                {
                    "source_row": [None],
                    "column": [None],
                    "rule": ["truncated_snapshot"],
                    "value_masked": [None],
                    "message": ["整批退回"],
                }
            ),
        )
    # The ledger tables alone (what the removed publish_ledger did): no person_key, no secret.
    from warehouse.publish import ledger_tables

    with engine.connect() as conn:
        tables = ledger_tables(conn, None)
    publish(engine, tmp_path / "pub", as_of=AS_OF, secret=b"", tables=tables, actor="nightly")
    ledger = pq.read_table(tmp_path / "pub" / "XC" / "deliveries.parquet").to_pandas()
    assert list(ledger.columns) == files_deliveries_columns()
    assert ledger["exchange_date"].tolist() == [AS_OF]
    found = pq.read_table(tmp_path / "pub" / "XC" / "rejects.parquet").to_pandas()
    assert found["rule"].tolist() == ["truncated_snapshot"] and found["source_row"].isna().all()
    assert pq.read_table(tmp_path / "pub" / "MZ" / "deliveries.parquet").num_rows == 0
    assert not (tmp_path / "pub" / "PUBLIC").exists()


def files_deliveries_columns() -> list[str]:
    return [
        "dept",
        "dataset",
        "exchange_date",
        "source_file",
        "sha256",
        "received_at",
        "status",
        "rows_in",
        "rows_loaded",
        "rows_rejected",
        "duplicates",
        "reason",
    ]


def test_publishing_keys_without_a_secret_is_refused(engine: Engine, tmp_path: Path) -> None:
    from datashare.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="未设置 DATASHARE_SECRET"):
        publish(engine, tmp_path / "pub", as_of=AS_OF, secret=b"", tables=shared_tables())


def test_audit_rows_can_be_added_for_other_exports(engine: Engine) -> None:
    from warehouse.publish import record_export

    with engine.begin() as conn:
        record_export(
            conn,
            actor="analyst",
            consumer="XC",
            obj="adhoc.xlsx",
            rows=3,
            sha256="d" * 64,
            personal="plain",
        )
        conn.execute(
            insert(audit_log).values(
                at=datetime(2025, 1, 1, tzinfo=UTC),
                actor="x",
                action="export",
                object="o",
                personal="none",
            )
        )
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.audit_id)).scalars().all() == [1, 2]


def test_each_consumers_files_are_what_its_grant_alone_gives(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publication shares work between consumers (a column masked once over the whole table
    and the grant's rows taken from it, a condition's ages and lists computed once); every
    consumer's Parquet holds exactly what apply_access, which computes each grant on its own
    rows alone, gives that consumer."""
    tables = shared_tables()
    whole: list[str] = []
    in_form = version_module._in_form

    def spied(prepared: pd.DataFrame, rows: pd.DataFrame, *args: Any) -> pd.Series:
        out = in_form(prepared, rows, *args)
        table, column, form, _, shared = args
        if len(rows) < len(prepared) and (table, column.name, form) in shared.whole:
            whole.append(table)
        return out

    monkeypatch.setattr(version_module, "_in_form", spied)
    done = publish(engine, tmp_path / "pub", as_of=AS_OF, secret=SECRET, tables=tables)
    catalog = json.loads((done.path / "catalog.json").read_text(encoding="utf-8"))
    compared = 0
    for entry in catalog["tables"]:
        consumer, table = entry["consumer"], entry["table"]
        if table not in tables:  # town_summary, audit_log: not a grant over an input table
            continue
        alone = apply_access(consumer, table, tables[table], SECRET, as_of=AS_OF, tables=tables)
        assert alone is not None
        parquet = next(f["path"] for f in entry["files"] if f["format"] == "parquet")
        published = pq.read_table(done.path / parquet)
        assert published.column_names == list(alone.columns), (consumer, table)
        for name in published.column_names:
            expected = pa.Array.from_pandas(alone[name]).to_pylist()
            got = published.column(name).to_pylist()
            if published.schema.field(name).type in (pa.date32(), pa.timestamp("us", tz="UTC")):
                got = [None if v is None else pd.Timestamp(v) for v in got]
                expected = [None if v is None else pd.Timestamp(v) for v in expected]
            assert got == expected, (consumer, table, name)
        compared += 1
    assert compared > 40
    assert "XC_REN" in whole  # a grant's rows taken from a column formed over every row
