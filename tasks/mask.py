"""Masked forms of personal data (publishing.md, "Forms of personal data").

    id     610327199001011234 -> 610327********1234
    name   张三华 -> 张*华, 张三 -> 张*
    phone  13800138000 -> 138****8000
    bank, health, address: never shown; the masked form is a fixed placeholder.

Masking never shows more than these forms, whatever the input: values too short or too odd to
mask by position are replaced whole.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

HIDDEN = "***"


def mask_id(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value)
    if len(v) >= 15:
        return v[:6] + "*" * (len(v) - 10) + v[-4:]
    return HIDDEN


def mask_name(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value)
    if len(v) <= 1:
        return "*"
    if len(v) == 2:
        return v[0] + "*"
    return v[0] + "*" * (len(v) - 2) + v[-1]


def mask_phone(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value)
    if len(v) >= 7:
        return v[:3] + "*" * (len(v) - 7) + v[-4:]
    return HIDDEN


def mask_value(value: str | None, pii: str | None) -> str | None:
    """The masked form of one value of a column with the given PII kind (None: not personal)."""
    if value is None or pii is None:
        return value
    if pii == "id":
        return mask_id(value)
    if pii == "name":
        return mask_name(value)
    if pii == "phone":
        return mask_phone(value)
    return HIDDEN


def mask_series(values: pd.Series, pii: str | None) -> pd.Series:
    """Vectorised `mask_value` over a Series of text (NA stays NA)."""
    if pii is None:
        return values
    text = values.astype("string")
    n = text.str.len()
    if pii == "id":
        masked = (
            text.str.slice(0, 6)
            + n.sub(10).clip(lower=0).map(lambda k: "*" * k, na_action="ignore").astype("string")
            + text.str.slice(-4)
        )
        return masked.where(n >= 15, HIDDEN).where(text.notna(), pd.NA)
    if pii == "name":
        return text.map(mask_name, na_action="ignore").astype("string")
    if pii == "phone":
        return text.map(mask_phone, na_action="ignore").astype("string")
    return pd.Series(HIDDEN, index=values.index, dtype="string").where(text.notna(), pd.NA)


def person_key(id18: str, secret: bytes) -> str:
    """First 32 hex characters of HMAC-SHA256(secret, id18)."""
    return hmac.new(secret, id18.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def person_keys(ids: pd.Series, secret: bytes) -> pd.Series:
    """Vectorised `person_key` (NA stays NA); computed once per distinct id."""
    codes, uniques = pd.factorize(ids.astype("string"), use_na_sentinel=True)
    keys = pd.array([person_key(u, secret) for u in uniques], dtype="string")
    out = pd.Series(pd.NA, index=ids.index, dtype="string")
    valid = codes >= 0
    out[valid] = keys[codes[valid]]
    return out
