"""Identity codes: GB 11643 citizen id numbers and GB 32100 unified social credit codes.

The one home of what the project knows about these codes: the MOD 11-2 weights and check
characters, the 15-digit upgrade, the GB/T 2260 province codes (reference data,
expectations/reference/gbt2260_provinces.csv), the credit-code alphabet and weights, the defect
codes and the Chinese message of each. Normalisation (`normalise_id18`), row validation
(`credit_code_defects`, `IDENTITY_RULE_TEXT`), the custom GX expectations (`id18_valid`,
`credit_code_valid`), the row rules on birth dates (`id18_birth_dates`) and the synthetic county
(`id18_check_char`, `ids_from_numbers`, `credit_code_check_char`) all import from here.

Every check runs in numpy over k × 18 byte matrices of the values of the right length
(domain/arrow_text.py); only values of the wrong shape (a few per delivery) go through an Arrow
regex that says what is wrong with them. No per-row Python.

Defects, in the order they are looked for (a value gets the first that applies, so the
department is sent to the part of the code that is wrong):

    id18 (GB 11643)                                   credit_code (GB 32100)
    id_excel_float  scientific notation, or 18
                    digits ending 000 whose check fails
    id_chars        a character not a digit or X,     credit_code_chars   a character not in
                    or X not last at a right length                       the alphabet
    id_length       digits/X, not 18 (15, 20) long    credit_code_length  not 18 characters
    id_region       digits 1-2 not a province         credit_code_region  positions 3-8 not digits
    id_birth_date   digits 7-14 not a real date from 1900 to the exchange date
    id_checksum     wrong MOD 11-2 check character    credit_code         wrong check character

docs/intake.md ("Identity codes") gives the choices and where this differs from python-stdnum
(the oracle of tests/test_identity_codes.py).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from domain.arrow_text import fixed_width, text_array

# GB 11643: weights of digits 1-17 (2^(18-i) mod 11) and the check character for sum mod 11.
ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
# GB 32100: the 31 characters of a code (no I, O, Z, S, V), weights of positions 1-17 (3^(i-1)
# mod 31); the check character is CC_ALPHABET[(31 - sum mod 31) mod 31].
CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CC_WEIGHTS: tuple[int, ...] = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

PROVINCES_CSV = (
    Path(__file__).resolve().parent.parent / "expectations" / "reference" / "gbt2260_provinces.csv"
)

# What each defect means, as a department reads it in its rejects (tasks/validate.py adds the
# column header and the masked value).
IDENTITY_RULE_TEXT: dict[str, str] = {
    "id_chars": "身份证号含有非法字符（只能是数字，仅末位校验码可为X；不能有空格、字母或标点）",
    "id_length": "身份证号位数错误（应为18位，老证15位）",
    "id_region": "身份证号前两位不是有效的省级行政区划代码（地址码错误）",
    "id_birth_date": "身份证号第7-14位的出生日期不合理（不是真实日期，或早于1900年、晚于交换日期）",
    "id_checksum": "身份证号校验位错误（第18位与前17位不符，可能有数字录错）",
    "id_excel_float": "身份证号被Excel转成了数字（科学计数法或末位被置0），请按文本格式重新导出",
    "credit_code_chars": (
        "统一社会信用代码含有非法字符（不能有空格或标点，不使用字母I、O、Z、S、V）"
    ),
    "credit_code_length": "统一社会信用代码位数错误（应为18位）",
    "credit_code_region": "统一社会信用代码第3-8位（登记管理机关行政区划码）应为6位数字",
    "credit_code": "统一社会信用代码校验位错误（第18位与前17位不符，可能有字符录错）",
}

# Defect codes by their index in a code array (0: no defect).
_ID_DEFECTS = pa.array(
    [None, "id_length", "id_excel_float", "id_checksum", "id_birth_date", "id_chars", "id_region"],
    type=pa.large_string(),
)
_ID_LENGTH, _ID_EXCEL, _ID_CHECKSUM, _ID_BIRTH, _ID_CHARS, _ID_REGION = 1, 2, 3, 4, 5, 6
_CC_DEFECTS = pa.array(
    [None, "credit_code_chars", "credit_code_length", "credit_code_region", "credit_code"],
    type=pa.large_string(),
)
_CC_CHARS, _CC_LENGTH, _CC_REGION, _CC_CHECK = 1, 2, 3, 4

_ID_W = np.array(ID_WEIGHTS, dtype=np.int32)
_ID_CHECK = np.frombuffer(ID_CHECK_CHARS.encode("ascii"), dtype=np.uint8)
_CC_W = np.array(CC_WEIGHTS, dtype=np.int64)
_CC_LOOKUP = np.full(256, -1, dtype=np.int64)
_CC_LOOKUP[np.frombuffer(CC_ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(31)
_DIGIT_LO, _DIGIT_HI, _X = 48, 57, 88
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
# Scientific notation (an id that went through an Excel number cell); the characters of an id;
# the credit-code alphabet.
_SCI_RE = r"^\d(?:\.\d+)?E\+?\d+$"
_ID_CHARS_RE = r"^[0-9X]*$"
_CC_CHARS_RE = f"^[{CC_ALPHABET}]*$"


# --- reference data -------------------------------------------------------------------------


@cache
def province_codes(path: Path = PROVINCES_CSV) -> frozenset[str]:
    """The two-digit GB/T 2260 province codes accepted as digits 1-2 of an id number."""
    with path.open(encoding="utf-8", newline="") as f:
        codes = frozenset(row["code"] for row in csv.DictReader(f))
    malformed = sorted(c for c in codes if len(c) != 2 or not c.isdigit())
    if malformed or not codes:
        raise ValueError(f"{path.name}：省级代码须为两位数字且不能为空（不合格的：{malformed}）")
    return codes


@cache
def _province_table(provinces: frozenset[str]) -> np.ndarray:
    table = np.zeros(100, dtype=bool)
    table[[int(c) for c in provinces]] = True
    return table


# --- GB 11643 id numbers --------------------------------------------------------------------


def _is_digit(chars: np.ndarray) -> np.ndarray:
    return (chars >= _DIGIT_LO) & (chars <= _DIGIT_HI)


def _number(chars: np.ndarray) -> np.ndarray:
    """The decimal number written by the columns of a k × w matrix of ASCII digits."""
    out = np.zeros(len(chars), dtype=np.int64)
    for j in range(chars.shape[1]):
        out = out * 10 + (chars[:, j].astype(np.int64) - _DIGIT_LO)
    return out


def _id_shape(matrix: np.ndarray) -> np.ndarray:
    """Rows of a k × 18 byte matrix that are 17 digits and a digit or X."""
    last = matrix[:, 17]
    return _is_digit(matrix[:, :17]).all(axis=1) & (_is_digit(last) | (last == _X))


def id17_check_codes(digits: np.ndarray) -> np.ndarray:
    """Index into ID_CHECK_CHARS of the MOD 11-2 check character for each row of a k × >=17
    uint8 matrix of ASCII digits (garbage, not an error, for rows that are not digits)."""
    total = np.zeros(len(digits), dtype=np.int32)
    for j, weight in enumerate(ID_WEIGHTS):
        total += (digits[:, j].astype(np.int32) - _DIGIT_LO) * weight
    return total % 11


def _birth_ok(ids: np.ndarray, latest: date | None) -> np.ndarray:
    """Digits 7-14 of k × 18 id matrices are a real date from 1900-01-01 to `latest`."""
    year, month, day = _number(ids[:, 6:10]), _number(ids[:, 10:12]), _number(ids[:, 12:14])
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    ymd = year * 10000 + month * 100 + day
    ok = month_ok & (day >= 1) & (day <= days) & (ymd >= 19000101)
    if latest is not None:
        ok &= ymd <= latest.year * 10000 + latest.month * 100 + latest.day
    return ok


def _id18_codes(
    ids: np.ndarray, latest: date | None, provinces: frozenset[str] | None
) -> np.ndarray:
    """Defect code (index into _ID_DEFECTS) of each row of a k × 18 matrix of id-shaped values
    (17 digits and a digit or X)."""
    checksum_ok = _ID_CHECK[id17_check_codes(ids)] == ids[:, 17]
    zeros = (ids[:, 15:] == _DIGIT_LO).all(axis=1)
    province = ids[:, 0].astype(np.intp) * 10 + ids[:, 1] - _DIGIT_LO * 11
    region_ok = _province_table(provinces or province_codes())[province]
    birth_ok = _birth_ok(ids, latest)
    return np.select(
        [~checksum_ok & zeros, ~region_ok, ~birth_ok, ~checksum_ok],
        [_ID_EXCEL, _ID_REGION, _ID_BIRTH, _ID_CHECKSUM],
        0,
    ).astype(np.int8)


def _misshapen_codes(
    text: pa.LargeStringArray,
    chars_re: str,
    lengths: tuple[int, ...],
    length_code: int,
    chars_code: int,
) -> np.ndarray:
    """Defect codes of values that do not have the shape of a code: `length_code` where every
    character may occur in a code (`chars_re`) and the length is not one of `lengths`, else
    `chars_code` (a character that may not occur, or occurs where it may not)."""
    allowed = pc.match_substring_regex(text, chars_re).to_numpy(zero_copy_only=False)
    size = pc.binary_length(text).to_numpy(zero_copy_only=False)
    return np.where(allowed & ~np.isin(size, lengths), length_code, chars_code).astype(np.int8)


def _as_date(latest: date | None) -> date | None:
    return latest.date() if isinstance(latest, datetime) else latest


def normalise_id18(
    cleaned: pd.Series, exchange_date: date, *, provinces: frozenset[str] | None = None
) -> tuple[pd.Series, pd.Series]:
    """Canonical 18-character ids and a defect code (id_* rules) per row.

    Upper-cased; a 15-digit old number is upgraded (19 inserted after the area code, check
    character appended); a 20-digit certificate number (17 digits, a check character, 2
    digits) is cut to 18. The result must be 17 digits and a check character (else id_chars,
    id_length, or id_excel_float for scientific notation), start with a province code (else
    id_region), carry a real birth date from 1900 to the exchange date (else id_birth_date)
    and the right MOD 11-2 check character (else id_checksum, or id_excel_float when it ends
    in 000). `provinces`: the accepted digits 1-2 (default: the GB/T 2260 reference file).
    """
    text = pc.utf8_upper(text_array(cleaned))
    n = len(text)
    present = (
        text.is_valid().to_numpy(zero_copy_only=False)
        if text.null_count
        else np.ones(n, dtype=bool)
    )

    m18, p18 = fixed_width(text, 18)
    shape18 = _id_shape(m18)
    parts, positions = [m18[shape18]], [p18[shape18]]
    m15, p15 = fixed_width(text, 15)
    old15 = _is_digit(m15).all(axis=1)
    if old15.any():
        parts.append(_upgraded15(m15[old15]))
        positions.append(p15[old15])
    m20, p20 = fixed_width(text, 20)
    cert20 = _id_shape(m20[:, :18]) & _is_digit(m20[:, 18:]).all(axis=1)
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

    codes = np.zeros(n, dtype=np.int8)
    wrong_shape = np.flatnonzero(present & ~shape_ok)
    if len(wrong_shape):
        misshapen = text.take(pa.array(wrong_shape))
        sci = pc.match_substring_regex(misshapen, _SCI_RE).to_numpy(zero_copy_only=False)
        codes[wrong_shape] = np.where(
            sci,
            _ID_EXCEL,
            _misshapen_codes(misshapen, _ID_CHARS_RE, (15, 18, 20), _ID_LENGTH, _ID_CHARS),
        )
    # ids (k × 18) are the values of the rows `where` that have the shape of an id.
    codes[where] = _id18_codes(ids, exchange_date, provinces)

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


def id18_valid(
    ids: pd.Series,
    latest_birth: date | None = None,
    *,
    provinces: frozenset[str] | None = None,
) -> pd.Series:
    """True where a canonical id is valid: 17 digits and a check character, a province code,
    a real birth date from 1900 to `latest_birth` (no upper bound when None), the right
    MOD 11-2 check character. The same test as `normalise_id18` on its output."""
    arr = text_array(ids)
    matrix, positions = fixed_width(arr, 18)
    shaped = _id_shape(matrix)
    codes = _id18_codes(matrix[shaped], _as_date(latest_birth), provinces)
    ok = np.zeros(len(arr), dtype=bool)
    ok[positions[shaped][codes == 0]] = True
    return pd.Series(ok, index=ids.index)


def id18_checksum_ok(ids: pd.Series) -> pd.Series:
    """True where the value is 17 digits plus the right MOD 11-2 check character."""
    arr = text_array(ids)
    chars, positions = fixed_width(arr, 18)
    good = _is_digit(chars[:, :17]).all(axis=1)
    good &= _ID_CHECK[id17_check_codes(chars)] == chars[:, 17]
    ok = np.zeros(len(arr), dtype=bool)
    ok[positions[good]] = True
    return pd.Series(ok, index=ids.index)


def id18_check_char(first17: pd.Series) -> pd.Series:
    """The MOD 11-2 check character for 17-digit prefixes (NA where not 17 digits)."""
    arr = text_array(first17)
    digits, positions = fixed_width(arr, 17)
    digit_rows = _is_digit(digits).all(axis=1)
    chars = np.full(len(arr), None, dtype=object)
    rows = positions[digit_rows]
    chars[rows] = _ID_CHECK[id17_check_codes(digits[digit_rows])].view("S1").astype(str)
    return pd.Series(pd.array(chars, dtype="string"), index=first17.index)


def id18_birth_dates(ids: pd.Series) -> pd.Series:
    """Birth dates from digits 7-14 (NaT where they are not a real date)."""
    text = ids.astype("string").str.slice(6, 14)
    return pd.to_datetime(text, format="%Y%m%d", errors="coerce")


def _upgraded15(m15: np.ndarray) -> np.ndarray:
    """18-character ids (k × 18 bytes) from 15-digit old numbers (k × 15 digits): '19' inserted
    after the area code, the MOD 11-2 check character appended (the one implementation:
    normalise_id18 and upgrade_id15 both use it)."""
    century = np.full((len(m15), 2), [ord("1"), ord("9")], dtype=np.uint8)
    first17 = np.concatenate([m15[:, :6], century, m15[:, 6:]], axis=1)
    check = _ID_CHECK[id17_check_codes(first17)][:, None]
    return np.concatenate([first17, check], axis=1)


def upgrade_id15(ids15: pd.Series) -> pd.Series:
    """Upgrade 15-digit ids to 18 digits: insert '19' after the area code, append the check
    (NA where a value is not 15 digits)."""
    text = text_array(ids15.astype("string"))
    m15, rows = fixed_width(text, 15)
    digits = _is_digit(m15).all(axis=1)
    out = np.full(len(ids15), None, dtype=object)
    upgraded = np.ascontiguousarray(_upgraded15(m15[digits]))
    out[rows[digits]] = upgraded.view("S18").ravel().astype(str)
    return pd.Series(pd.array(out, dtype="string"), index=ids15.index)


def ids_from_numbers(first17: np.ndarray) -> np.ndarray:
    """18-character ids (object array) from 17-digit integers, with the MOD 11-2 check."""
    first17 = np.asarray(first17, dtype=np.int64)
    if len(first17) == 0:
        return np.zeros(0, dtype=object)
    total = np.zeros(len(first17), dtype=np.int64)
    rest = first17.copy()
    for weight in ID_WEIGHTS[::-1]:
        total += (rest % 10) * weight
        rest //= 10
    check = np.asarray(list(ID_CHECK_CHARS))[total % 11]
    return np.char.add(first17.astype(str), check).astype(object)


# --- GB 32100 unified social credit codes ---------------------------------------------------


def credit_code_defects(codes: pd.Series) -> pd.Series:
    """A defect code per value (credit_code_* rules; NA where the code is valid or missing).

    Positions 1-2 (registration authority, entity type) and 9-17 (organisation code) take any
    character of the alphabet, positions 3-8 (the GB/T 2260 code of the registering
    authority) digits only, position 18 the check character. Case matters: the normaliser
    upper-cases first.
    """
    arr = text_array(codes)
    n = len(arr)
    present = (
        arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, dtype=bool)
    )
    matrix, positions = fixed_width(arr, 18)
    values = _CC_LOOKUP[matrix]
    chars_ok = (values >= 0).all(axis=1)
    region_ok = _is_digit(matrix[:, 2:8]).all(axis=1)
    total = (np.where(values[:, :17] >= 0, values[:, :17], 0) * _CC_W).sum(axis=1)
    check_ok = (31 - total % 31) % 31 == values[:, 17]
    out = np.zeros(n, dtype=np.int8)
    sized = np.zeros(n, dtype=bool)
    sized[positions] = True
    others = np.flatnonzero(present & ~sized)
    if len(others):
        out[others] = _misshapen_codes(
            arr.take(pa.array(others)), _CC_CHARS_RE, (18,), _CC_LENGTH, _CC_CHARS
        )
    out[positions] = np.select(
        [~chars_ok, ~region_ok, ~check_ok], [_CC_CHARS, _CC_REGION, _CC_CHECK], 0
    )
    defects = _CC_DEFECTS.take(pa.array(out))
    return pd.Series(pd.array(defects, dtype="string"), index=codes.index)


def credit_code_valid(codes: pd.Series) -> pd.Series:
    """True where a unified social credit code (GB 32100) is valid (False where missing)."""
    return credit_code_defects(codes).isna() & codes.notna()


def credit_code_check_char(first17: Sequence[str]) -> list[str]:
    """The GB 32100 check character of each 17-character prefix of alphabet characters."""
    out = []
    for body in first17:
        total = sum(CC_ALPHABET.index(c) * w for c, w in zip(body, CC_WEIGHTS, strict=True))
        out.append(CC_ALPHABET[(31 - total % 31) % 31])
    return out
