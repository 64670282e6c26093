"""Great Expectations gate: real GX runs on small typed frames, real files in a temp project."""

from __future__ import annotations

import html
import json
import threading
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from expectations.contract import get_contract, load_contracts
from expectations.gx_custom import gx, hides_values
from expectations.gx_suite import build_suites, min_snapshot_rows
from tasks.checks import id18_check_char
from tasks.gx_validate import GxVerdict, validate_delivery_gx

EXCHANGE = date(2025, 3, 12)
NAMES = ["张伟华", "李秀英", "王建国", "赵丽娟", "陈志强", "刘海燕"]
PHONES = ["13912345678", "13800138000", "13700001111"]
BAD_PHONES = ["1391234567", "23800138000"]
BANK = "6222020200112233445"
GOOD_CODE = "91350100M000100Y43"
BAD_CODES = ["91350100M000100Y44", "91110000600037341X"]
_DTYPES = {"date": "datetime64[s]", "decimal": "Float64", "int": "Int64", "bool": "boolean"}
_ALL_IDS: set[str] = set()


def make_ids(n: int, born: str = "19800101", start: int = 0) -> list[str]:
    """`n` distinct valid id numbers born on `born`, remembered for the personal-data scan."""
    first17 = pd.Series([f"610327{born}{(start + i) % 1000:03d}" for i in range(n)], dtype="string")
    ids = (first17 + id18_check_char(first17)).tolist()
    _ALL_IDS.update(ids)
    return ids


def bad_id(value: str) -> str:
    """`value` with a wrong check character."""
    wrong = "0" if value[-1] != "0" else "1"
    _ALL_IDS.add(value[:-1] + wrong)
    return value[:-1] + wrong


def typed(dataset: str, n: int, **columns: Any) -> pd.DataFrame:
    """The engine's typed frame: every contract column (NA unless given), source_row, _defects."""
    data: dict[str, Any] = {}
    for col in get_contract(dataset).columns:
        values = columns.get(col.name, [None] * n)
        values = values if isinstance(values, list) else [values] * n
        dtype = _DTYPES.get(col.type, "string")
        if dtype.startswith("datetime"):
            data[col.name] = pd.to_datetime(pd.Series(values, dtype=object)).astype(dtype)
        else:
            data[col.name] = pd.Series(pd.array(values, dtype=dtype))
    data["source_row"] = np.arange(2, n + 2, dtype=np.int64)
    data["_defects"] = pd.Series(pd.array(columns.get("_defects", [0] * n), dtype="Int64"))
    return pd.DataFrame(data)


def dibao(n: int, **overrides: Any) -> pd.DataFrame:
    """A clean MZ_DIBAO delivery of `n` rows."""
    columns: dict[str, Any] = {
        "village_code": "610327100201",
        "head_name": [NAMES[i % len(NAMES)] for i in range(n)],
        "head_id_number": make_ids(n, "19600101", 500),
        "name": [NAMES[-1 - i % len(NAMES)] for i in range(n)],
        "id_number": make_ids(n),
        "assistance_type": ["农村低保" if i % 2 else "城市低保" for i in range(n)],
        "monthly_amount": 500.0,
        "start_date": "2020-01-01",
        "status": "在保",
        "bank_account": BANK,
    }
    return typed("MZ_DIBAO", n, **{**columns, **overrides})


def canji(n: int) -> pd.DataFrame:
    """A clean CL_CANJI delivery of `n` rows (肢体 一级: certificate = id + '41')."""
    ids = make_ids(n, "19700101")
    return typed(
        "CL_CANJI",
        n,
        name=[NAMES[i % len(NAMES)] for i in range(n)],
        id_number=ids,
        cert_no=[i + "41" for i in ids],
        category="肢体",
        level="一级",
        issue_date="2018-06-01",
        cert_status="有效",
        living_subsidy=100.0,
        care_subsidy=200.0,
    )


def jiuye(n: int) -> pd.DataFrame:
    """A clean RS_JIUYE delivery of `n` rows."""
    return typed(
        "RS_JIUYE",
        n,
        name=[NAMES[i % len(NAMES)] for i in range(n)],
        id_number=make_ids(n, "19850301"),
        employment_status="县内务工",
        employer="县农产品公司",
        employer_credit_code=GOOD_CODE,
        start_date="2024-01-01",
        monthly_income=3000.0,
    )


def hu(n: int, phones: list[str]) -> pd.DataFrame:
    """An XC_HU delivery of `n` rows with the given phone numbers."""
    return typed(
        "XC_HU",
        n,
        household_id=[f"H{i:04d}" for i in range(n)],
        town="城关镇",
        village="新联村",
        village_code="610327100201",
        head_name=[NAMES[i % len(NAMES)] for i in range(n)],
        head_id_number=make_ids(n, "19550505"),
        household_size=3,
        household_type="一般农户",
        income_per_capita=8000.0,
        phone=phones,
    )


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gx")


def run(
    frame: pd.DataFrame,
    dataset: str,
    root: Path,
    label: str,
    *,
    previous_rows: int | None = None,
    max_rows: int = 200_000,
    docs: bool = False,
) -> GxVerdict:
    return validate_delivery_gx(
        frame,
        get_contract(dataset),
        exchange_date=EXCHANGE,
        previous_rows=previous_rows,
        context_root=root,
        run_label=label,
        max_rows=max_rows,
        build_docs=docs,
    )


def unexpected_counts(root: Path, dataset: str, label: str) -> dict[str, int]:
    """unexpected_count per expectation of the stored contract-suite result of a run."""
    folder = root / "gx" / "uncommitted" / "validations" / dataset / "contract" / label
    (path,) = folder.glob("*/*.json")
    counts = {}
    for r in json.loads(path.read_text(encoding="utf-8"))["results"]:
        config = r["expectation_config"]
        arg = config["kwargs"].get("column") or config["kwargs"].get("rule_id")
        counts[f"{config['type']}({arg})"] = r["result"].get("unexpected_count")
    return counts


# --- the gate -------------------------------------------------------------------------------------


def test_clean_delivery_passes(gx_root: Path) -> None:
    verdict = run(dibao(40), "MZ_DIBAO", gx_root, "clean", previous_rows=40, docs=True)
    assert verdict.success and verdict.delivery_success and verdict.contract_success
    assert not verdict.contract_sampled and verdict.failed_expectations == ()
    assert verdict.statistics["rows"] == verdict.statistics["contract_rows"] == 40
    assert verdict.docs_index is not None and verdict.docs_index.is_file()
    assert run(canji(30), "CL_CANJI", gx_root, "clean").success


@pytest.mark.parametrize(("rows", "passes"), [(19, False), (20, True)])
def test_truncated_snapshot_fails_on_row_count(gx_root: Path, rows: int, passes: bool) -> None:
    verdict = run(dibao(rows), "MZ_DIBAO", gx_root, f"truncated{rows}", previous_rows=40)
    assert verdict.success is passes and verdict.delivery_success is passes
    failed = "expect_table_row_count_to_be_between" in verdict.failed_expectations
    assert failed is not passes


@pytest.mark.parametrize(("defective", "passes"), [(8, True), (9, False)])
def test_quarantine_share_over_threshold_fails(gx_root: Path, defective: int, passes: bool) -> None:
    frame = dibao(40, _defects=[1] * defective + [0] * (40 - defective))
    verdict = run(frame, "MZ_DIBAO", gx_root, f"share{defective}")
    assert verdict.success is passes and verdict.delivery_success is passes
    failed = "expect_column_values_to_be_in_set(_defects)" in verdict.failed_expectations
    assert failed is not passes


def test_missing_required_column_fails(gx_root: Path) -> None:
    verdict = run(dibao(20).drop(columns=["status"]), "MZ_DIBAO", gx_root, "missing")
    assert not verdict.success and not verdict.delivery_success
    assert "expect_column_to_exist(status)" in verdict.failed_expectations


def test_contract_suite_is_sampled_above_max_rows(gx_root: Path) -> None:
    frame = dibao(60, status=["待核实" if i % 2 else "在保" for i in range(60)])
    sampled = run(frame, "MZ_DIBAO", gx_root, "sampled", max_rows=25)
    assert sampled.contract_sampled and sampled.statistics["contract_rows"] == 25
    assert sampled.statistics["rows"] == 60
    # The contract suite reports (sampled or not); the delivery suite is the verdict.
    assert not sampled.contract_success and sampled.success
    assert "expect_column_values_to_be_in_set(status)" in sampled.failed_expectations
    whole = run(frame, "MZ_DIBAO", gx_root, "whole", max_rows=60)
    assert not whole.contract_sampled and not whole.contract_success and whole.success


def test_custom_expectations_count_exactly_the_bad_rows(gx_root: Path) -> None:
    frame = dibao(20)
    ids = frame["id_number"].tolist()
    ids[0] = bad_id(ids[0])
    ids[1] = make_ids(1, "20250401", 900)[0]  # born after the exchange date
    ids[2] = ids[2][:17]  # wrong length
    frame["id_number"] = pd.array(ids, dtype="string")
    frame.loc[[3, 4], "end_date"] = pd.Timestamp("2019-12-31")  # before start_date
    frame.loc[5, "support_mode"] = "集中供养"  # on a 低保 row
    run(frame, "MZ_DIBAO", gx_root, "count")
    counts = unexpected_counts(gx_root, "MZ_DIBAO", "count")
    assert counts["expect_column_values_to_be_valid_id18(id_number)"] == 3
    assert counts["expect_column_values_to_be_valid_id18(head_id_number)"] == 0
    assert counts["expect_row_rule_to_hold(end_not_before_start)"] == 2
    assert counts["expect_row_rule_to_hold(support_mode_only_tekun)"] == 1

    frame = canji(20)
    frame.loc[[0, 1], "cert_no"] = frame.loc[[0, 1], "id_number"] + "42"  # level 二级 != 一级
    frame.loc[2, "level"] = "三级"
    frame.loc[2, "cert_no"] = frame.loc[2, "id_number"] + "43"  # agrees, but no care subsidy
    run(frame, "CL_CANJI", gx_root, "count")
    counts = unexpected_counts(gx_root, "CL_CANJI", "count")
    assert counts["expect_row_rule_to_hold(cert_matches_id_category_level)"] == 2
    assert counts["expect_row_rule_to_hold(care_subsidy_only_severe)"] == 1

    frame = jiuye(20)
    frame.loc[[0, 1], "employer_credit_code"] = BAD_CODES
    frame.loc[2, "id_number"] = make_ids(1, "20120101", 901)[0]  # 13 on the exchange date
    run(frame, "RS_JIUYE", gx_root, "count")
    counts = unexpected_counts(gx_root, "RS_JIUYE", "count")
    assert counts["expect_column_values_to_be_valid_credit_code(employer_credit_code)"] == 2
    assert counts["expect_row_rule_to_hold(worker_at_least_16)"] == 1


def test_concurrent_deliveries_get_their_own_verdicts(gx_root: Path) -> None:
    verdicts: dict[str, GxVerdict] = {}

    def validate(name: str, frame: pd.DataFrame, dataset: str, previous: int) -> None:
        verdicts[name] = run(frame, dataset, gx_root, f"thread-{name}", previous_rows=previous)

    threads = [
        threading.Thread(target=validate, args=("ok", dibao(30), "MZ_DIBAO", 30)),
        threading.Thread(target=validate, args=("short", canji(10), "CL_CANJI", 30)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts["ok"].success
    assert not verdicts["short"].success
    assert verdicts["short"].failed_expectations == ("expect_table_row_count_to_be_between",)


# --- personal data --------------------------------------------------------------------------------


def _forms(value: str) -> set[str]:
    """How a value could be spelled in a file: plain, JSON-escaped, HTML-escaped."""
    return {value, json.dumps(value)[1:-1], html.escape(value)}


def test_no_personal_data_on_disk(gx_root: Path) -> None:
    frame = dibao(20, status=["待核实"] + ["在保"] * 19)
    frame["id_number"] = pd.array([bad_id(i) for i in frame["id_number"]], dtype="string")
    assert not run(frame, "MZ_DIBAO", gx_root, "pii", docs=True).contract_success
    frame = canji(10)
    frame["cert_no"] = frame["id_number"] + "77"
    assert not run(frame, "CL_CANJI", gx_root, "pii", docs=True).contract_success
    phones = PHONES + BAD_PHONES * 4
    assert not run(hu(len(phones), phones), "XC_HU", gx_root, "pii", docs=True).contract_success
    frame = jiuye(10)
    frame["id_number"] = pd.array(make_ids(10, "20150101", 950), dtype="string")
    assert not run(frame, "RS_JIUYE", gx_root, "pii", docs=True).contract_success

    personal = {*_ALL_IDS, *NAMES, *PHONES, *BAD_PHONES, BANK}
    personal |= {i + suffix for i in _ALL_IDS for suffix in ("41", "42", "43", "77")}
    files = [p for p in gx_root.rglob("*") if p.is_file()]
    written = {
        p: p.read_text(encoding="utf-8", errors="replace")
        for p in files
        if p.suffix in {".json", ".html", ".yml"}
    }
    assert any(p.suffix == ".html" for p in written) and any(p.suffix == ".json" for p in written)
    leaks = {
        (p.name, v)
        for p, text in written.items()
        for v in personal
        if any(form in text for form in _forms(v))
    }
    assert not leaks

    # The scan can see values: a non-personal unexpected value is listed, and docs were built.
    assert any(any(f in text for f in _forms("待核实")) for text in written.values())
    index = (gx_root / "gx/uncommitted/data_docs/local_site/index.html").read_text("utf-8")
    assert "MZ_DIBAO.contract" in index and "XC_HU.delivery" in index
    suite_page = next(
        t
        for p, t in written.items()
        if p.suffix == ".html" and "XC_HU.contract" in t and "GB 11643" in t
    )
    assert "Row rule" in suite_page


def test_an_id_phone_or_bank_account_typed_into_any_column_is_masked(tmp_path: Path) -> None:
    """publishing.md "Forms": a value that looks like an id, phone or bank account is masked
    wherever it was typed, a data-quality page included (here: enum columns, not personal)."""
    (typed_id,) = make_ids(1, "20120901", 777)
    phone, bank = "13912340000", "6217000011112222333"
    frame = dibao(
        20,
        assistance_type=[typed_id, f"手机{phone}"] + ["农村低保"] * 18,
        status=[f"{bank[:4]} {bank[4:8]} {bank[8:12]} {bank[12:16]} {bank[16:]}", bank]
        + ["在保"] * 18,
    )
    run(frame, "MZ_DIBAO", tmp_path, "typed", docs=True)
    counts = unexpected_counts(tmp_path, "MZ_DIBAO", "typed")
    assert counts["expect_column_values_to_be_in_set(assistance_type)"] == 2
    assert counts["expect_column_values_to_be_in_set(status)"] == 2  # still judged unexpected
    written = {
        p: p.read_text(encoding="utf-8", errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in {".json", ".html"}
    }
    pages = [t for p, t in written.items() if p.suffix == ".html" and "MZ_DIBAO.contract" in t]
    assert pages and any("Sampled Unexpected Values" in t for t in pages)
    for plain in (typed_id, typed_id[6:14], phone, bank, bank[4:16], "1111 2222"):
        assert not [p.name for p, t in written.items() if any(f in t for f in _forms(plain))]
    shown = "".join(pages)
    assert typed_id[:6] + "*" * 8 + typed_id[-4:] in shown and "139****0000" in shown


# --- suites ---------------------------------------------------------------------------------------


def test_min_snapshot_rows() -> None:
    dibao_contract = get_contract("MZ_DIBAO")
    assert min_snapshot_rows(dibao_contract, 40) == 20
    assert min_snapshot_rows(dibao_contract, 41) == 21
    assert min_snapshot_rows(dibao_contract, None) is None
    odd = dibao_contract.model_copy(update={"min_snapshot_ratio": 0.3})
    assert min_snapshot_rows(odd, 10) == 3
    assert min_snapshot_rows(get_contract("GA_BIANDONG"), 100) is None  # events


@pytest.mark.parametrize("dataset", sorted(load_contracts()))
def test_suites_round_trip_and_hide_personal_values(dataset: str) -> None:
    contract = get_contract(dataset)
    for suite in build_suites(contract, exchange_date=EXCHANGE, previous_rows=100):
        loaded = gx.ExpectationSuite(**json.loads(json.dumps(suite.to_json_dict())))
        assert loaded.name == suite.name
        assert [e.expectation_type for e in loaded.expectations] == [
            e.expectation_type for e in suite.expectations
        ]
        for expectation in loaded.expectations:
            config = expectation.configuration.kwargs
            columns = [config["column"]] if "column" in config else config.get("column_list", [])
            if any(
                c in contract.pii_columns for c in columns
            ) and expectation.expectation_type not in {
                "expect_column_to_exist",
                "expect_column_values_to_not_be_null",
            }:
                assert hides_values(expectation), (dataset, expectation.expectation_type)


def test_data_docs_reuse_compiled_templates(gx_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GX's Data Docs views share one Jinja bytecode cache: a template compiled for one build is
    loaded, not compiled again, by the next (and the docs are still built)."""
    from great_expectations.render.view.view import DefaultJinjaView

    from tasks import gx_validate

    assert getattr(DefaultJinjaView._get_template, "_datashare_cached", False)
    first = run(dibao(40), "MZ_DIBAO", gx_root, "cache1", previous_rows=40, docs=True)
    assert first.docs_index is not None and first.docs_index.is_file()
    assert gx_validate._JINJA_CACHE._code, "no Data Docs template went through the cache"
    compiled: list[str] = []  # Jinja calls dump_bytecode only after compiling a template
    cache = gx_validate._JINJA_CACHE
    dump = cache.dump_bytecode
    monkeypatch.setattr(cache, "dump_bytecode", lambda b: (compiled.append(b.key), dump(b)))
    second = run(dibao(40), "MZ_DIBAO", gx_root, "cache2", previous_rows=40, docs=True)
    assert second.docs_index is not None and second.docs_index.is_file()
    assert compiled == []
