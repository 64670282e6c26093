"""Normalisation: delivered text to canonical, typed values, with a defect code where it fails.

Every dataset gets the same treatment (../shared/spec README, "Normalisation"):

* text: NFKC (full-width to ASCII), zero-width characters and NBSP removed, trimmed, a leading
  apostrophe (Excel's text marker) removed, null tokens to null;
* id18: upper-case X, 15-digit ids upgraded, a 20-digit certificate number cut to 18 digits;
  checksum, birth date and length checked;
* dates, months, ints, decimals, booleans in every spelling of `common`; Excel serial day
  numbers for xlsx deliveries only;
* enums: exact values, synonyms and numeric codes.

Speed: cleaning runs in Arrow compute kernels over whole columns; parsing of the remaining types
runs once per *distinct* value (dates, enums and amounts repeat a lot), then is spread back with
the factorize codes. No per-row Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from expectations.contract import Column, Common, Contract
from tasks.checks import id18_birth_dates, id18_checksum_ok, upgrade_id15

# Zero-width and invisible characters that NFKC leaves in place.
_INVISIBLE = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_EXCEL_EPOCH = date(1899, 12, 30)

_DATE_RE = re.compile(
    r"^(\d{4})(?:([-/.])(\d{1,2})\2(\d{1,2})|年(\d{1,2})月(\d{1,2})日?|(\d{2})(\d{2}))"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$"
)
_MONTH_RE = re.compile(r"^(\d{4})(?:-?(\d{2})|-(\d{1})|年(\d{1,2})月?|[-/.](\d{1,2})[-/.]\d{1,2})$")
_SERIAL_RE = re.compile(r"^\d{4,5}(?:\.0+)?$")
_DECIMAL_RE = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
_INT_RE = re.compile(r"^[-+]?\d+(?:\.0+)?$")
_SCI_RE = r"^\d(?:\.\d+)?E\+?\d+$"

NA = pd.NA


@dataclass(frozen=True)
class NormalisedColumn:
    """A column's canonical values, its cleaned text (for messages) and a defect code per row."""

    values: pd.Series
    cleaned: pd.Series
    defects: pd.Series  # "string": rule code where the value is defective, NA where it is fine


def to_arrow(values: pd.Series) -> pa.Array:
    """The column as an Arrow string array (cheap for pandas' Arrow-backed strings)."""
    arr = pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)
    return arr


def clean_text(values: pd.Series, null_tokens: tuple[str, ...]) -> pd.Series:
    """NFKC, invisible characters removed, trimmed, leading apostrophe removed, nulls to NA."""
    arr = to_arrow(values)
    arr = pc.utf8_normalize(arr, form="NFKC")
    arr = pc.replace_substring_regex(arr, _INVISIBLE, "")
    arr = pc.utf8_trim_whitespace(arr)
    arr = pc.replace_substring_regex(arr, r"^'\s*", "")
    is_null = pc.is_in(arr, value_set=pa.array(list(null_tokens), type=pa.large_string()))
    arr = pc.if_else(is_null, pa.scalar(None, pa.large_string()), arr)
    return pd.Series(pd.array(arr, dtype="string"), index=values.index)


def _by_distinct(
    cleaned: pd.Series, parse: Callable[[str], tuple[Any, str | None]], dtype: str
) -> tuple[pd.Series, pd.Series]:
    """Apply `parse` (value -> (canonical, defect)) once per distinct value."""
    codes, uniques = pd.factorize(cleaned, use_na_sentinel=True)
    parsed = [parse(u) for u in uniques]
    uvalues = pd.array([p[0] for p in parsed] + [None], dtype=dtype)
    udefects = pd.array([p[1] for p in parsed] + [None], dtype="string")
    take = np.where(codes >= 0, codes, len(uniques))
    values = pd.Series(uvalues.take(take), index=cleaned.index)
    defects = pd.Series(udefects.take(take), index=cleaned.index)
    return values, defects


def _date_parser(excel: bool) -> Callable[[str], tuple[Any, str | None]]:
    def parse(text: str) -> tuple[Any, str | None]:
        m = _DATE_RE.match(text)
        if m:
            g = m.groups()
            month, day = (g[2], g[3]) if g[1] else (g[4], g[5]) if g[4] else (g[6], g[7])
            try:
                return pd.Timestamp(date(int(g[0]), int(month), int(day))), None
            except ValueError:
                return None, "unparseable"
        if excel and _SERIAL_RE.match(text):
            serial = int(float(text))
            if 1 <= serial <= 2958465:
                return pd.Timestamp(_EXCEL_EPOCH + timedelta(days=serial)), None
        return None, "unparseable"

    return parse


def _parse_month(text: str) -> tuple[Any, str | None]:
    m = _MONTH_RE.match(text)
    if m:
        year = int(m.group(1))
        month = int(next(g for g in m.groups()[1:] if g is not None))
        if 1 <= month <= 12 and 1900 <= year <= 2100:
            return f"{year:04d}-{month:02d}", None
    return None, "unparseable"


def _parse_decimal(text: str) -> tuple[Any, str | None]:
    plain = text.replace(",", "").replace("元", "").replace("¥", "").replace(" ", "")
    if _DECIMAL_RE.match(plain):
        return round(float(plain), 2), None
    return None, "unparseable"


def _parse_int(text: str) -> tuple[Any, str | None]:
    plain = text.replace(",", "")
    if _INT_RE.match(plain):
        return int(float(plain)) if "." in plain else int(plain), None
    return None, "unparseable"


def _bool_parser(common: Common) -> Callable[[str], tuple[Any, str | None]]:
    truths, falses = common.true_tokens, common.false_tokens

    def parse(text: str) -> tuple[Any, str | None]:
        if text in truths:
            return True, None
        if text in falses:
            return False, None
        return None, "unparseable"

    return parse


def _enum_parser(column: Column) -> Callable[[str], tuple[Any, str | None]]:
    lookup = {v: v for v in column.values} | dict(column.synonyms) | dict(column.codes)

    def parse(text: str) -> tuple[Any, str | None]:
        canonical = lookup.get(text)
        return (canonical, None) if canonical is not None else (None, "enum")

    if column.type == "enum":
        return parse

    order = {v: i for i, v in enumerate(column.values)}
    splitter = re.compile("|".join(re.escape(s) for s in column.separators or ("、",)))

    def parse_multi(text: str) -> tuple[Any, str | None]:
        parts = [p.strip() for p in splitter.split(text) if p.strip()]
        mapped = [lookup.get(p) for p in parts]
        if not parts or any(m is None for m in mapped):
            return None, "enum"
        unique = sorted(set(m for m in mapped if m is not None), key=order.__getitem__)
        return "、".join(unique), None

    return parse_multi


def normalise_id18(cleaned: pd.Series, exchange_date: date) -> tuple[pd.Series, pd.Series]:
    """Canonical 18-character ids and a defect code (id_* rules) per row."""
    text = cleaned.str.upper()
    n = text.str.len()
    digits = text.str.fullmatch(r"\d+").fillna(False).astype(bool)
    sci = text.str.fullmatch(_SCI_RE).fillna(False).astype(bool)
    ids = text.copy()
    old15 = digits & (n == 15)
    if old15.any():  # only the few old numbers: the check character costs ~1.5 s per 1M rows
        ids = ids.where(~old15, upgrade_id15(text[old15]))
    cert20 = text.str.fullmatch(r"\d{17}[\dX]\d{2}").fillna(False).astype(bool)
    ids = ids.where(~cert20, text.str.slice(0, 18))
    shape_ok = ids.str.fullmatch(r"\d{17}[\dX]").fillna(False).astype(bool)

    defects = pd.Series(NA, index=cleaned.index, dtype="string")
    present = text.notna()
    defects = defects.mask(present & ~shape_ok, "id_length")
    defects = defects.mask(present & sci, "id_excel_float")
    checksum_ok = id18_checksum_ok(ids.where(shape_ok))
    bad_check = shape_ok & ~checksum_ok
    defects = defects.mask(bad_check, "id_checksum")
    defects = defects.mask(bad_check & ids.str.endswith("000").fillna(False), "id_excel_float")
    births = id18_birth_dates(ids.where(shape_ok & checksum_ok))
    bad_birth = (shape_ok & checksum_ok) & (
        births.isna() | (births < pd.Timestamp("1900-01-01")) | (births > pd.Timestamp(exchange_date))
    ).fillna(True)
    defects = defects.mask(bad_birth, "id_birth_date")
    values = ids.where(defects.isna() & present, NA)
    return values.astype("string"), defects


def normalise_column(
    raw: pd.Series, column: Column, common: Common, *, exchange_date: date, excel: bool
) -> NormalisedColumn:
    """Normalise one delivered column according to its contract declaration."""
    cleaned = clean_text(raw, common.null_tokens)
    kind = column.type
    if kind == "id18":
        values, defects = normalise_id18(cleaned, exchange_date)
    elif kind == "credit_code":
        values, defects = cleaned.str.upper(), pd.Series(NA, index=raw.index, dtype="string")
    elif kind == "text":
        values, defects = cleaned, pd.Series(NA, index=raw.index, dtype="string")
    elif kind == "date":
        values, defects = _by_distinct(cleaned, _date_parser(excel), "datetime64[s]")
    elif kind == "month":
        values, defects = _by_distinct(cleaned, _parse_month, "string")
    elif kind == "decimal":
        values, defects = _by_distinct(cleaned, _parse_decimal, "Float64")
    elif kind == "int":
        values, defects = _by_distinct(cleaned, _parse_int, "Int64")
    elif kind == "bool":
        values, defects = _by_distinct(cleaned, _bool_parser(common), "boolean")
    else:  # enum, enum_multi
        values, defects = _by_distinct(cleaned, _enum_parser(column), "string")
    return NormalisedColumn(values=values, cleaned=cleaned, defects=defects)


def empty_column(column: Column, index: pd.Index) -> pd.Series:
    """An all-missing column of the right dtype (for optional columns a delivery left out)."""
    dtype = {
        "date": "datetime64[s]", "decimal": "Float64", "int": "Int64", "bool": "boolean",
    }.get(column.type, "string")
    return pd.Series(pd.array([None] * len(index), dtype=dtype), index=index)


def normalise_frame(
    raw: pd.DataFrame, contract: Contract, common: Common, *, exchange_date: date, excel: bool
) -> dict[str, NormalisedColumn]:
    """Normalise every contract column present in `raw` (columns missing from it are skipped)."""
    return {
        column.name: normalise_column(
            raw[column.name], column, common, exchange_date=exchange_date, excel=excel
        )
        for column in contract.columns
        if column.name in raw.columns
    }
