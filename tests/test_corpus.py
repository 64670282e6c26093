"""Files the project did not make: saved by LibreOffice (.xlsx, .xls, .ods, WPS .et), and hostile.

tests/corpus/README.md says how each file was made (tests/corpus/make_corpus.py). The truth is
the source the files were made from (make_corpus.ROWS), never the reader's output; openpyxl is
the second witness of what LibreOffice saved. Each file's outcome is asserted through the reader
and through the real intake (ledger row, status, reason) on SQLite and PostgreSQL, and a night
with hostile files in its landing area loads everything else.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import Engine

from datashare.errors import LayoutError, UnreadableDelivery
from datashare.settings import Settings
from datashare.synth import build_county, write_night
from expectations.contract import get_contract, load_common
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef
from tasks.normalise import normalise_id18
from tasks.read import NUMBER_CELL, RawDelivery, ReadLimits, read_delivery
from tasks.validate import validate_rows
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import current_rows

CORPUS = Path(__file__).resolve().parent / "corpus"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
assert _spec is not None and _spec.loader is not None
made = importlib.util.module_from_spec(_spec)
sys.modules["make_corpus"] = made
_spec.loader.exec_module(made)

DIBAO = get_contract("MZ_DIBAO")
BIANDONG = get_contract("GA_BIANDONG")
COMMON = load_common()
DAY = date(2025, 3, 12)
ROWS: list[list[str]] = made.ROWS
IDS = [r[4] for r in ROWS]  # 成员身份证号 as delivered (the last one an old 15-digit number)
OFFICE = ["lo_text_ids.xlsx", "lo_text_ids.xls", "lo_text_ids.ods", "lo_text_ids.et"]
NUMBER_IDS = ["lo_number_ids.xlsx", "lo_number_ids.xls", "lo_number_ids.ods"]


def read(file: str, contract=DIBAO, limits: ReadLimits | None = None) -> RawDelivery:
    ext = file.rsplit(".", 1)[1]
    content = (CORPUS / file).read_bytes()
    return read_delivery(content, f"{contract.dataset}_20250312.{ext}", contract, COMMON, limits)


def upgraded(id15: str) -> str:
    return made.id18(id15[:6] + "19" + id15[6:])


def test_the_corpus_is_small_and_listed() -> None:
    readme = (CORPUS / "README.md").read_text()
    files = sorted(
        p.name
        for p in CORPUS.iterdir()
        if p.name not in ("README.md", "make_corpus.py", "__pycache__")
    )
    assert len(files) >= 19
    for name in files:
        assert (CORPUS / name).stat().st_size < 64 * 1024, name
        assert f"`{name}`" in readme, f"{name} is not listed in tests/corpus/README.md"


# --- office files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("file", OFFICE)
def test_office_files_read_as_saved(file: str) -> None:
    raw = read(file)
    # .et is WPS's name for the same BIFF bytes as .xls: the bytes decide how it is read
    ext = file.rsplit(".", 1)[1]
    assert raw.fmt == {"xlsx": "xlsx", "xls": "xls", "ods": "ods", "et": "xls"}[ext]
    assert raw.sheet == "lo_text_ids"  # LibreOffice names the sheet after the CSV it imported
    assert (raw.header_row, raw.footer_rows, raw.blank_rows) == (2, 1, 0)  # title, header, 合计
    frame = raw.frame
    assert frame["id_number"].tolist() == IDS
    assert frame["head_id_number"].tolist() == [r[2] for r in ROWS]
    assert frame["bank_account"].fillna("").tolist() == [r[9] for r in ROWS]
    assert frame["name"].tolist() == [r[3] for r in ROWS]  # 䶮 and 堃 intact
    # LibreOffice recognised the dates and amounts: date cells come out as ISO dates
    assert frame["start_date"].tolist() == [r[7] for r in ROWS]
    assert frame["monthly_amount"].tolist() == ["350.5", "350.5", "600", "600", "420"]
    assert frame["source_row"].tolist() == [3, 4, 5, 6, 7]
    assert not [c for c in frame.columns if c.startswith(NUMBER_CELL)]
    validated = validate_rows(frame, DIBAO, COMMON, exchange_date=DAY, excel=True)
    assert (validated.rows_loaded, validated.rows_quarantined) == (5, 0)
    assert validated.typed["id_number"].tolist() == [*IDS[:4], upgraded(IDS[4])]


def test_libreoffice_saved_real_date_and_number_cells() -> None:
    # The second witness: what the xlsx holds, by openpyxl (the premise of the tests above).
    sheet = openpyxl.load_workbook(CORPUS / "lo_number_ids.xlsx").active
    assert sheet is not None
    assert sheet["H3"].value.year == 2024  # a real date cell
    assert isinstance(sheet["E3"].value, int | float) and sheet["E3"].value > 2**53
    text = openpyxl.load_workbook(CORPUS / "lo_text_ids.xlsx").active
    assert text is not None and text["E3"].value == IDS[0]


@pytest.mark.parametrize("file", NUMBER_IDS)
def test_ids_saved_as_number_cells_are_quarantined(file: str) -> None:
    raw = read(file)
    frame = raw.frame
    # 18-digit ids and 19-digit accounts lost their last digits in the number cell ...
    for got, delivered in zip(frame["id_number"].iloc[:4], IDS[:4], strict=True):
        assert got != delivered and abs(int(got) - int(delivered)) < 10_000
        if not file.endswith(".xls"):  # xlsx and ods keep 15 significant digits
            assert got == format(Decimal(f"{Decimal(delivered):.14e}"), "f")
    flagged = frame[NUMBER_CELL + "id_number"].tolist()
    assert flagged == [True, True, True, True, False]  # the 15-digit number is exact
    assert frame[NUMBER_CELL + "head_id_number"].tolist() == flagged
    assert frame[NUMBER_CELL + "bank_account"].tolist() == [True, False, True, False, False]
    assert NUMBER_CELL + "village_code" not in frame  # 12 digits: exact, and its pattern fits
    if file.endswith((".xlsx", ".ods")):
        # ... and row 6's came back as 15 digits + 000, which passes MOD 11-2: another person
        lucky = frame["id_number"].iloc[3]
        assert lucky == made.LUCKY + "000" != IDS[3]
        _values, defects = normalise_id18(pd.Series([lucky], dtype="string"), DAY)
        assert defects.isna().all()
    validated = validate_rows(frame, DIBAO, COMMON, exchange_date=DAY, excel=True)
    rejects = validated.rejects
    assert rejects["source_row"].tolist() == [3, 4, 5, 6]
    # An id the normaliser already sees as float damage (15 digits + 000, check failing) keeps
    # id_excel_float; number_cell takes every other flagged cell (same advice to the sender).
    assert set(rejects["rule"]) <= {"number_cell", "id_excel_float"}
    message = rejects.set_index("source_row")["message"]
    for row in (3, 5):
        assert (
            "银行账号：以数字格式导出，末位可能已丢失，请将该列设为文本后重新导出" in message[row]
        )
    assert message.str.contains("成员身份证号：").all()
    if file.endswith((".xlsx", ".ods")):
        # the id that passes MOD 11-2 after the number cell is caught only by number_cell
        assert "成员身份证号：以数字格式导出，末位可能已丢失" in message[6]
    for text in rejects["message"].tolist() + rejects["value_masked"].tolist():
        assert not any(v[:15] in text for v in IDS[:4])  # masked, never the digits
    assert validated.typed.loc[validated.accepted_mask, "id_number"].tolist() == [upgraded(IDS[4])]


# --- sheets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["xlsx", "ods"])
def test_a_hidden_first_sheet_is_not_read(ext: str) -> None:
    book = openpyxl.load_workbook(CORPUS / "lo_hidden_first.xlsx")
    assert [s.sheet_state for s in book.worksheets] == ["hidden", "visible"]  # LibreOffice kept it
    raw = read(f"lo_hidden_first.{ext}")
    assert raw.sheet == "低保名单"
    assert raw.frame["id_number"].tolist() == IDS  # all five, not the hidden sheet's two


@pytest.mark.parametrize("ext", ["xlsx", "ods"])
def test_a_notes_sheet_beside_the_data_is_not_data(ext: str) -> None:
    raw = read(f"lo_notes_sheet.{ext}")
    assert raw.sheet == "名单" and raw.frame["id_number"].tolist() == IDS


@pytest.mark.parametrize("ext", ["xlsx", "ods"])
def test_data_split_over_two_visible_sheets_fails(ext: str) -> None:
    with pytest.raises(LayoutError) as caught:
        read(f"lo_split.{ext}")
    assert "多个工作表含数据" in caught.value.reason
    assert "“第一部分”" in caught.value.reason and "“第二部分”" in caught.value.reason
    assert caught.value.source_file == f"MZ_DIBAO_20250312.{ext}"


# --- hostile files --------------------------------------------------------------------------------


def test_cr_only_line_ends_are_read() -> None:
    assert b"\n" not in (CORPUS / "cr_only.csv").read_bytes()
    raw = read("cr_only.csv")
    assert raw.encoding == "gb18030"
    assert raw.frame["id_number"].tolist() == IDS
    assert raw.frame["name"].tolist() == [r[3] for r in ROWS]
    assert raw.frame["source_row"].tolist() == [2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("file", "contract", "words", "row"),
    [
        ("deep.json", BIANDONG, "嵌套层数过深", None),
        ("dimension_bomb.xlsx", DIBAO, "A1:XFD1048576", None),
        ("dimension_lie.xlsx", DIBAO, "读取程序超出资源上限或异常退出", None),
        ("html_named.xls", DIBAO, "文件实为网页", None),
    ],
)
def test_hostile_files_are_refused_in_chinese(
    file: str, contract: Any, words: str, row: int | None
) -> None:
    with pytest.raises(UnreadableDelivery) as caught:
        read(file, contract)
    exc = caught.value
    assert words in exc.reason, exc.reason
    assert (exc.dept, exc.dataset, exc.row, exc.rule) == (
        contract.dept,
        contract.dataset,
        row,
        "unreadable",
    )
    assert "Traceback" not in str(exc) and "Error" not in str(exc)


def test_a_stray_nul_costs_its_row_not_the_file() -> None:
    raw = read("nul_bytes.csv")
    assert len(raw.frame) == 5
    checked = validate_rows(raw.frame, DIBAO, COMMON, exchange_date=DAY, excel=False)
    assert (checked.rows_loaded, checked.rows_quarantined) == (4, 1)
    [reject] = checked.rejects.to_dict("records")
    assert (reject["source_row"], reject["column"], reject["rule"]) == (
        3,
        "bank_account",
        "control_character",
    )
    assert "\x00" not in reject["message"]


def test_a_nested_value_beyond_the_depth_limit_names_its_row() -> None:
    rows = [{"变动编号": "E1", "姓名": "甲"}, {"变动编号": "E2", "变动原因": [[[["x"]]]]}]
    content = json.dumps(rows, ensure_ascii=False).encode()
    limits = ReadLimits(max_json_depth=5)
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(content, "GA_BIANDONG_20250312.json", BIANDONG, COMMON, limits)
    assert (caught.value.row, caught.value.column) == (2, "reason")
    raw = read_delivery(content, "GA_BIANDONG_20250312.json", BIANDONG, COMMON)
    assert raw.frame["reason"].tolist()[1] == '[[[["x"]]]]'


def _csv(rows: list[list[str]]) -> bytes:
    return "\r\n".join(",".join(r) for r in [made.HEADER, *rows]).encode("utf-8")


def test_an_over_large_field_is_refused_naming_row_and_column() -> None:
    rows = [list(r) for r in ROWS]
    rows[2][3] = "长" * 200_000  # beyond Python csv's own 131072 and Excel's 32767
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(_csv(rows), "MZ_DIBAO_20250312.csv", DIBAO, COMMON)
    exc = caught.value
    assert (exc.row, exc.column) == (4, "name")
    assert "200000 个字符" in exc.reason and "32767" in exc.reason and "成员姓名" in exc.reason
    assert "field larger" not in str(exc)


def test_ids_as_float_text_are_flagged() -> None:
    rows = [list(r) for r in ROWS]
    rows[0][4] = "6.10327E+17"  # what Excel shows, saved as text
    rows[1][9] = "6228480402564890000.0"
    rows[2][2] = "610327195809111.0"
    raw = read_delivery(_csv(rows), "MZ_DIBAO_20250312.csv", DIBAO, COMMON)
    assert raw.frame[NUMBER_CELL + "id_number"].tolist() == [True, False, False, False, False]
    assert raw.frame[NUMBER_CELL + "bank_account"].tolist() == [False, True, False, False, False]
    assert raw.frame[NUMBER_CELL + "head_id_number"].tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
    validated = validate_rows(raw.frame, DIBAO, COMMON, exchange_date=DAY, excel=False)
    # scientific notation in an id18 is the normaliser's id_excel_float (the same advice)
    assert validated.rejects["rule"].tolist() == ["id_excel_float", "number_cell", "number_cell"]
    assert validated.rejects["column"].tolist() == ["id_number", "bank_account", "head_id_number"]


def test_json_float_ids_are_flagged_and_exact_integers_are_not() -> None:
    content = (
        '[{"变动编号": "E1", "身份证号": 6.10327199003028e17},'
        ' {"变动编号": 2, "身份证号": 610327450101203},'
        ' {"变动编号": 3.0, "身份证号": "' + IDS[0] + '"}]'
    ).encode()
    raw = read_delivery(content, "GA_BIANDONG_20250312.json", BIANDONG, COMMON)
    assert raw.frame["id_number"].tolist() == ["610327199003028000", "610327450101203", IDS[0]]
    assert raw.frame[NUMBER_CELL + "id_number"].tolist() == [True, False, False]
    # 3.0 is an integer below 2^53 written as a float: exact, and event_id has no pattern
    assert NUMBER_CELL + "event_id" not in raw.frame


def hundred_k_columns(n: int = 100_000) -> bytes:
    header = made.HEADER + [f"备用{i}" for i in range(n - len(made.HEADER))]
    padding = "," * (n - len(made.HEADER))
    lines = [",".join(header), *(",".join(r) + padding for r in ROWS)]
    return "\r\n".join(lines).encode()


def test_a_hundred_thousand_columns() -> None:
    content = hundred_k_columns()
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(content, "MZ_DIBAO_20250312.csv", DIBAO, COMMON)
    assert "100000 列" in caught.value.reason and "16384" in caught.value.reason
    # with the limit raised the header is mapped (linearly: bench/bench_headers.py times it)
    raw = read_delivery(
        content, "MZ_DIBAO_20250312.csv", DIBAO, COMMON, ReadLimits(max_columns=200_000)
    )
    assert raw.frame["id_number"].tolist() == IDS
    assert len(raw.extra_columns) == 100_000 - len(made.HEADER)
    assert raw.extra_columns[:2] == ("备用0", "备用1")


# --- through the intake, on SQLite and PostgreSQL ------------------------------------------------

# file, dataset, status, words in the reason (None: loaded), rows_in, rows_loaded
OUTCOMES: list[tuple[str, str, str, str | None, int, int]] = [
    ("lo_text_ids.xlsx", "MZ_DIBAO", "loaded", None, 5, 5),
    ("deep.json", "GA_BIANDONG", "failed", "嵌套层数过深", 0, 0),
    ("dimension_bomb.xlsx", "MZ_DIBAO", "failed", "超过读取上限", 0, 0),
    ("lo_text_ids.xls", "MZ_DIBAO", "loaded", None, 5, 5),
    ("dimension_lie.xlsx", "MZ_DIBAO", "failed", "异常退出", 0, 0),
    ("lo_text_ids.ods", "MZ_DIBAO", "loaded", None, 5, 5),
    ("lo_number_ids.xlsx", "MZ_DIBAO", "failed", "问题数据占比 80.0%", 5, 0),
    ("nul_bytes.csv", "MZ_DIBAO", "loaded", None, 5, 4),
    ("lo_split.xlsx", "MZ_DIBAO", "failed", "多个工作表含数据", 0, 0),
    ("html_named.xls", "MZ_DIBAO", "failed", "文件实为网页", 0, 0),
    ("lo_hidden_first.ods", "MZ_DIBAO", "loaded", None, 5, 5),
    ("cr_only.csv", "MZ_DIBAO", "loaded", None, 5, 5),
    ("lo_text_ids.et", "MZ_DIBAO", "loaded", None, 5, 5),
]


@pytest.fixture
def engine(warehouse_url: str) -> Any:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _take(
    engine: Engine,
    tmp_path: Path,
    file: str,
    dataset: str,
    day: date,
    content: bytes | None = None,
) -> IntakeSummary:
    contract = {"MZ_DIBAO": DIBAO, "GA_BIANDONG": BIANDONG}[dataset]
    name = f"{dataset}_{day:%Y%m%d}.{file.rsplit('.', 1)[1]}"
    ref = DeliveryRef(contract.dept, dataset, day, name, f"landing/{contract.dept}/{name}")
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=False, secret=b"t" * 32
    )
    if content is None:
        content = (CORPUS / file).read_bytes()
    return intake_delivery(ref, content, contract, COMMON, engine, options)


def test_a_refused_huge_field_counts_the_rows_read(engine: Engine, tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[2][3] = "长" * 200_000
    summary = _take(engine, tmp_path, "x.csv", "MZ_DIBAO", DAY, _csv(rows))
    assert (summary.status, summary.rows_in, summary.rows_loaded, summary.rows_rejected) == (
        "failed",
        5,
        0,
        5,
    )
    assert summary.reason is not None
    assert "第4行“成员姓名”列的内容有 200000 个字符" in summary.reason
    assert "第 4 行" in summary.reason and "列 name" in summary.reason
    [row] = ledger.ledger_frame(engine).to_dict("records")
    assert (row["status"], row["rows_in"], row["rows_rejected"]) == ("failed", 5, 5)


def test_every_corpus_file_through_the_intake(engine: Engine, tmp_path: Path) -> None:
    """One delivery a day, in order: each outcome recorded, and what follows a hostile file
    is taken in as if nothing had happened (the process survives every one of them)."""
    day = date(2025, 3, 1)
    for k, (file, dataset, status, words, rows_in, loaded) in enumerate(OUTCOMES):
        summary = _take(engine, tmp_path, file, dataset, day + timedelta(days=k))
        assert (summary.status, summary.rows_in, summary.rows_loaded) == (
            status,
            rows_in,
            loaded,
        ), (file, summary)
        assert summary.rows_in == summary.rows_loaded + summary.rows_rejected + summary.duplicates
        if words is None:
            assert summary.reason is None, (file, summary.reason)
        else:
            assert summary.reason is not None and words in summary.reason, (file, summary.reason)
            assert f"数据集 {dataset}" in summary.reason and "文件 " in summary.reason
    frame = ledger.ledger_frame(engine).sort_values("exchange_date")
    assert frame["status"].tolist() == [o[2] for o in OUTCOMES]
    # the ledger records the worksheet read: the visible one, never the hidden first sheet
    sheets = dict(zip(frame["source_file"], frame["sheet"], strict=True))
    assert sheets["MZ_DIBAO_20250311.ods"] == "低保名单"
    assert pd.isna(sheets["MZ_DIBAO_20250312.csv"])
    assert frame["file_format"].tolist()[:1] == ["xlsx"]
    rejects = ledger.rejects_frame(engine)
    numbers = rejects[rejects["source_file"] == "MZ_DIBAO_20250307.xlsx"]
    assert set(numbers["rule"]) == {"id_excel_float", "quarantine_share"}  # first defects
    lucky = numbers.loc[numbers["source_row"] == 6, "message"].tolist()
    assert len(lucky) == 1 and "成员身份证号：以数字格式导出，末位可能已丢失" in lucky[0]
    refused = rejects[rejects["source_file"] == "MZ_DIBAO_20250303.xlsx"]
    assert refused["rule"].tolist() == ["unreadable"]
    with engine.connect() as conn:
        current = current_rows(conn, "MZ_DIBAO")
    assert sorted(current["id_number"]) == sorted([*IDS[:4], upgraded(IDS[4])])


# --- a whole night --------------------------------------------------------------------------------


@pytest.fixture
def env(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, prefect_api: None
) -> Settings:
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASHARE_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DATASHARE_SECRET", "test-secret-not-for-production-0123456789")
    monkeypatch.setenv("DATASHARE_BUILD_DOCS", "false")
    monkeypatch.setenv("DATASHARE_MAX_WORKERS", "2")
    monkeypatch.setenv("DATASHARE_ENVIRONMENT", "test")
    return Settings()


@pytest.mark.quick_sample("sqlite")
def test_a_night_with_hostile_files_loads_everything_else(env: Settings) -> None:
    from flows.nightly import run_nightly

    day = date(2025, 3, 10)
    landing = Path(str(env.landing))
    write_night(build_county(31, 30), landing, day, defects=False)
    # Two departments send what took the whole night down before.
    for old in [*landing.glob("MZ/MZ_DIBAO_*"), *landing.glob("GA/GA_BIANDONG_*")]:
        old.unlink()
    (landing / "MZ" / f"MZ_DIBAO_{day:%Y%m%d}.xlsx").write_bytes(
        (CORPUS / "dimension_lie.xlsx").read_bytes()
    )
    (landing / "GA").mkdir(exist_ok=True)
    (landing / "GA" / f"GA_BIANDONG_{day:%Y%m%d}.json").write_bytes(
        (CORPUS / "deep.json").read_bytes()
    )
    result = run_nightly(day, env)
    by_dataset = {s.dataset: s for s in result.deliveries}
    assert by_dataset["MZ_DIBAO"].status == "failed"
    assert "异常退出" in (by_dataset["MZ_DIBAO"].reason or "")
    assert by_dataset["GA_BIANDONG"].status == "failed"
    assert "嵌套层数过深" in (by_dataset["GA_BIANDONG"].reason or "")
    others = [s for d, s in by_dataset.items() if d not in ("MZ_DIBAO", "GA_BIANDONG")]
    assert len(others) >= 5
    assert {s.status for s in others} == {"loaded"}, [(s.dataset, s.status) for s in others]


def test_limits_flow_from_settings_to_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import RunConfig

    monkeypatch.setenv("DATASHARE_READ_MAX_COLUMNS", "50")
    monkeypatch.setenv("DATASHARE_READ_MAX_UNZIPPED_MB", "3")
    monkeypatch.setenv("DATASHARE_READ_WORKER_TIMEOUT_SECONDS", "7.5")
    settings = Settings(home=tmp_path, environment="test")
    limits = RunConfig.from_settings(settings).read_limits
    assert (limits.max_columns, limits.max_unzipped_bytes, limits.worker_timeout_seconds) == (
        50,
        3 << 20,
        7.5,
    )
    assert limits.max_field_chars == ReadLimits().max_field_chars == 32_767
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(hundred_k_columns(60), "MZ_DIBAO_20250312.csv", DIBAO, COMMON, limits)
    assert "60 列，超过读取上限 50 列" in caught.value.reason
