"""Vectorised identity-number checks (GB 11643 id numbers, GB 32100 credit codes).

Pure functions over pandas Series of canonical text. Both the quarantine engine and the custom
Great Expectations expectations call these, so GX and the engine judge a value the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_CC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28],
                       dtype=np.int64)
_CC_LOOKUP = np.full(256, -1, dtype=np.int64)
for _i, _ch in enumerate(_CC_CHARS):
    _CC_LOOKUP[ord(_ch)] = _i


def _ascii_matrix(values: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows × width uint8 matrix, mask of values that are exactly `width` ASCII chars)."""
    text = values.astype("string")
    ok = (text.str.len() == width).fillna(False).to_numpy(dtype=bool)
    ok &= text.str.isascii().fillna(False).to_numpy(dtype=bool)
    fixed = np.zeros(len(text), dtype=f"S{width}")
    if ok.any():
        fixed[ok] = text[ok].to_numpy(dtype=object).astype(f"S{width}")
    return fixed.view(np.uint8).reshape(len(text), width), ok


def id18_check_char(first17: pd.Series) -> pd.Series:
    """The MOD 11-2 check character for 17-digit prefixes (NA where not 17 digits)."""
    digits, ok = _ascii_matrix(first17, 17)
    ok &= ((digits >= 48) & (digits <= 57)).all(axis=1)
    total = ((digits.astype(np.int64) - 48) * _ID_WEIGHTS).sum(axis=1) % 11
    chars = pd.Series(_ID_CHECK[total].view("S1").astype(str), index=first17.index, dtype="string")
    return chars.where(ok, pd.NA)


def id18_checksum_ok(ids: pd.Series) -> pd.Series:
    """True where the value is 17 digits plus the right MOD 11-2 check character."""
    chars, ok = _ascii_matrix(ids, 18)
    ok &= ((chars[:, :17] >= 48) & (chars[:, :17] <= 57)).all(axis=1)
    total = ((chars[:, :17].astype(np.int64) - 48) * _ID_WEIGHTS).sum(axis=1) % 11
    ok &= _ID_CHECK[total] == chars[:, 17]
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
