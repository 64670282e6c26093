"""Normalisation: delivered text to canonical, typed values, with a defect code where it fails.

Every dataset gets the same treatment (../shared/spec README, "Normalisation"):

* text: NFKC (full-width to ASCII), zero-width characters and NBSP removed, trimmed, a leading
  apostrophe (Excel's text marker) removed, null tokens to null;
* id18: upper-case X, 15-digit ids upgraded, a 20-digit certificate number cut to 18 digits;
  characters, length, province, birth date and check character checked
  (domain/identity_codes.py, the one home of identity codes);
* dates, months, ints, decimals, booleans in every spelling of `common`; Excel serial day
  numbers for xlsx deliveries only;
* enums: exact values, synonyms and numeric codes;
* control characters (C0 other than TAB, LF and CR; DEL; C1) left after cleaning are a defect
  of the cell (`control_character`): its value is not loaded, and its cleaned text, which
  messages show, carries them as visible symbols (U+2400 …), so none reaches a database or a log.

Speed: cleaning runs in Arrow compute kernels over whole columns; parsing of the remaining types
runs once per *distinct* value (dates, enums and amounts repeat a lot), then is spread back with
the factorize codes. Those columns, and text columns with few distinct values, are also cleaned
once per distinct delivered value. Large deliveries normalise their columns on several threads.
No per-row Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from domain.arrow_text import offsets_and_bytes, text_array
from domain.identity_codes import normalise_id18
from expectations.contract import Column, Common, Contract

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


# Lead bytes of UTF-8 characters outside ASCII and U+4000-U+9FFF: C0-E3 and EA-FF.
_OTHER_LEAD = np.zeros(256, dtype=bool)
_OTHER_LEAD[0xC0:0xE4] = True
_OTHER_LEAD[0xEA:] = True


def _needs_cleaning(arr: pa.LargeStringArray) -> np.ndarray:
    """True for values the cleaning steps may change; False for those it certainly leaves alone.

    A value is left alone by every step when its bytes are ASCII or CJK ideographs U+4000-U+9FFF
    (UTF-8 lead bytes E4-E9), which NFKC maps to themselves and none of which is invisible,
    and it neither starts nor ends with a control character or a space (trim) nor starts with
    an apostrophe. Most delivered cells are such plain text: the Unicode kernels then run on the
    few others only.
    """
    offsets, data = offsets_and_bytes(arr)
    needs = np.zeros(len(arr), dtype=bool)
    filled = np.flatnonzero(np.diff(offsets) > 0)
    if not len(filled):
        return needs
    starts = offsets[filled]
    first = data[starts]
    last = data[offsets[filled + 1] - 1]
    edge = (first <= 0x20) | (first == 0x27) | (first == 0x7F) | (last <= 0x20) | (last == 0x7F)
    # Any byte of a value: the non-empty values are consecutive segments of the data, each
    # running up to the start of the next one.
    other = np.logical_or.reduceat(_OTHER_LEAD[data[starts[0] : offsets[-1]]], starts - starts[0])
    needs[filled] = edge | other
    return needs


# Control characters in UTF-8 text: bytes below 0x20 other than TAB, LF and CR; DEL (0x7F);
# C1 (U+0080-U+009F, the two bytes C2 80-C2 9F).
_ALLOWED_C0 = np.array([0x09, 0x0A, 0x0D], dtype=np.uint8)
_CONTROL_RE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
# Control characters as the symbols people can see: U+2400-U+241F for C0, U+2421 for DEL,
# U+FFFD for C1.
_VISIBLE = {chr(c): chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}
_VISIBLE |= {"\x7f": "\u2421"}
_VISIBLE |= {chr(c): "\ufffd" for c in range(0x80, 0xA0)}


def control_characters(values: pd.Series) -> np.ndarray:
    """True for each value holding a control character other than TAB, LF or CR (C0, DEL, C1).

    One pass over the bytes in numpy; the regex runs only when some byte is suspect."""
    arr = text_array(values)
    offsets, data = offsets_and_bytes(arr)
    found = np.zeros(len(arr), dtype=bool)
    data = data[offsets[0] : offsets[-1]] if len(arr) else data[:0]
    if not len(data):
        return found
    low = data[data < 0x20]
    c2 = np.flatnonzero(data[:-1] == 0xC2)
    suspect = (
        bool(np.isin(low, _ALLOWED_C0, invert=True).any())
        or bool((data == 0x7F).any())
        or bool(((data[c2 + 1] >= 0x80) & (data[c2 + 1] <= 0x9F)).any())
    )
    if not suspect:
        return found
    hit = pc.match_substring_regex(arr, _CONTROL_RE)
    return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def show_controls(values: pd.Series) -> pd.Series:
    """The values with each control character replaced by a visible symbol (␀ for NUL)."""
    return values.str.translate(str.maketrans(_VISIBLE))


def _with_control_defects(norm: NormalisedColumn, hit: np.ndarray) -> NormalisedColumn:
    """`norm` with `control_character` as the defect of the cells `hit` (cells holding control
    characters): their value dropped, their cleaned text made visible."""
    if not hit.any():
        return norm
    rows = pd.Series(hit, index=norm.cleaned.index)
    cleaned = norm.cleaned.where(~rows, show_controls(norm.cleaned.where(rows)))
    defects = norm.defects.astype("string").where(~rows, "control_character")
    return NormalisedColumn(values=norm.values.mask(rows), cleaned=cleaned, defects=defects)


def _clean_all(arr: pa.Array) -> pa.Array:
    arr = pc.utf8_normalize(arr, form="NFKC")
    arr = pc.replace_substring_regex(arr, _INVISIBLE, "")
    arr = pc.utf8_trim_whitespace(arr)
    return pc.replace_substring_regex(arr, r"^'\s*", "")


def clean_text(values: pd.Series, null_tokens: tuple[str, ...]) -> pd.Series:
    """NFKC, invisible characters removed, trimmed, leading apostrophe removed, nulls to NA."""
    arr = text_array(values)
    needs = _needs_cleaning(arr)
    if needs.all():
        arr = _clean_all(arr)
    elif needs.any():
        mask = pa.array(needs)
        arr = pc.replace_with_mask(arr, mask, _clean_all(arr.filter(mask)))
    is_null = pc.is_in(arr, value_set=pa.array(list(null_tokens), type=pa.large_string()))
    if pc.any(is_null).as_py():
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


# Types parsed once per distinct value: their columns repeat a lot.
_PARSED_KINDS = frozenset({"date", "month", "decimal", "int", "bool", "enum", "enum_multi"})
# A text column is cleaned once per distinct value when, among its first values, at most this
# share is distinct (codes, village codes); names and id numbers are cleaned value by value.
_FEW_DISTINCT_PROBE, _FEW_DISTINCT_SHARE = 20_000, 0.2


def _few_distinct(raw: pd.Series) -> bool:
    head = text_array(raw.iloc[:_FEW_DISTINCT_PROBE])
    return len(head) > 0 and len(pc.unique(head)) <= _FEW_DISTINCT_SHARE * len(head)


def _clean_by_distinct(
    raw: pd.Series, null_tokens: tuple[str, ...]
) -> tuple[np.ndarray, pd.Series]:
    """(codes, cleaned distinct values): `clean_text` run once per distinct delivered value.

    ``cleaned.take(codes)`` (-1: NA) is ``clean_text(raw)``: cleaning maps a value to the same
    text wherever it occurs. Different delivered spellings may clean to the same text.
    """
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    return codes, clean_text(pd.Series(uniques, dtype=raw.dtype), null_tokens)


def _spread(cleaned_uniques: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """The cleaned text of every row from the distinct values' cleaned text."""
    labels = text_array(cleaned_uniques)
    picked = labels.take(pa.array(codes.astype(np.int64, copy=False), mask=codes < 0))
    return pd.Series(pd.array(picked, dtype="string"), index=index)


def _parse_distinct(
    codes: np.ndarray,
    cleaned_uniques: pd.Series,
    parse: Callable[[str], tuple[Any, str | None]],
    dtype: str,
    index: pd.Index,
) -> tuple[pd.Series, pd.Series]:
    """`_by_distinct` from factorize codes of the delivered text and its cleaned distinct
    values (an NA among them, a null token, parses to no value and no defect)."""
    parsed = [(None, None) if u is NA else parse(u) for u in cleaned_uniques]
    uvalues = pd.array([p[0] for p in parsed] + [None], dtype=dtype)
    udefects = pd.array([p[1] for p in parsed] + [None], dtype="string")
    take = np.where(codes >= 0, codes, len(parsed))
    return (pd.Series(uvalues.take(take), index=index), pd.Series(udefects.take(take), index=index))


def normalise_column(
    raw: pd.Series, column: Column, common: Common, *, exchange_date: date, excel: bool
) -> NormalisedColumn:
    """Normalise one delivered column according to its contract declaration."""
    kind = column.type
    if kind in _PARSED_KINDS or (kind == "text" and _few_distinct(raw)):
        # Clean and parse once per distinct delivered value, then spread to the rows.
        codes, uniques = _clean_by_distinct(raw, common.null_tokens)
        cleaned = _spread(uniques, codes, raw.index)
        control = control_characters(uniques)  # per distinct value too
        hit = (control[codes] & (codes >= 0)) if control.any() else control[:0]
        if kind == "text":
            norm = NormalisedColumn(
                values=cleaned,
                cleaned=cleaned,
                defects=pd.Series(NA, index=raw.index, dtype="string"),
            )
        else:
            parse, dtype = _parser(column, common, excel)
            values, defects = _parse_distinct(codes, uniques, parse, dtype, raw.index)
            norm = NormalisedColumn(values=values, cleaned=cleaned, defects=defects)
        return _with_control_defects(norm, hit)
    cleaned = clean_text(raw, common.null_tokens)
    if kind == "id18":
        values, defects = normalise_id18(cleaned, exchange_date)
    elif kind == "credit_code":
        values, defects = cleaned.str.upper(), pd.Series(NA, index=raw.index, dtype="string")
    elif kind == "text":
        values, defects = cleaned, pd.Series(NA, index=raw.index, dtype="string")
    else:
        values, defects = _by_distinct(cleaned, *_parser(column, common, excel))
    norm = NormalisedColumn(values=values, cleaned=cleaned, defects=defects)
    return _with_control_defects(norm, control_characters(cleaned))


def _parser(
    column: Column, common: Common, excel: bool
) -> tuple[Callable[[str], tuple[Any, str | None]], str]:
    """(parse function, dtype of its values) of a type parsed per distinct value."""
    kind = column.type
    if kind == "date":
        return _date_parser(excel), "datetime64[s]"
    if kind == "month":
        return _parse_month, "string"
    if kind == "decimal":
        return _parse_decimal, "Float64"
    if kind == "int":
        return _parse_int, "Int64"
    if kind == "bool":
        return _bool_parser(common), "boolean"
    return _enum_parser(column), "string"  # enum, enum_multi


def empty_column(column: Column, index: pd.Index) -> pd.Series:
    """An all-missing column of the right dtype (for optional columns a delivery left out)."""
    dtype = {
        "date": "datetime64[s]",
        "decimal": "Float64",
        "int": "Int64",
        "bool": "boolean",
    }.get(column.type, "string")
    return pd.Series(pd.array([None] * len(index), dtype=dtype), index=index)


# Columns are normalised on this many threads (their Arrow and numpy kernels release the GIL)
# when a delivery has at least _PARALLEL_ROWS rows; smaller ones are not worth a thread.
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_PARALLEL_ROWS = 50_000
# The slowest kinds first, so that the threads finish together.
_COST = {"id18": 0, "text": 1}


def normalise_frame(
    raw: pd.DataFrame, contract: Contract, common: Common, *, exchange_date: date, excel: bool
) -> dict[str, NormalisedColumn]:
    """Normalise every contract column present in `raw` (columns missing from it are skipped).

    Each column is normalised on its own, so large deliveries run columns on several threads;
    the result is the same as one after the other."""
    present = [column for column in contract.columns if column.name in raw.columns]
    inputs = {column.name: raw[column.name] for column in present}

    def one(column: Column) -> NormalisedColumn:
        return normalise_column(
            inputs[column.name], column, common, exchange_date=exchange_date, excel=excel
        )

    if _WORKERS == 1 or len(raw) < _PARALLEL_ROWS or len(present) < 2:
        return {column.name: one(column) for column in present}
    order = sorted(present, key=lambda c: _COST.get(c.type, 2))
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="normalise") as pool:
        done = dict(zip((c.name for c in order), pool.map(one, order), strict=True))
    return {column.name: done[column.name] for column in present}
