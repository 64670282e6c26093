"""Rendering the figures: one self-contained HTML page (jinja2) and one XLSX workbook."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import xlsxwriter

from domain.cell_width import display_width, wrapped_lines
from tasks.reports.charts import chart_alert_trend, chart_elimination, chart_intake
from tasks.reports.common import COLUMNS, FONT_FAMILY, LIGHT_COLOURS, OVERDUE_DAYS, TOTAL, Kind
from tasks.reports.figures import HEADLINE_LABELS, ReportFigures

# --- rendering ------------------------------------------------------------------------------------


def _fmt(value: Any, kind: Kind) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return "—"
    if kind == "delta":
        return f"{int(value):+,}" if value else "0"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{float(value):,.2f}"
    if kind == "ratio":
        return f"{float(value):.1%}"
    if kind == "date":
        return f"{pd.Timestamp(value):%Y-%m-%d}"
    return str(value)


def _column(name: str) -> tuple[str, Kind]:
    if name in COLUMNS:
        return COLUMNS[name]
    return name, "int"  # rule columns of the trend table: counts


# Display width (CJK counts two) up to which a text cell never wraps: a code, a date, a town,
# the longest department name (人力资源和社会保障局); a longer reason wraps.
SHORT_TEXT = 20
SHORT_HEAD = 8  # a header up to this wide never wraps (a longer one wraps under its column)
WRAP_WIDTH = 36.0  # an XLSX column no wider than this: longer text wraps within it
LINE_HEIGHT = 15.0  # points per line of an XLSX row (xlsxwriter's default row height)
TITLE_ROWS = 2  # a section sheet's title and the blank row under it


def _html_table(frame: pd.DataFrame) -> dict[str, Any]:
    # a short header (a rule's number heads a trend column) on one line too: "YB-01", not "YB-/01"
    heads = [(_column(c)[0], _column(c)[1]) for c in frame.columns]
    short_heads = [display_width(head) <= SHORT_HEAD for head, _ in heads]
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for (_, kind), value, col in zip(heads, record, frame.columns, strict=True):
            text = _fmt(value, kind)
            cells.append(
                {
                    "text": text,
                    "num": kind != "text" and kind != "date",
                    # codes, towns, departments and dates on one line ("YB-01", not "YB-/01");
                    # a long reason still wraps
                    "short": kind == "date"
                    or (kind == "text" and display_width(text) <= SHORT_TEXT),
                    "light": value if col == "light" else None,
                }
            )
        rows.append({"cells": cells, "total": str(record[0]) == TOTAL})
    return {"heads": list(zip(heads, short_heads, strict=True)), "rows": rows}


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parents[1] / "report_templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_html(figures: ReportFigures) -> str:
    """The report as one self-contained HTML page (no external script, style, font or image)."""
    charts = {
        "交换接收": chart_intake(figures.intake, figures.intake_days, figures.period),
        "风险预警": chart_alert_trend(figures.alerts_trend),
        "监测对象": chart_elimination(figures.monitoring_by_town.iloc[:-1]),
    }
    sections = [
        {
            "title": title,
            "chart": charts.get(title),
            "tables": [{"title": t, **_html_table(f)} for t, f in tables],
        }
        for title, tables in figures.sections()
    ]
    headline = [
        (label, _fmt(figures.headline[k], kind)) for k, (label, kind) in HEADLINE_LABELS.items()
    ]
    return _ENV.get_template("report.html.j2").render(
        period=figures.period,
        data_end=figures.data_end,
        kind=figures.period.report_kind,
        headline=headline,
        sections=sections,
        notes=figures.notes,
        # our own constant, `| safe` in the template: escaped quotes (&#34;) void the declaration
        font_family=", ".join(f'"{f}"' if " " in f else f for f in FONT_FAMILY),
        colours=LIGHT_COLOURS,
        overdue_days=OVERDUE_DAYS,
    )


def render_xlsx(figures: ReportFigures) -> bytes:
    """The report as XLSX: 概览 then one sheet per section; numbers as numbers, dates as dates."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "nan_inf_to_errors": False})
    # A fixed creation date keeps the file byte-identical for the same figures.
    stamp = datetime(figures.period.end.year, figures.period.end.month, figures.period.end.day)
    book.set_properties(
        {
            "title": f"{figures.period.title}防返贫动态监测{figures.period.report_kind}",
            "author": "datashare",
            "created": stamp,
        }
    )
    fmt = {
        "title": book.add_format({"bold": True, "font_size": 14}),
        "sub": book.add_format({"bold": True, "font_size": 11}),
        "head": book.add_format(
            {
                "bold": True,
                "bg_color": "#e3f2fd",
                "border": 1,
                "text_wrap": True,
                "valign": "vcenter",
            }
        ),
        "text": book.add_format({"border": 1, "text_wrap": True, "valign": "top"}),
        "wrap": book.add_format({"text_wrap": True, "valign": "top"}),
        # top-aligned like the text: a row grown for a wrapped reason reads on its first line
        "int": book.add_format({"border": 1, "num_format": "#,##0", "valign": "top"}),
        "money": book.add_format({"border": 1, "num_format": "#,##0.00", "valign": "top"}),
        "ratio": book.add_format({"border": 1, "num_format": "0.0%", "valign": "top"}),
        "delta": book.add_format({"border": 1, "num_format": "+#,##0;-#,##0;0", "valign": "top"}),
        "date": book.add_format({"border": 1, "num_format": "yyyy-mm-dd", "valign": "top"}),
        "note": book.add_format({"italic": True, "font_color": "#555555"}),
    }
    sheet = book.add_worksheet("概览")
    sheet.write_string(
        0,
        0,
        f"{figures.period.title} 防返贫动态监测{figures.period.report_kind}",
        fmt["title"],
    )
    sheet.write_string(1, 0, f"数据截至 {figures.data_end:%Y-%m-%d}", fmt["note"])
    sheet.write_row(3, 0, ["指标", "数值"], fmt["head"])
    for i, (key, (head, kind)) in enumerate(HEADLINE_LABELS.items(), start=4):
        sheet.write_string(i, 0, head, fmt["text"])
        _write_cell(sheet, i, 1, figures.headline[key], kind, fmt)
    for j, note in enumerate(figures.notes, start=5 + len(HEADLINE_LABELS)):
        sheet.write_string(j, 0, note, fmt["note"])
    sheet.set_column(0, 0, 34)
    sheet.set_column(1, 1, 14)
    _page_setup(sheet, header_row=3, first_col=0)

    for title, tables in figures.sections():
        sheet = book.add_worksheet(title)
        sheet.write_string(0, 0, title, fmt["title"])
        row, widths = 2, {0: 10.0}
        texts: dict[int, list[tuple[int, str]]] = {}  # row -> its text cells (column, text)
        for sub, frame in tables:
            sheet.write_string(row, 0, sub, fmt["sub"])
            row += 1
            heads = [_column(c) for c in frame.columns]
            sheet.write_row(row, 0, [h[0] for h in heads], fmt["head"])
            sheet.set_row(row, 30)
            row += 1
            for record in frame.itertuples(index=False):
                for col, (value, (_, kind)) in enumerate(zip(record, heads, strict=True)):
                    _write_cell(sheet, row, col, value, kind, fmt)
                    shown = _fmt(value, kind)
                    widths[col] = max(widths.get(col, 8.0), display_width(shown) + 1.5)
                    if kind == "text":
                        texts.setdefault(row, []).append((col, shown))
                row += 1
            for col, (head, _) in enumerate(heads):
                # headers wrap (two lines of 30 pt): half their width is enough
                widths[col] = max(widths.get(col, 8.0), display_width(head) / 2 + 1.5)
            if frame.empty:
                sheet.write_string(row, 0, "（无）", fmt["note"])
                row += 1
            row += 1
        # Wide enough for what is shown, but a long reason wraps instead of widening the
        # page (fit to width would shrink every column to unreadable).
        for col, width in widths.items():
            sheet.set_column(
                col, col, min(width, WRAP_WIDTH), fmt["wrap"] if width > WRAP_WIDTH else None
            )
        # A wrapped reason needs its lines' height: neither Excel nor LibreOffice grows a row
        # written with a height, and xlsxwriter's default one line prints over the next row.
        for r, cells in texts.items():
            lines = max(wrapped_lines(text, min(widths[c], WRAP_WIDTH)) for c, text in cells)
            if lines > 1:
                sheet.set_row(r, LINE_HEIGHT * lines)
        # One table: its header repeats on every printed page and stays frozen. Several
        # tables: the first one's header above another table's rows would mislabel them, so
        # only the sheet's title repeats (frozen below it, right of every table's row label).
        _page_setup(sheet, header_row=3 if len(tables) == 1 else None, first_col=1)
    book.close()
    return buf.getvalue()


def _page_setup(sheet: Any, header_row: int | None, first_col: int) -> None:
    """A4 landscape, one page wide, the title and the table's header (header_row; None: the
    title only) repeated on every printed page, and frozen below them (and right of the
    town/department column)."""
    sheet.set_paper(9)  # A4
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    last = TITLE_ROWS - 1 if header_row is None else header_row
    sheet.repeat_rows(0, last)
    sheet.freeze_panes(last + 1, first_col)
    sheet.set_footer("&C第 &P 页，共 &N 页")


def _write_cell(
    sheet: Any, row: int, col: int, value: Any, kind: Kind, fmt: dict[str, Any]
) -> None:
    missing = value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value))
    if missing:
        sheet.write_blank(row, col, None, fmt[kind if kind != "text" else "text"])
    elif kind == "date":
        sheet.write_datetime(row, col, pd.Timestamp(value).to_pydatetime(), fmt["date"])
    elif kind in ("int", "delta", "money", "ratio"):
        sheet.write_number(row, col, float(value), fmt[kind])
    else:
        sheet.write_string(row, col, str(value), fmt["text"])
