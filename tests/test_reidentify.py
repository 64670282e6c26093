"""A mask is a mask (publishing.md "Forms"): no masked id can be rebuilt from the other columns
of its row, in anything any consumer is published; and an id, phone or bank account typed into
a column that is not personal is masked in the rejects.

The county is the synthetic generator's; every dataset goes through the real intake into a real
warehouse (SQLite, and PostgreSQL where configured), then the real publication. The attack is
generic: for every consumer, every published table (Parquet files and, on PostgreSQL, the
pub_<consumer> schemas), every row holding a masked id, the hidden 8 digits (the birth date) are
looked for in every other cell of the row, in any date form, and from an age in years combined
with a month and day from any other cell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import Engine, text
from stdnum.cn import ric

from datashare.synth import build_county, dataset_rows
from datashare.synth.files import render_delivery
from expectations.contract import load_common, load_contracts
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import DeliveryRef
from tasks.mask import mask_lookalikes_text
from tasks.publication import publish
from warehouse.db import connect, upgrade
from warehouse.identity import person_key
from warehouse.ledger import rejects_frame
from warehouse.publish import (
    AccessMatrix,
    SqlTarget,
    apply_access,
    check_access,
    default_access,
    ledger_tables,
    prepare,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

SECRET = b"reidentify-secret"
DAY = date(2025, 3, 10)  # the synthetic county's first night
MASKED_ID = re.compile(r"^(\d{6})(\*{8})([0-9X]{4})$")
CONTRACTS = load_contracts()


# --- the attack -----------------------------------------------------------------------------------

_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")
_MD = re.compile(r"(?<!\d)(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")


def eight_digit_forms(value: Any) -> set[str]:
    """Every YYYYMMDD a cell spells: a date, an 8-digit window of a digit run, a written date."""
    if isinstance(value, datetime | date | pd.Timestamp):
        return {f"{value.year:04d}{value.month:02d}{value.day:02d}"}
    text_value = str(value)
    found = {f"{int(y):04d}{int(m):02d}{int(d):02d}" for y, m, d in _YMD.findall(text_value)}
    for run in re.findall(r"\d{8,}", text_value):
        found |= {run[i : i + 8] for i in range(len(run) - 7)}
    return found


def month_days(value: Any) -> set[str]:
    """Every MMDD a cell spells (a date's month and day, '9-1', '09月01')."""
    if isinstance(value, datetime | date | pd.Timestamp):
        return {f"{value.month:02d}{value.day:02d}"}
    return {f"{int(m):02d}{int(d):02d}" for m, d in _MD.findall(str(value))}


def birth_years(value: Any, on: date) -> set[str]:
    """The birth years an age in whole years on `on` allows (a whole number from 0 to 130)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or pd.isna(value):
        return set()
    if value != int(value) or not 0 <= value <= 130:
        return set()
    return {str(on.year - int(value)), str(on.year - int(value) - 1)}


def rebuilt_by(row: dict[str, Any], id_column: str, hidden: str, on: date) -> list[str]:
    """The columns of `row` (other than the masked id) from which `hidden` can be rebuilt."""
    others = {k: v for k, v in row.items() if k != id_column and v is not None}
    culprits = [k for k, v in others.items() if hidden in eight_digit_forms(v)]
    years = {k: birth_years(v, on) for k, v in others.items()}
    days = {k: month_days(v) for k, v in others.items()}
    culprits += [
        f"{a}+{b}"
        for a, ys in years.items()
        for b, mds in days.items()
        if a != b and any(y + md == hidden for y in ys for md in mds)
    ]
    return culprits


def test_the_attack_finds_what_it_should() -> None:
    pid = "61030220120901" + "412" + "1"
    row = {"id_number": "610302********4121", "birth_date": date(2012, 9, 1), "gender": "女"}
    assert rebuilt_by(row, "id_number", pid[6:14], DAY) == ["birth_date"]
    for spelled in ("2012-09-01", "2012/9/1", "2012年9月1日", "生于20120901", 20120901):
        assert rebuilt_by({"x": spelled}, "id", "20120901", DAY) == ["x"]
    assert rebuilt_by({"age": 12, "note": "9月1日生"}, "id", "20120901", DAY) == ["age+note"]
    assert rebuilt_by({"age": 12, "gender": "女"}, "id", "20120901", DAY) == []


# --- a published county ---------------------------------------------------------------------------


@dataclass
class Published:
    engine: Engine
    publish_dir: Path
    target: SqlTarget
    ids: dict[str, str]  # person_key -> id
    by_ends: dict[tuple[str, str], set[str]]  # (first 6, last 4) -> ids


@pytest.fixture
def published(warehouse_url: str, tmp_path: Path) -> Iterator[Published]:
    county = build_county(23, 80)
    engine = connect(warehouse_url)
    upgrade(engine)
    common = load_common()
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=False, secret=SECRET
    )
    ids: set[str] = set()
    for dataset, contract in sorted(CONTRACTS.items()):
        rows = dataset_rows(county, dataset, DAY)
        for column in contract.columns:
            if column.type == "id18" and column.name in rows:
                ids |= {str(v) for v in rows[column.name].dropna()}
        name = f"{dataset}_{DAY:%Y%m%d}.csv"
        content = render_delivery(contract, rows, fmt="csv", encoding="utf-8")
        ref = DeliveryRef(contract.dept, dataset, DAY, name, f"landing/{contract.dept}/{name}")
        summary = intake_delivery(ref, content, contract, common, engine, options)
        assert summary.status == "loaded", (dataset, summary.reason)
    target = SqlTarget(
        schema_prefix=os.environ.get("DATASHARE_PG_SCHEMA_PREFIX", "pub_"),
        role_prefix=os.environ.get("DATASHARE_PG_ROLE_PREFIX", "ds_"),
    )
    publish_dir = tmp_path / "published"
    publish(engine, publish_dir, as_of=DAY, secret=SECRET, sql=target)
    by_ends: dict[tuple[str, str], set[str]] = {}
    for pid in ids:
        by_ends.setdefault((pid[:6], pid[-4:]), set()).add(pid)
    yield Published(engine, publish_dir, target, {person_key(i, SECRET): i for i in ids}, by_ends)
    engine.dispose()


def _file_rows(publish_dir: Path) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    for path in sorted(publish_dir.glob("*/*.parquet")):
        yield path.parent.name, path.stem, pq.read_table(path).to_pylist()


def _sql_rows(pub: Published) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    with pub.engine.connect() as conn:
        schemas = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p ORDER BY 1"),
            {"p": pub.target.schema_prefix + "%"},
        ).scalars()
        for schema in list(schemas):
            tables = conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = :s ORDER BY 1"
                ),
                {"s": schema},
            ).scalars()
            for table in list(tables):
                result = conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))
                yield schema, table, [dict(r._mapping) for r in result]


def _attack(
    pub: Published, sources: Iterable[tuple[str, str, list[dict[str, Any]]]]
) -> tuple[int, set[str], list[str]]:
    """(rows with a masked id whose id was identified, tables with masked ids, leaks found)."""
    checked, tables, leaks = 0, set(), []
    for where, table, rows in sources:
        for row in rows:
            for column, value in row.items():
                match = MASKED_ID.match(str(value)) if isinstance(value, str) else None
                if match is None:
                    continue
                tables.add(f"{where}.{table}")
                keys = [v for v in row.values() if isinstance(v, str) and v in pub.ids]
                candidates = (
                    {pub.ids[k] for k in keys}
                    if keys
                    else pub.by_ends.get((match.group(1), match.group(3)), set())
                )
                candidates = {c for c in candidates if c[:6] + "*" * 8 + c[-4:] == value}
                if len(candidates) != 1:
                    continue
                (pid,) = candidates
                checked += 1
                culprits = rebuilt_by(row, column, pid[6:14], DAY)
                leaks += [f"{where}.{table}.{column} <- {c}" for c in culprits]
    return checked, tables, sorted(set(leaks))


@pytest.mark.quick_sample("sqlite")
def test_no_masked_id_can_be_rebuilt_from_its_row(published: Published) -> None:
    checked, tables, leaks = _attack(published, _file_rows(published.publish_dir))
    assert not leaks
    assert checked >= 50  # the attack did look at rows
    # Masked ids are published to departments (their profiles and the cross-department grants),
    # JT's roster children among them, with an age instead of the birth date.
    assert "JT.XC_REN" in tables and "MZ.person_profile" in tables
    jt = pq.read_table(published.publish_dir / "JT" / "XC_REN.parquet")
    assert "birth_date" not in jt.column_names
    ages = jt.column("age").to_pylist()
    assert ages and all(a is not None and 3 <= a <= 22 for a in ages)
    if published.engine.dialect.name == "postgresql":
        checked_sql, sql_tables, sql_leaks = _attack(published, _sql_rows(published))
        assert not sql_leaks
        assert checked_sql >= 50 and any(t.endswith(".xc_ren") for t in sql_tables)


def test_the_access_matrix_refuses_a_birth_date_beside_a_masked_id() -> None:
    raw = yaml.safe_load(Path("expectations/access.yaml").read_text(encoding="utf-8"))
    columns = raw["consumers"]["JT"]["XC_REN"]["columns"]
    columns["birth_date"] = "plain"
    matrix = AccessMatrix.model_validate(raw)
    assert check_access(matrix) == [
        "JT.XC_REN：birth_date 能还原脱敏的 id_number 中隐去的数字（请改为发布年龄）"
    ]
    assert check_access(default_access()) == []


# --- rejects: whatever column it was typed into ---------------------------------------------------


def _vid(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17)  # python-stdnum: the oracle


def test_an_id_phone_or_bank_account_typed_anywhere_is_masked_in_the_rejects(
    warehouse_url: str, tmp_path: Path
) -> None:
    contract = CONTRACTS["MZ_DIBAO"]
    county = build_county(23, 40)
    rows = dataset_rows(county, "MZ_DIBAO", DAY).head(20).copy()
    typed_id, phone, bank = _vid("61030220120901412"), "13912340000", "6217000011112222333"
    rows["assistance_type"] = rows["assistance_type"].astype(object)
    rows.loc[rows.index[0], "assistance_type"] = typed_id  # a valid id typed into 保障类别
    rows.loc[rows.index[1], "assistance_type"] = f"电话{phone}"
    rows.loc[rows.index[2], "status"] = bank
    content = render_delivery(contract, rows, fmt="csv", encoding="utf-8")
    name = f"MZ_DIBAO_{DAY:%Y%m%d}.csv"
    engine = connect(warehouse_url)
    upgrade(engine)
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=True, secret=SECRET
    )
    ref = DeliveryRef("MZ", "MZ_DIBAO", DAY, name, f"landing/MZ/{name}")
    summary = intake_delivery(ref, content, contract, load_common(), engine, options)
    assert summary.rows_rejected == 3
    stored = rejects_frame(engine)
    assert sorted(stored["column"]) == ["assistance_type", "assistance_type", "status"]
    with engine.connect() as conn:
        published_rejects = prepare("rejects", ledger_tables(conn, None)["rejects"], SECRET)
    engine.dispose()
    texts = [
        " ".join(str(v) for v in frame[["value_masked", "message"]].to_numpy().ravel())
        for frame in (stored, published_rejects)
    ]
    docs = "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "gx").rglob("*.html")
    )
    for plain in (typed_id, typed_id[6:14], phone, bank, bank[4:16]):
        assert all(plain not in t for t in (*texts, docs)), plain
    for t in texts:
        assert mask_lookalikes_text(typed_id) in t and "139****0000" in t and "***" in t
    assert "MZ_DIBAO.contract" in docs  # the Data Docs were built (and hold none of them)


def test_what_looks_like_an_id_a_phone_or_a_bank_account() -> None:
    pid = _vid("61030220120901412")
    typo = pid[:17] + ("0" if pid[-1] != "0" else "1")  # a wrong check character
    cert = pid + "41"  # a disability certificate number
    cases = {
        pid: pid[:6] + "*" * 8 + pid[-4:],
        f"身份证{pid}号": f"身份证{pid[:6]}********{pid[-4:]}号",
        f"{pid[:6]} {pid[6:14]} {pid[14:]}": pid[:6] + "*" * 8 + pid[-4:],
        typo: typo[:6] + "*" * 8 + typo[-4:],
        cert: cert[:6] + "*" * 10 + cert[-4:],
        "13800138000": "138****8000",
        "+86 138 0013 8000": "138****8000",
        "6217000011112222333": "***",
        "6217 0000 1111 2222 333": "***",
        # left as they are: a 16-digit household id, a village code, a date, an Excel float
        "6103271092030002": "6103271092030002",
        "610327109203": "610327109203",
        "2025-03-12": "2025-03-12",
        "6.10327E+17": "6.10327E+17",
    }
    assert {v: mask_lookalikes_text(v) for v in cases} == cases


def test_free_text_is_masked_and_age_replaces_the_birth_date() -> None:
    pid = _vid("61030220120901412")  # 12 years old on DAY
    contract = CONTRACTS["XC_REN"]
    row: dict[str, Any] = dict.fromkeys(contract.column_names)
    row |= {
        "household_id": "6103271092030002",
        "name": "张小华",
        "id_number": pid,
        "relation": "之女",
        "gender": "女",
        "birth_date": pd.Timestamp("2012-09-01"),
        "school_status": "在校，家长电话13912340000",
    }
    frame = pd.DataFrame([row])
    xc = apply_access("XC", "XC_REN", frame, SECRET, as_of=DAY)
    jt = apply_access("JT", "XC_REN", frame, SECRET, as_of=DAY)
    assert xc is not None and jt is not None
    assert xc.loc[0, "id_number"] == pid and xc.loc[0, "age"] == 12  # XC: plain, with age
    assert xc.loc[0, "household_id"] == "6103271092030002"  # an identifier, not free text
    for published in (xc, jt):
        assert published.loc[0, "school_status"] == "在校，家长电话139****0000"
    assert jt.loc[0, "id_number"] == pid[:6] + "*" * 8 + pid[-4:]
    assert "birth_date" not in jt.columns and jt.loc[0, "age"] == 12
