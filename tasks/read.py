"""Read a delivered file (CSV, XLSX/XLS/ODS/ET, JSON) into text columns named after its contract.

Over 600 lines on purpose: every format's reader shares one entry point, one set of limits
(ReadLimits) and the isolated spreadsheet worker; split, the guards would be spread over files.

    read_delivery(content, file_name, contract, common, limits) -> RawDelivery

Every value comes out as text (pandas ``string``, an empty cell is NA): nothing passes through a
float, so an id keeps all its digits. The normaliser (tasks/normalise.py) does the rest.

What every format gets:

* the format is taken from the file extension, not from the contract (a department may switch);
  for a workbook the bytes then decide between xlsx, ods and BIFF xls (offices rename files);
* what a reader may consume is bounded (``ReadLimits``, from the DATASHARE_READ_* settings):
  columns, a sheet's cells, a value's length, JSON nesting, a zip's unpacked size; each refusal
  is an UnreadableDelivery with a Chinese reason;
* identifier columns (``identifier_columns``) whose cell came as a number that cannot be
  trusted — a number cell not an exact integer below 2^53, a JSON float, text that is a float's
  rendering — are flagged in a bool column ``_number_cell:<column>``; validation quarantines
  those cells (rule ``number_cell``);
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
read as GB18030, their superset; UTF-16 is refused; a stray NUL reaches validation; CR-only
line ends are read).
The data is parsed by Arrow's multi-threaded CSV reader, with GB18030 transcoded on the fly;
files the fast reader cannot number exactly (empty lines, rows with a different number of
fields, unbalanced quotes) go through Python's csv module instead, with the same result.

Workbooks: read with python-calamine in a forked worker with bounded memory and time, so that a
native reader that aborts fails the delivery, not the process; an xlsx's zip and each visible
sheet's declared <dimension> are checked before. Only visible worksheets count: the one whose
first rows hold the contract's header is read (``RawDelivery.sheet``); empty and notes sheets are
skipped; two with the header fail the delivery ("多个工作表含数据"). Numbers become plain
digits (an integral float is never written in scientific notation and never rounded through
int(float)); real date cells become ``YYYY-MM-DD`` (with `` HH:MM:SS`` when a time is present);
serial numbers in number cells stay digits (the normaliser reads them as dates for workbooks).

JSON: a top-level array of objects keyed by the headers; numbers as text the same way, true/false
as ``true``/``false``, null as NA. Every element is a delivered row (JSON has no title, footer or
blank rows). A column is missing when no object has its key; an empty array misses nothing.

Errors name the department, dataset, file and, where known, the row; never a cell value.
"""

from __future__ import annotations

import csv
import dataclasses
import faulthandler
import io
import json
import logging
import math
import os
import pickle
import re
import select
import signal
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic
from typing import Any, TypeVar
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from datashare.errors import DeliveryError, LayoutError, UnreadableDelivery
from expectations.contract import Common, Contract
from tasks.checks import text_array

__all__ = [
    "FORMATS",
    "HEADER_SCAN_ROWS",
    "NUMBER_CELL",
    "SPREADSHEET_FORMATS",
    "RawDelivery",
    "ReadLimits",
    "header_key",
    "identifier_columns",
    "read_delivery",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SPREADSHEET_FORMATS = ("xlsx", "xls", "ods", "et")
FORMATS = ("csv", *SPREADSHEET_FORMATS, "json")
# Prefix of the frame's flag columns: `_number_cell:<column>` is True on a row whose cell in
# that identifier column cannot be trusted (a spreadsheet number cell beyond 2^53 or not an
# integer, a JSON float, or text that is a float's rendering). tasks/validate.py quarantines it.
NUMBER_CELL = "_number_cell:"
HEADER_SCAN_ROWS = 10  # the spec allows 0-3 title rows; leave room for blank lines and notes
_BOM = b"\xef\xbb\xbf"
# Characters that are not there for a reader: removed from headers and footer markers.
_INVISIBLE_RE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff\u00ad]+")
# A cell holding only these is empty (whitespace, NBSP, ideographic space, zero-width).
_BLANK_PATTERN = r"^[\s\x{00a0}\x{3000}\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}\x{00ad}]*$"
# Text that is how a float is shown: scientific notation (6.10327E+17) or a ".0" tail.
_FLOAT_TEXT_PATTERN = r"^\s*[+-]?(\d+(\.\d*)?[eE][+-]?\d+|\d+\.0+)\s*$"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (BIFF) and WPS .et
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_DIMENSION_SCAN_BYTES = 1 << 16
_CSV_FIELD_LIMIT = 2**31 - 1
_DIMENSION_RE = re.compile(
    rb'<(?:\w+:)?dimension\s+ref="\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?"'
)
# Identifier-like text columns by name (certificate numbers, accounts, codes, ids).
_IDENTIFIER_SUFFIXES = ("_id", "_no", "_code", "_number", "_account")


@dataclass(frozen=True)
class ReadLimits:
    """What a reader may consume. Built from Settings (DATASHARE_READ_*) at the flow's edge;
    the defaults are the settings' defaults."""

    max_columns: int = 16_384  # Excel's own limit (column XFD)
    max_cells: int = 20_000_000  # rows x columns of a sheet's used area
    max_field_chars: int = 32_767  # Excel's limit for one cell
    max_json_depth: int = 64
    max_unzipped_bytes: int = 1 << 30
    worker_memory_bytes: int = 4 << 30  # the isolated spreadsheet reader's allowance
    worker_timeout_seconds: float = 900.0


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
    sheet: str | None = None  # the worksheet read (spreadsheets)


@dataclass(frozen=True)
class _Where:
    dept: str
    dataset: str
    source_file: str

    def unreadable(
        self, reason: str, *, row: int | None = None, column: str | None = None
    ) -> UnreadableDelivery:
        return UnreadableDelivery(
            reason,
            dept=self.dept,
            dataset=self.dataset,
            source_file=self.source_file,
            row=row,
            column=column,
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
    content: bytes,
    file_name: str,
    contract: Contract,
    common: Common,
    limits: ReadLimits | None = None,
) -> RawDelivery:
    """Read one delivered file into text columns named after the contract's columns."""
    limits = limits or ReadLimits()
    where = _Where(contract.dept, contract.dataset, file_name)
    fmt = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if fmt not in FORMATS:
        raise where.unreadable(
            f"不支持的文件格式：.{fmt}（应为 .csv、.xlsx、.xls、.ods、.et 或 .json）"
        )
    if not content:
        raise where.unreadable("文件为空")
    if fmt == "csv":
        raw = _read_csv(content, contract, common, limits, where)
    elif fmt in SPREADSHEET_FORMATS:
        raw = _read_book(content, _sniff_book(content, where), contract, common, limits, where)
    else:
        raw = _read_json(content, contract, limits, where)
    try:
        _check_field_sizes(raw.frame, contract, limits, where)
    except UnreadableDelivery as exc:
        raise _counted(exc, len(raw.frame)) from None
    return dataclasses.replace(raw, frame=_flag_float_text(raw.frame, contract))


def _counted(exc: DeliveryError, rows: int) -> DeliveryError:
    """`exc` carrying how many rows were read before the refusal (`rows_in`): the intake
    records them as delivered and rejected instead of 0."""
    exc.rows_in = rows
    return exc


def identifier_columns(contract: Contract) -> frozenset[str]:
    """Columns whose values are identifiers: every digit matters (ids, certificate numbers,
    bank accounts, credit codes, household and record ids, codes, phones)."""
    names = set()
    for column in contract.columns:
        strict = column.type in ("id18", "credit_code") or column.pii in ("id", "bank", "phone")
        named = column.name in contract.key or column.name.endswith(_IDENTIFIER_SUFFIXES)
        if strict or (column.type == "text" and column.pii is None and named):
            names.add(column.name)
    return frozenset(names)


_identifier_columns = identifier_columns


def _flag_float_text(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Add (or extend) the number-cell flags with identifier cells whose text is a float's
    rendering (6.10327E+17, 123456.0): the digits went through a float somewhere."""
    flags: dict[str, Any] = {}
    for name in identifier_columns(contract):
        if name not in frame.columns or not len(frame):
            continue
        values = text_array(frame[name])
        hit = pc.match_substring_regex(values, _FLOAT_TEXT_PATTERN).fill_null(False)
        if not pc.any(hit).as_py():
            continue
        mask = hit.to_numpy(zero_copy_only=False)
        key = NUMBER_CELL + name
        flags[key] = mask | frame[key].to_numpy(dtype=bool) if key in frame.columns else mask
    return frame.assign(**flags) if flags else frame


def _check_field_sizes(
    frame: pd.DataFrame, contract: Contract, limits: ReadLimits, where: _Where
) -> None:
    """Refuse a delivery with a value longer than a spreadsheet cell can hold."""
    for column in contract.columns:
        if column.name not in frame.columns or not len(frame):
            continue
        lengths = pc.utf8_length(text_array(frame[column.name]))
        longest = pc.max(lengths).as_py()
        if longest is None or longest <= limits.max_field_chars:
            continue
        over = lengths.fill_null(0).to_numpy() > limits.max_field_chars
        i = int(np.argmax(over))
        row = int(frame["source_row"].iloc[i])
        raise where.unreadable(
            f"第{row}行“{column.header}”列的内容有 {lengths[i].as_py()} 个字符，超过上限 "
            f"{limits.max_field_chars}（可能是引号未闭合或文件损坏），请检查后重新报送",
            row=row,
            column=column.name,
        )


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
    extra: dict[str, None] = {}  # ordered and linear: a file may have 100k unknown columns
    for i, cell in enumerate(cells):
        if cell is None or not (key := header_key(cell)):
            continue  # an unnamed column (Excel pads rows with empty cells)
        name = index.get(key)
        if name is None:
            extra[cell.strip()] = None
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
    columns: Sequence[pa.ChunkedArray | pa.Array],
    header: _Header,
    first_row: int,
    n: int,
    flags: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The frame of contract columns plus source_row, blank rows dropped; and their count.
    `flags`: per contract column, the rows whose number cell is not to be trusted."""
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
    for name, flag in (flags or {}).items():
        if flag.any():
            data[NUMBER_CELL + name] = flag[~blank]
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


def _looks_utf16(data: bytes) -> bool:
    """A CSV whose head is a quarter or more NUL bytes is UTF-16 text without its BOM."""
    head = data[:4096]
    return len(head) >= 8 and head.count(b"\x00") * 4 >= len(head)


def _read_csv(
    content: bytes, contract: Contract, common: Common, limits: ReadLimits, where: _Where
) -> RawDelivery:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise where.unreadable(
            "文件是 UTF-16 编码（Excel“Unicode 文本”），请另存为 UTF-8 或 GB18030 编码的 CSV "
            "后重新报送"
        )
    data, encoding, codec = _detect_encoding(content)
    if encoding == "utf-8-sig" and not _is_utf8(data):
        # A BOM promises UTF-8; Arrow does not check it (check_utf8=False) and would let the
        # broken bytes through into the columns.
        raise _undecodable(data, 0, codec, where)
    if _looks_utf16(data):
        # UTF-16 without a BOM: every other byte of ASCII text is NUL. A stray NUL inside one
        # value is not this: it reaches validation, which quarantines that row
        # (rule control_character), so one bad cell never costs the whole file.
        nul = data.find(b"\x00")
        line = data.count(b"\n", 0, nul) + 1 if b"\n" in data else data.count(b"\r", 0, nul) + 1
        raise where.unreadable(
            "文件含有大量空字符（NUL），看来是没有字节顺序标记的 UTF-16 编码，请另存为 UTF-8 或 "
            "GB18030 编码的 CSV 后重新报送",
            row=line,
        )
    if b"\n" not in data and b"\r" in data:
        # Line ends of classic Mac OS / some office exports: CR only. Read them as lines.
        data = data.replace(b"\r", b"\n")
    _allow_fields()
    markers = _marker_keys(common)
    records, ends = _csv_head(data, codec, where)
    h, header = _locate_header(records, contract, where)
    header = _order(header, contract)
    width = len(records[h])
    if width > limits.max_columns:
        raise where.unreadable(
            f"表头有 {width} 列，超过读取上限 {limits.max_columns} 列，请删除多余的列后重新报送",
            row=h + 1,
        )
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


def _allow_fields() -> None:
    """Let Python's csv module read fields of any size: the limit is checked after reading,
    with a message that names the row and the column (csv's own error is English)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)


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


# --- spreadsheets (xlsx, xls, ods, WPS et) --------------------------------------------------------


def _plain_number(value: float) -> str:
    """A finite float as plain digits: never scientific notation, never extra digits."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    text = repr(value)  # the shortest digits that read back as the same float
    if "e" not in text and not text.endswith(".0"):
        return text  # already plain: a fraction's repr has no trailing zeros
    text = format(Decimal(text), "f")
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


def _sheet_columns(
    rows: Sequence[Sequence[object]], width: int, identifiers: set[int]
) -> tuple[list[pa.Array], dict[int, np.ndarray]]:
    """A sheet's data rows as text columns (`_column_text`), and for the `identifiers`
    positions the rows whose cell is an inexact number (`_inexact_number`).

    A column of text cells or of number cells is converted by Arrow in one call; any other
    column (dates, booleans, a mix) cell by cell, as before: the same text either way
    (tests/test_read_columns.py holds them equal)."""
    if not rows:
        return _rows_to_columns([], width), {}
    grid = np.empty((len(rows), width), dtype=object)
    if all(len(r) == width for r in rows):  # as calamine gives them
        grid[:, :] = rows
    else:
        for i, r in enumerate(rows):
            grid[i, : len(r)] = r
    columns = []
    numbers = {}
    for p in range(width):
        text, inexact = _cells_text(grid[:, p])
        columns.append(text)
        if p in identifiers:
            numbers[p] = inexact
    return columns, numbers


_TEXT_CELLS = frozenset({str, type(None)})
_CELL_KIND = {str: 0, type(None): 0, float: 1}  # text, number; anything else: 2


def _cells_text(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """One column of cells (an object array) as `_column_text` renders it, and where its cells
    are inexact numbers (`_inexact_number`).

    Text cells and integral number cells (the common kinds) are converted by Arrow, a group at
    a time; the rest (fractions, dates, booleans …) cell by cell, as before."""
    n = len(values)
    if set(map(type, values)) <= _TEXT_CELLS:
        return _text_cells(values), np.zeros(n, dtype=bool)
    kind = np.fromiter((_CELL_KIND.get(t, 2) for t in map(type, values)), np.int8, count=n)
    inexact = np.zeros(n, dtype=bool)
    groups: list[tuple[np.ndarray, pa.Array]] = []
    text = np.flatnonzero(kind == 0)
    groups.append((text, _text_cells(values[text])))
    number = np.flatnonzero(kind == 1)
    numbers = values[number].astype(np.float64)
    with np.errstate(invalid="ignore"):
        exact = np.isfinite(numbers) & (numbers == np.trunc(numbers)) & (np.abs(numbers) < 2**53)
    inexact[number[~exact]] = True
    integers = pa.array(numbers[exact].astype(np.int64)).cast(pa.large_string())
    groups.append((number[exact], integers))
    rest = np.concatenate([number[~exact], np.flatnonzero(kind == 2)])
    cells = values[rest]
    groups.append((rest, pa.array(_column_text(cells), pa.large_string())))
    inexact[rest] |= np.fromiter(map(_inexact_number, cells), dtype=bool, count=len(rest))
    where = np.concatenate([g[0] for g in groups])
    joined = pa.concat_arrays([g[1] for g in groups])
    return joined.take(pa.array(np.argsort(where, kind="stable"))), inexact


def _text_cells(values: np.ndarray) -> pa.Array:
    """Text or empty cells as Arrow text, an empty string as null (`_cell_text`)."""
    text = pa.array(values, pa.large_string())
    empty = pc.equal(text, "").fill_null(False)
    if pc.any(empty).as_py():
        text = pc.if_else(empty, pa.scalar(None, pa.large_string()), text)
    return text


def _inexact_number(value: object) -> bool:
    """A number cell whose digits cannot be trusted as an identifier: not an integer, or at
    or beyond 2^53 (where a float no longer holds every integer)."""
    if type(value) is float:
        return not (value.is_integer() and abs(value) < 2**53)  # type: ignore[attr-defined]
    return type(value) is _JsonFloat and not _exact_literal(value)  # type: ignore[arg-type]


def _sniff_book(content: bytes, where: _Where) -> str:
    """'xlsx', 'ods' or 'xls' from the bytes (offices rename files; the bytes decide)."""
    if content.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as book:
                names = set(book.namelist())
                if "xl/workbook.xml" in names:
                    return "xlsx"
                if "mimetype" in names and book.read("mimetype").startswith(_ODS_MIME):
                    return "ods"
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
            pass
        raise where.unreadable("表格文件已损坏或不是 Excel/WPS/LibreOffice 表格，请重新导出后报送")
    if content.startswith(_OLE_MAGIC):
        return "xls"
    head = content[:512].lstrip().lower()
    if head.startswith((b"<html", b"<!doctype", b"<?xml", b"<table")):
        raise where.unreadable(
            "文件实为网页（HTML/XML）而非表格，请在 Excel/WPS 中打开后另存为 .xlsx 再报送"
        )
    raise where.unreadable("文件不是 Excel/WPS/LibreOffice 表格（内容像文本或已损坏），请重新导出")


def _check_zip(content: bytes, kind: str, limits: ReadLimits, where: _Where) -> None:
    """Refuse a zip-based workbook whose parts would unpack beyond the limits, or whose
    visible sheets declare a used area beyond them — before any native reader sees it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as book:
            total = sum(info.file_size for info in book.infolist())
            if total > limits.max_unzipped_bytes:
                raise where.unreadable(
                    f"表格文件解压后约 {total // 2**20} MB，超过上限 "
                    f"{limits.max_unzipped_bytes // 2**20} MB，请拆分或删除无关内容后重新报送"
                )
            if kind != "xlsx":
                return
            for name, part in _visible_xlsx_parts(book):
                with book.open(part) as stream:
                    head = stream.read(_DIMENSION_SCAN_BYTES)
                _check_dimension(head, name, limits, where)
    except UnreadableDelivery:
        raise
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, ValueError, ET.ParseError):
        raise where.unreadable("表格文件已损坏或无法打开，请重新导出 .xlsx 后报送") from None


def _visible_xlsx_parts(book: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, zip part) of every visible worksheet, from workbook.xml and its rels."""
    rels = ET.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target", "") for r in rels if r.tag.endswith("Relationship")}
    parts = []
    for sheet in ET.fromstring(book.read("xl/workbook.xml")).iter(f"{{{_MAIN_NS}}}sheet"):
        if sheet.get("state", "visible") != "visible":
            continue
        target = targets.get(sheet.get(f"{{{_REL_NS}}}id"), "")
        part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        if part in book.namelist():
            parts.append((sheet.get("name", ""), part))
    return parts


def _check_dimension(head: bytes, sheet: str, limits: ReadLimits, where: _Where) -> None:
    match = _DIMENSION_RE.search(head)
    if match is None:
        return  # no declaration: the isolated reader's memory limit still bounds it
    first_col, first_row, last_col, last_row = match.groups()
    rows = int(last_row or first_row) - int(first_row) + 1
    columns = _column_number(last_col or first_col) - _column_number(first_col) + 1
    if columns > limits.max_columns or rows * columns > limits.max_cells:
        area = match.group(0).split(b'"')[1].decode("ascii", "replace")
        raise where.unreadable(
            f"工作表“{sheet}”声明的区域 {area}（{rows} 行 × {columns} 列）超过读取上限"
            f"（{limits.max_columns} 列、{limits.max_cells} 个单元格），可能含有远离数据的"
            "空白格式或误输入的单元格，请删除多余的行列后重新报送"
        )


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


@dataclass(frozen=True)
class _SheetRead:
    """What the isolated reader sends back: the frame and what it saw."""

    frame: pd.DataFrame
    sheet: str
    header_row: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    footers: int
    blanks: int


def _read_book(
    content: bytes,
    kind: str,
    contract: Contract,
    common: Common,
    limits: ReadLimits,
    where: _Where,
) -> RawDelivery:
    if kind in ("xlsx", "ods"):
        _check_zip(content, kind, limits, where)
    read = _isolated(lambda: _read_book_here(content, contract, common, limits, where), limits)
    if isinstance(read, dict):  # a DeliveryError raised in the worker, by its fields
        raise _rebuild_error(read, where)
    if read is None:
        raise where.unreadable(
            "表格文件读取失败：读取程序超出资源上限或异常退出（文件可能过大、结构异常或已损坏），"
            "请在 Excel/WPS 中打开后另存为 .xlsx 再报送"
        )
    return RawDelivery(
        read.frame,
        kind,
        None,
        read.header_row,
        read.missing,
        read.extra,
        read.footers,
        read.blanks,
        sheet=read.sheet,
    )


def _read_book_here(
    content: bytes, contract: Contract, common: Common, limits: ReadLimits, where: _Where
) -> _SheetRead:
    """Read the one visible sheet that carries the contract's header (in the worker)."""
    from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(content))
        visible = [
            m.name
            for m in book.sheets_metadata
            if m.visible == SheetVisibleEnum.Visible and m.typ == SheetTypeEnum.WorkSheet
        ]
        if not visible:
            raise where.unreadable("表格文件中没有可见的工作表")
        found: list[tuple[str, Sequence[Sequence[object]], int, _Header]] = []
        first_error: LayoutError | None = None
        for name in visible:
            sheet = book.get_sheet_by_name(name)
            if sheet.width > limits.max_columns or sheet.height * sheet.width > limits.max_cells:
                raise where.unreadable(
                    f"工作表“{name}”的区域（{sheet.height} 行 × {sheet.width} 列）超过读取上限"
                    f"（{limits.max_columns} 列、{limits.max_cells} 个单元格），请删除多余的行列后"
                    "重新报送"
                )
            cells: Sequence[Sequence[object]] = sheet.to_python(skip_empty_area=False)
            head = [[_cell_text(v) for v in row] for row in cells[:HEADER_SCAN_ROWS]]
            try:
                h, header = _locate_header(head, contract, where)
            except LayoutError as exc:
                if not any(any(c is not None for c in row) for row in head):
                    continue  # an empty sheet (Sheet2, Sheet3 of a new workbook)
                first_error = first_error or exc
                continue
            found.append((name, cells, h, header))
    except DeliveryError:
        raise
    except Exception as exc:  # calamine raises its own error types for zip, xml, password …
        raise where.unreadable("表格文件已损坏或无法打开，请重新导出 .xlsx 后报送") from exc
    if not found:
        raise first_error or where.layout(
            f"找不到表头行：可见的工作表（{'、'.join(visible)}）中没有数据"
        )
    if len(found) > 1:
        raise where.layout(
            "多个工作表含数据：" + "、".join(f"“{n}”" for n, *_ in found) + "都有本数据集的表头，"
            "请把数据放在一个工作表中（或删除多余的工作表）后重新报送"
        )
    name, cells, h, header = found[0]
    header = _order(header, contract)
    markers = _marker_keys(common)
    footers = 0
    while len(cells) - footers > h + 1 and _is_footer(
        (_cell_text(v) for v in cells[len(cells) - footers - 1]), markers
    ):
        footers += 1
    data = cells[h + 1 : len(cells) - footers]
    width = len(cells[h])
    identifiers = {p for c, p in header.positions.items() if c in _identifier_columns(contract)}
    columns, numbers = _sheet_columns(data, width, identifiers)
    flags = {c: numbers[p] for c, p in header.positions.items() if p in numbers}
    frame, blanks = _assemble(columns, header, h + 2, len(data), flags)
    return _SheetRead(frame, name, h + 1, header.missing, header.extra, footers, blanks)


# --- isolation of native readers ------------------------------------------------------------------


def _isolated(work: Callable[[], _T], limits: ReadLimits) -> _T | dict[str, Any] | None:
    """Run `work` in a forked worker with bounded memory and time.

    Returns its result; a DeliveryError it raised as a dict of its fields; None when the
    worker died (a native reader aborting, out of memory) or ran out of time. Where fork is
    not available the work runs here.
    """
    if not hasattr(os, "fork"):
        try:
            return work()
        except DeliveryError as exc:
            return _error_fields(exc)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller's code
        status = 1
        try:
            os.close(read_end)
            # A native reader that aborts prints its own backtrace (and faulthandler, when on,
            # Python's): the parent logs one line instead.
            faulthandler.disable()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            _limit_memory(limits.worker_memory_bytes)
            try:
                result: object = work()
            except DeliveryError as exc:
                result = _error_fields(exc)
            except Exception as exc:  # a bug, not the file: the parent raises it as one
                result = _WorkerBug(type(exc).__name__)  # never its message: cell values
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = monotonic() + limits.worker_timeout_seconds
    timed_out = False
    with os.fdopen(read_end, "rb", buffering=0) as source:
        while True:
            left = deadline - monotonic()
            if left <= 0 or not select.select([source], [], [], left)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = source.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if timed_out or status != 0 or not chunks:
        log.warning(
            "spreadsheet reader worker ended with status %s (timed out: %s)", status, timed_out
        )
        return None
    received: Any = pickle.loads(b"".join(chunks))  # our own worker's bytes
    if isinstance(received, _WorkerBug):
        raise RuntimeError(f"spreadsheet reader worker failed with {received.text}")
    return received  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _WorkerBug:
    text: str


def _limit_memory(allowance: int) -> None:
    """Cap the worker's address space at what it already maps plus `allowance`."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = mapped + allowance
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError, ImportError):
        pass  # not Linux: the time limit and the pre-checks still apply


def _error_fields(exc: DeliveryError) -> dict[str, Any]:
    return {
        "layout": isinstance(exc, LayoutError),
        "reason": exc.reason,
        "row": exc.row,
        "column": exc.column,
    }


def _rebuild_error(fields: dict[str, Any], where: _Where) -> DeliveryError:
    if fields["layout"]:
        return where.layout(fields["reason"], row=fields["row"], column=fields["column"])
    return where.unreadable(fields["reason"], row=fields["row"])


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


class _JsonFloat(str):
    """A JSON number written with a fraction or an exponent, as plain digits: in an
    identifier column it says the sender's digits went through a float."""

    __slots__ = ()


def _json_float(literal: str) -> str:
    """A JSON number literal as plain digits, exactly as written (no float in between)."""
    text = format(Decimal(literal), "f")
    return _JsonFloat(text.rstrip("0").rstrip(".") if "." in text else text)


def _exact_literal(text: str) -> bool:
    """Plain digits of an integer below 2^53 (a float would have held it exactly)."""
    return text.isdigit() and int(text) < 2**53


def _depth(value: object) -> int:
    """How deep lists and objects nest in `value` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _check_json_shape(
    doc: list[Any], text: str, contract: Contract, limits: ReadLimits, where: _Where
) -> None:
    """Refuse values nested deeper than the limit (the array and its objects are 2 levels)."""
    if text.count("{") + text.count("[") <= len(doc) + 1:
        return  # no list or object inside the row objects
    for i, obj in enumerate(doc):
        if not isinstance(obj, dict):
            continue
        for key, value in obj.items():
            if isinstance(value, dict | list) and _depth(value) + 2 > limits.max_json_depth:
                name = _header_index(contract).get(header_key(key))
                raise where.unreadable(
                    f"JSON 数组第{i + 1}个对象的“{key}”嵌套超过 {limits.max_json_depth} 层",
                    row=i + 1,
                    column=name,
                )


def _read_json(
    content: bytes, contract: Contract, limits: ReadLimits, where: _Where
) -> RawDelivery:
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
    except RecursionError:
        raise where.unreadable(
            f"JSON 嵌套层数过深（超过 {limits.max_json_depth} 层），不是按行排列的对象数组"
        ) from None
    if not isinstance(doc, list):
        raise where.unreadable("JSON 顶层应为对象数组（[{…}, {…}]）")
    try:
        _check_json_shape(doc, text, contract, limits, where)
    except UnreadableDelivery as exc:
        raise _counted(exc, len(doc)) from None
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
    if len(names) > limits.max_columns:
        raise where.unreadable(
            f"JSON 对象共有 {len(names)} 个不同的键，超过读取上限 {limits.max_columns} 列"
        )
    header = _order(_map_header(names, contract, where, row=None), contract)
    identifiers = identifier_columns(contract)
    out: dict[str, Any] = {}
    flags: dict[str, np.ndarray] = {}
    for name, position in header.positions.items():
        values = [obj.get(names[position]) for obj in doc]
        out[name] = pd.array(pa.array(_column_text(values), pa.large_string()), dtype="string")
        if name in identifiers:
            flag = np.fromiter(map(_inexact_number, values), dtype=bool, count=len(values))
            if flag.any():
                flags[NUMBER_CELL + name] = flag
    out["source_row"] = np.arange(1, len(doc) + 1, dtype=np.int64)
    frame = pd.DataFrame(out | flags)
    return RawDelivery(frame, "json", None, 0, header.missing, header.extra, 0, 0)
