"""Control characters in delivered text are a defect class (issue 11, item 4).

A cell holding NUL or another control character (C0 other than TAB, LF and CR; DEL; C1) is
quarantined under rule `control_character`, with a Chinese message naming the column; the
character reaches no database, no reject and no message (it is shown as a visible symbol such
as ␀). Real files in every format go through the real intake on SQLite and PostgreSQL (where a
NUL in a text value used to crash the load).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from datashare.synth import render_delivery, source_row
from expectations.contract import get_contract, load_common
from tasks.checks import id18_check_char
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef
from tasks.normalise import control_characters, normalise_column, show_controls
from tasks.validate import validate_rows
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import current_rows

DAY = date(2025, 3, 12)
COMMON = load_common()
REN = get_contract("XC_REN")
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]
CONTROLS += [chr(c) for c in range(0x80, 0xA0)]


def vid(first17: str) -> str:
    return first17 + str(id18_check_char(pd.Series([first17]))[0])


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_control_character_is_found(char: str) -> None:
    values = pd.Series([f"张{char}三", "张三", f"{char}", None, f"ab{char}"], dtype="string")
    assert control_characters(values).tolist() == [True, False, True, False, True]


def test_tab_newline_cr_and_ordinary_text_are_not_controls() -> None:
    values = pd.Series(
        ["陕西省\t宝鸡市", "第一行\n第二行\r\n", "䶮堃", "😀 emoji", "", "naïve ½", None],
        dtype="string",
    )
    assert not control_characters(values).any()
    assert control_characters(pd.Series([], dtype="string")).tolist() == []


def test_controls_are_shown_as_visible_symbols() -> None:
    shown = show_controls(pd.Series(["张\x00三", "a\x1fb\x7f", "x\x85y", "t\tab"], dtype="string"))
    assert shown.tolist() == ["张␀三", "a␟b␡", "x\ufffdy", "t\tab"]


@pytest.mark.parametrize(
    ("column", "value", "expected_clean"),
    [
        ("name", "张\x00三", "张␀三"),
        ("name", "\x00张三", "␀张三"),
        ("id_number", vid("61032719900101123")[:10] + "\x00" + "1234567", None),
        ("relation", "户\x00主", "户␀主"),
        ("birth_date", "1990-01-01\x00", "1990-01-01␀"),
        ("ethnicity", "汉\x01族", "汉␁族"),
    ],
)
def test_a_control_character_makes_the_cell_defective(
    column: str, value: str, expected_clean: str | None
) -> None:
    raw = pd.Series([value, "正常"], dtype="string")
    norm = normalise_column(raw, REN.column(column), COMMON, exchange_date=DAY, excel=False)
    assert norm.defects.tolist()[0] == "control_character"
    assert pd.isna(norm.values.iloc[0])  # never loaded
    assert "\x00" not in norm.cleaned.iloc[0] and "\x01" not in norm.cleaned.iloc[0]
    if expected_clean is not None:
        assert norm.cleaned.iloc[0] == expected_clean


def test_a_tab_inside_free_text_is_kept() -> None:
    raw = pd.Series(["汉\t族"], dtype="string")
    norm = normalise_column(raw, REN.column("ethnicity"), COMMON, exchange_date=DAY, excel=False)
    assert norm.defects.isna().all() and norm.values.tolist() == ["汉\t族"]


# --- a roster with control characters, through validation and the real intake ------------------


def roster() -> list[dict[str, str]]:
    """20 persons in 10 households, every row valid."""
    rows = []
    for h in range(10):
        household = f"61032710020100{h:02d}"
        rows.append(
            {
                "household_id": household,
                "name": f"王{'一二三四五六七八九十'[h]}山",
                "id_number": vid(f"610327196001{h + 1:02d}{h:02d}1"),
                "relation": "户主",
                "ethnicity": "汉族",
            }
        )
        rows.append(
            {
                "household_id": household,
                "name": f"李{'一二三四五六七八九十'[h]}英",
                "id_number": vid(f"610327196202{h + 1:02d}{h:02d}2"),
                "relation": "配偶",
                "ethnicity": "汉族",
            }
        )
    return rows


def bad(control: str) -> dict[int, tuple[str, Callable[[str], str]]]:
    """Where `polluted` puts control characters: position -> (column, change)."""
    return {
        3: ("name", lambda v: v[0] + control + v[1:]),  # in a name
        7: ("ethnicity", lambda v: "汉\x01族"),  # SOH in free text
        12: ("id_number", lambda v: v[:9] + control + v[9:]),  # inside an id
    }


def polluted(control: str = "\x00") -> list[dict[str, str]]:
    rows = roster()
    for position, (column, change) in bad(control).items():
        rows[position] = rows[position] | {column: change(rows[position][column])}
    return rows


def test_validation_quarantines_the_row_and_names_the_column() -> None:
    rows = polluted()
    frame = pd.DataFrame(rows).astype("string")
    frame["source_row"] = range(2, 2 + len(frame))
    v = validate_rows(frame, REN, COMMON, exchange_date=DAY, excel=False)
    assert (v.rows_loaded, v.rows_quarantined, v.duplicates) == (17, 3, 0)
    got = v.rejects[["source_row", "column", "rule"]].values.tolist()
    assert got == [
        [5, "name", "control_character"],
        [9, "ethnicity", "control_character"],
        [14, "id_number", "control_character"],
    ]
    messages = v.rejects["message"].tolist()
    assert messages[0].startswith("姓名：含有不可见的控制字符")
    assert (
        messages[1] == "民族：含有不可见的控制字符（如 NUL，显示为 ␀），请清除后重新导出（汉␁族）"
    )
    assert messages[2].startswith("证件号码：含有不可见的控制字符")
    assert v.rejects["value_masked"].tolist()[:2] == ["李**英", "汉␁族"]
    for text in [*messages, *v.rejects["value_masked"].dropna()]:
        assert not control_characters(pd.Series([text], dtype="string")).any(), text
    assert not any(np.isin(v.accepted["source_row"], [5, 9, 14]))


def test_identical_rows_with_a_control_character_collapse() -> None:
    rows = polluted()
    rows.append(rows[3])
    frame = pd.DataFrame(rows).astype("string")
    frame["source_row"] = range(2, 2 + len(frame))
    v = validate_rows(frame, REN, COMMON, exchange_date=DAY, excel=False)
    assert (v.rows_loaded, v.rows_quarantined, v.duplicates) == (17, 3, 1)


FORMATS = {
    "csv-utf8": ("csv", "utf-8"),
    "csv-gb18030": ("csv", "gb18030"),
    "xlsx": ("xlsx", None),
    "json": ("json", "utf-8"),
    "csv-sub": ("csv", "utf-8"),
}


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


# NUL reaches validation in every format: a stray NUL costs its row, never the whole file (the
# reader refuses only a CSV that is mostly NUL bytes, i.e. UTF-16 without its BOM). \x1a (SUB,
# what some DOS-era exports append) is tried too.
CONTROL_IN = {"csv": "\x00", "xlsx": "\x00", "json": "\x00", "csv-sub": "\x1a"}


@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
def test_intake_quarantines_control_characters(
    engine: Engine, tmp_path: Path, fmt_name: str
) -> None:
    fmt, encoding = FORMATS[fmt_name]
    control = CONTROL_IN["csv-sub" if fmt_name == "csv-sub" else fmt]
    content = render_delivery(REN, polluted(control), fmt=fmt, encoding=encoding)
    if fmt == "json":
        assert b"\\u0000" in content
    elif fmt == "csv":
        assert control.encode(encoding or "utf-8") in content
    summary = take(engine, tmp_path, content, fmt)
    assert summary.status == "loaded", summary
    assert (summary.rows_in, summary.rows_loaded, summary.rows_rejected) == (20, 17, 3)

    def at(position: int) -> int:
        return source_row(fmt, REN.title_rows if fmt == "xlsx" else 0, position)

    rejects = ledger.rejects_frame(engine)
    got = sorted(
        zip(rejects["source_row"].astype(int), rejects["column"], rejects["rule"], strict=True)
    )
    assert got == sorted((at(p), c, "control_character") for p, (c, _) in bad(control).items())
    for text in [*rejects["message"], *rejects["value_masked"].dropna()]:
        assert not control_characters(pd.Series([text], dtype="string")).any(), text
    with engine.connect() as conn:
        current = current_rows(conn, "XC_REN")
    clean = roster()
    expected = {clean[p]["id_number"] for p in range(20) if p not in bad(control)}
    assert set(current["id_number"]) == expected and len(current) == 17
    for column in ("name", "ethnicity", "id_number"):
        assert not control_characters(current[column].astype("string")).any()


def test_a_utf16_csv_without_bom_is_refused_by_the_reader(engine: Engine, tmp_path: Path) -> None:
    utf8 = render_delivery(REN, roster(), fmt="csv", encoding="utf-8")
    content = utf8.decode("utf-8").encode("utf-16-le")  # no BOM: half the bytes are NUL
    summary = take(engine, tmp_path, content, "csv")
    assert summary.status == "failed" and summary.rows_loaded == 0
    assert summary.reason is not None and "UTF-16" in summary.reason


def take(engine: Engine, tmp_path: Path, content: bytes, fmt: str) -> IntakeSummary:
    name = f"XC_REN_{DAY:%Y%m%d}.{fmt}"
    ref = DeliveryRef("XC", "XC_REN", DAY, name, f"landing/XC/{name}")
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=False, secret=b"t"
    )
    return intake_delivery(ref, content, REN, COMMON, engine, options)
