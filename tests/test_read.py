"""The reader: real CSV/XLSX/JSON files in every encoding and layout the spec allows.

Files come from the synthetic-county generator (`render_delivery`, `make_delivery`) or are written
byte by byte here for the nastiest cases. Where "the row a person sees" matters, openpyxl (not the
reader's calamine) is the independent witness of Excel's row numbers.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from hypothesis import given, settings
from hypothesis import strategies as st

from datashare.errors import DeliveryError, LayoutError, UnreadableDelivery
from datashare.synth import (
    County,
    build_county,
    corrupt_bytes,
    datasets_due,
    make_delivery,
    render_delivery,
)
from expectations.contract import get_contract, load_common, load_contracts
from tasks.checks import id18_check_char
from tasks.normalise import normalise_column
from tasks.read import (
    NUMBER_CELL,
    RawDelivery,
    ReadLimits,
    _plain_number,
    read_delivery,
)

COMMON = load_common()
DIBAO = get_contract("MZ_DIBAO")  # CSV, GB18030 by contract; an alias on 月保障金（元）
BIANDONG = get_contract("GA_BIANDONG")  # JSON
DAY = date(2025, 3, 12)
CSV_NAME = "MZ_DIBAO_20250312.csv"
XLSX_NAME = "MZ_DIBAO_20250312.xlsx"
JSON_NAME = "GA_BIANDONG_20250312.json"


def valid_id(first17: str) -> str:
    return first17 + id18_check_char(pd.Series([first17]))[0]


ID_A = valid_id("61032719900101123")
ID_B = valid_id("61032719851224002")
ID_C = valid_id("61032720100615004")
RARE_NAMES = ["王𠮷", "李䶮", "张堃"]  # 𠮷 and 䶮 exist only in GB18030, 堃 in GBK (not GB2312)


def dibao_rows(n: int = 3) -> list[dict[str, object]]:
    ids = [ID_A, ID_B, ID_C]
    return [
        {
            "village_code": "610327100201",
            "head_name": "王大",
            "head_id_number": ID_A,
            "name": RARE_NAMES[i % 3],
            "id_number": ids[i % 3],
            "assistance_type": "农村低保",
            "monthly_amount": f"{350 + i}.50",
            "start_date": "2024-01-01",
            "status": "在保",
        }
        for i in range(n)
    ]


def read(content: bytes, name: str = CSV_NAME, contract=DIBAO) -> RawDelivery:
    return read_delivery(content, name, contract, COMMON)


def names(raw: RawDelivery) -> list[object]:
    return raw.frame["name"].tolist()


def rows_of(raw: RawDelivery) -> list[int]:
    return raw.frame["source_row"].tolist()


def assert_where(exc: DeliveryError, source_file: str, *, row: int | None, contract=DIBAO):
    assert (exc.dept, exc.dataset, exc.source_file, exc.row) == (
        contract.dept,
        contract.dataset,
        source_file,
        row,
    )


# --- CSV encodings ------------------------------------------------------------------------------


def test_rare_characters_need_gb18030() -> None:
    # The premise of the encoding tests: these names cannot be written in GBK.
    for ch in "𠮷䶮":
        with pytest.raises(UnicodeEncodeError):
            ch.encode("gbk")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encoding_detected(encoding: str) -> None:
    content = render_delivery(DIBAO, dibao_rows(30), fmt="csv", encoding=encoding)
    assert content.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    raw = read(content)
    assert raw.fmt == "csv"
    assert raw.encoding == encoding
    assert names(raw) == [RARE_NAMES[i % 3] for i in range(30)]
    assert raw.frame["id_number"].iloc[:3].tolist() == [ID_A, ID_B, ID_C]
    assert raw.frame["monthly_amount"].iloc[0] == "350.50"
    assert rows_of(raw) == list(range(2, 32))
    assert (raw.header_row, raw.footer_rows, raw.blank_rows) == (1, 0, 0)
    assert raw.missing_columns == () and raw.extra_columns == ()
    # every value is text, an empty cell NA (never "" and never a float NaN)
    assert all(str(raw.frame[c].dtype) == "string" for c in DIBAO.column_names)
    assert raw.frame["end_date"].isna().all()


def test_gbk_file_is_read_as_gb18030() -> None:
    rows = [r | {"name": n} for r, n in zip(dibao_rows(3), ["张堃", "周喆", "朱镕"], strict=True)]
    content = render_delivery(DIBAO, rows, fmt="csv", encoding="gbk")
    with pytest.raises(UnicodeDecodeError):
        content.decode("gb2312")  # beyond GB2312: a GB2312 reader would fail on it
    raw = read(content)
    assert raw.encoding == "gb18030"
    assert names(raw) == ["张堃", "周喆", "朱镕"]


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_undecodable_csv_names_department_dataset_file_and_row(encoding: str) -> None:
    content = corrupt_bytes(render_delivery(DIBAO, dibao_rows(), encoding=encoding), "undecodable")
    with pytest.raises(UnreadableDelivery) as caught:
        read(content)
    assert_where(caught.value, CSV_NAME, row=2)  # the generator breaks the line after the header
    assert caught.value.rule == "unreadable"
    assert "MZ_DIBAO_20250312.csv" in str(caught.value)
    assert not any(n in str(caught.value) for n in RARE_NAMES)  # never a cell value


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_undecodable_bytes_deep_in_the_file_are_found(encoding: str) -> None:
    # Beyond the rows read to find the header: the bulk parser must not let them through (a BOM
    # file was handed to Arrow unchecked and came out as invalid strings).
    lines = render_delivery(DIBAO, dibao_rows(60), encoding=encoding).split(b"\r\n")
    lines[39] = b"\xff\xfe\xff" + lines[39]  # line 40 as a text editor numbers it
    with pytest.raises(UnreadableDelivery) as caught:
        read(b"\r\n".join(lines))
    assert_where(caught.value, CSV_NAME, row=40)


@pytest.fixture(scope="module")
def county() -> County:
    return build_county(5, 80)


def test_synthetic_deliveries_in_every_encoding(county: County, tmp_path: Path) -> None:
    for encoding in ("utf-8", "utf-8-sig", "gb18030"):
        delivery = make_delivery(county, tmp_path, "MZ_DIBAO", DAY, encoding=encoding)
        raw = read(delivery.content, delivery.path.name)
        assert raw.encoding == encoding
        assert len(raw.frame) == delivery.file.rows
        assert rows_of(raw) == list(range(2, delivery.file.rows + 2))


@pytest.mark.parametrize("dataset", sorted(load_contracts()))
def test_every_synthetic_dataset_reads_completely(
    county: County, dataset: str, tmp_path: Path
) -> None:
    """Messy generator output of every contract: all rows, all columns, defects where injected."""
    contract = get_contract(dataset)
    rows = None
    days = (DAY + timedelta(days=k) for k in range(60))
    day = next((d for d in days if dataset in datasets_due(county, d)), DAY)
    if dataset == "XC_HECHA":  # never scheduled: give it a row of its own
        rows = pd.DataFrame(
            [{"alert_id": "A1", "outcome": "属实", "checked_date": DAY, "checker": "x"}]
        )
    delivery = make_delivery(county, tmp_path, dataset, day, rows=rows, defects=rows is None)
    assert delivery.file.rows > 0
    raw = read_delivery(delivery.content, delivery.path.name, contract, COMMON)
    assert raw.fmt == contract.format
    assert len(raw.frame) == delivery.file.rows
    assert raw.missing_columns == ()
    assert raw.extra_columns == ()
    assert raw.header_row == (0 if raw.fmt == "json" else delivery.file.title_rows + 1)
    assert raw.encoding == (delivery.file.encoding if raw.fmt == "csv" else None)
    assert raw.footer_rows == (2 if raw.fmt == "xlsx" else 0)  # the messy 合计 / 填报人 lines
    first = 1 if raw.fmt == "json" else delivery.file.title_rows + 2
    assert rows_of(raw) == list(range(first, first + delivery.file.rows))
    assert {d.source_row for d in delivery.defects} <= set(rows_of(raw))


# --- CSV layout -----------------------------------------------------------------------------------

HEADER = "户主身份证号,成员姓名,成员身份证号,保障类别,月保障金（元）,纳入日期,状态"


def row(name: str, id_number: str = ID_A) -> str:
    return f"{ID_A},{name},{id_number},农村低保,300,2024-01-01,在保"


def test_csv_multiline_value_is_one_row() -> None:
    text = "\r\n".join(
        [
            HEADER,
            row("甲"),
            f'{ID_A},"乙\r\n（曾用名\r\n丙）",{ID_B},农村低保,300,2024-01-01,在保',
            row("丁"),
            row('戊"'),  # a stray quote inside an unquoted value is literal
        ]
    )
    raw = read(text.encode("gb18030"))
    assert names(raw) == ["甲", "乙\r\n（曾用名\r\n丙）", "丁", '戊"']
    assert rows_of(raw) == [2, 3, 4, 5]  # record numbers, not line numbers (丁 is on line 6)


def test_csv_empty_lines_and_ragged_rows() -> None:
    text = "\n".join(
        [
            HEADER,
            row("甲"),
            "",  # an empty line: a blank row a person sees
            f"{ID_A},乙,{ID_B}",  # short: the missing cells are empty
            row("丙") + ",,",  # long, but only with empty cells
            ",,,,,,",
            " ,\u3000,\u00a0,\u200b,,,",  # only invisible characters: blank too
            f'{ID_A},"丁\n丁",{ID_C},农村低保,300,2024-01-01,在保',
            row("戊"),
            "",
            "合计,,5",
            "填报人：张三,,制表时间：2025-03-12",
            "",
        ]
    )
    raw = read(text.encode())
    assert names(raw) == ["甲", "乙", "丙", "丁\n丁", "戊"]
    assert rows_of(raw) == [2, 4, 5, 8, 9]
    assert raw.frame["assistance_type"].isna().tolist() == [False, True, False, False, False]
    assert raw.blank_rows == 3
    assert raw.footer_rows == 3  # blank line, 合计, 填报人 (the file's final newline ends a row)


def test_csv_extra_field_with_content_is_a_layout_error() -> None:
    text = "\n".join([HEADER, row("甲"), row("乙") + ",多出的值", row("丙")])
    with pytest.raises(LayoutError) as caught:
        read(text.encode())
    assert_where(caught.value, CSV_NAME, row=3)


def test_csv_unclosed_quote_is_unreadable_not_swallowed() -> None:
    # The open quote on row 3 would take every later row into one cell; with an even number of
    # fields per line the bulk parser accepted that silently and two rows were lost.
    text = "\r\n".join([HEADER, row("甲"), f'{ID_A},"乙,{ID_B},农村低保,300,2024-01-01,在保'])
    text += "\r\n" + row("丙") + "\r\n" + row("丁") + "\r\n"
    with pytest.raises(UnreadableDelivery) as caught:
        read(text.encode())
    assert_where(caught.value, CSV_NAME, row=3)


def test_csv_title_rows_footer_and_no_final_newline() -> None:
    text = "\r\n".join(
        [
            "陇县低保名单,,,,,,",
            "填报单位：陇县民政局,,,,,,",
            HEADER,
            row("甲"),
            row("乙"),
            "合计,,,,600",
        ]
    )
    raw = read(text.encode("utf-8-sig"))
    assert (raw.header_row, raw.footer_rows) == (3, 1)
    assert names(raw) == ["甲", "乙"]
    assert rows_of(raw) == [4, 5]


def test_csv_footer_with_a_multiline_note() -> None:
    text = "\n".join([HEADER, row("甲"), row("乙"), '备注,"本表由\n系统导出"', ""])
    raw = read(text.encode())
    assert names(raw) == ["甲", "乙"]
    assert raw.footer_rows == 1


def test_csv_header_only() -> None:
    raw = read((HEADER + "\r\n").encode())
    assert raw.frame.empty and list(raw.frame.columns)[-1] == "source_row"
    assert raw.missing_columns == (
        "village_code",
        "head_name",
        "support_mode",
        "end_date",
        "bank_account",
    )


# --- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_header_found_by_alias_with_spaces_and_full_width(fmt: str) -> None:
    headers = {
        "monthly_amount": " 月保障金 ",  # alias, with spaces
        "name": "成员\u3000姓名",  # ideographic space inside
        "id_number": "成员身份证号\u200b",  # zero-width space
        "start_date": "纳入日期\u00a0",  # NBSP
        "assistance_type": "保障类别",
        "status": "状态",
        "head_id_number": "户主身份证号",
    }
    order = [
        "status",
        "name",
        "monthly_amount",
        "start_date",
        "id_number",
        "assistance_type",
        "head_id_number",
    ]
    content = render_delivery(
        DIBAO,
        dibao_rows(),
        fmt=fmt,
        headers=headers,
        column_order=order,
        extra_columns={"联系电话": ["1", "2", "3"], " 备用 ": [None, None, None]},
    )
    name = CSV_NAME.replace(".csv", f".{fmt}")
    raw = read(content, name)
    assert names(raw) == RARE_NAMES
    assert raw.frame["monthly_amount"].tolist() == ["350.50", "351.50", "352.50"]
    assert raw.frame["id_number"].tolist() == [ID_A, ID_B, ID_C]
    assert list(raw.frame.columns) == [
        *(c for c in DIBAO.column_names if c in order),
        "source_row",
    ]  # contract order, whatever the file's
    assert raw.extra_columns == ("联系电话", "备用")
    assert set(raw.missing_columns) == set(DIBAO.column_names) - set(order)
    assert "联系电话" not in raw.frame.columns


@pytest.mark.parametrize(
    ("dataset", "column", "delivered"),
    [
        ("YB_JIESUAN", "settlement_id", "结算ＩＤ"),  # full-width letters
        ("YB_JIESUAN", "settlement_id", " 结算id"),  # case and a space
        ("XC_HU", "town", "乡（镇）"),  # full-width parentheses
        ("XC_HU", "county", "县 (市、区、旗) "),
    ],
)
def test_header_with_ascii_typed_otherwise(dataset: str, column: str, delivered: str) -> None:
    contract = get_contract(dataset)
    assert delivered not in contract.column(column).headers
    content = render_delivery(
        contract,
        [{column: "V1"}],
        fmt="csv",
        headers={column: delivered},
        extra_columns={"ＨＨ备注": ["x"]},
    )
    raw = read(content, f"{dataset}_20250312.csv", contract)
    assert raw.frame[column].tolist() == ["V1"]
    assert column not in raw.missing_columns
    assert raw.extra_columns == ("ＨＨ备注",)  # unknown headers are reported as delivered


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("second", ["月保障金", "月保障金（元）", " 月保障金(元) "])
def test_a_column_delivered_twice_is_a_layout_error(fmt: str, second: str) -> None:
    content = render_delivery(
        DIBAO, dibao_rows(), fmt=fmt, title_rows=1, extra_columns={second: ["1", "2", "3"]}
    )
    name = CSV_NAME.replace(".csv", f".{fmt}")
    with pytest.raises(LayoutError) as caught:
        read(content, name)
    assert_where(caught.value, name, row=2)  # the header row, under one title row
    assert caught.value.column == "monthly_amount"


def test_json_key_matching_a_column_twice_is_a_layout_error() -> None:
    content = '[{"变动编号": "E1", "变动编号 ": "E2", "姓名": "甲"}]'.encode()
    with pytest.raises(LayoutError) as caught:
        read(content, JSON_NAME, BIANDONG)
    assert caught.value.column == "event_id"


def test_missing_required_column_is_reported() -> None:
    raw = read(render_delivery(DIBAO, dibao_rows(), drop_columns=["status", "bank_account"]))
    assert raw.missing_columns == ("status", "bank_account")  # in contract order
    assert "status" not in raw.frame.columns


def test_no_header_row_is_a_layout_error() -> None:
    content = "\n".join(["标题", "a,b,c", "1,2,3"]).encode()
    with pytest.raises(LayoutError) as caught:
        read(content)
    assert_where(caught.value, CSV_NAME, row=None)


def test_header_below_the_scanned_rows_is_not_found() -> None:
    content = render_delivery(DIBAO, dibao_rows(), fmt="xlsx", title_rows=["说明"] * 10)
    with pytest.raises(LayoutError):
        read(content, XLSX_NAME)


def test_header_is_the_row_matching_most_columns() -> None:
    # A title that happens to be a column's header does not win over the real header row.
    content = render_delivery(DIBAO, dibao_rows(), fmt="xlsx", title_rows=["状态", "填报单位：x"])
    raw = read(content, XLSX_NAME)
    assert raw.header_row == 3
    assert rows_of(raw) == [4, 5, 6]


# --- XLSX -----------------------------------------------------------------------------------------


def excel_rows_of(content: bytes, column: int, values: list[str]) -> list[int]:
    """The row numbers Excel shows for cells holding `values` (openpyxl, 1-based)."""
    sheet = openpyxl.load_workbook(io.BytesIO(content)).worksheets[0]
    found = {}
    for cells in sheet.iter_rows():
        for cell in cells:
            if cell.column == column and cell.value in values:
                found[cell.value] = cell.row
    return [found[v] for v in values]


@pytest.mark.parametrize("titles", [0, 1, 2, 3])
def test_xlsx_title_rows_footers_and_blank_rows(titles: int) -> None:
    rows = dibao_rows(5)
    for k, r in enumerate(rows):
        r["name"] = f"人{k}"
    blank: dict[str, object] = {}  # fully blank rows inside the data
    spaces = {"name": "\u3000", "status": " ", "bank_account": "\u00a0"}  # blank to the eye
    delivered = [rows[0], blank, rows[1], rows[2], spaces, blank, rows[3], rows[4]]
    footers = [
        [],
        ["合计", None, "共5条"],
        [None, "填报人：张三", None, "制表时间：2025-03-12"],
        ["  制表日期：2025年3月12日"],
    ]
    content = render_delivery(DIBAO, delivered, fmt="xlsx", title_rows=titles, footer_rows=footers)
    raw = read(content, XLSX_NAME)
    assert raw.fmt == "xlsx" and raw.encoding is None
    assert raw.header_row == titles + 1
    assert names(raw) == [f"人{k}" for k in range(5)]
    name_col = DIBAO.column_names.index("name") + 1
    assert rows_of(raw) == excel_rows_of(content, name_col, names(raw))
    assert rows_of(raw) == [titles + n for n in (2, 4, 5, 8, 9)]
    assert raw.blank_rows == 3
    assert raw.footer_rows == 4


def test_xlsx_with_empty_rows_and_columns_before_the_table() -> None:
    # Calamine may start a sheet at its first used cell; the row numbers must still be Excel's.
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet()
    header = [
        "户主身份证号",
        "成员姓名",
        "成员身份证号",
        "保障类别",
        "月保障金（元）",
        "纳入日期",
        "状态",
    ]
    sheet.write_row(3, 2, header)  # C4
    sheet.write_row(4, 2, [ID_A, "甲", ID_A, "农村低保", "300", "2024-01-01", "在保"])
    sheet.write_row(6, 2, [ID_A, "乙", ID_B, "农村低保", "300", "2024-01-01", "在保"])
    book.close()
    raw = read(buf.getvalue(), XLSX_NAME)
    assert raw.header_row == 4
    assert names(raw) == ["甲", "乙"]
    assert rows_of(raw) == excel_rows_of(buf.getvalue(), 4, ["甲", "乙"]) == [5, 7]
    assert raw.blank_rows == 1


def test_xlsx_ids_typed_as_numbers_keep_every_digit() -> None:
    id15 = ID_B[:6] + ID_B[8:17]  # an old 15-digit number
    rows = [
        {"name": "文本", "id_number": ID_A, "head_id_number": ID_A},  # a text cell
        {"name": "数字", "id_number": float(int(ID_C)), "head_id_number": int(ID_C)},
        {"name": "Excel", "id_number": 6.10327199001011e17, "head_id_number": None},
        {"name": "旧号", "id_number": int(id15), "head_id_number": float(id15)},
    ]
    raw = read(render_delivery(DIBAO, rows, fmt="xlsx"), XLSX_NAME)
    ids = raw.frame["id_number"].tolist()
    assert ids[0] == ID_A
    # What the file holds for a number cell, in plain digits: never 6.10327E+17, never rounded
    # through another float. The normaliser then tells whether the digits survived Excel.
    assert ids[1] == format(Decimal(repr(float(int(ID_C)))), "f")
    assert ids[1][:15] == ID_C[:15] and len(ids[1]) == 18 and ids[1].isdigit()
    assert ids[2] == "610327199001011000"  # what Excel keeps of a typed 18-digit number
    assert ids[3] == id15 and raw.frame["head_id_number"].iloc[3] == id15
    assert raw.frame["head_id_number"].iloc[1] == ids[1]
    # The reader knows which cells were numbers beyond 2^53: validation quarantines them.
    assert raw.frame[NUMBER_CELL + "id_number"].tolist() == [False, True, True, False]
    assert raw.frame[NUMBER_CELL + "head_id_number"].tolist() == [False, True, False, False]


def test_xlsx_dates_and_serials() -> None:
    rows = [
        {"name": "日期", "start_date": date(2024, 1, 2), "end_date": datetime(2025, 3, 4, 10, 30)},
        {"name": "序号", "start_date": 45292, "end_date": 45658.0},
        {"name": "文本", "start_date": "2024-01-02", "end_date": "2024年1月2日"},
        # a date-time cell at midnight shows as a plain date
        {"name": "零点", "start_date": datetime(2024, 5, 6), "end_date": None},
    ]
    raw = read(render_delivery(DIBAO, rows, fmt="xlsx"), XLSX_NAME)
    assert raw.frame["start_date"].tolist() == ["2024-01-02", "45292", "2024-01-02", "2024-05-06"]
    assert raw.frame["end_date"].tolist() == ["2025-03-04 10:30:00", "45658", "2024年1月2日", pd.NA]
    # and they are dates once normalised as an xlsx delivery
    column = DIBAO.column("start_date")
    out = normalise_column(raw.frame["start_date"], column, COMMON, exchange_date=DAY, excel=True)
    assert list(pd.to_datetime(out.values)) == [
        pd.Timestamp(2024, 1, 2),
        pd.Timestamp(2024, 1, 1),
        pd.Timestamp(2024, 1, 2),
        pd.Timestamp(2024, 5, 6),
    ]
    assert out.defects.isna().all()


def test_xlsx_numbers_are_plain_text() -> None:
    rows = [
        {"name": "a", "monthly_amount": 350.5},
        {"name": "b", "monthly_amount": 1e-7},
        {"name": "c", "monthly_amount": 1e20},
        {"name": "d", "monthly_amount": 0.1 + 0.2},
        {"name": "e", "monthly_amount": True},
    ]
    raw = read(render_delivery(DIBAO, rows, fmt="xlsx"), XLSX_NAME)
    assert raw.frame["monthly_amount"].tolist() == [
        "350.5",
        "0.0000001",
        "100000000000000000000",
        "0.3",
        "是",
    ]


@pytest.mark.parametrize("kind", ["truncate", "garbage"])
def test_broken_xlsx_is_unreadable(kind: str) -> None:
    content = corrupt_bytes(render_delivery(DIBAO, dibao_rows(40), fmt="xlsx"), kind)
    with pytest.raises(UnreadableDelivery) as caught:
        read(content, XLSX_NAME)
    assert_where(caught.value, XLSX_NAME, row=None)


def test_csv_bytes_named_xlsx_are_unreadable() -> None:
    with pytest.raises(UnreadableDelivery):
        read(render_delivery(DIBAO, dibao_rows()), XLSX_NAME)


# --- JSON -----------------------------------------------------------------------------------------


def test_json_values_as_text() -> None:
    content = (
        "[\n"
        '{"变动编号": 123456789012345678901, "姓名": null, "身份证号": ' + ID_A[:17] + "0, "
        '"变动日期": 1.50e3, "变动原因": 350.50, "附件": {"a": [1, "二"]}, "标记": true},\n'
        '{"变动编号": "E2", "姓名": "李䶮", "身份证号": "' + ID_B + '", "变动类型": NaN},\n'
        '{"变动编号": "E3", "变动原因": ["x", null], "标记": false}\n'
        "]"
    ).encode()
    raw = read(content, JSON_NAME, BIANDONG)
    frame = raw.frame
    assert frame["event_id"].tolist() == ["123456789012345678901", "E2", "E3"]
    assert frame["name"].isna().tolist() == [True, False, True]
    assert frame["id_number"].tolist()[:2] == [ID_A[:17] + "0", ID_B]
    assert frame["change_date"].iloc[0] == "1500"
    assert frame["reason"].iloc[0] == "350.5"  # as written, less the trailing zero
    assert pd.isna(frame["reason"].iloc[1])  # key absent
    assert frame["reason"].iloc[2] == '["x",null]'  # junk kept as its JSON text
    assert pd.isna(frame["change_type"].iloc[1])  # NaN is null
    assert rows_of(raw) == [1, 2, 3]
    assert (raw.header_row, raw.footer_rows, raw.blank_rows, raw.encoding) == (0, 0, 0, None)
    assert raw.extra_columns == ("附件", "标记")
    assert raw.missing_columns == ()


def test_json_synthetic_with_bom_and_missing_keys() -> None:
    rows = [
        {"event_id": "E1", "name": "王𠮷", "id_number": ID_A, "change_date": "2025-03-01"},
        {"event_id": "E2", "name": "李䶮", "id_number": ID_B},
    ]
    content = render_delivery(
        BIANDONG, rows, fmt="json", encoding="utf-8-sig", drop_columns=["reason"]
    )
    raw = read(content, JSON_NAME, BIANDONG)
    assert names(raw) == ["王𠮷", "李䶮"]
    assert raw.frame["change_date"].isna().tolist() == [False, True]
    assert raw.missing_columns == ("reason",)


@pytest.mark.parametrize(
    ("content", "row"),
    [
        ('[{"变动编号": "E1"}, {"变动编号": "E2", "姓名": "a", "姓名": "b"}]', 2),
        ('[{"变动编号": "E1", "附件": [{"x": 1, "x": 2}]}]', 1),  # even in nested junk
        ('{"变动编号": "E1"}', None),  # not an array
        ('[{"变动编号": "E1"}, ["E2"]]', 2),  # an element that is not an object
        ('[{"变动编号": "E1"}', None),  # truncated
        ('[{"变动编号": "E1"}] 多余', None),
        ("   \n", None),
    ],
)
def test_bad_json_is_unreadable(content: str, row: int | None) -> None:
    with pytest.raises(UnreadableDelivery) as caught:
        read(content.encode(), JSON_NAME, BIANDONG)
    assert_where(caught.value, JSON_NAME, row=row, contract=BIANDONG)


def test_empty_json_array_has_no_rows_and_misses_no_column() -> None:
    # No object, no keys: "required column missing" would be a false reason to reject it.
    raw = read(b"[ ]\n", JSON_NAME, BIANDONG)
    assert raw.frame.empty
    assert list(raw.frame.columns) == [*BIANDONG.column_names, "source_row"]
    assert raw.missing_columns == () and raw.extra_columns == ()


# --- any format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [CSV_NAME, XLSX_NAME, JSON_NAME])
def test_empty_file_is_unreadable(name: str) -> None:
    with pytest.raises(UnreadableDelivery) as caught:
        read(b"", name)
    assert_where(caught.value, name, row=None)


@pytest.mark.parametrize(
    "name",
    [
        "MZ_DIBAO_20250312.txt",
        "MZ_DIBAO_20250312",
        "MZ_DIBAO_20250312.csv.zip",
    ],
)
def test_unsupported_extension_is_unreadable(name: str) -> None:
    with pytest.raises(UnreadableDelivery) as caught:
        read(render_delivery(DIBAO, dibao_rows()), name)
    assert_where(caught.value, name, row=None)


def test_format_follows_the_extension_in_any_case() -> None:
    # The contract says CSV; the department sent an upper-case .XLSX: the file decides.
    raw = read(render_delivery(DIBAO, dibao_rows(), fmt="xlsx"), "MZ_DIBAO_20250312.XLSX")
    assert raw.fmt == "xlsx" and names(raw) == RARE_NAMES


# --- spreadsheets by their bytes, limits, isolation --------------------------------------------


@pytest.mark.parametrize("ext", ["xls", "ods", "et"])
def test_text_named_as_a_spreadsheet_is_unreadable(ext: str) -> None:
    name = f"MZ_DIBAO_20250312.{ext}"
    with pytest.raises(UnreadableDelivery) as caught:
        read(render_delivery(DIBAO, dibao_rows()), name)
    assert_where(caught.value, name, row=None)
    assert "不是 Excel/WPS/LibreOffice 表格" in caught.value.reason


@pytest.mark.parametrize("ext", ["xls", "et", "ods"])
def test_xlsx_bytes_under_another_spreadsheet_name_are_read(ext: str) -> None:
    # Offices rename files: the bytes decide how a workbook is read, the ledger says which.
    raw = read(render_delivery(DIBAO, dibao_rows(), fmt="xlsx"), f"MZ_DIBAO_20250312.{ext}")
    assert raw.fmt == "xlsx" and names(raw) == RARE_NAMES and raw.sheet is not None


def _book(sheets: list[tuple[str, list[list[object]], str]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows, state in sheets:
        sheet = book.create_sheet(title)
        for r in rows:
            sheet.append(r)
        sheet.sheet_state = state
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


SHEET_HEADER: list[object] = [
    "户主身份证号",
    "成员姓名",
    "成员身份证号",
    "保障类别",
    "月保障金（元）",
    "纳入日期",
    "状态",
]


def _sheet_rows(*people: str) -> list[list[object]]:
    return [SHEET_HEADER] + [
        [ID_A, p, ID_B, "农村低保", "300", "2024-01-01", "在保"] for p in people
    ]


def test_only_the_visible_sheet_with_the_header_is_read() -> None:
    content = _book(
        [
            ("旧", _sheet_rows("甲", "乙"), "hidden"),
            ("空白", [], "visible"),
            ("说明", [["本表说明"], ["第二行"]], "visible"),
            ("名单", _sheet_rows("丙"), "visible"),
            ("隐藏2", _sheet_rows("丁"), "veryHidden"),
        ]
    )
    raw = read(content, XLSX_NAME)
    assert raw.sheet == "名单" and names(raw) == ["丙"]


def test_no_visible_sheet_with_the_header_is_a_layout_error() -> None:
    content = _book([("说明", [["本表说明"]], "visible"), ("数据", _sheet_rows("甲"), "hidden")])
    with pytest.raises(LayoutError) as caught:
        read(content, XLSX_NAME)
    assert "找不到表头行" in caught.value.reason


def test_two_visible_sheets_with_the_header_fail() -> None:
    content = _book([("一", _sheet_rows("甲"), "visible"), ("二", _sheet_rows("乙"), "visible")])
    with pytest.raises(LayoutError) as caught:
        read(content, XLSX_NAME)
    assert caught.value.reason.startswith("多个工作表含数据：“一”、“二”")
    assert_where(caught.value, XLSX_NAME, row=None)


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (ReadLimits(max_unzipped_bytes=2000), "解压后"),
        (ReadLimits(max_cells=8), "超过读取上限"),  # declared A1:G3 = 21 cells
        (ReadLimits(max_columns=5), "超过读取上限"),
        (ReadLimits(worker_timeout_seconds=1e-6), "异常退出"),
    ],
)
def test_spreadsheet_limits_refuse_in_chinese(limits: ReadLimits, words: str) -> None:
    content = _book([("名单", _sheet_rows("甲", "乙"), "visible")])
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(content, XLSX_NAME, DIBAO, COMMON, limits)
    assert words in caught.value.reason, caught.value.reason
    assert_where(caught.value, XLSX_NAME, row=None)
    assert names(read(content, XLSX_NAME)) == ["甲", "乙"]  # within the default limits: read


def test_sheet_without_a_dimension_is_bounded_after_loading() -> None:
    # No <dimension> to check before: the worker checks the loaded sheet itself.
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf)
    sheet = book.add_worksheet()
    for r, row_ in enumerate(_sheet_rows("甲", "乙", "丙")):
        sheet.write_row(r, 0, row_)
    book.close()
    stripped = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(stripped, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension [^>]*/>", b"", data)
                assert b"<dimension" not in data
            out.writestr(info, data)
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(stripped.getvalue(), XLSX_NAME, DIBAO, COMMON, ReadLimits(max_cells=20))
    assert "4 行 × 7 列" in caught.value.reason
    assert names(read(stripped.getvalue(), XLSX_NAME)) == ["甲", "乙", "丙"]


@pytest.mark.parametrize("fmt", ["xlsx", "json"])
def test_an_over_large_value_is_refused_in_any_format(fmt: str) -> None:
    rows = dibao_rows(3)
    rows[1]["name"] = "长" * 40_000
    name = CSV_NAME.replace(".csv", f".{fmt}")
    if fmt == "xlsx":  # xlsxwriter keeps to Excel's 32,767 characters a cell; openpyxl not
        sheet = _sheet_rows("甲", "乙", "丙")
        sheet[2][1] = rows[1]["name"]
        content = _book([("名单", sheet, "visible")])
    else:
        content = render_delivery(DIBAO, rows, fmt=fmt)
    # (calamine itself cuts a cell at Excel's 32,767 characters: a lower limit shows the check)
    limits = ReadLimits(max_field_chars=30_000)
    with pytest.raises(UnreadableDelivery) as caught:
        read_delivery(content, name, DIBAO, COMMON, limits)
    first = 1 if fmt == "json" else 2
    assert (caught.value.row, caught.value.column) == (first + 1, "name")
    length = 40_000 if fmt == "json" else 32_767
    assert f"{length} 个字符，超过上限 30000" in caught.value.reason


def test_cr_only_csv_with_a_multiline_value_and_empty_lines() -> None:
    text = "\r".join(
        [HEADER, row("甲"), "", f'{ID_A},"乙\r乙",{ID_B},农村低保,300,2024-01-01,在保']
    )
    raw = read(text.encode("gb18030"))
    assert names(raw) == ["甲", "乙\n乙"]  # a CR-only file's line ends are read as lines
    assert rows_of(raw) == [2, 4] and raw.blank_rows == 1


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
def test_utf16_csv_is_refused_with_what_to_do(bom: bytes) -> None:
    codec = "utf-16-le" if bom == b"\xff\xfe" else "utf-16-be"
    with pytest.raises(UnreadableDelivery) as caught:
        read(bom + (HEADER + "\r\n" + row("甲")).encode(codec))
    assert "UTF-16" in caught.value.reason and "另存为 UTF-8 或 GB18030" in caught.value.reason


def test_identifier_columns_of_a_contract() -> None:
    from tasks.read import identifier_columns

    assert identifier_columns(DIBAO) == {
        "village_code",
        "head_id_number",
        "id_number",
        "bank_account",
    }
    assert "event_id" in identifier_columns(BIANDONG)  # a text key
    assert "name" not in identifier_columns(BIANDONG)


def test_a_bug_in_the_spreadsheet_worker_is_raised_without_cell_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tasks.read

    def broken(*_args: object) -> None:
        raise ValueError(f"cannot parse {ID_A}")

    monkeypatch.setattr(tasks.read, "_read_book_here", broken)  # the forked worker inherits it
    with pytest.raises(RuntimeError) as caught:
        read(render_delivery(DIBAO, dibao_rows(), fmt="xlsx"), XLSX_NAME)
    assert str(caught.value) == "spreadsheet reader worker failed with ValueError"


# --- the workbook column's conversion, against the per-cell one it replaced --------------------


def _decimal_plain(value: float) -> str:
    """The plain digits of a finite float, the long way (what _plain_number did before its
    shortcut for a repr that is already plain)."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=500, deadline=None)
def test_plain_number_is_the_decimal_rendering(value: float) -> None:
    assert _plain_number(value) == _decimal_plain(value)


@pytest.mark.parametrize(
    "value", [2.0**53, 2.0**53 + 2, 1e16, 1e22, 6.103271965030413e17, 1e-7, 0.1 + 0.2, -0.0, 5e-324]
)
def test_plain_number_at_the_edges(value: float) -> None:
    assert _plain_number(value) == _decimal_plain(value)
