"""Read a delivered file (CSV, XLSX, JSON) into text columns named after its contract.

    read_delivery(content, file_name, contract, common) -> RawDelivery

Every value comes out as text (pandas ``string``, an empty cell is NA): nothing passes through a
float, so an id keeps all its digits. The normaliser (tasks/normalise.py) does the rest.

What every format gets:

* the format is taken from the file extension, not from the contract (a department may switch);
* the header row is found by name: among the first ``HEADER_SCAN_ROWS`` rows, the one that
  matches the most contract headers or aliases (NFKC, whitespace and zero-width characters
  removed) and at least one required column; rows above it are title rows. Columns are matched
  by header or alias, never by position; a contract column matched twice is a layout error;
* trailing rows that are blank or whose first non-empty cell starts with a footer marker
  (合计, 填报人, 制表时间 …, ``common.footer_markers``) are dropped and counted; a fully blank
  row inside the data is skipped and counted;
* ``source_row`` is the row number a person sees when opening the file in Excel/WPS: title and
  header rows count, the first row is 1. For CSV that is the record number: a quoted value that
  spans several lines is still one row, as Excel shows it. For JSON it is the 1-based position
  in the array.

CSV: the encoding is detected (UTF-8 BOM, else strict UTF-8, else strict GB18030; GB2312/GBK are
read as GB18030, their superset). The data is parsed by Arrow's multi-threaded CSV reader, with
GB18030 transcoded on the fly; files the fast reader cannot number exactly (empty lines, rows
with a different number of fields, unbalanced quotes) go through Python's csv module instead,
with the same result.

XLSX: the first sheet, read with python-calamine. Numbers become plain digits (an integral
float is never written in scientific notation and never rounded through int(float)); real Excel
date cells become ``YYYY-MM-DD`` (with `` HH:MM:SS`` when a time is present); serial numbers in
number cells stay digits (the normaliser reads them as dates for xlsx deliveries).

JSON: a top-level array of objects keyed by the headers; numbers as text the same way, true/false
as ``true``/``false``, null as NA. Every element is a delivered row (JSON has no title, footer or
blank rows). A column is missing when no object has its key; an empty array misses nothing.

Errors name the department, dataset, file and, where known, the row; never a cell value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from datashare.errors import LayoutError, UnreadableDelivery
from expectations.contract import Common, Contract

__all__ = ["FORMATS", "HEADER_SCAN_ROWS", "RawDelivery", "header_key", "read_delivery"]

FORMATS = ("csv", "xlsx", "json")
HEADER_SCAN_ROWS = 10  # the spec allows 0-3 title rows; leave room for blank lines and notes
_BOM = b"\xef\xbb\xbf"
# Characters that are not there for a reader: removed from headers and footer markers.
_INVISIBLE_RE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff\u00ad]+")
# A cell holding only these is empty (whitespace, NBSP, ideographic space, zero-width).
_BLANK_PATTERN = r"^[\s\x{00a0}\x{3000}\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}\x{00ad}]*$"


@dataclass(frozen=True)
class RawDelivery:
    """A delivery as read: text columns named after the contract, and what the reader saw."""

    frame: pd.DataFrame  # contract columns found (canonical names, text, NA = empty) + source_row
    fmt: str  # 'csv' | 'xlsx' | 'json'
    encoding: str | None  # 'utf-8', 'utf-8-sig' or 'gb18030' for CSV; None otherwise
    header_row: int  # 1-based row of the header as a person sees it (0 for JSON)
    missing_columns: tuple[str, ...]  # contract columns absent from the header
    extra_columns: tuple[str, ...]  # delivered headers no contract column knows (schema drift)
    footer_rows: int  # trailing footer and blank rows dropped
    blank_rows: int  # fully blank rows skipped inside the data


@dataclass(frozen=True)
class _Where:
    dept: str
    dataset: str
    source_file: str

    def unreadable(self, reason: str, *, row: int | None = None) -> UnreadableDelivery:
        return UnreadableDelivery(
            reason,
            dept=self.dept,
            dataset=self.dataset,
            source_file=self.source_file,
            row=row,
            rule="unreadable",
        )

    def layout(
        self, reason: str, *, row: int | None = None, column: str | None = None
    ) -> LayoutError:
        return LayoutError(
            reason,
            dept=self.dept,
            dataset=self.dataset,
            source_file=self.source_file,
            row=row,
            column=column,
            rule="layout",
        )


@dataclass(frozen=True)
class _Header:
    """Which delivered column feeds which contract column."""

    positions: dict[str, int]  # canonical name -> 0-based column position in the file
    missing: tuple[str, ...]
    extra: tuple[str, ...]


def read_delivery(
    content: bytes, file_name: str, contract: Contract, common: Common
) -> RawDelivery:
    """Read one delivered file into text columns named after the contract's columns."""
    where = _Where(contract.dept, contract.dataset, file_name)
    fmt = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if fmt not in FORMATS:
        raise where.unreadable(f"不支持的文件格式：.{fmt}（应为 .csv、.xlsx 或 .json）")
    if not content:
        raise where.unreadable("文件为空")
    if fmt == "csv":
        return _read_csv(content, contract, common, where)
    if fmt == "xlsx":
        return _read_xlsx(content, contract, common, where)
    return _read_json(content, contract, where)


# --- headers, footers, blank rows ---------------------------------------------------------------


def header_key(text: object) -> str:
    """A header as compared: NFKC, whitespace and zero-width characters removed, case folded."""
    return _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", str(text))).casefold()


def _header_index(contract: Contract) -> dict[str, str]:
    index: dict[str, str] = {}
    for column in contract.columns:
        for header in column.headers:
            index.setdefault(header_key(header), column.name)
    return index


def _required(contract: Contract) -> set[str]:
    return set(contract.required_columns) or set(contract.column_names)


def _map_header(
    cells: Sequence[str | None], contract: Contract, where: _Where, row: int | None
) -> _Header:
    index = _header_index(contract)
    positions: dict[str, int] = {}
    extra: list[str] = []
    for i, cell in enumerate(cells):
        if cell is None or not (key := header_key(cell)):
            continue  # an unnamed column (Excel pads rows with empty cells)
        name = index.get(key)
        if name is None:
            if cell.strip() not in extra:
                extra.append(cell.strip())
        elif name in positions:
            raise where.layout(
                f"表头重复：“{contract.column(name).header}”出现了两次", row=row, column=name
            )
        else:
            positions[name] = i
    missing = tuple(c for c in contract.column_names if c not in positions)
    return _Header(positions, missing, tuple(extra))


def _locate_header(
    rows: Sequence[Sequence[str | None]], contract: Contract, where: _Where
) -> tuple[int, _Header]:
    """The 0-based index of the header among `rows` and its column mapping."""
    index = _header_index(contract)
    required = _required(contract)
    best: tuple[int, int] | None = None
    for i, cells in enumerate(rows[:HEADER_SCAN_ROWS]):
        matched = {index[k] for c in cells if c is not None and (k := header_key(c)) in index}
        if matched & required and (best is None or len(matched) > best[1]):
            best = (i, len(matched))
    if best is None:
        wanted = "、".join(contract.column(c).header for c in contract.required_columns[:3])
        raise where.layout(f"找不到表头行：前{HEADER_SCAN_ROWS}行中没有一行含必需列（如 {wanted}）")
    return best[0], _map_header(rows[best[0]], contract, where, row=best[0] + 1)


def _marker_keys(common: Common) -> tuple[str, ...]:
    return tuple(k for m in common.footer_markers if (k := header_key(m)))


def _is_footer(cells: Iterable[str | None], markers: tuple[str, ...]) -> bool:
    """A blank row, or one whose first non-empty cell starts with a footer marker."""
    for cell in cells:
        if cell is not None and (key := header_key(cell)):
            return key.startswith(markers)
    return True


def _count_footer(
    rows: Sequence[Sequence[str | None]], start: int, markers: tuple[str, ...]
) -> int:
    """How many rows at the end of rows[start:] are footer or blank rows."""
    n = 0
    while len(rows) - n > start and _is_footer(rows[len(rows) - n - 1], markers):
        n += 1
    return n


def _blank_mask(columns: Sequence[pa.ChunkedArray | pa.Array], n: int) -> np.ndarray:
    """True for rows whose every cell is null or holds only whitespace/invisible characters."""
    candidates = np.arange(n)
    for column in columns:
        if not len(candidates):
            break
        cells = column if len(candidates) == n else column.take(pa.array(candidates))
        blank = pc.or_kleene(
            pc.is_null(cells), pc.match_substring_regex(cells, _BLANK_PATTERN)
        ).fill_null(True)
        candidates = candidates[blank.to_numpy(zero_copy_only=False)]
    mask = np.zeros(n, dtype=bool)
    mask[candidates] = True
    return mask


def _assemble(
    columns: Sequence[pa.ChunkedArray | pa.Array], header: _Header, first_row: int, n: int
) -> tuple[pd.DataFrame, int]:
    """The frame of contract columns plus source_row, blank rows dropped; and their count."""
    source_row = np.arange(first_row, first_row + n, dtype=np.int64)
    blank = _blank_mask(columns, n) if columns else np.zeros(n, dtype=bool)
    keep = None if not blank.any() else pa.array(~blank)
    data: dict[str, Any] = {}
    for name, position in header.positions.items():
        column = columns[position]
        if keep is not None:
            column = column.filter(keep)
        data[name] = pd.array(_as_string(column), dtype="string")
    data["source_row"] = source_row[~blank]
    return pd.DataFrame(data), int(blank.sum())


def _as_string(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    # pandas keeps its strings as large_string: hand them over as such, in one piece (the
    # normaliser works on contiguous arrays: combined here once, a column whose cleaning
    # changes nothing then shares this memory instead of holding a second copy).
    if column.type != pa.large_string():
        column = column.cast(pa.large_string())
    if isinstance(column, pa.ChunkedArray) and column.num_chunks > 1:
        column = pa.chunked_array([column.combine_chunks()], type=column.type)
    return column


def _order(header: _Header, contract: Contract) -> _Header:
    """The mapping with contract column order (frames come out in contract order)."""
    ordered = {c: header.positions[c] for c in contract.column_names if c in header.positions}
    return _Header(ordered, header.missing, header.extra)


def _rows_to_columns(rows: Sequence[Sequence[str | None]], width: int) -> list[pa.Array]:
    """Column-wise Arrow string arrays from text rows (rows already padded to `width`)."""
    if not rows:
        return [pa.array([], pa.large_string()) for _ in range(width)]
    return [pa.array(col, pa.large_string()) for col in zip(*rows, strict=True)]


# --- CSV ------------------------------------------------------------------------------------------


def _detect_encoding(content: bytes) -> tuple[bytes, str, str]:
    """(bytes without BOM, reported encoding, codec to decode them)."""
    if content.startswith(_BOM):
        return content[len(_BOM) :], "utf-8-sig", "utf-8"
    if _is_utf8(content):
        return content, "utf-8", "utf-8"
    return content, "gb18030", "gb18030"


def _is_utf8(data: bytes) -> bool:
    """Strict UTF-8 check without building a Python str (Arrow validates in place)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    arr = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _undecodable(data: bytes, offset: int, codec: str, where: _Where) -> UnreadableDelivery:
    """The error for text that does not decode, with the line where decoding failed.

    Without a BOM the file was read as GB18030 because it is not UTF-8; a UTF-8 file with one
    broken byte fails as GB18030 on its first line already. The codec that got further is the
    one the file was written in, and its failure is the line to show.
    """
    codecs = (codec, "utf-8") if codec == "gb18030" else (codec,)
    failures = [_decode_failure(data, c) for c in codecs]
    starts = [f for f in failures if f is not None]
    line = data[: max(starts) if starts else offset].count(b"\n") + 1
    return where.unreadable(
        f"文件编码无法识别：第{line}行附近的内容既不是 UTF-8 也不是 GB18030，请另存为 UTF-8 或 "
        "GB18030 编码的 CSV 后重新报送",
        row=line,
    )


def _decode_failure(data: bytes, codec: str) -> int | None:
    try:
        data.decode(codec)
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _csv_head(data: bytes, codec: str, where: _Where) -> tuple[list[list[str]], list[int]]:
    """The first records of the file and the byte offset where each of them ends."""
    offsets: list[int] = []

    def lines() -> Iterator[str]:
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl + 1
            try:
                line = data[pos:end].decode(codec)
            except UnicodeDecodeError as exc:
                raise _undecodable(data, pos + exc.start, codec, where) from None
            offsets.append(end)
            yield line
            pos = end

    records: list[list[str]] = []
    ends: list[int] = []
    reader = csv.reader(lines())
    try:
        for record in reader:
            records.append(record)
            ends.append(offsets[reader.line_num - 1])
            if len(records) > HEADER_SCAN_ROWS:
                break
    except csv.Error as exc:
        raise where.unreadable(f"CSV 格式错误：{exc}", row=reader.line_num) from None
    return records, ends


def _csv_footer(data: bytes, start: int, codec: str, markers: tuple[str, ...]) -> tuple[int, int]:
    """(end of the data in bytes, footer rows) found by reading lines back from the end."""
    pos, footers = len(data), 0
    while pos > start:
        stop = pos - 1 if data[pos - 1] == 0x0A else pos
        begin = max(data.rfind(b"\n", start, stop) + 1, start)
        line = data[begin:stop]
        if line.count(b'"') % 2:
            break  # part of a quoted multi-line value: leave it to the parser
        try:
            cells = next(csv.reader([line.decode(codec).rstrip("\r")]), [])
        except (UnicodeDecodeError, csv.Error):
            break
        if not _is_footer(cells, markers):
            break
        footers += 1
        pos = begin
    return pos, footers


def _read_csv(content: bytes, contract: Contract, common: Common, where: _Where) -> RawDelivery:
    data, encoding, codec = _detect_encoding(content)
    if encoding == "utf-8-sig" and not _is_utf8(data):
        # A BOM promises UTF-8; Arrow does not check it (check_utf8=False) and would let the
        # broken bytes through into the columns.
        raise _undecodable(data, 0, codec, where)
    markers = _marker_keys(common)
    records, ends = _csv_head(data, codec, where)
    h, header = _locate_header(records, contract, where)
    header = _order(header, contract)
    width = len(records[h])
    start = ends[h]
    end, footers = _csv_footer(data, start, codec, markers)
    quotes = data.count(b'"', start, end)
    if footers and quotes % 2:
        end, footers = len(data), 0  # the footer scan cut a quoted value; let the parser decide
        quotes = data.count(b'"', start, end)
    first_row = h + 2
    # An odd number of quotes may be a value left open to the end of the file, which Arrow
    # would silently take as one cell holding every remaining row: only the exact reader tells.
    odd_quotes = quotes % 2 == 1
    table = None if odd_quotes else _parse_fast(data, start, end, codec, width, where)
    if table is not None:
        frame, blanks = _assemble(table.columns, header, first_row, table.num_rows)
    else:
        rows, tail = _parse_slow(
            data,
            start,
            end,
            codec,
            width,
            markers,
            where,
            first_row=first_row,
            footer_done=footers > 0,
        )
        footers += tail
        frame, blanks = _assemble(_rows_to_columns(rows, width), header, first_row, len(rows))
    return RawDelivery(frame, "csv", encoding, h + 1, header.missing, header.extra, footers, blanks)


def _parse_fast(
    data: bytes, start: int, end: int, codec: str, width: int, where: _Where
) -> pa.Table | None:
    """Parse data[start:end] with Arrow; None when it needs the exact (slow) reader."""
    names = [f"c{i}" for i in range(width)]
    if end <= start:
        return pa.table({n: pa.array([], pa.large_string()) for n in names})
    read = pv.ReadOptions(
        column_names=names, encoding="utf8" if codec == "utf-8" else codec, block_size=1 << 22
    )
    # An empty line stays a row (all null): it is a row a person sees, counted as blank.
    parse = pv.ParseOptions(
        newlines_in_values=data.find(b'"', start, end) >= 0,
        ignore_empty_lines=False,
        invalid_row_handler=lambda _row: "error",
    )
    convert = pv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.large_string()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        check_utf8=False,
    )
    body = pa.py_buffer(data).slice(start, end - start)
    try:
        return pv.read_csv(
            pa.BufferReader(body), read_options=read, parse_options=parse, convert_options=convert
        )
    except UnicodeDecodeError:
        raise _undecodable(data, start, codec, where) from None
    except pa.ArrowInvalid:
        return None  # a row with another number of fields, or quoting Arrow rejects


def _parse_slow(
    data: bytes,
    start: int,
    end: int,
    codec: str,
    width: int,
    markers: tuple[str, ...],
    where: _Where,
    *,
    first_row: int,
    footer_done: bool,
) -> tuple[list[list[str | None]], int]:
    """Parse with Python's csv module: exact record numbers, empty lines and ragged rows."""
    try:
        text = data[start:end].decode(codec)
    except UnicodeDecodeError as exc:
        raise _undecodable(data, start + exc.start, codec, where) from None
    records = _csv_records(text, where, first_row)
    footers = 0 if footer_done else _count_footer(records, 0, markers)  # type: ignore[arg-type]
    rows: list[list[str | None]] = []
    for k, record in enumerate(records[: len(records) - footers]):
        if len(record) > width:
            if any(c.strip() for c in record[width:]):
                raise where.layout(
                    f"第{first_row + k}行的列数（{len(record)}）多于表头（{width}），"
                    "可能有未加引号的逗号",
                    row=first_row + k,
                )
            record = record[:width]
        rows.append([c or None for c in record] + [None] * (width - len(record)))
    return rows, footers


def _csv_records(text: str, where: _Where, first_row: int) -> list[list[str]]:
    """Every record of `text`; a quoted value still open at the end of the file is an error."""
    records: list[list[str]] = []
    try:
        records.extend(csv.reader(io.StringIO(text, newline=""), strict=True))
        return records
    except csv.Error as exc:
        if str(exc).startswith("unexpected end of data"):
            raise where.unreadable(
                f"CSV 格式错误：第{first_row + len(records)}行的引号没有闭合，其后各行都会被读成"
                "一个单元格",
                row=first_row + len(records),
            ) from None
    # Strict parsing also rejects what Excel reads fine (text after a closing quote).
    records = []
    try:
        records.extend(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise where.unreadable(f"CSV 格式错误：{exc}", row=first_row + len(records)) from None
    return records


# --- XLSX -----------------------------------------------------------------------------------------


def _plain_number(value: float) -> str:
    """A finite float as plain digits: never scientific notation, never extra digits."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _cell_text(value: object) -> str | None:
    """One spreadsheet or JSON value as the text the department typed or saw."""
    kind = type(value)
    if kind is str:
        return value or None  # type: ignore[return-value]
    if value is None:
        return None
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return _plain_number(value) if math.isfinite(value) else None  # type: ignore[arg-type]
    if kind is datetime:
        dt: datetime = value  # type: ignore[assignment]
        return dt.strftime("%Y-%m-%d" if dt.time() == time() else "%Y-%m-%d %H:%M:%S")
    if kind is date:
        return value.isoformat()  # type: ignore[attr-defined]
    if kind is time:
        return value.strftime("%H:%M:%S")  # type: ignore[attr-defined]
    if kind is timedelta:
        return _plain_number(value.total_seconds() / 86400)  # type: ignore[attr-defined]
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _column_text(values: Sequence[object]) -> list[str | None]:
    """A column of cells as text; the common all-text column takes a fast path."""
    if all(type(v) is str for v in values):
        return [v or None for v in values]  # type: ignore[misc]
    return [_cell_text(v) for v in values]


def _read_xlsx(content: bytes, contract: Contract, common: Common, where: _Where) -> RawDelivery:
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(content))
        if not book.sheet_names:
            raise where.unreadable("Excel 文件中没有工作表")
        sheet = book.get_sheet_by_index(0)
        cells: Sequence[Sequence[object]] = sheet.to_python(skip_empty_area=False)
    except UnreadableDelivery:
        raise
    except Exception as exc:  # calamine raises its own error types for zip, xml, password …
        raise where.unreadable("Excel 文件已损坏或无法打开，请重新导出 .xlsx 后报送") from exc
    head = [[_cell_text(v) for v in row] for row in cells[:HEADER_SCAN_ROWS]]
    h, header = _locate_header(head, contract, where)
    header = _order(header, contract)
    markers = _marker_keys(common)
    footers = 0
    while len(cells) - footers > h + 1 and _is_footer(
        (_cell_text(v) for v in cells[len(cells) - footers - 1]), markers
    ):
        footers += 1
    data = cells[h + 1 : len(cells) - footers]
    width = len(cells[h])
    columns = (
        [pa.array(_column_text(col), pa.large_string()) for col in zip(*data, strict=True)]
        if data
        else _rows_to_columns([], width)
    )
    frame, blanks = _assemble(columns, header, h + 2, len(data))
    return RawDelivery(frame, "xlsx", None, h + 1, header.missing, header.extra, footers, blanks)


# --- JSON -----------------------------------------------------------------------------------------


class _Duplicated(dict):  # type: ignore[type-arg]
    """An object that had a key twice (flagged, not raised, so the error can name its row)."""


def _has_duplicate(value: object) -> bool:
    if isinstance(value, _Duplicated):
        return True
    if isinstance(value, dict):
        return any(_has_duplicate(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_duplicate(v) for v in value)
    return False


def _json_float(literal: str) -> str:
    """A JSON number literal as plain digits, exactly as written (no float in between)."""
    text = format(Decimal(literal), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _read_json(content: bytes, contract: Contract, where: _Where) -> RawDelivery:
    data, _encoding, codec = _detect_encoding(content)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _undecodable(data, exc.start, codec, where) from None
    duplicated = False

    def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        duplicated = True
        return _Duplicated(obj)

    try:
        doc = json.loads(
            text, parse_float=_json_float, parse_constant=lambda _c: None, object_pairs_hook=_object
        )
    except json.JSONDecodeError as exc:
        raise where.unreadable(
            f"JSON 格式错误：第{exc.lineno}行第{exc.colno}列附近（{exc.msg}）"
        ) from None
    except ValueError:  # e.g. an integer longer than Python converts
        raise where.unreadable("JSON 格式错误：数值无法读取") from None
    if not isinstance(doc, list):
        raise where.unreadable("JSON 顶层应为对象数组（[{…}, {…}]）")
    keys: dict[str, None] = {}
    for i, obj in enumerate(doc):
        if not isinstance(obj, dict):
            raise where.unreadable(f"JSON 数组第{i + 1}个元素不是对象", row=i + 1)
        if duplicated and _has_duplicate(obj):
            raise where.unreadable(f"JSON 数组第{i + 1}个对象中有重复的键", row=i + 1)
        keys.update(dict.fromkeys(obj))
    if not doc:
        # An empty array has no keys to judge: nothing is missing (no rows, every column empty).
        empty = {n: pd.array([], dtype="string") for n in contract.column_names}
        frame = pd.DataFrame({**empty, "source_row": np.arange(0, dtype=np.int64)})
        return RawDelivery(frame, "json", None, 0, (), (), 0, 0)
    names = list(keys)
    header = _order(_map_header(names, contract, where, row=None), contract)
    columns = [
        pa.array(_column_text([obj.get(k) for obj in doc]), pa.large_string()) for k in names
    ]
    source_row = np.arange(1, len(doc) + 1, dtype=np.int64)
    frame = pd.DataFrame(
        {
            **{n: pd.array(columns[p], dtype="string") for n, p in header.positions.items()},
            "source_row": source_row,
        }
    )
    return RawDelivery(frame, "json", None, 0, header.missing, header.extra, 0, 0)
