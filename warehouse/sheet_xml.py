"""A published table's data rows as worksheet XML, built by Arrow a column at a time (issue 13).

    data_rows(table, plan) -> bytes     the <row> elements of rows 2…n+1, as xlsxwriter writes
                                        them in its constant-memory mode: inline strings, the
                                        same cell styles, row heights, escapes and number text
    insert_rows(book, rows, last)       the workbook `book` (xlsxwriter's, header and note
                                        only) with `rows` after its header row

Why: xlsxwriter spends ~150 µs of Python per cell; the XC alert workbook (74k × 16) took 11 s of
CPU a night and the night's workbooks about a fifth of its CPU. Here text cells, dates and the
row frame are joined by Arrow's string kernels; numbers, booleans, timestamps and counts (few,
or small tables) are formatted cell by cell exactly as xlsxwriter formats them. xlsxwriter
still writes everything else (styles, columns, page setup, filter, header, note), so the two
cannot drift apart on what a person sees; tests/test_sheet_xml.py holds every cell, row and
style equal to xlsxwriter's own output.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from xlsxwriter.utility import (  # xlsxwriter's own rules, so that the cells cannot drift
    _datetime_to_excel_datetime,
    _preserve_whitespace,
    _utf16_len,
    _utf16_truncate,
    xl_col_to_name,
    xl_rowcol_to_cell,
)
from xlsxwriter.xmlwriter import XMLwriter

from domain.arrow_text import offsets_and_bytes, text_array

SHEET = "xl/worksheets/sheet1.xml"
_MAX_TEXT = 32767  # Excel's limit, in UTF-16 units
# xlsxwriter's escapes of inline text (xmlwriter.py): an existing _xHHHH_ keeps its underscore
# escaped, a control character becomes _xHHHH_, U+FFFE/U+FFFF likewise.
_NEEDS_CONTROL_ESCAPE = r"_x[0-9a-fA-F]{4}_|[\x{0}-\x{8}\x{b}-\x{1f}\x{fffe}\x{ffff}]"
# Python's \s (str patterns), which xlsxwriter's whitespace test uses, spelled for RE2.
_SPACE = (
    r"[\t\n\x{b}\x{c}\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}]"
)
_PRESERVE = f"^{_SPACE}|{_SPACE}$"
_SEP = pa.scalar("", pa.large_string())  # binary_join_element_wise's separator: none
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"/>')


@dataclass(frozen=True)
class SheetPlan:
    """How a table's cells are shown: per column its kind (text, wrapped, count, bool, date,
    timestamp, number) and style (xf index or None), the row heights and the row style."""

    kinds: Sequence[str]
    styles: Sequence[int | None]  # a cell's own style; None: its row's, else its column's
    column_styles: Sequence[int | None]
    row_lines: np.ndarray  # lines per data row; a row above one line gets `row_style`
    row_style: int
    mark_style: int  # a count column's mark ("<5")
    max_lines: int
    line_points: float


def data_rows(table: pa.Table, plan: SheetPlan, local: tzinfo) -> tuple[bytes, int]:
    """The <row> elements of the table's rows, the first at sheet row 2; and how many rows
    down the last one holding a cell is (0: none)."""
    n = table.num_rows
    if not n or not table.num_columns:
        return b"", 0
    numbers = pc.cast(pa.array(np.arange(2, n + 2, dtype=np.int64)), pa.large_string())
    tall = plan.row_lines > 1
    row_s = _text(np.where(tall, f' s="{plan.row_style}"', "")) if tall.any() else None
    cells = []
    for c in range(table.num_columns):
        style = plan.styles[c]
        s: pa.Array | pa.Scalar
        if style is not None:
            s = _scalar(f' s="{style}"')
        else:
            fallback = plan.column_styles[c]
            default = _scalar("" if fallback is None else f' s="{fallback}"')
            s = default if row_s is None else pc.if_else(tall, row_s, default)
        head = (_scalar('<c r="'), _scalar(xl_col_to_name(c)), numbers, _scalar('"'))
        cells.append(_cells(table.column(c), plan.kinds[c], head, s, plan.mark_style, local))
    attrs = _scalar("")
    if tall.any():
        heights = _row_heights(plan)
        shown = np.minimum(plan.row_lines, plan.max_lines)
        attrs = _text(np.array([heights.get(int(k), "") for k in shown.tolist()], dtype=object))
    opening = pc.binary_join_element_wise(_scalar('<row r="'), numbers, attrs, _scalar('">'), _SEP)
    body = pc.binary_join_element_wise(*cells, _SEP)
    rows = pc.binary_join_element_wise(opening, body, _scalar("</row>"), _SEP)
    empty = pc.equal(body, "").to_numpy(zero_copy_only=False)
    if empty.any():  # a row without a cell has no element (nor a height: 1 line)
        rows = pc.if_else(pa.array(empty), _scalar(""), rows)
    filled = np.flatnonzero(~empty)
    return _buffer(rows), int(filled[-1]) + 1 if len(filled) else 0


def _scalar(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _text(values: object) -> pa.Array:
    return pa.array(values, pa.large_string())


def _row_heights(plan: SheetPlan) -> dict[int, str]:
    """The attributes of a row `lines` high, as xlsxwriter's set_row writes them."""
    out = {}
    for lines in range(2, plan.max_lines + 1):
        pixels = int(plan.line_points * lines * 4.0 / 3.0 + 0.5)
        out[lines] = (
            f'" s="{plan.row_style}" customFormat="1" ht="{pixels * 0.75:.16g}" customHeight="1'
        )
    return out


def _cells(
    column: pa.ChunkedArray,
    kind: str,
    head: tuple[pa.Scalar, ...],
    style: pa.Array | pa.Scalar,
    mark_style: int,
    local: tzinfo,
) -> pa.Array:
    """One column's <c> elements, "" where the cell is empty."""
    column = column.combine_chunks()
    if kind in ("text", "wrapped"):
        text, preserve = _inline_text(column)
        space = pc.if_else(preserve, _scalar(' xml:space="preserve"'), _scalar(""))
        joined = pc.binary_join_element_wise(
            *head,
            style,
            _scalar(' t="inlineStr"><is><t'),
            space,
            _scalar(">"),
            text,
            _scalar("</t></is></c>"),
            _SEP,
        )
    elif kind == "date":
        days = column.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        days = np.nan_to_num(days).astype(np.int64) + 25568  # days since 1899-12-31
        serial = np.where(days > 59, days + 1, days)  # Excel's 1900 leap day
        value = pa.array(serial, mask=column.is_null().to_numpy(zero_copy_only=False))
        joined = pc.binary_join_element_wise(
            *head, style, _scalar("><v>"), value.cast(pa.large_string()), _scalar("</v></c>"), _SEP
        )
    else:
        values = column.to_pylist()
        if kind == "count":  # a count is a number; a mark ("<5") is text set apart
            marks = [None if v is None or v.isdecimal() else f' s="{mark_style}"' for v in values]
            style = pc.coalesce(_text(marks), style)
        joined = pc.binary_join_element_wise(
            *head, style, _text([_python_cell(v, kind, local) for v in values]), _SEP
        )
    return joined.fill_null(_scalar(""))


def _python_cell(value: Any, kind: str, local: tzinfo) -> str | None:
    """The rest of a <c> element after its style, for the cells formatted one by one."""
    if value is None:
        return None
    if kind == "count":
        if value.isdecimal():  # int() reads it (isdigit: also "²")
            return f"><v>{int(value):.16G}</v></c>"
        return _inline(value)
    if kind == "bool":
        return _inline("是" if value else "否")
    if kind == "timestamp":
        shown = value.astimezone(local).replace(tzinfo=None)
        return f"><v>{_datetime_to_excel_datetime(shown, False, False):.16G}</v></c>"
    if isinstance(value, float) and not math.isfinite(value):  # NaN, ±inf: no number to show
        return None
    return f"><v>{value:.16G}</v></c>"


def _inline(text: str) -> str:
    text = XMLwriter._escape_control_characters(text)
    space = ' xml:space="preserve"' if _preserve_whitespace(text) else ""
    return f' t="inlineStr"><is><t{space}>{_escape(text)}</t></is></c>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inline_text(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Text cells as xlsxwriter writes them inline: cut to Excel's limit, control characters
    escaped, XML escaped; and whether the text keeps its edge whitespace."""
    column = column.cast(pa.large_string())
    long = pc.greater(pc.utf8_length(column), _MAX_TEXT // 2).fill_null(False)
    special = pc.or_(long, pc.match_substring_regex(column, _NEEDS_CONTROL_ESCAPE)).fill_null(False)
    if pc.any(special).as_py():  # rare: those cells the slow, exact way
        values = column.to_pylist()
        for i in np.flatnonzero(special.to_numpy(zero_copy_only=False)):
            values[i] = XMLwriter._escape_control_characters(_cut(values[i]))
        column = pa.array(values, pa.large_string())
    preserve = pc.match_substring_regex(column, _PRESERVE).fill_null(False)
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        column = pc.replace_substring(column, raw, escaped)
    return column, preserve


def _cut(text: str) -> str:
    """A long text as written: the writer's cut at 32,767 characters, then xlsxwriter's own at
    32,767 UTF-16 units (never inside a pair)."""
    text = text[:_MAX_TEXT]
    return _utf16_truncate(text, _MAX_TEXT) if _utf16_len(text) > _MAX_TEXT else text


def _buffer(rows: pa.Array) -> bytes:
    """The concatenated values of a string array (nulls are empty)."""
    offsets, data = offsets_and_bytes(text_array(rows.fill_null(_scalar(""))))
    return data[offsets[0] : offsets[-1]].tobytes()


def insert_rows(book: bytes, rows: bytes, last_row: int, last_col: int) -> bytes:
    """`book` (an xlsxwriter workbook with the header row and perhaps a note) with `rows` right
    after the header and the sheet's dimension covering them; every other part unchanged."""
    if not rows:
        return book
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(book)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == SHEET:
                end = data.index(b"</row>") + len(b"</row>")
                ref = f'<dimension ref="A1:{xl_rowcol_to_cell(last_row, last_col)}"/>'.encode()
                data = _DIMENSION.sub(ref, data[:end], count=1) + rows + data[end:]
            target.writestr(info, data)
    return out.getvalue()
