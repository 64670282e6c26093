"""Vectorised identity-number checks (GB 11643 id numbers, GB 32100 credit codes).

Pure functions over pandas Series of canonical text. Both the quarantine engine and the custom
Great Expectations expectations call these, so GX and the engine judge a value the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_CC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_WEIGHTS = np.array(
    [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64
)
_CC_LOOKUP = np.full(256, -1, dtype=np.int64)
for _i, _ch in enumerate(_CC_CHARS):
    _CC_LOOKUP[ord(_ch)] = _i


def text_array(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """The values as one contiguous Arrow large_string array (no copy for a one-chunk
    Arrow-backed string Series)."""
    if isinstance(values, pd.Series):
        values = pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = (
            values.chunk(0)
            if values.num_chunks == 1
            else values.combine_chunks()
            if values.num_chunks
            else pa.array([], pa.large_string())
        )
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return values


def offsets_and_bytes(arr: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, n + 1 of them, into the data bytes; the data bytes) of a large_string array."""
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return offsets, data


def fixed_width(
    arr: pa.LargeStringArray, width: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(k × width uint8 matrix, row positions) of the non-null values that are exactly
    `width` bytes long (among `rows`, a boolean mask, if given), in row order."""
    offsets, _ = offsets_and_bytes(arr)
    sel = np.diff(offsets) == width
    if arr.null_count:
        sel &= arr.is_valid().to_numpy(zero_copy_only=False)
    if rows is not None:
        sel &= rows
    positions = np.flatnonzero(sel)
    if not len(positions):
        return np.zeros((0, width), dtype=np.uint8), positions
    picked = arr if len(positions) == len(arr) else arr.filter(pa.array(sel))
    offsets, data = offsets_and_bytes(picked)
    # Every picked value is `width` bytes: the data between the first and last offset is the
    # matrix, row after row.
    block = data[offsets[0] : offsets[-1]]
    return block.reshape(len(positions), width), positions


def _ascii_matrix(values: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows × width uint8 matrix, mask of values that are exactly `width` ASCII chars)."""
    arr = text_array(values)
    matrix, positions = fixed_width(arr, width)
    ascii_rows = (matrix < 0x80).all(axis=1)
    full = np.zeros((len(arr), width), dtype=np.uint8)
    full[positions[ascii_rows]] = matrix[ascii_rows]
    ok = np.zeros(len(arr), dtype=bool)
    ok[positions[ascii_rows]] = True
    return full, ok


def id17_check_codes(digits: np.ndarray) -> np.ndarray:
    """Index into `_ID_CHECK` of the MOD 11-2 check character for each row of a k × >=17
    uint8 matrix of ASCII digits (garbage, not an error, for rows that are not digits)."""
    total = np.zeros(len(digits), dtype=np.int32)
    for j, weight in enumerate(_ID_WEIGHTS):
        total += (digits[:, j].astype(np.int32) - 48) * int(weight)
    return total % 11


def id18_check_char(first17: pd.Series) -> pd.Series:
    """The MOD 11-2 check character for 17-digit prefixes (NA where not 17 digits)."""
    digits, ok = _ascii_matrix(first17, 17)
    ok &= ((digits >= 48) & (digits <= 57)).all(axis=1)
    total = ((digits.astype(np.int64) - 48) * _ID_WEIGHTS).sum(axis=1) % 11
    chars = pd.Series(_ID_CHECK[total].view("S1").astype(str), index=first17.index, dtype="string")
    return chars.where(ok, pd.NA)


def id18_checksum_ok(ids: pd.Series) -> pd.Series:
    """True where the value is 17 digits plus the right MOD 11-2 check character."""
    arr = text_array(ids)
    chars, positions = fixed_width(arr, 18)
    good = ((chars[:, :17] >= 48) & (chars[:, :17] <= 57)).all(axis=1)
    good &= _ID_CHECK[id17_check_codes(chars)] == chars[:, 17]
    ok = np.zeros(len(arr), dtype=bool)
    ok[positions[good]] = True
    return pd.Series(ok, index=ids.index)


def id18_birth_dates(ids: pd.Series) -> pd.Series:
    """Birth dates from digits 7-14 (NaT where they are not a real date)."""
    text = ids.astype("string").str.slice(6, 14)
    return pd.to_datetime(text, format="%Y%m%d", errors="coerce")


def id18_valid(ids: pd.Series, latest_birth: pd.Timestamp | None = None) -> pd.Series:
    """True where an id is valid: checksum, and a real birth date from 1900 to `latest_birth`."""
    births = id18_birth_dates(ids)
    ok = id18_checksum_ok(ids) & births.notna() & (births >= pd.Timestamp("1900-01-01"))
    if latest_birth is not None:
        ok &= births <= latest_birth
    return ok.fillna(False).astype(bool)


def credit_code_valid(codes: pd.Series) -> pd.Series:
    """True where a unified social credit code (GB 32100) has the right check character."""
    chars, ok = _ascii_matrix(codes, 18)
    values = _CC_LOOKUP[chars]
    ok &= (values >= 0).all(axis=1)
    total = (np.where(values[:, :17] >= 0, values[:, :17], 0) * _CC_WEIGHTS).sum(axis=1)
    expected = (31 - total % 31) % 31
    ok &= expected == values[:, 17]
    return pd.Series(ok, index=codes.index)


def upgrade_id15(ids15: pd.Series) -> pd.Series:
    """Upgrade 15-digit ids to 18 digits: insert '19' after the area code, append the check."""
    text = ids15.astype("string")
    first17 = text.str.slice(0, 6) + "19" + text.str.slice(6, 15)
    return first17 + id18_check_char(first17)
