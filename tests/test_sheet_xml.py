"""write_xlsx's data rows, built by Arrow (warehouse.sheet_xml), against xlsxwriter writing the
same cells one call at a time (issue 13): every row, cell, value, escape, whitespace flag and
resolved style equal, and every other part of the workbook equal byte for byte."""

from __future__ import annotations

import io
import math
import zipfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warehouse.published import write_xlsx, xlsx_frame

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_LOCAL = timezone(timedelta(hours=8))
_LONG = "身份证号第7-14位的出生日期不合理（不是真实日期，或早于1900年、晚于交换日期）"


def _reference(table: pa.Table, labels: list[str], counts: set[str], note: str | None) -> bytes:
    """The workbook as xlsxwriter writes it cell by cell (write_xlsx's loop before issue 13)."""
    book = io.BytesIO()
    frame = xlsx_frame(book, table, labels, sheet="表", created=date(2025, 3, 16), counts=counts)
    sheet, plan = frame.sheet, frame.plan
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for row in range(table.num_rows):
        r = row + 1
        lines = int(plan.row_lines[row])
        if lines > 1:
            sheet.set_row(r, 15.0 * min(lines, plan.max_lines), frame.top)
        for col, kind in enumerate(plan.kinds):
            value = columns[col][row]
            shape = frame.formats[col]
            if value is None:
                continue
            if kind == "count" and value.isdecimal():
                sheet.write_number(r, col, int(value))
            elif kind == "count":
                sheet.write_string(r, col, value, frame.mark)
            elif kind in ("text", "wrapped"):
                sheet.write_string(r, col, value[:32767], shape)
            elif kind == "date":
                sheet.write_datetime(r, col, datetime.combine(value, time()), shape)
            elif kind == "timestamp":
                local = value.astimezone(_LOCAL).replace(tzinfo=None)
                sheet.write_datetime(r, col, local, shape)
            elif kind == "bool":
                sheet.write_string(r, col, "是" if value else "否")
            elif not (isinstance(value, float) and not math.isfinite(value)):
                sheet.write_number(r, col, value, shape)
    if note:
        sheet.write_string(table.num_rows + 2, 0, note)
    frame.workbook.close()
    return book.getvalue()


def _styles(styles: bytes) -> list[tuple[str, ...]]:
    """Each cell style (xf) as what it shows: number format, font, fill, border, alignment."""
    root = ET.fromstring(styles)
    formats = {f.get("numFmtId"): f.get("formatCode") for f in root.iter(f"{_NS}numFmt")}
    parts = {
        name: [ET.tostring(e) for e in root.find(f"{_NS}{name}s")]  # type: ignore[union-attr]
        for name in ("font", "fill", "border")
    }
    out = []
    for xf in root.find(f"{_NS}cellXfs"):  # type: ignore[union-attr]
        number = xf.get("numFmtId", "0")
        out.append(
            (
                formats.get(number, number),
                parts["font"][int(xf.get("fontId", "0"))].decode(),
                parts["fill"][int(xf.get("fillId", "0"))].decode(),
                parts["border"][int(xf.get("borderId", "0"))].decode(),
                b"".join(ET.tostring(a) for a in xf).decode(),
            )
        )
    return out


def _canonical(content: bytes) -> dict[str, object]:
    """A workbook with its style indices resolved to what they show."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    styles = _styles(parts.pop("xl/styles.xml"))
    root = ET.fromstring(parts.pop("xl/worksheets/sheet1.xml"))

    def shown(element: ET.Element) -> tuple[object, ...]:
        attrs = dict(element.attrib)
        for key in ("s", "style"):
            if key in attrs:
                attrs[key] = styles[int(attrs[key])]  # type: ignore[assignment]
        inner = tuple(ET.tostring(child) for child in element if child.tag != f"{_NS}c")
        return (element.tag, tuple(sorted(attrs.items(), key=str)), element.text, inner)

    sheet = []
    for element in root:
        if element.tag == f"{_NS}sheetData":
            for row in element:
                sheet.append(shown(row))
                sheet.extend(shown(c) for c in row)
        elif element.tag == f"{_NS}cols":
            sheet.extend(shown(c) for c in element)
        else:
            sheet.append(ET.tostring(element))  # type: ignore[arg-type]
    return {"sheet": sheet, **parts}


_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", " 前后空格 ", "\u3000全角空格", "a&b<c>d", "_x0041_", "\x01\x1f\r", _LONG]
    ),
    st.text(alphabet=st.sampled_from(["中", "文", " ", "\n", "&", "\U0001f600"]), max_size=60),
)


@st.composite
def _tables(draw: st.DrawFn) -> tuple[pa.Table, list[str], set[str], str | None]:
    n = draw(st.integers(0, 25))
    kinds = draw(
        st.lists(
            st.sampled_from(["text", "date", "stamp", "bool", "float", "rate", "int", "count"]),
            min_size=1,
            max_size=6,
        )
    )
    columns: dict[str, pa.Array] = {}
    counts = set()
    for i, kind in enumerate(kinds):

        def cells(strategy: st.SearchStrategy) -> list:  # type: ignore[type-arg]
            return draw(st.lists(st.one_of(st.none(), strategy), min_size=n, max_size=n))

        name = f"c{i}_{kind}"
        if kind == "text":
            columns[name] = pa.array(cells(_TEXT), pa.string())
        elif kind == "date":
            columns[name] = pa.array(cells(st.dates(date(1899, 12, 1), date(2100, 1, 1))))
        elif kind == "stamp":
            stamps = st.datetimes(
                datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)
            )
            columns[name] = pa.array(cells(stamps), pa.timestamp("us", tz="UTC"))
        elif kind == "bool":
            columns[name] = pa.array(cells(st.booleans()), pa.bool_())
        elif kind in ("float", "rate"):
            columns[name] = pa.array(cells(st.floats(width=64)), pa.float64())
        elif kind == "int":
            columns[name] = pa.array(cells(st.integers(-(2**62), 2**62)), pa.int64())
        else:
            counts.add(name)
            columns[name] = pa.array(
                cells(st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["<5", "", "²"]))),
                pa.string(),
            )
    labels = [draw(st.sampled_from(["名称", "未处置预警数（因务工就业不稳）", "x"])) for _ in kinds]
    note = draw(st.one_of(st.none(), st.just("注：<5 表示少于5人")))
    return pa.table(columns), labels, counts, note


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tables())
@example((pa.table({"reason": [_LONG, "必填项为空", None]}), ["说明"], set(), None))
@example((pa.table({"n": pa.array([], pa.string())}), ["数"], {"n"}, "注"))
def test_rows_by_arrow_are_the_rows_xlsxwriter_writes(
    tmp_path_factory: object, case: tuple[pa.Table, list[str], set[str], str | None]
) -> None:
    table, labels, counts, note = case
    path = Path(str(tmp_path_factory.mktemp("x"))) / "t.xlsx"  # type: ignore[attr-defined]
    write_xlsx(path, table, labels, sheet="表", created=date(2025, 3, 16), counts=counts, note=note)
    assert _canonical(path.read_bytes()) == _canonical(_reference(table, labels, counts, note))


def test_a_city_sized_sheet_reads_back(tmp_path: Path) -> None:
    """Thousands of rows with wrapped text, dates and a filter: openpyxl reads every value."""
    import openpyxl

    n = 5000
    rng = np.random.default_rng(3)
    evidence = [_LONG * int(k) for k in rng.integers(0, 3, n)]
    table = pa.table(
        {
            "alert_id": [f"A{i:06d}" for i in range(n)],
            "evidence": [e or None for e in evidence],
            "first_raised": pa.array([date(2025, 3, 1) + timedelta(days=i % 30) for i in range(n)]),
        }
    )
    path = tmp_path / "a.xlsx"
    write_xlsx(path, table, ["编号", "依据", "首次"], sheet="预警", created=date(2025, 3, 16))
    ws = openpyxl.load_workbook(path).worksheets[0]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == table["alert_id"].to_pylist()
    assert [r[1] for r in rows] == table["evidence"].to_pylist()
    assert [r[2].date() for r in rows] == table["first_raised"].to_pylist()
    assert ws.auto_filter.ref == f"A1:C{n + 1}"
    assert ws.dimensions == f"A1:C{n + 1}"
