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

from expectations.contract import Column, Common, Contract
from tasks.checks import (
    _ID_CHECK,
    fixed_width,
    id17_check_codes,
    offsets_and_bytes,
    text_array,
)

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


# Defect codes of normalise_id18, by their index in a code array (0: no defect).
_ID_DEFECTS = pa.array(
    [None, "id_length", "id_excel_float", "id_checksum", "id_birth_date"], type=pa.large_string()
)
_DIGIT_LO, _DIGIT_HI, _X = 48, 57, 88
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _is_digit(chars: np.ndarray) -> np.ndarray:
    return (chars >= _DIGIT_LO) & (chars <= _DIGIT_HI)


def _number(chars: np.ndarray) -> np.ndarray:
    """The decimal number written by the columns of a k × w matrix of ASCII digits."""
    out = np.zeros(len(chars), dtype=np.int64)
    for j in range(chars.shape[1]):
        out = out * 10 + (chars[:, j].astype(np.int64) - _DIGIT_LO)
    return out


def _birth_ok(ids: np.ndarray, exchange_date: date) -> np.ndarray:
    """Digits 7-14 of k × 18 id matrices are a real date from 1900-01-01 to `exchange_date`."""
    year, month, day = _number(ids[:, 6:10]), _number(ids[:, 10:12]), _number(ids[:, 12:14])
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    ymd = year * 10000 + month * 100 + day
    latest = exchange_date.year * 10000 + exchange_date.month * 100 + exchange_date.day
    return month_ok & (day >= 1) & (day <= days) & (ymd >= 19000101) & (ymd <= latest)


def normalise_id18(cleaned: pd.Series, exchange_date: date) -> tuple[pd.Series, pd.Series]:
    """Canonical 18-character ids and a defect code (id_* rules) per row.

    Upper-cased; a 15-digit old number is upgraded (19 inserted after the area code, check
    character appended); a 20-digit certificate number (17 digits, a check character, 2
    digits) is cut to 18. The result must be 17 digits and a check character (else
    id_length, or id_excel_float for scientific notation), with the right MOD 11-2 check
    character (else id_checksum, or id_excel_float when it ends in 000) and a real birth date
    from 1900 to the exchange date (else id_birth_date).

    Every test runs in numpy over fixed-width byte matrices of the values of the right length
    (all of the shapes above are ASCII, so bytes are characters).
    """
    text = pc.utf8_upper(text_array(cleaned))
    n = len(text)
    present = (
        text.is_valid().to_numpy(zero_copy_only=False)
        if text.null_count
        else np.ones(n, dtype=bool)
    )

    m18, p18 = fixed_width(text, 18)
    shape18 = _is_digit(m18[:, :17]).all(axis=1) & (_is_digit(m18[:, 17]) | (m18[:, 17] == _X))
    parts, positions = [m18[shape18]], [p18[shape18]]
    m15, p15 = fixed_width(text, 15)
    old15 = _is_digit(m15).all(axis=1)
    if old15.any():
        century = np.full((int(old15.sum()), 2), [ord("1"), ord("9")], dtype=np.uint8)
        first17 = np.concatenate([m15[old15, :6], century, m15[old15, 6:]], axis=1)
        check = _ID_CHECK[id17_check_codes(first17)][:, None]
        parts.append(np.concatenate([first17, check], axis=1))
        positions.append(p15[old15])
    m20, p20 = fixed_width(text, 20)
    cert20 = (
        _is_digit(m20[:, :17]).all(axis=1)
        & (_is_digit(m20[:, 17]) | (m20[:, 17] == _X))
        & _is_digit(m20[:, 18:]).all(axis=1)
    )
    if cert20.any():
        parts.append(m20[cert20, :18])
        positions.append(p20[cert20])
    if len(parts) > 1:
        where = np.concatenate(positions)
        order = np.argsort(where, kind="stable")
        ids, where = np.concatenate(parts)[order], where[order]
    else:
        ids, where = parts[0], positions[0]
    shape_ok = np.zeros(n, dtype=bool)
    shape_ok[where] = True

    # ids (k × 18) are the values of the rows `where` that have the shape of an id.
    checksum_ok = _ID_CHECK[id17_check_codes(ids)] == ids[:, 17]
    birth_ok = _birth_ok(ids, exchange_date)
    zeros = (ids[:, 15:] == _DIGIT_LO).all(axis=1)
    codes = np.zeros(n, dtype=np.int8)
    codes[present & ~shape_ok] = 1
    wrong_shape = np.flatnonzero(present & ~shape_ok)
    if len(wrong_shape):
        sci = pc.match_substring_regex(text.take(pa.array(wrong_shape)), _SCI_RE)
        codes[wrong_shape[sci.to_numpy(zero_copy_only=False)]] = 2
    codes[where] = np.where(checksum_ok, np.where(birth_ok, 0, 4), np.where(zeros, 2, 3))

    good = codes[where] == 0
    lengths = np.zeros(n + 1, dtype=np.int64)
    lengths[1:][where[good]] = 18
    offsets = np.cumsum(lengths)
    valid = codes == 0
    valid &= shape_ok
    values = pa.LargeStringArray.from_buffers(
        n,
        pa.py_buffer(offsets),
        pa.py_buffer(np.ascontiguousarray(ids[good])),
        pa.py_buffer(np.packbits(valid, bitorder="little")),
        n - int(valid.sum()),
    )
    defects = _ID_DEFECTS.take(pa.array(codes))
    return (
        pd.Series(pd.array(values, dtype="string"), index=cleaned.index),
        pd.Series(pd.array(defects, dtype="string"), index=cleaned.index),
    )


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
        if kind == "text":
            return NormalisedColumn(
                values=cleaned,
                cleaned=cleaned,
                defects=pd.Series(NA, index=raw.index, dtype="string"),
            )
        parse, dtype = _parser(column, common, excel)
        values, defects = _parse_distinct(codes, uniques, parse, dtype, raw.index)
        return NormalisedColumn(values=values, cleaned=cleaned, defects=defects)
    cleaned = clean_text(raw, common.null_tokens)
    if kind == "id18":
        values, defects = normalise_id18(cleaned, exchange_date)
    elif kind == "credit_code":
        values, defects = cleaned.str.upper(), pd.Series(NA, index=raw.index, dtype="string")
    elif kind == "text":
        values, defects = cleaned, pd.Series(NA, index=raw.index, dtype="string")
    else:
        values, defects = _by_distinct(cleaned, *_parser(column, common, excel))
    return NormalisedColumn(values=values, cleaned=cleaned, defects=defects)


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
