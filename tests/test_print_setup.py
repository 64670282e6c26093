"""Published workbooks print (issue 14, item 4): A4 landscape, one page wide, the header row
repeated on every page, frozen below it, columns as wide as what they show and long text
wrapped in rows as high as its lines — read back with openpyxl."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cell_width import wrapped_lines, wrapped_lines_each
from expectations.divisions import town_order
from tasks.publication import town_summary
from warehouse.published import write_xlsx


def test_a_published_workbook_has_page_setup(tmp_path: Path) -> None:
    table = pa.table(
        {f"c{i}": pa.array([f"v{i}-{r}" for r in range(50)]) for i in range(30)}
        | {"n": pa.array(list(range(50)), type=pa.int64())}
    )
    labels = [f"列{i}" for i in range(30)] + ["数量"]
    path = tmp_path / "t.xlsx"
    write_xlsx(path, table, labels, sheet="结算明细", created=date(2025, 3, 16))
    ws = openpyxl.load_workbook(path).worksheets[0]
    assert ws.page_setup.orientation == "landscape"
    assert ws.page_setup.paperSize == 9
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert (ws.page_setup.fitToWidth or 1, ws.page_setup.fitToHeight) == (1, 0)
    assert ws.print_title_rows == "$1:$1"
    assert ws.freeze_panes == "A2"
    assert ws["AE2"].value == 0 and isinstance(ws["AE3"].value, int)  # numbers stay numbers


def test_rates_are_percentages_and_towns_in_division_order(tmp_path: Path) -> None:
    towns = [
        "温水镇",
        "城关镇",
        "东南镇",
        "八渡镇",
    ]  # code-point order would be 东南, 八渡, 城关, 温水
    hp = pd.DataFrame(
        {
            "household_id": [f"H{i}" for i in range(40)],
            "town": [towns[i % 4] for i in range(40)],
            "monitoring_category": ["脱贫不稳定户"] * 40,
            "risk_eliminated": [i % 3 == 0 for i in range(40)],
        }
    )
    pp = pd.DataFrame({"household_id": hp["household_id"], "in_roster": True, "deceased": False})
    alerts = pd.DataFrame({"status": pd.Series(dtype=str), "town": [], "risk_type": []})
    summary = town_summary(hp, pp, alerts)
    assert summary["town"].tolist() == ["城关镇", "八渡镇", "温水镇", "东南镇"]
    assert summary["town"].tolist() == town_order(towns)

    table = pa.table(
        {
            "town": pa.array(["城关镇"]),
            "elimination_rate_households": pa.array([0.3636]),
        }
    )
    path = tmp_path / "s.xlsx"
    write_xlsx(
        path, table, ["乡镇", "风险消除率（户）"], sheet="乡镇汇总", created=date(2025, 3, 16)
    )
    cell = openpyxl.load_workbook(path).worksheets[0]["B2"]
    assert cell.value == 0.3636 and cell.number_format == "0.0%"


def _shown(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def test_columns_fit_what_they_show_and_long_text_wraps(tmp_path: Path) -> None:
    reason = "身份证号第7-14位的出生日期不合理（不是真实日期，或早于1900年、晚于交换日期）"
    table = pa.table(
        {
            "person_key": ["9f" * 16, "a0" * 16],
            "town": ["新集川镇", "城关镇"],
            "reason": [reason, "必填项为空"],
            "open_alerts": pa.array([3, 12], type=pa.int64()),
            "self_burden": pa.array([164.0, 1283.19]),
        }
    )
    labels = ["人员标识", "乡镇", "说明", "未处置预警数（因务工就业不稳）", "个人负担"]
    path = tmp_path / "w.xlsx"
    write_xlsx(path, table, labels, sheet="问题数据", created=date(2025, 3, 16))
    ws = openpyxl.load_workbook(path).worksheets[0]
    width = {c: ws.column_dimensions[c].width for c in "ABCDE"}
    # nothing cut: a 32-character key and a town are wider than the old fixed 20 / narrower
    assert width["A"] >= 32 and _shown("新集川镇") <= width["B"] < 20
    # a long header wraps over lines instead of making a count column 30 wide
    assert width["D"] < _shown(labels[3]) / 2 and ws["D1"].alignment.wrap_text
    assert ws.row_dimensions[1].height >= 15 * -(-_shown(labels[3]) // int(width["D"]))
    # the long reason wraps within its column, in a row as high as its lines
    assert width["C"] < _shown(reason) and ws["C2"].alignment.wrap_text
    assert ws.row_dimensions[2].height >= 15 * -(-_shown(reason) // int(width["C"]))
    assert ws.row_dimensions[3].height is None  # one line: the default height
    assert ws["D2"].value == 3 and ws["D3"].value == 12  # numbers stay numbers
    # amounts with their cents in every row (164.00 under 1,283.19), as numbers
    assert ws["E2"].value == 164.0 and ws["E2"].number_format == "#,##0.00"
    assert width["E"] >= len("1,283.19")


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text()), max_size=30),
    column=st.floats(min_value=0, max_value=80, allow_nan=False),
)
def test_row_heights_are_counted_as_one_cell_at_a_time_would(
    texts: list[str | None], column: float
) -> None:
    """wrapped_lines_each (Arrow, a whole column) gives wrapped_lines of each text: CJK and
    other full-width characters two units, astral ones too, a missing text one line."""
    each = wrapped_lines_each(pa.array(texts, pa.string()), column)
    assert each.tolist() == [wrapped_lines(t or "", column) for t in texts]
