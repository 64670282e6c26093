"""The synthetic county: determinism, valid truth, files that round-trip, a truthful manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from datashare.errors import ConfigurationError
from datashare.synth import (
    DEFECT_RULES,
    County,
    NightManifest,
    build_county,
    corrupt_bytes,
    dataset_rows,
    excel_general,
    load_divisions,
    make_delivery,
    prepare_delivery,
    redeliver,
    render_delivery,
    roster_persons,
    truncated_snapshot,
    write_big_csv,
    write_night,
)
from datashare.synth.files import rng_for
from datashare.synth.from_contract import contract_gaps, contract_rows
from datashare.synth.names import GB18030_ONLY
from expectations.contract import Contract, get_contract, load_common, load_contracts
from tasks.checks import credit_code_valid, id18_valid

CONTRACTS = load_contracts()
COMMON = load_common()


@pytest.fixture(scope="module")
def county() -> County:
    return build_county(11, 250)


@pytest.fixture(scope="module")
def night(county: County, tmp_path_factory: pytest.TempPathFactory) -> NightManifest:
    """The first night (initial load), messy, with a high defect rate so every class shows."""
    return write_night(county, tmp_path_factory.mktemp("landing"), county.start, defect_rate=0.06)


# --- reading files back, independently of the engine's reader ----------------------------------


def _cell_text(value: object) -> str | None:
    """An XLSX cell as text: dates as ISO, whole numbers without '.0', others as repr."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def sheet_rows(source: Path | bytes) -> list[list[object]]:
    """Every row of the one sheet of an XLSX file, as stored values."""
    book = openpyxl.load_workbook(
        io.BytesIO(source) if isinstance(source, bytes) else source, read_only=True
    )
    try:
        return [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def read_back(
    path: Path, contract: Contract, encoding: str | None, title_rows: int
) -> tuple[list[str], list[list[str | None]], list[list[object]]]:
    """(header, data rows as text, data rows as stored) of a delivered file."""
    if contract.format == "json":
        records = json.loads(path.read_bytes().decode("utf-8"))
        header = list(records[0]) if records else []
        rows = [[r.get(h) for h in header] for r in records]
        return header, rows, rows
    if contract.format == "csv":
        assert encoding is not None
        lines = list(csv.reader(io.StringIO(path.read_bytes().decode(encoding), newline="")))
        header, data = lines[title_rows], lines[title_rows + 1 :]
        return header, [list(r) for r in data], [list(r) for r in data]
    cells = sheet_rows(path)
    header = [str(h) for h in cells[title_rows] if h is not None]
    data = [r[: len(header)] for r in cells[title_rows + 1 :]]
    footer_markers = tuple(COMMON.footer_markers)
    data = [r for r in data if not (isinstance(r[0], str) and r[0].startswith(footer_markers))]
    return header, [[_cell_text(v) for v in r] for r in data], data


def canonical_header(contract: Contract, text: str) -> str:
    for col in contract.columns:
        if text in col.headers:
            return col.name
    raise KeyError(text)


# --- reference data and the county -------------------------------------------------------------


def test_divisions_reference_data() -> None:
    divisions = load_divisions()
    assert list(divisions.columns) == ["village_code", "town", "village"]
    assert divisions["village_code"].str.fullmatch(r"610327\d{6}").all()
    assert divisions["village_code"].is_unique
    per_town = divisions.groupby("town").size()
    assert 9 <= len(per_town) <= 12 and per_town.between(8, 15).all()
    assert {"城关镇", "东风镇", "八渡镇", "新集川镇"} <= set(per_town.index)


def test_same_seed_same_county() -> None:
    a, b = build_county(5, 120), build_county(5, 120)
    pd.testing.assert_frame_equal(a.persons, b.persons)
    pd.testing.assert_frame_equal(a.households, b.households)
    assert not build_county(6, 120).persons["id_number"].equals(a.persons["id_number"])


def test_persons_have_valid_unique_ids_matching_birth_and_sex(county: County) -> None:
    p = county.persons
    ids = p["id_number"].astype(object)
    assert ids.is_unique
    assert id18_valid(ids, pd.Timestamp(county.horizon_end)).all()
    births = pd.to_datetime(ids.str.slice(6, 14), format="%Y%m%d")
    assert (births.to_numpy() == p["birth_date"].to_numpy(dtype="datetime64[ns]")).all()
    odd = ids.str.slice(16, 17).astype(int) % 2 == 1
    assert (odd == (p["gender"] == "男")).all()


def test_exactly_one_head_per_household(county: County) -> None:
    ren = dataset_rows(county, "XC_REN", county.start + timedelta(days=30))
    heads = ren.assign(head=ren["relation"] == "户主").groupby("household_id")["head"].sum()
    assert (heads == 1).all()
    hu = dataset_rows(county, "XC_HU", county.start)
    assert set(hu["household_id"]) == set(ren["household_id"])


def test_names_include_rare_characters(county: County) -> None:
    names = "".join(county.persons["name"])
    for char in GB18030_ONLY:
        assert char in names
        with pytest.raises(UnicodeEncodeError):
            char.encode("gbk")


def test_rare_characters_survive_a_gb18030_round_trip(county: County) -> None:
    contract = CONTRACTS["MZ_DIBAO"]
    names = [f"刘{c}" for c in (*GB18030_ONLY, "堃")]
    rows = [{"name": n, "id_number": "610327199001011237"} for n in names]
    content = render_delivery(contract, rows, encoding="gb18030")
    text = content.decode("gb18030")
    for name in names:
        assert name in text
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")


def test_clean_rows_have_unique_keys_every_night(county: County) -> None:
    for day in (county.start, county.start + timedelta(days=1), county.start + timedelta(days=9)):
        for name, contract in CONTRACTS.items():
            rows = dataset_rows(county, name, day)
            assert list(rows.columns) == list(contract.column_names)
            assert not rows.duplicated(list(contract.key)).any(), (name, day)


def test_every_alert_condition_occurs(county: County) -> None:
    d = county.start
    hu = dataset_rows(county, "XC_HU", d)
    yb = dataset_rows(county, "YB_JIESUAN", d)
    assert (yb["self_burden"] >= 6000).any() and (yb["settle_kind"] == "冲销").any()
    normal = yb.loc[yb["settle_kind"] == "正常"].set_index("settlement_id")
    reversal = yb.loc[yb["settle_kind"] == "冲销"].set_index("settlement_id")
    assert np.allclose(reversal["total_cost"], -normal.loc[reversal.index, "total_cost"])
    zj = dataset_rows(county, "ZJ_FANGWU", d)
    bad = zj["grade"].isin(["C", "D"])
    assert (bad & zj["renovation_status"].isin(["未开工", "在建"])).any()
    assert (bad & zj["renovation_status"].isin(["竣工", "验收"])).any()
    xueji = dataset_rows(county, "JT_XUEJI", d + timedelta(days=200))
    assert (xueji["enrolment_status"] == "辍学").any()
    assert county.students["missing"].any()
    cl = dataset_rows(county, "CL_CANJI", d)
    assert (cl["level"].isin(["一级", "二级"]) & (cl["cert_status"] == "有效")).any()
    assert (~dataset_rows(county, "SL_YINSHUI", d)["water_safe"].astype(bool)).any()
    ny = dataset_rows(county, "NY_CHANYE", d)
    failed = ny.loc[ny["project_status"] == "失败", "year"]
    assert (failed >= d.year - 1).any() and (failed == d.year - 2).any()
    unmonitored = hu["monitoring_category"].isna()
    assert (unmonitored & (hu["income_per_capita"] < county.threshold)).any()
    assert (unmonitored & (hu["income_per_capita"] == county.threshold)).any()
    rs = dataset_rows(county, "RS_JIUYE", d)
    assert (rs["employment_status"] == "未就业").any()
    dibao = dataset_rows(county, "MZ_DIBAO", d)
    on_roster = set(county.persons.loc[roster_persons(county, d), "id_number"])
    in_care = dibao.loc[dibao["status"] == "在保", "id_number"]
    assert (~in_care.isin(on_roster)).any()
    ga = dataset_rows(county, "GA_BIANDONG", d)
    dead = set(ga.loc[ga["change_type"] == "死亡", "id_number"])
    assert dead & set(in_care)
    canbao = dataset_rows(county, "YB_CANBAO", d)
    names = canbao.merge(county.persons[["id_number", "name"]], on="id_number")
    assert (names["name_x"] != names["name_y"]).any()


def test_the_county_evolves(county: County) -> None:
    early, late = county.start, county.start + timedelta(days=300)
    assert roster_persons(county, early).sum() != roster_persons(county, late).sum()
    hu_early, hu_late = (dataset_rows(county, "XC_HU", d) for d in (early, late))
    assert hu_late["monitoring_category"].notna().sum() != hu_early[
        "monitoring_category"
    ].notna().sum() or not hu_late.equals(hu_early)
    first_rs = dataset_rows(county, "RS_JIUYE", early).set_index("id_number")
    later_rs = dataset_rows(county, "RS_JIUYE", late).set_index("id_number")
    common_ids = first_rs.index.intersection(later_rs.index)
    assert (
        first_rs.loc[common_ids, "employment_status"]
        != later_rs.loc[common_ids, "employment_status"]
    ).any()


def test_sizes_scale() -> None:
    small, big = build_county(2, 60), build_county(2, 600)
    assert len(small.households) == 60 and len(big.households) == 600
    for c in (small, big):
        assert 2.5 <= len(c.persons) / len(c.households) <= 4.5
    assert len(dataset_rows(big, "XC_REN", big.start)) > 5 * len(
        dataset_rows(small, "XC_REN", small.start)
    )


# --- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(CONTRACTS))
def test_every_dataset_renders_and_round_trips(
    county: County, tmp_path: Path, dataset: str
) -> None:
    contract = CONTRACTS[dataset]
    delivery = make_delivery(county, tmp_path, dataset, county.start, messy=False, defects=False)
    delivery.path.parent.mkdir(parents=True, exist_ok=True)
    delivery.path.write_bytes(delivery.content)
    assert delivery.path.name == f"{dataset}_{county.start:%Y%m%d}.{contract.format}"
    assert delivery.path.parent.name == contract.dept
    assert delivery.file.encoding == (
        contract.encoding if contract.format == "csv" else delivery.file.encoding
    )
    header, rows, _ = read_back(
        delivery.path, contract, delivery.file.encoding, delivery.file.title_rows
    )
    expected = dataset_rows(county, dataset, county.start)
    assert len(rows) == len(expected)
    if rows:
        assert header == [c.header for c in contract.columns]
        key = contract.key[0]
        got = [r[header.index(contract.column(key).header)] for r in rows]
        assert got == expected[key].astype(str).tolist()
    if contract.format == "csv" and contract.encoding == "utf-8-sig":
        assert delivery.content.startswith(b"\xef\xbb\xbf")


def test_same_seed_same_bytes(county: County, tmp_path: Path) -> None:
    day = county.start + timedelta(days=2)
    a = write_night(county, tmp_path / "a", day)
    b = write_night(county, tmp_path / "b", day)
    assert [f.sha256 for f in a.files] == [f.sha256 for f in b.files]
    for f in a.files:
        assert hashlib.sha256(f.path.read_bytes()).hexdigest() == f.sha256
    other = write_night(build_county(12, 250), tmp_path / "c", day)
    assert {f.sha256 for f in other.files}.isdisjoint({f.sha256 for f in a.files})


def test_first_night_delivers_everything(county: County, night: NightManifest) -> None:
    delivered = {f.dataset for f in night.files}
    assert delivered == set(CONTRACTS) - {"XC_HECHA"}
    later = write_night(
        county,
        night.files[0].path.parents[1],
        county.start + timedelta(days=1),
        datasets=["XC_HECHA"],
    )
    assert [f.dataset for f in later.files] == ["XC_HECHA"] and later.files[0].rows > 0


def test_manifest_covers_every_defect_class(night: NightManifest) -> None:
    rules = {d.rule for d in night.defects}
    assert set(DEFECT_RULES) <= rules
    row_rules = {r.id for c in CONTRACTS.values() for r in c.row_rules}
    assert len(row_rules & rules) >= 0.7 * len(row_rules)  # all of them: the test below
    assert sum(f.duplicates for f in night.files) > 0


@pytest.mark.parametrize("dataset", sorted(n for n, c in CONTRACTS.items() if c.row_rules))
def test_every_row_rule_can_be_broken(dataset: str) -> None:
    from tasks.validate import validate_rows

    county = build_county(4, 1500)
    contract = CONTRACTS[dataset]
    day = county.start
    prepared = prepare_delivery(
        contract,
        dataset_rows(county, dataset, day),
        exchange_date=day,
        fmt=contract.format,
        common=COMMON,
        rng=rng_for(4, dataset),
        defect_rate=0.12,
    )
    found = {d.rule for d in prepared.defects}
    assert {r.id for r in contract.row_rules} <= found
    raw = pd.DataFrame(
        {k: [_cell_text(v) for v in cells] for k, cells in prepared.values.items()}, dtype=object
    )
    raw = raw.assign(source_row=np.arange(len(raw)))
    result = validate_rows(
        raw, contract, COMMON, exchange_date=day, excel=contract.format == "xlsx"
    )
    got = sorted(
        zip(
            result.rejects["source_row"],
            result.rejects["column"],
            result.rejects["rule"],
            strict=True,
        )
    )
    assert got == sorted((d.row, d.column, d.rule) for d in prepared.defects)


def _defect_cells(night: NightManifest) -> Iterator[tuple[object, str | None, str, Contract]]:
    for f in night.files:
        contract = CONTRACTS[f.dataset]
        header, text_rows, stored = read_back(f.path, contract, f.encoding, f.title_rows)
        names = [canonical_header(contract, h) for h in header]
        offset = 1 if f.fmt == "json" else f.title_rows + 2
        for d in night.defects_of(f.dataset):
            assert d.source_file == f.path.name
            i = d.source_row - offset
            column = d.column if d.column in names else contract.key[0]
            j = names.index(column)
            yield stored[i][j], text_rows[i][j], d.rule, contract


def test_manifest_rows_hold_the_defective_values(night: NightManifest) -> None:
    tokens = set(COMMON.null_tokens)
    checked = 0
    for stored, text, rule, _contract in _defect_cells(night):
        value = "" if text is None else text.strip()
        if rule == "required":
            assert value in tokens
        elif rule == "id_excel_float":
            assert isinstance(stored, float) or "E+" in value or value.endswith("000")
        elif rule == "id_length":
            assert len(value) in (16, 17, 19)
        elif rule in ("id_checksum", "id_birth_date"):
            latest = pd.Timestamp(night.exchange_date)
            assert len(value) == 18 and not id18_valid(pd.Series([value]), latest).all()
        elif rule == "credit_code":
            assert not credit_code_valid(pd.Series([value])).all()
        else:
            continue
        checked += 1
    assert checked > 20


def _raw_frame(
    path: Path, contract: Contract, encoding: str | None, title_rows: int
) -> pd.DataFrame:
    header, rows, _ = read_back(path, contract, encoding, title_rows)
    names = [canonical_header(contract, h) for h in header]
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    offset = 1 if contract.format == "json" else title_rows + 2
    return frame.assign(source_row=np.arange(len(frame)) + offset)


@pytest.mark.parametrize("dataset", sorted(set(CONTRACTS) - {"XC_HECHA"}))
def test_engine_finds_exactly_the_injected_defects(night: NightManifest, dataset: str) -> None:
    """The manifest is the truth the engine is held to: same rows, columns and rules."""
    from tasks.validate import validate_rows

    f = night.file(dataset)
    contract = CONTRACTS[dataset]
    raw = _raw_frame(f.path, contract, f.encoding, f.title_rows)
    result = validate_rows(
        raw, contract, COMMON, exchange_date=night.exchange_date, excel=f.fmt == "xlsx"
    )
    got = sorted(
        zip(
            result.rejects["source_row"],
            result.rejects["column"],
            result.rejects["rule"],
            strict=True,
        )
    )
    want = sorted((d.source_row, d.column, d.rule) for d in night.defects_of(dataset))
    assert got == want
    assert result.duplicates == f.duplicates


def test_messy_night_uses_the_accepted_spellings(night: NightManifest) -> None:
    text = ""
    cells: list[object] = []
    for f in night.files:
        if f.fmt == "xlsx":
            rows = sheet_rows(f.path)
            assert str(rows[0][0]).startswith("陇县")  # title row
            assert any(r[0] == "合计" for r in rows) and any(
                str(r[0]).startswith("填报人") for r in rows
            )
            cells += [v for r in rows for v in r]
        else:
            text += f.path.read_bytes().decode(f.encoding or "utf-8")
    for form in ("'610", "\u200b", "\u00a0", "年", "/", "１", "元", "NULL", "无数据"):
        assert form in text, form
    assert any(isinstance(v, datetime) for v in cells)  # real Excel dates
    assert any(isinstance(v, int | float) and 20000 < v < 60000 for v in cells)  # serials
    ids15 = [w for w in text.replace(",", " ").split() if len(w) == 15 and w.isdigit()]
    assert ids15
    assert {f.encoding for f in night.files if f.fmt == "csv"} >= {"gb18030", "utf-8-sig"}


def test_render_delivery_options() -> None:
    contract = get_contract("XC_HU")
    rows = [
        {
            "household_id": "6103271002000001",
            "head_id_number": 610327199001011237.0,
            "identified_month": "2024年3月",
            "monitoring_category": "脱贫不稳定户",
        },
        {"household_id": "6103271002000002", "head_id_number": None},
    ]
    content = render_delivery(
        contract,
        rows,
        headers={"monitoring_category": "检测对象类别"},
        drop_columns=["town"],
        extra_columns={"备注": ["新增", None]},
        footer_rows=[["合计", "", "2"]],
    )
    values = sheet_rows(content)
    header = values[2]
    assert "检测对象类别" in header and "乡(镇)" not in header and header[-1] == "备注"
    first = dict(zip(header, values[3], strict=True))
    assert isinstance(first["户主证件号码"], float)  # a number cell: digits are lost
    assert first["户编号"] == "6103271002000001" and first["备注"] == "新增"
    assert values[-1][0] == "合计"
    csv_bytes = render_delivery(
        contract,
        rows,
        fmt="csv",
        encoding="utf-8",
        title_rows=1,
        column_order=["head_id_number", "household_id"],
    )
    lines = csv_bytes.decode("utf-8").split("\r\n")
    assert lines[1] == "户主证件号码,户编号" and lines[2] == "6.10327E+17,6103271002000001"
    assert excel_general(date(2025, 3, 12)) == "2025-03-12" and excel_general(1234.5) == "1234.5"
    assert render_delivery(contract, rows) == render_delivery(contract, rows)


def test_redelivery_truncation_and_corruption(county: County, tmp_path: Path) -> None:
    first = write_night(county, tmp_path, county.start, datasets=["MZ_DIBAO", "XC_HU"])
    again = redeliver(county, tmp_path, "MZ_DIBAO", county.start)
    assert again.path == first.file("MZ_DIBAO").path
    assert again.file.sha256 != first.file("MZ_DIBAO").sha256 and not again.defects
    cut = truncated_snapshot(county, tmp_path, "XC_HU", county.start + timedelta(days=1))
    assert cut.file.rows < 0.5 * first.file("XC_HU").rows
    content = first.file("MZ_DIBAO").path.read_bytes()
    for encoding in ("utf-8", "gb18030"):
        with pytest.raises(UnicodeDecodeError):
            corrupt_bytes(content, "undecodable").decode(encoding)
    with pytest.raises(Exception):  # noqa: B017 (any reader error will do)
        sheet_rows(corrupt_bytes(cut.content, "truncate"))


def test_write_big_csv(tmp_path: Path) -> None:
    path = write_big_csv(tmp_path / "MZ_DIBAO_20250312.csv", rows=20_000, seed=3)
    content = path.read_bytes()
    assert content == write_big_csv(tmp_path / "again.csv", rows=20_000, seed=3).read_bytes()
    lines = list(csv.reader(io.StringIO(content.decode("gb18030"), newline="")))
    contract = CONTRACTS["MZ_DIBAO"]
    assert len(lines) - 1 >= 20_000
    names = [canonical_header(contract, h) for h in lines[0]]
    ids = pd.Series([r[names.index("id_number")] for r in lines[1:]], dtype=object)
    valid = id18_valid(ids.str.strip().str.upper())
    assert 0.6 < valid.mean() < 0.99  # messy forms and defects make the rest


# --- a dataset with no builder: made from its contract, or refused with what it lacks ----------


def _contract(text: str) -> Contract:
    return Contract.model_validate(yaml.safe_load(text))


_TEKUN = _contract(
    """
dataset: MZ_TEKUN
dept: MZ
title: 特困供养人员名册
format: csv
mode: snapshot
key: [id_number]
columns:
- {name: village_code, header: 区划代码, type: text, pattern: '^\\d{12}$'}
- {name: name, header: 姓名, type: text, pii: name, required: true}
- {name: id_number, header: 身份证号, type: id18, pii: id, required: true}
- {name: gender, header: 性别, type: enum, values: [男, 女]}
- {name: head_name, header: 户主姓名, type: text, pii: name}
- {name: support_mode, header: 供养方式, type: enum, values: [集中供养, 分散供养], required: true}
- {name: monthly_amount, header: 月供养金, type: decimal, min: 300, max: 3000, required: true}
- {name: visits, header: 走访次数, type: int, min: 1, max: 12}
- {name: start_date, header: 认定日期, type: date, required: true}
- {name: in_institution, header: 是否入住供养机构, type: bool}
- {name: phone, header: 联系电话, type: text, pii: phone}
"""
)


def test_a_dataset_without_a_builder_is_made_from_its_contract(county: County) -> None:
    rows = contract_rows(county, _TEKUN, county.start)
    assert list(rows.columns) == list(_TEKUN.column_names)
    assert 0.02 * len(county.persons) < len(rows) < 0.08 * len(county.persons)
    assert rows["id_number"].is_unique and id18_valid(rows["id_number"]).all()
    persons = county.persons.set_index("id_number")
    listed = persons.loc[rows["id_number"]]
    # References take the county's facts: the person's name, gender, village, household head.
    assert (rows["name"].to_numpy() == listed["name"].to_numpy()).all()
    assert (rows["gender"].to_numpy() == listed["gender"].to_numpy()).all()
    households = county.households.set_index("hh")
    assert (rows["village_code"].to_numpy() == households.loc[listed["hh"], "village_code"]).all()
    heads = county.persons["name"].to_numpy()[households.loc[listed["hh"], "head"].to_numpy()]
    assert (rows["head_name"].to_numpy() == heads).all()
    # Generated columns stay within what the contract allows.
    assert set(rows["support_mode"]) <= {"集中供养", "分散供养"}
    assert rows["monthly_amount"].between(300, 3000).all()
    assert rows["visits"].between(1, 12).all()
    assert (rows["start_date"] < pd.Timestamp(county.start)).all()
    assert rows["in_institution"].isin([True, False]).all()
    assert rows["phone"].str.fullmatch(r"1\d{10}").all()
    # A snapshot changes only as the county does: a week later, the same persons, same values.
    later = contract_rows(county, _TEKUN, county.start + timedelta(days=7))
    same = rows.merge(later, on="id_number", suffixes=("", "_later"))
    assert len(same) >= 0.9 * len(rows)
    assert (same["monthly_amount"] == same["monthly_amount_later"]).all()


@pytest.mark.parametrize(
    "change, lacks",
    [
        ({"mode": "events"}, "事件何时发生"),
        ({"key": ["case_id"]}, "模拟县认得的主键"),
        (
            {
                "row_rules": [
                    {
                        "id": "r1",
                        "check": "min_age",
                        "columns": ["id_number"],
                        "min_age": 60,
                        "message": "m",
                    }
                ]
            },
            "行规则 ['r1']",
        ),
        ({"merge_hook": "cancel_reversals"}, "合并钩子 cancel_reversals"),
    ],
)
def test_a_contract_that_lacks_something_is_refused_by_name(
    county: County, change: dict[str, object], lacks: str
) -> None:
    data = _TEKUN.model_dump(by_alias=True)
    data["columns"] = [
        *data["columns"],
        {"name": "case_id", "header": "编号", "type": "text", "pattern": "^TK\\d{6}$"},
    ]
    contract = Contract.model_validate({**data, **change})
    with pytest.raises(ConfigurationError, match="MZ_TEKUN") as caught:
        contract_rows(county, contract, county.start)
    assert lacks in str(caught.value)
    assert "列 case_id 的数据来源：一个格式约束" in str(caught.value)


def test_the_builders_of_the_sixteen_are_kept(county: County) -> None:
    # Datasets with a builder of their own keep it (their output is what every test relies on);
    # the generic builder would refuse MZ_DIBAO (its row rules), so this one is the builder's.
    assert not dataset_rows(county, "MZ_DIBAO", county.start).empty
    assert contract_gaps(county, CONTRACTS["MZ_DIBAO"])
