"""Published workbooks print (issue 14, item 4): A4 landscape, one page wide, the header row
repeated on every page, frozen below it — read back with openpyxl."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa

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
