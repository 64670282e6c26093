"""Delivered files as county offices produce them, from canonical rows and a dataset contract.

Over 600 lines on purpose: the catalogue of defects and of file formats real offices send, each
a few lines, kept beside the one seeded pipeline that applies them in order.

Three layers, each a pure function of its inputs (a seeded numpy Generator stands for chance):

    canonical rows ─ inject_defects ─ delivered_values ─ (duplicates) ─ render_delivery ─ bytes

* `delivered_values` turns canonical values into what a clerk typed: with ``messy`` every
  accepted-but-unnormalised spelling of the spec (full-width digits, apostrophes, invisible
  characters, 15-digit ids, every date/month/decimal/bool spelling, enum synonyms and codes,
  real Excel dates and serial numbers, null tokens).
* `inject_defects` breaks a small fraction of rows, one defect per row, in every class the
  engine reports (`DEFECT_RULES` plus the contract's row-rule ids), avoiding rows where the
  change would also trip a second check, so that the engine attributes each one unambiguously.
* `render_delivery` writes CSV (csv module, QUOTE_MINIMAL, CRLF), XLSX (xlsxwriter, one sheet,
  fixed document dates so the bytes are reproducible) or JSON (an array of objects keyed by the
  Chinese headers).

Everything is driven by the contract (headers, aliases, types, enums, synonyms, codes, key, row
rules); nothing here names a dataset.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import xlsxwriter

from domain.identity_codes import (
    CC_ALPHABET,
    ID_CHECK_CHARS,
    id18_check_char,
    id18_checksum_ok,
    ids_from_numbers,
)
from expectations.contract import Column, Common, Contract, RowRule

# Document dates of generated workbooks: a fixed value keeps re-generated files byte-identical.
FIXED_TIMESTAMP = datetime(2025, 1, 1, 8, 0, 0)
ACCEPTED_ENCODINGS: tuple[str, ...] = ("utf-8", "utf-8-sig", "gb18030")
EXTENSIONS = {"csv": "csv", "xlsx": "xlsx", "json": "json"}
ID_RULES: tuple[str, ...] = ("id_checksum", "id_birth_date", "id_length", "id_excel_float")
# The rule vocabulary the engine emits for column-level findings (row rules add their own ids).
DEFECT_RULES: tuple[str, ...] = (
    "required",
    "enum",
    "pattern",
    "min",
    "max",
    "unparseable",
    *ID_RULES,
    "credit_code",
    "key_conflict",
)
# Area code of ids made up for injected defects: never used by a synthetic person.
INJECTED_AREA = "610399"

_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
_FULL_WIDTH = {i: i + 0xFEE0 for i in range(0x21, 0x7F)} | {0x20: 0x3000}
_NA_EFFECT = frozenset({"required", "enum", "unparseable", *ID_RULES})

# Delivered forms and how often a messy delivery uses each (documented, deliberately modest).
_TEXT_FORMS = {
    "as_is": 0.82,
    "trailing_space": 0.04,
    "nbsp": 0.03,
    "zero_width": 0.03,
    "ideographic_space": 0.02,
    "full_width": 0.03,
    "apostrophe": 0.03,
}
_ID_FORMS = {
    "as_is": 0.62,
    "lower_x": 0.05,
    "full_width": 0.06,
    "apostrophe": 0.06,
    "zero_width": 0.04,
    "nbsp": 0.04,
    "old15": 0.05,
    "cert20": 0.04,
    "empty": 0.04,
}
_DATE_FORMS_TEXT = {
    "iso": 0.5,
    "slash": 0.1,
    "dot": 0.1,
    "compact": 0.1,
    "chinese": 0.1,
    "datetime": 0.1,
}
_DATE_FORMS_XLSX = {
    "excel_date": 0.4,
    "serial": 0.15,
    "iso": 0.15,
    "slash": 0.06,
    "dot": 0.06,
    "compact": 0.06,
    "chinese": 0.06,
    "datetime": 0.06,
}
_MONTH_FORMS = {"dash": 0.4, "compact": 0.3, "chinese": 0.3}
_DECIMAL_FORMS_TEXT = {"plain": 0.6, "thousands": 0.15, "yuan": 0.15, "full_width": 0.1}
_DECIMAL_FORMS_XLSX = {
    "number": 0.7,
    "plain": 0.1,
    "thousands": 0.07,
    "yuan": 0.07,
    "full_width": 0.06,
}
_INT_FORMS_TEXT = {"plain": 0.85, "full_width": 0.15}
_INT_FORMS_XLSX = {"number": 0.8, "plain": 0.15, "full_width": 0.05}
_ENUM_ALTERNATIVE = 0.2  # share of enum cells written as a synonym or numeric code
_BOOL_SYNONYM = 0.4  # share of bool cells written as a synonym other than 是/否
_HEADER_ALIAS = 0.3  # share of columns with aliases delivered under an alias
_NULL_TOKEN = 0.3  # share of empty optional cells written as a null token ('-', '无数据'…)
DUPLICATE_RATE = 0.004  # identical duplicate rows per delivered row


@dataclass(frozen=True)
class InjectedDefect:
    """One defective row: its 0-based data-row index in the delivered file, column and rule."""

    row: int
    column: str
    rule: str


@dataclass(frozen=True)
class PreparedDelivery:
    """Cell values of a delivery (canonical name -> object array), ready for `render_delivery`."""

    values: dict[str, np.ndarray]
    headers: dict[str, str]
    defects: tuple[InjectedDefect, ...] = ()
    duplicates: int = 0

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def frame(self) -> pd.DataFrame:
        """The cell values as an object-dtype frame keyed by canonical names."""
        return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in self.values.items()})


def source_row(fmt: str, title_rows: int, row: int) -> int:
    """The row number a person sees for 0-based data row `row` (JSON: 1-based array position)."""
    return row + 1 if fmt == "json" else title_rows + 2 + row


def rng_for(*parts: int | str) -> np.random.Generator:
    """A Generator seeded from a stable hash of `parts` (ints and strings)."""
    entropy = [p if isinstance(p, int) else _stable_hash(p) for p in parts]
    return np.random.default_rng([abs(int(e)) for e in entropy])


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


# --- rendering --------------------------------------------------------------------------------


def excel_general(value: object) -> str:
    """How Excel's General format shows a cell, which is what its CSV export holds."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "是" if value else "否"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d" if value.time() == time() else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    ):
        number = int(value)
        if abs(number) >= 10**11:  # Excel shows long numbers as 6.10327E+17
            mantissa, exponent = f"{float(number):.5E}".split("E")
            return f"{mantissa.rstrip('0').rstrip('.')}E{exponent}"
        return str(number)
    if isinstance(value, float | np.floating):
        return f"{float(value):.15g}"
    return str(value)


def _cells(values: object, n: int) -> np.ndarray:
    """An object array of cell values with every missing marker (NaN, NaT, NA) as None."""
    arr = (
        np.asarray(values, dtype=object)
        if not isinstance(values, pd.Series)
        else (values.astype(object).to_numpy(dtype=object))
    )
    if arr.shape != (n,):
        raise ValueError(f"column has {arr.shape} values, expected {n}")
    arr = arr.copy()
    arr[pd.isna(arr)] = None
    return arr


Rows: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, np.ndarray]


def _rows_to_columns(rows: Rows, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    if isinstance(rows, pd.DataFrame):
        n = len(rows)
        return {c: _cells(rows[c], n) for c in names if c in rows.columns}, n
    if isinstance(rows, Mapping):
        n = len(next(iter(rows.values()))) if rows else 0
        return {c: _cells(rows[c], n) for c in names if c in rows}, n
    records = list(rows)
    n = len(records)
    present = {k for r in records for k in r}
    return {c: _cells([r.get(c) for r in records], n) for c in names if c in present}, n


def default_titles(contract: Contract, count: int, common: Common | None = None) -> list[str]:
    """Title lines a county office puts above the header (county and title, unit, note)."""
    title = contract.title.split(" (")[0].strip()
    dept = common.departments.get(contract.dept, contract.dept) if common else contract.dept
    lines = [f"陇县{title}名单", f"填报单位：陇县{dept}", "说明：金额单位为元"]
    return lines[:count]


def render_delivery(
    contract: Contract,
    rows: Rows,
    *,
    fmt: str | None = None,
    encoding: str | None = None,
    title_rows: int | Sequence[str] | None = None,
    footer_rows: Sequence[Sequence[object]] | None = None,
    headers: Mapping[str, str] | None = None,
    drop_columns: Sequence[str] = (),
    extra_columns: Mapping[str, Sequence[object]] | None = None,
    column_order: Sequence[str] | None = None,
) -> bytes:
    """Render rows (keyed by canonical column names) as the bytes of a delivered file.

    `rows` is a frame, a list of dicts or a mapping of columns (arrays). Values are written as
    the department typed them: str verbatim, None as an empty cell; in
    XLSX, ``date``/``datetime`` become real Excel date cells and int/float become number cells
    (so an 18-digit id given as a float loses digits, as it does in Excel). In CSV and JSON a
    non-text value is written as Excel's General format shows it (`excel_general`).
    `title_rows` is a count of default title lines or the lines themselves; `footer_rows` are
    appended after the data (XLSX and CSV). Columns come in contract order unless
    `column_order` (canonical names) says otherwise; `headers` overrides header texts (e.g. an
    alias); `drop_columns` leaves columns out; `extra_columns` appends {header: values}.
    """
    fmt = fmt or contract.format
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown format {fmt!r}")
    names = [c for c in (column_order or contract.column_names) if c not in set(drop_columns)]
    unknown = [c for c in names if c not in contract.column_names]
    if unknown:
        raise KeyError(f"{contract.dataset} has no columns {unknown}")
    columns, n = _rows_to_columns(rows, names)
    header = [(headers or {}).get(c, contract.column(c).header) for c in names]
    cols = [columns.get(c, np.full(n, None, dtype=object)) for c in names]
    for extra_header, values in (extra_columns or {}).items():
        extra = list(values)[:n] + [None] * max(0, n - len(values))
        header.append(extra_header)
        cols.append(_cells(extra, n))
    if title_rows is None:
        title_rows = contract.title_rows if fmt == "xlsx" else 0
    titles = (
        default_titles(contract, title_rows) if isinstance(title_rows, int) else list(title_rows)
    )
    footers = [list(r) for r in (footer_rows or [])]
    if fmt == "csv":
        return _render_csv(header, cols, titles, footers, encoding or contract.encoding or "utf-8")
    if fmt == "xlsx":
        return _render_xlsx(header, cols, titles, footers)
    return _render_json(header, cols, encoding or "utf-8")


def _text_column(values: np.ndarray) -> np.ndarray:
    missing = values == None  # noqa: E711 (element-wise; _cells made every missing value None)
    text = values[~missing]
    out = np.full(len(values), "", dtype=object)
    if pd.api.types.infer_dtype(text, skipna=False) not in ("string", "empty"):
        text = np.frompyfunc(excel_general, 1, 1)(text)
    out[~missing] = text
    return out


def _render_csv(
    header: list[str],
    cols: list[np.ndarray],
    titles: list[str],
    footers: list[list[object]],
    encoding: str,
) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    width = len(header)
    for title in titles:
        writer.writerow([title] + [""] * (width - 1))
    writer.writerow(header)
    writer.writerows(zip(*[_text_column(c) for c in cols], strict=True))
    for footer in footers:
        writer.writerow([excel_general(v) for v in footer])
    return buf.getvalue().encode(encoding)


def _render_xlsx(
    header: list[str], cols: list[np.ndarray], titles: list[str], footers: list[list[object]]
) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(
        buf,
        {
            "constant_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    book.set_properties({"created": FIXED_TIMESTAMP})
    sheet = book.add_worksheet("Sheet1")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    datetime_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})

    def put(r: int, c: int, v: object) -> None:
        if v is None:
            return
        if isinstance(v, str):
            sheet.write_string(r, c, v)
        elif isinstance(v, bool | np.bool_):
            sheet.write_string(r, c, "是" if v else "否")
        elif isinstance(v, int | float | np.integer | np.floating):
            sheet.write_number(r, c, float(v))
        elif isinstance(v, datetime):
            sheet.write_datetime(r, c, v, datetime_format)
        elif isinstance(v, date):
            sheet.write_datetime(r, c, datetime.combine(v, time()), date_format)
        else:
            sheet.write_string(r, c, str(v))

    r = 0
    for title in titles:
        sheet.write_string(r, 0, title)
        r += 1
    for c, h in enumerate(header):
        sheet.write_string(r, c, h)
    r += 1
    for row in zip(*cols, strict=True):
        for c, v in enumerate(row):
            put(r, c, v)
        r += 1
    for footer in footers:
        for c, v in enumerate(footer):
            put(r, c, v if v != "" else None)
        r += 1
    book.close()
    return buf.getvalue()


def _json_value(v: object) -> object:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return "是" if v else "否"
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if np.isfinite(v) else None
    return excel_general(v)


def _render_json(header: list[str], cols: list[np.ndarray], encoding: str) -> bytes:
    lines = [
        json.dumps(
            {h: _json_value(v) for h, v in zip(header, row, strict=True)}, ensure_ascii=False
        )
        for row in zip(*cols, strict=True)
    ]
    body = "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
    return body.encode(encoding)


# --- delivered (messy) values -----------------------------------------------------------------


def _choose(rng: np.random.Generator, n: int, forms: Mapping[str, float]) -> np.ndarray:
    names = np.array(list(forms), dtype=object)
    p = np.array(list(forms.values()), dtype=float)
    return names[rng.choice(len(names), size=n, p=p / p.sum())]


def _full_width(values: np.ndarray) -> np.ndarray:
    return np.array([str(v).translate(_FULL_WIDTH) for v in values], dtype=object)


def _join(*parts: object) -> np.ndarray:
    """Element-wise string concatenation of arrays and scalars (object result)."""
    out: Any = None
    for part in parts:
        piece = np.asarray(part).astype(str) if not isinstance(part, str) else part
        out = piece if out is None else np.char.add(out, piece)
    return np.asarray(out).astype(object)


def _decorate(values: np.ndarray, forms: np.ndarray) -> np.ndarray:
    """Apply text decorations (whitespace, invisible characters, full width, apostrophe)."""
    out = values.copy()
    for form, fn in (
        ("trailing_space", lambda v: v + " "),
        ("nbsp", lambda v: "\u00a0" + v + "\u00a0"),
        ("zero_width", lambda v: "\u200b" + v + "\u200d"),
        ("ideographic_space", lambda v: "\u3000" + v),
        ("apostrophe", lambda v: "'" + v),
        ("lower_x", lambda v: v.lower()),
    ):
        m = forms == form
        if m.any():
            out[m] = np.frompyfunc(fn, 1, 1)(out[m])
    m = forms == "full_width"
    if m.any():
        out[m] = _full_width(out[m])
    return out


def _ymd(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(iso strings, year, month, day) of a datetime64[D] array."""
    iso = np.datetime_as_string(d, unit="D")
    years = d.astype("datetime64[Y]").astype(np.int64) + 1970
    months = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    return iso, years, months, days


def _by_unique(
    values: np.ndarray, forms: np.ndarray, build: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """`build(values, forms)` evaluated once per distinct (value, form) pair, spread back.

    Dates, months and amounts repeat a lot, so this is what keeps big deliveries fast.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=object)
    uniques, value_codes = np.unique(values, return_inverse=True)
    form_names, form_codes = np.unique(forms.astype(str), return_inverse=True)
    pairs, inverse = np.unique(value_codes * len(form_names) + form_codes, return_inverse=True)
    cells = build(
        uniques[pairs // len(form_names)], form_names[pairs % len(form_names)].astype(object)
    )
    return cells[inverse]


def _month_forms(text: np.ndarray, forms: np.ndarray) -> np.ndarray:
    cells = text.copy()
    k = forms == "compact"
    cells[k] = np.array([s.replace("-", "") for s in text[k]], dtype=object)
    k = forms == "chinese"
    cells[k] = np.array([f"{s[:4]}年{int(s[5:7])}月" for s in text[k]], dtype=object)
    return cells


def _date_forms(d: np.ndarray, forms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(d), dtype=object)
    iso, y, m, dd = _ymd(d)
    builders: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "iso": lambda k: iso[k].astype(object),
        "slash": lambda k: _join(y[k], "/", m[k], "/", dd[k]),
        "dot": lambda k: _join(y[k], ".", m[k], ".", dd[k]),
        "compact": lambda k: compact_dates(d[k]).astype(object),
        "chinese": lambda k: _join(y[k], "年", m[k], "月", dd[k], "日"),
        "datetime": lambda k: _join(
            iso[k], np.where(rng.random(int(k.sum())) < 0.7, " 00:00:00", " 09:30:15")
        ),
        "excel_date": lambda k: d[k].astype(object),
        "serial": lambda k: (d[k] - _EXCEL_EPOCH).astype(np.int64).astype(object),
    }
    for form, build in builders.items():
        k = forms == form
        if k.any():
            out[k] = build(k)
    return out


def _decimal_text(x: np.ndarray) -> np.ndarray:
    """'1234.5'-style text: at most two decimals, no trailing zeros (vectorised)."""
    if len(x) == 0:
        return np.zeros(0, dtype=object)
    cents = np.round(np.abs(x) * 100).astype(np.int64)
    whole = (cents // 100).astype(str)
    frac = cents % 100
    tail = np.where(
        frac == 0,
        "",
        np.where(
            frac % 10 == 0,
            np.char.add(".", (frac // 10).astype(str)),
            np.char.add(".", zfill(frac, 2)),
        ),
    )
    sign = np.where((x < 0) & (cents > 0), "-", "")
    return np.char.add(np.char.add(sign, whole), tail).astype(object)


def _decimal_forms(x: np.ndarray, forms: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), dtype=object)
    for form in ("plain", "thousands", "yuan", "full_width", "number"):
        k = forms == form
        if not k.any():
            continue
        if form == "number":
            out[k] = np.round(x[k], 2).astype(object)
        elif form == "thousands":
            out[k] = np.array([f"{v:,.2f}" for v in x[k]], dtype=object)
        elif form == "yuan":
            out[k] = _decimal_text(x[k]) + "元"
        elif form == "full_width":
            out[k] = _full_width(_decimal_text(x[k]))
        else:
            out[k] = _decimal_text(x[k])
    return out


def _int_forms(x: np.ndarray, forms: np.ndarray) -> np.ndarray:
    ints = x.astype(np.int64)
    out = ints.astype(str).astype(object)
    k = forms == "full_width"
    out[k] = _full_width(out[k])
    k = forms == "number"
    out[k] = ints[k].astype(object)
    return out


def _enum_alternatives(column: Column) -> dict[str, list[str]]:
    alt: dict[str, list[str]] = {v: [] for v in column.values}
    for spelling, value in (*column.synonyms.items(), *column.codes.items()):
        alt.setdefault(value, []).append(spelling)
    return alt


def _per_unique(
    values: np.ndarray,
    rng: np.random.Generator,
    variants: int,
    make: Callable[[str, np.random.Generator], list[str]],
) -> np.ndarray:
    """Pick one of `variants` spellings per row, computed once per distinct value."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    table = np.array([make(str(u), rng)[:variants] for u in uniques], dtype=object)
    if table.size == 0:
        return values.copy()
    pick = rng.integers(0, table.shape[1], len(values))
    return table[codes, pick]


def _enum_forms(values: np.ndarray, column: Column, rng: np.random.Generator) -> np.ndarray:
    alternatives = _enum_alternatives(column)
    if column.type == "enum_multi":
        seps = list(column.separators or ("、",))

        def make(value: str, r: np.random.Generator) -> list[str]:
            parts = value.split("、")
            out = []
            for i in range(4):
                spelled = []
                for p in parts:
                    options = alternatives.get(p) or [p]
                    use = r.random() < _ENUM_ALTERNATIVE
                    spelled.append(options[int(r.integers(0, len(options)))] if use else p)
                out.append(seps[(i + int(r.integers(0, len(seps)))) % len(seps)].join(spelled))
            out[0] = value
            return out

        return _per_unique(values, rng, 4, make)
    out = values.copy()
    use_alt = rng.random(len(values)) < _ENUM_ALTERNATIVE
    for value, spellings in alternatives.items():
        if not spellings:
            continue
        k = use_alt & (values == value)
        if k.any():
            out[k] = np.asarray(spellings, dtype=object)[rng.integers(0, len(spellings), k.sum())]
    return out


def _bool_forms(
    values: np.ndarray, common: Common, rng: np.random.Generator, messy: bool
) -> np.ndarray:
    truth = values.astype(bool)
    out = np.where(truth, "是", "否").astype(object)
    if not messy:
        return out
    alt = rng.random(len(values)) < _BOOL_SYNONYM
    trues = np.asarray(common.bool_synonyms["true"], dtype=object)
    falses = np.asarray(common.bool_synonyms["false"], dtype=object)
    k = alt & truth
    out[k] = trues[rng.integers(0, len(trues), k.sum())]
    k = alt & ~truth
    out[k] = falses[rng.integers(0, len(falses), k.sum())]
    return out


def _id_forms(ids: np.ndarray, forms: np.ndarray, cert: np.ndarray | None) -> np.ndarray:
    """Delivered spellings of valid ids; each form is only computed for the rows that use it."""
    out = ids.copy()
    forms = forms.copy()
    k = np.flatnonzero(forms == "lower_x")
    ends_x = np.array([s.endswith("X") for s in ids[k]], dtype=bool)
    forms[k[~ends_x]] = "as_is"
    k = np.flatnonzero(forms == "old15")
    old = np.array([s[6:8] == "19" for s in ids[k]], dtype=bool)
    out[k[old]] = np.array([s[:6] + s[8:17] for s in ids[k[old]]], dtype=object)
    forms[k] = "as_is"
    k = np.flatnonzero(np.isin(forms, ["cert20", "empty"]))
    if cert is not None and len(k):
        has_cert = np.array(
            [
                isinstance(c, str) and len(c) == 20 and c[:18] == s
                for c, s in zip(cert[k], ids[k], strict=True)
            ],
            dtype=bool,
        )
        k = k[has_cert]
        out[k] = np.where(forms[k] == "cert20", cert[k], None)
    forms[np.isin(forms, ["cert20", "empty"])] = "as_is"
    decorate = np.flatnonzero((forms != "as_is") & pd.notna(out))
    out[decorate] = _decorate(out[decorate], forms[decorate])
    return out


def _null_cells(
    n: int, fmt: str, common: Common, rng: np.random.Generator, messy: bool
) -> np.ndarray:
    blank: object = "" if fmt == "csv" else None
    out = np.full(n, blank, dtype=object)
    if messy:
        tokens = np.asarray([t for t in common.null_tokens if t], dtype=object)
        k = rng.random(n) < _NULL_TOKEN
        out[k] = tokens[rng.integers(0, len(tokens), k.sum())]
    return out


def delivered_column(
    values: np.ndarray,
    column: Column,
    *,
    fmt: str,
    common: Common,
    rng: np.random.Generator,
    messy: bool,
    cert: np.ndarray | None = None,
) -> np.ndarray:
    """Cell values for one column from its canonical values (see `canonical_arrays`)."""
    n = len(values)
    present = ~pd.isna(values)
    out = _null_cells(n, fmt, common, rng, messy)
    if not present.any():
        return out
    v = values[present]
    m = int(present.sum())
    kind = column.type
    xlsx = fmt == "xlsx"
    if kind == "date":
        d = v.astype("datetime64[D]")
        if messy:
            forms = _choose(rng, m, _DATE_FORMS_XLSX if xlsx else _DATE_FORMS_TEXT)
        else:
            forms = np.full(m, "excel_date" if xlsx else "iso", dtype=object)
        cells = _by_unique(d, forms, lambda u, f: _date_forms(u, f, rng))
    elif kind == "month":
        text = v.astype(object)
        cells = text.copy()
        if messy:
            cells = _by_unique(text, _choose(rng, m, _MONTH_FORMS), _month_forms)
    elif kind == "decimal":
        x = v.astype(float)
        if messy:
            forms = _choose(rng, m, _DECIMAL_FORMS_XLSX if xlsx else _DECIMAL_FORMS_TEXT)
        else:
            forms = np.full(m, "number" if xlsx else "plain", dtype=object)
        cells = _by_unique(x, forms, _decimal_forms)
    elif kind == "int":
        x = v.astype(float)
        if messy:
            forms = _choose(rng, m, _INT_FORMS_XLSX if xlsx else _INT_FORMS_TEXT)
        else:
            forms = np.full(m, "number" if xlsx else "plain", dtype=object)
        cells = _by_unique(x, forms, _int_forms)
    elif kind == "bool":
        cells = _bool_forms(v, common, rng, messy)
    elif kind in ("enum", "enum_multi"):
        text = v.astype(object)
        cells = _enum_forms(text, column, rng) if messy else text.copy()
        if messy:
            cells = _decorate(
                cells,
                _choose(rng, m, {"as_is": 0.96, "trailing_space": 0.02, "ideographic_space": 0.02}),
            )
    elif kind == "id18":
        text = v.astype(object)
        if messy:
            certs = cert[present] if cert is not None else None
            forms = _id_forms(text, _choose(rng, m, _ID_FORMS), certs)
            cells = forms
        else:
            cells = text.copy()
    else:  # text, credit_code
        text = v.astype(object)
        cells = text.copy()
        if messy:
            forms = _choose(rng, m, _TEXT_FORMS)
            k = np.flatnonzero(forms == "apostrophe")
            digits = np.array([s.isascii() and s.isdigit() for s in text[k]], dtype=bool)
            forms[k[~digits]] = "as_is"
            decorate = np.flatnonzero(forms != "as_is")
            cells[decorate] = _decorate(text[decorate], forms[decorate])
    idx = np.flatnonzero(present)
    if kind == "id18":  # the 'empty' form leaves an id out (CL derives it from the certificate)
        missing = cells == None  # noqa: E711 (element-wise)
        out[idx[~missing]] = cells[~missing]
    else:
        out[idx] = cells
    return out


def canonical_arrays(
    contract: Contract, rows: pd.DataFrame | Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Canonical values as arrays: datetime64[D] for dates, float for numbers, object otherwise.

    `rows` is a frame or a mapping of equally long arrays, keyed by canonical column names.
    """
    n = len(rows) if isinstance(rows, pd.DataFrame) else len(next(iter(rows.values())))
    out: dict[str, np.ndarray] = {}
    expected = {
        "date": np.dtype("datetime64[D]"),
        "int": np.dtype(float),
        "decimal": np.dtype(float),
    }
    for col in contract.columns:
        given = None if isinstance(rows, pd.DataFrame) else rows.get(col.name)
        if isinstance(given, np.ndarray) and given.dtype == expected.get(col.type, object):
            if given.dtype == object:
                given = given.copy()
                given[pd.isna(given)] = None
            out[col.name] = given  # already canonical
            continue
        if col.name not in rows:
            series = pd.Series([None] * n, dtype=object)
        elif isinstance(rows, pd.DataFrame):
            series = rows[col.name].reset_index(drop=True)
        else:
            series = pd.Series(
                rows[col.name], dtype=object if np.asarray(rows[col.name]).dtype == object else None
            )
        if col.type == "date":
            out[col.name] = pd.to_datetime(series).to_numpy(dtype="datetime64[D]")
        elif col.type in ("int", "decimal"):
            out[col.name] = pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = series.astype(object).to_numpy(dtype=object).copy()
            arr[pd.isna(arr)] = None
            out[col.name] = arr
    return out


def delivered_headers(contract: Contract, rng: np.random.Generator, messy: bool) -> dict[str, str]:
    """Header text per column: the contract header, or (messy) sometimes one of its aliases."""
    headers = {}
    for col in contract.columns:
        headers[col.name] = col.header
        if messy and col.aliases and rng.random() < _HEADER_ALIAS:
            headers[col.name] = col.aliases[int(rng.integers(0, len(col.aliases)))]
    return headers


# --- defects ----------------------------------------------------------------------------------


def _present(values: np.ndarray) -> np.ndarray:
    present = ~pd.isna(values)
    if values.dtype == object:
        present &= values != ""
    return present


def _holds(arrays: Mapping[str, np.ndarray], rule: RowRule) -> np.ndarray:
    cond = rule.when
    assert cond is not None
    values = arrays[cond.column]
    if cond.present is not None:
        return _present(values) if cond.present else ~_present(values)
    if cond.in_ is not None:
        return np.isin(values.astype(object), np.asarray(cond.in_, dtype=object))
    return np.asarray(values == cond.equals, dtype=bool) & _present(values)


def _involved(rule: RowRule, column: str) -> bool:
    return (
        column in rule.columns
        or (rule.when is not None and rule.when.column == column)
        or rule.by == column
    )


def _head_rows(contract: Contract, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows that are a household's 户主 in a contract checking one head per household."""
    n = len(next(iter(arrays.values())))
    heads = np.zeros(n, dtype=bool)
    for rule in contract.row_rules:
        if rule.hook == "one_head_per_household":
            heads |= arrays[rule.columns[1]] == "户主"
    return heads


def _safe_rows(
    contract: Contract,
    arrays: Mapping[str, np.ndarray],
    column: str,
    effect: str,
    *,
    skip_rule: str | None = None,
) -> np.ndarray:
    """Rows where changing `column` (to missing: effect 'na'; to another value: 'value')
    breaks no row rule (other than `skip_rule`)."""
    n = len(arrays[column])
    safe = np.ones(n, dtype=bool)
    for rule in contract.row_rules:
        if rule.id == skip_rule or not _involved(rule, column):
            continue
        if effect == "value":
            when_column = rule.when is not None and rule.when.column == column
            if rule.check == "sign_by" and skip_rule is not None:
                continue  # the caller keeps the sign
            if rule.check == "required_when" and not when_column:
                continue  # only a missing value breaks it, and the value stays present
            if rule.check == "absent_unless" and not when_column:
                safe &= _holds(arrays, rule)
                continue
            return np.zeros(n, dtype=bool)
        if rule.check == "required_when" and column in rule.columns:
            safe &= ~_holds(arrays, rule)
        elif rule.check == "absent_unless" and rule.when and rule.when.column == column:
            target = arrays[rule.columns[0]]
            present = _present(target)
            if rule.zero_counts_as_absent:
                present &= np.array([not (isinstance(v, float) and v == 0) for v in target])
            safe &= ~present
        elif rule.check == "difference_equals" and column in rule.columns[2:]:
            values = arrays[column].astype(float)
            safe &= np.isnan(values) | (values == 0)
        elif rule.check == "hook" and rule.hook == "one_head_per_household":
            safe &= arrays[rule.columns[1]] != "户主"
    return safe


def _with_check(first17: Sequence[str]) -> np.ndarray:
    s = pd.Series(list(first17), dtype=object)
    return (s + id18_check_char(s).astype(object)).to_numpy(dtype=object)


def _checksum_ok(ids: Sequence[str]) -> np.ndarray:
    return id18_checksum_ok(pd.Series(list(ids), dtype=object)).to_numpy(dtype=bool)


def zfill(numbers: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal strings of integers (also for empty arrays)."""
    text = np.asarray(numbers).astype(str)
    return np.char.zfill(text, width) if len(text) else text


def compact_dates(d: np.ndarray) -> np.ndarray:
    """YYYYMMDD strings of a datetime64[D] array."""
    if len(d) == 0:
        return np.zeros(0, dtype="<U8")
    return np.char.replace(np.datetime_as_string(d, unit="D"), "-", "")


def fresh_ids(
    births: np.ndarray, rng: np.random.Generator, *, male: np.ndarray | None = None
) -> np.ndarray:
    """Valid ids in the reserved `INJECTED_AREA` for the given birth dates (datetime64[D])."""
    n = len(births)
    seq = (rng.integers(0, 500) + np.arange(n)) % 500 * 2
    if male is None:
        male = rng.random(n) < 0.5
    seq = seq + male.astype(int)
    birth = compact_dates(births).astype(np.int64)
    return ids_from_numbers(int(INJECTED_AREA) * 10**11 + birth * 1000 + seq)


def _bad_id(
    kind: str, ids: np.ndarray, rng: np.random.Generator, fmt: str, exchange_date: date
) -> np.ndarray:
    """Raw cells that break `kind` for the given valid ids."""
    n = len(ids)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    text = pd.Series(ids, dtype=object)
    variant = rng.integers(0, 3, n)
    if kind == "id_checksum":
        right = text.str.slice(17).map(ID_CHECK_CHARS.index).to_numpy(dtype=np.int64)
        wrong = np.asarray(list(ID_CHECK_CHARS))[(right + 1 + rng.integers(0, 10, n)) % 11]
        return (text.str.slice(0, 17) + wrong).to_numpy(dtype=object)
    if kind == "id_length":
        extra = rng.integers(0, 10, n).astype(str)
        options = np.stack(
            [
                text.str.slice(0, 17).to_numpy(dtype=object),
                (text + extra).to_numpy(dtype=object),
                text.str.slice(0, 16).to_numpy(dtype=object),
            ]
        )
        return options[variant, np.arange(n)]
    if kind == "id_birth_date":
        year, monthday = text.str.slice(6, 10), text.str.slice(10, 14)
        future = str(exchange_date.year + 1 + int(rng.integers(0, 3)))
        births = np.stack(
            [
                (year + "0230").to_numpy(dtype=object),
                ("18" + pd.Series(rng.integers(50, 100, n).astype(str)) + monthday).to_numpy(
                    dtype=object
                ),
                (future + monthday).to_numpy(dtype=object),
            ]
        )[variant, np.arange(n)]
        first17 = text.str.slice(0, 6) + births + text.str.slice(14, 17)
        return _with_check(first17.to_numpy(dtype=object))
    # id_excel_float: what an id looks like after it went through a number cell
    numbers = (text.str.slice(0, 17) + text.str.slice(17).replace("X", "0")).astype("int64")
    zeroed = (text.str.slice(0, 15) + "000").to_numpy(dtype=object)
    zero_fails = ~_checksum_ok(zeroed)
    for i, number in enumerate(numbers.tolist()):
        if fmt == "xlsx" and variant[i] != 2:
            value = (number // 16000) * 16000
            if _checksum_ok([str(value)])[0]:
                value -= 16000
            out[i] = float(value)
        elif variant[i] == 1 and zero_fails[i]:
            out[i] = zeroed[i]
        else:
            out[i] = excel_general(float(number))
    return out


_BAD_ENUM = ("未知", "待核实", "其它", "9", "因穷")
_UNPARSEABLE = {
    "date": ("{y}-02-30", "{y}/13/5", "{y}年2月30日", "二〇二五年三月", "{y}-3-"),
    "month": ("{y}-13", "{y}年13月", "{y}年第一季度"),
    "int": ("三", "约3", "3人"),
    "decimal": ("约1200", "1200/月", "待定"),
    "bool": ("不详", "待核实", "?"),
}


def _bad_values(
    rule: str,
    column: Column,
    canonical: np.ndarray,
    rng: np.random.Generator,
    fmt: str,
    exchange_date: date,
    common: Common,
) -> np.ndarray:
    """Raw cells (or, for min/max, canonical numbers) that break `rule` in `column`."""
    n = len(canonical)
    if rule == "required":
        tokens = list(common.null_tokens) + ([None] if fmt != "csv" else [])
        return np.asarray(tokens, dtype=object)[rng.integers(0, len(tokens), n)]
    if rule == "enum":
        lookup = set(column.values) | set(column.synonyms) | set(column.codes)
        bad = [
            b
            for b in _BAD_ENUM
            if b not in lookup and not (column.type == "enum_multi" and b.isdigit())
        ]
        return np.asarray(bad, dtype=object)[rng.integers(0, len(bad), n)]
    if rule == "unparseable":
        patterns = _UNPARSEABLE[column.type]
        year = str(exchange_date.year)
        return np.array(
            [patterns[int(rng.integers(0, len(patterns)))].format(y=year) for _ in range(n)],
            dtype=object,
        )
    if rule in ID_RULES:
        return _bad_id(rule, canonical, rng, fmt, exchange_date)
    if rule == "credit_code":
        out = np.empty(n, dtype=object)
        for i, s in enumerate(canonical):
            pos = CC_ALPHABET.index(s[17])
            out[i] = s[:17] + CC_ALPHABET[(pos + 1 + int(rng.integers(0, 30))) % 31]
        return out
    if rule == "pattern":
        assert column.pattern is not None
        out = np.empty(n, dtype=object)
        for i, s in enumerate(canonical):
            s = str(s)
            candidates = [s[:-1], s + "9", s[:3] + "-" + s[3:], "0" + s]
            out[i] = next(
                c
                for c in candidates
                if c
                and c not in common.null_tokens
                and not re.fullmatch(column.pattern, unicodedata.normalize("NFKC", c))
            )
        return out
    if rule == "min":
        assert column.min is not None
        if column.type == "int":
            return column.min - 1 - rng.integers(0, 3, n).astype(float)
        return np.round(column.min - rng.uniform(1, 100, n), 2)
    if rule == "max":
        assert column.max is not None
        if column.type == "int":
            return column.max + 1 + rng.integers(0, 5, n).astype(float)
        return np.round(column.max + rng.uniform(1, column.max * 0.5 + 1, n), 2)
    raise ValueError(f"no generator for rule {rule}")


def _column_classes(contract: Contract) -> list[tuple[str, str]]:
    """(rule, column) pairs of column-level defects this contract can carry."""
    out: list[tuple[str, str]] = []
    required = set(contract.required_columns)
    derived_from = {d.from_column for d in contract.derive}
    for col in contract.columns:
        if col.name in required:
            out.append(("required", col.name))
        if col.type in ("enum", "enum_multi"):
            out.append(("enum", col.name))
        if col.pattern and col.name not in derived_from:
            out.append(("pattern", col.name))
        if col.type in ("int", "decimal"):
            if col.min is not None:
                out.append(("min", col.name))
            if col.max is not None:
                out.append(("max", col.name))
        if col.type in _UNPARSEABLE:
            out.append(("unparseable", col.name))
        if col.type == "id18":
            out += [(r, col.name) for r in ID_RULES]
        if col.type == "credit_code":
            out.append(("credit_code", col.name))
    return out


@dataclass
class _Plan:
    """Mutable working state of one defect injection (private to `inject_defects`)."""

    arrays: dict[str, np.ndarray]
    used: np.ndarray
    raw: dict[str, dict[int, object]] = field(default_factory=dict)
    records: list[tuple[int, str, str]] = field(default_factory=list)
    copies: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    present_cache: dict[str, np.ndarray] = field(default_factory=dict)

    def set_raw(self, column: str, rows: np.ndarray, values: np.ndarray) -> None:
        cells = self.raw.setdefault(column, {})
        for r, v in zip(rows.tolist(), values, strict=True):
            cells[r] = v

    def set_value(self, column: str, rows: np.ndarray, values: object) -> None:
        arr = self.arrays[column].copy()
        arr[rows] = values
        self.arrays[column] = arr
        self.present_cache.pop(column, None)

    def present(self, column: str) -> np.ndarray:
        """`_present` of a column, cached until the column changes."""
        if column not in self.present_cache:
            self.present_cache[column] = _present(self.arrays[column])
        return self.present_cache[column]


def _months_back(months: np.ndarray, back: np.ndarray) -> np.ndarray:
    index = np.array([int(s[:4]) * 12 + int(s[5:7]) - 1 for s in months]) - back
    return np.array([f"{i // 12:04d}-{i % 12 + 1:02d}" for i in index], dtype=object)


def _valid_value(column: Column) -> object:
    if column.type in ("enum", "enum_multi"):
        return column.values[-1]
    if column.type in ("int", "decimal"):
        low = column.min if column.min is not None else 0.0
        return float(min(low + 80.0, column.max)) if column.max is not None else low + 80.0
    if column.type == "bool":
        return True
    return "有"


def _break_rule(
    contract: Contract,
    rule: RowRule,
    plan: _Plan,
    count: int,
    rng: np.random.Generator,
    exchange_date: date,
) -> None:
    """Break `rule` in up to `count` unused rows, changing canonical values only."""
    a = plan.arrays
    free = ~plan.used
    required = set(contract.required_columns) | set(contract.key)
    rows: np.ndarray

    def pick(eligible: np.ndarray, k: int = count) -> np.ndarray:
        candidates = np.flatnonzero(eligible & ~plan.used)
        if len(candidates) == 0:
            return candidates
        return np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))

    check = rule.hook if rule.check == "hook" else rule.check
    if check == "required_when":
        targets = [c for c in rule.columns if c not in required]
        if not targets:
            return
        target = targets[0]
        eligible = _holds(a, rule) & np.logical_and.reduce([plan.present(c) for c in rule.columns])
        rows = pick(eligible & _safe_rows(contract, a, target, "na", skip_rule=rule.id))
        plan.set_value(target, rows, None)
    elif check == "not_before":
        later, earlier = rule.columns
        eligible = plan.present(earlier) & _safe_rows(
            contract, a, later, "value", skip_rule=rule.id
        )
        rows = pick(eligible)
        back = rng.integers(1, 7, len(rows))
        if contract.column(later).type == "month":
            plan.set_value(later, rows, _months_back(a[earlier][rows], back))
        else:
            plan.set_value(later, rows, a[earlier][rows] - (back * 9).astype("timedelta64[D]"))
    elif check == "absent_unless":
        assert rule.when is not None
        target = rule.columns[0]
        eligible = (
            ~_holds(a, rule)
            & plan.present(rule.when.column)
            & _safe_rows(contract, a, target, "value", skip_rule=rule.id)
        )
        rows = pick(eligible)
        plan.set_value(target, rows, _valid_value(contract.column(target)))
    elif check == "difference_equals":
        target, total = rule.columns[:2]
        values = a[target].astype(float)
        eligible = (
            plan.present(total)
            & ~np.isnan(values)
            & (values != 0)
            & _safe_rows(contract, a, target, "value", skip_rule=rule.id)
        )
        rows = pick(eligible)
        plan.set_value(target, rows, values[rows] + np.sign(values[rows]) * 10.0)
    elif check == "sign_by":
        assert rule.by is not None
        own = [
            c
            for c in rule.columns
            if not any(_involved(r, c) for r in contract.row_rules if r.id != rule.id)
        ]
        if not own:
            return
        target = own[0]
        rows = pick(np.isin(a[rule.by], np.asarray(list(rule.signs), dtype=object)))
        values = np.nan_to_num(a[target][rows].astype(float), nan=0.0)
        negative = np.array([rule.signs[k] == "non_negative" for k in a[rule.by][rows]], dtype=bool)
        plan.set_value(
            target, rows, np.where(negative, -np.abs(values) - 100.0, np.abs(values) + 100.0)
        )
    elif check == "equals_all":
        eligible = np.logical_and.reduce([plan.present(c) for c in rule.columns])
        rows = pick(eligible)
        plan.set_value(rule.columns[0], rows, ~a[rule.columns[0]][rows].astype(bool))
    elif check == "min_age":
        assert rule.min_age is not None
        id_col = rule.columns[0]
        rows = pick(plan.present(id_col))
        ages = rule.min_age - 1 - rng.integers(0, 5, len(rows))
        births = np.datetime64(exchange_date, "D") - (
            ages * 365.25 + rng.integers(30, 300, len(rows))
        ).astype("timedelta64[D]")
        plan.set_value(id_col, rows, fresh_ids(births, rng))
    elif check == "gender_matches_id":
        gender = rule.columns[0]
        rows = pick(plan.present(gender) & _present(a[rule.columns[1]]))
        plan.set_value(gender, rows, np.where(a[gender][rows] == "男", "女", "男").astype(object))
    elif check == "birth_date_matches_id":
        birth = rule.columns[0]
        rows = pick(plan.present(birth) & _present(a[rule.columns[1]]))
        plan.set_value(
            birth, rows, a[birth][rows] - rng.integers(1, 200, len(rows)).astype("timedelta64[D]")
        )
    elif check == "unemployed_has_no_job":
        status, employer = rule.columns[:2]
        rows = pick((a[status] == "未就业") & ~plan.present(employer))
        plan.set_value(employer, rows, "陇县城关镇便民超市")
    elif check == "cert_matches_id_category_level":
        cert = rule.columns[0]
        lengths = np.array([len(c) if isinstance(c, str) else 0 for c in a[cert]])
        rows = pick((lengths == 20) & _present(a[rule.columns[1]]))
        plan.set_value(
            cert,
            rows,
            np.array(
                [
                    c[:19] + "1234"[("1234".index(c[19]) + 1 + int(rng.integers(0, 3))) % 4]
                    for c in a[cert][rows]
                ],
                dtype=object,
            ),
        )
    elif check == "one_head_per_household":
        household, relation = rule.columns
        keys = pd.Series(a[household], dtype=object)
        sizes = keys.map(keys.value_counts()).to_numpy()
        busy = pd.Series(plan.used).groupby(keys).transform("any").to_numpy(dtype=bool)
        candidates = pick((sizes >= 2) & ~busy & (a[relation] != "户主") & free, k=1)
        if len(candidates) == 0:
            return
        members = np.flatnonzero(a[household] == a[household][candidates[0]])
        plan.set_value(relation, candidates, "户主")
        plan.used[members] = True
        # The household now has two heads: they break the rule, its other members do not.
        heads = members[a[relation][members] == "户主"]
        plan.records += [(int(r), rule.columns[0], rule.id) for r in heads]
        return
    else:
        return  # an unknown hook: no breaker, no defect of this rule
    plan.used[rows] = True
    plan.records += [(int(r), rule.columns[0], rule.id) for r in rows]


def _conflict_column(contract: Contract) -> Column | None:
    """A column whose change makes a same-key row different without breaking anything else
    (a name if there is one: the typical conflict is one id delivered with two names)."""
    derived = {d.column for d in contract.derive} | {d.from_column for d in contract.derive}
    free = [
        col
        for col in contract.columns
        if col.type == "text"
        and col.name not in contract.key
        and col.name not in derived
        and not col.pattern
        and not any(_involved(r, col.name) for r in contract.row_rules)
    ]
    names = [col for col in free if col.pii == "name"]
    candidates = names or free
    return candidates[0] if candidates else None


def inject_defects(
    contract: Contract,
    arrays: Mapping[str, np.ndarray],
    *,
    exchange_date: date,
    fmt: str,
    rng: np.random.Generator,
    rate: float,
    common: Common,
) -> tuple[
    dict[str, np.ndarray], dict[str, dict[int, object]], list[tuple[int, str, str]], np.ndarray
]:
    """Break about `rate` of the rows, one defect per row, cycling through every defect class.

    Returns (canonical arrays with rule-breaking changes and conflict copies appended, raw cell
    overrides {column: {row: cell}}, records (row, column, rule) and, for each row, the row it
    is a conflict copy of (-1 for original rows)). A row is only chosen where its defect trips
    no other check, so the engine reports exactly the recorded (column, rule).
    """
    n = len(next(iter(arrays.values())))
    plan = _Plan(arrays={k: v.copy() for k, v in arrays.items()}, used=np.zeros(n, dtype=bool))
    origin = np.full(n, -1, dtype=np.int64)
    # Never more than twice the rate (and 15%): a delivery stays under the quarantine gate.
    total = min(int(rng.binomial(n, rate)) if n else 0, int(n * min(0.15, 2 * rate)))
    if total == 0:
        return plan.arrays, plan.raw, plan.records, origin
    column_classes = _column_classes(contract)
    by_rule: dict[str, list[str]] = {}
    for rule, col in column_classes:
        by_rule.setdefault(rule, []).append(col)
    for row_rule in contract.row_rules:
        by_rule[row_rule.id] = [row_rule.id]
    if _conflict_column(contract) is not None:
        by_rule["key_conflict"] = list(contract.key[:1])
    names = sorted(by_rule)
    order = [names[i] for i in rng.permutation(len(names))]
    counts = dict.fromkeys(order, 0)
    for i in range(total):
        counts[order[i % len(order)]] += 1
    heads = _head_rows(contract, plan.arrays)
    rules = {r.id: r for r in contract.row_rules}
    for name in order:
        count = counts[name]
        if count == 0:
            continue
        if name in rules:
            _break_rule(contract, rules[name], plan, count, rng, exchange_date)
        elif name == "key_conflict":
            _inject_conflicts(contract, plan, count, rng, heads, origin)
        else:
            columns = by_rule[name]
            per_column = np.bincount(rng.integers(0, len(columns), count), minlength=len(columns))
            for col_name, k in zip(columns, per_column, strict=True):
                if k:
                    _inject_column(
                        contract,
                        plan,
                        name,
                        contract.column(col_name),
                        int(k),
                        rng,
                        fmt,
                        exchange_date,
                        common,
                    )
    origin = np.concatenate([origin, np.array([src for src, _ in plan.copies], dtype=np.int64)])
    return plan.arrays, plan.raw, plan.records, origin


def _inject_column(
    contract: Contract,
    plan: _Plan,
    rule: str,
    column: Column,
    count: int,
    rng: np.random.Generator,
    fmt: str,
    exchange_date: date,
    common: Common,
) -> None:
    values = plan.arrays[column.name]
    effect = "na" if rule in _NA_EFFECT else "value"
    eligible = _safe_rows(contract, plan.arrays, column.name, effect) & ~plan.used
    if rule != "required":
        eligible &= plan.present(column.name)
    candidates = np.flatnonzero(eligible)
    if rule == "id_excel_float":  # Excel keeps ids ending in X as text
        if len(candidates) > 20 * count:
            candidates = np.sort(rng.choice(candidates, size=20 * count, replace=False))
        candidates = candidates[[str(v)[-1:].isdigit() for v in values[candidates]]]
    if len(candidates) == 0:
        return
    rows = np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    bad = _bad_values(rule, column, values[rows], rng, fmt, exchange_date, common)
    if rule in ("min", "max"):
        plan.set_value(column.name, rows, bad)
    else:
        plan.set_raw(column.name, rows, bad)
    plan.used[rows] = True
    plan.records += [(int(r), column.name, rule) for r in rows]


def _inject_conflicts(
    contract: Contract,
    plan: _Plan,
    count: int,
    rng: np.random.Generator,
    heads: np.ndarray,
    origin: np.ndarray,
) -> None:
    column = _conflict_column(contract)
    if column is None:
        return
    n = len(plan.used)
    keyed = np.logical_and.reduce([plan.present(k)[:n] for k in contract.key])
    candidates = np.flatnonzero(keyed & ~plan.used & ~heads[:n])
    if len(candidates) == 0:
        return
    rows = np.sort(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    base = len(plan.arrays[column.name])
    for i, r in enumerate(rows.tolist()):
        old = plan.arrays[column.name][r]
        new = (
            (old[:-1] + ("华" if old[-1:] != "华" else "明"))
            if isinstance(old, str) and old
            else "更正"
        )
        plan.copies.append((r, {column.name: new}))
        plan.records += [
            (r, contract.key[0], "key_conflict"),
            (base + i, contract.key[0], "key_conflict"),
        ]
    plan.used[rows] = True
    for name, arr in plan.arrays.items():
        extra = arr[rows].copy()
        if name == column.name:
            extra = np.array([c[name] for _, c in plan.copies[-len(rows) :]], dtype=arr.dtype)
        plan.arrays[name] = np.concatenate([arr, extra])
    plan.present_cache.clear()
    plan.used = np.concatenate([plan.used, np.ones(len(rows), dtype=bool)])


def prepare_delivery(
    contract: Contract,
    rows: pd.DataFrame | Mapping[str, np.ndarray],
    *,
    exchange_date: date,
    fmt: str,
    common: Common,
    rng: np.random.Generator,
    messy: bool = True,
    defects: bool = True,
    defect_rate: float = 0.015,
    duplicate_rate: float = DUPLICATE_RATE,
) -> PreparedDelivery:
    """Canonical rows to delivered cell values, with defects and duplicates as asked."""
    arrays = canonical_arrays(contract, rows)
    n = len(next(iter(arrays.values())))
    raw: dict[str, dict[int, object]] = {}
    records: list[tuple[int, str, str]] = []
    origin = np.full(n, -1, dtype=np.int64)
    if defects and n:
        arrays, raw, records, origin = inject_defects(
            contract,
            arrays,
            exchange_date=exchange_date,
            fmt=fmt,
            rng=rng,
            rate=defect_rate,
            common=common,
        )
    total = len(origin)
    headers = delivered_headers(contract, rng, messy)
    cert_source = {d.column: d.from_column for d in contract.derive}
    values: dict[str, np.ndarray] = {}
    for col in contract.columns:
        cert = arrays[cert_source[col.name]] if col.name in cert_source else None
        cells = delivered_column(
            arrays[col.name], col, fmt=fmt, common=common, rng=rng, messy=messy, cert=cert
        )
        for r, v in raw.get(col.name, {}).items():
            cells[r] = v
        values[col.name] = cells

    # Identical duplicates: rows free of defects (and not a household's head) copied verbatim.
    defective = np.zeros(total, dtype=bool)
    for r, _, _ in records:
        defective[r] = True
    defective |= origin >= 0
    defective[origin[origin >= 0]] = True
    dup_rows = np.zeros(0, dtype=np.int64)
    if defects and n:
        candidates = np.flatnonzero(~defective & ~_head_rows(contract, arrays))
        k = min(int(rng.binomial(n, duplicate_rate)), len(candidates))
        dup_rows = np.sort(rng.choice(candidates, size=k, replace=False)) if k else dup_rows

    # Final order: each original row, then its conflict copy, then its duplicate.
    anchor = np.concatenate([np.where(origin >= 0, origin, np.arange(total)), dup_rows])
    sub = np.concatenate([np.where(origin >= 0, 1, 0), np.full(len(dup_rows), 2)])
    source = np.concatenate([np.arange(total), dup_rows])
    order = np.lexsort((sub, anchor))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    out = {name: cells[source[order]] for name, cells in values.items()}
    found = tuple(
        sorted(
            (InjectedDefect(int(position[r]), c, rule) for r, c, rule in records),
            key=lambda d: (d.row, d.column),
        )
    )
    return PreparedDelivery(values=out, headers=headers, defects=found, duplicates=len(dup_rows))


def corrupt_bytes(content: bytes, kind: str = "truncate") -> bytes:
    """A broken copy of a delivered file: 'truncate' (cut mid-file, an unreadable XLSX/JSON),
    'garbage' (not a spreadsheet at all) or 'undecodable' (bytes no accepted encoding decodes)."""
    if kind == "truncate":
        return content[: max(1, len(content) // 2)]
    if kind == "garbage":
        return b"PK\x03\x04" + bytes(range(256)) * 4
    if kind == "undecodable":
        cut = content.find(b"\n") + 1 or len(content)
        return content[:cut] + b"\xff\x80\xfe\x81\x30\xff" * 8 + content[cut:]
    raise ValueError(f"unknown corruption {kind!r}")
