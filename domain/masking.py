"""Masked forms of personal data (publishing.md, "Forms of personal data").

Pure functions on values and Series, in the domain layer so that the steps (validation, GX),
the warehouse (publication) and the portal all mask the same way; `tasks.mask` re-exports them.

    id     610327199001011234 -> 610327********1234
    name   张三华 -> 张*华, 张三 -> 张*
    phone  13800138000 -> 138****8000
    bank, health, address: never shown; the masked form is a fixed placeholder.

Masking never shows more than these forms, whatever the input: values too short or too odd to
mask by position are replaced whole.

A value that *looks like* an id, a phone or a bank account is masked wherever it was typed
(publishing.md, "Forms"): `mask_lookalikes` finds them inside any text (a 救助类型 cell holding an
id, a remark holding a phone) and masks each where it stands; `mask_series` does it for every
column that is not marked personal. What looks like what:

    id     18 characters (17 digits + digit or X), 15 digits (old id), 20 digits (a disability
           certificate holds an id); also written 6-8-4 with spaces or hyphens
    phone  a mobile number 1[3-9]xxxxxxxxx, optionally +86, optionally 3-4-4 grouped
    bank   16-19 digits starting 62 (UnionPay: every domestic benefit card) or starting 4/5 and
           passing the Luhn check (international cards); also written in groups of four.
           Shown as the never form (***). An 18-digit number with a wrong id check character
           that starts 62 is taken for a bank account.
Runs of 12-14 digits (village codes), 16-digit household ids (area code first) and other
numbers are left as they are.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from domain.arrow_text import text_array

HIDDEN = "***"
# The same pieces as Arrow scalars, for mask_series
_STAR, _NONE = pa.scalar("*", pa.large_string()), pa.scalar("", pa.large_string())
_HIDDEN = pa.scalar(HIDDEN, pa.large_string())


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


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_LOOKALIKE = re.compile(
    r"(?<![0-9])(?:"
    r"(?P<idg>\d{6}[ -]\d{8}[ -]\d{3}[0-9Xx])"
    r"|(?P<bankg>\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,3})?)"
    r"|(?P<phone>(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2})"
    r"|(?P<run>\d{15,20}[Xx]?)"
    r")(?![0-9Xx])"
)


def _id_checksum_ok(value: str) -> bool:
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == value[17].upper()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _bank_like(digits: str) -> bool:
    if not 16 <= len(digits) <= 19 or not digits.isdigit():
        return False
    return digits.startswith("62") or (digits[0] in "45" and _luhn_ok(digits))


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group("idg") is not None:
        return mask_id(re.sub(r"[ -]", "", text).upper()) or HIDDEN
    if match.group("bankg") is not None:
        digits = re.sub(r"[ -]", "", text)
        return HIDDEN if _bank_like(digits) else text
    if match.group("phone") is not None:
        digits = re.sub(r"[ +-]", "", text)[-11:]
        return mask_phone(digits) or HIDDEN
    run = text.upper()
    if len(run) == 18:
        if _id_checksum_ok(run) or not (run.isdigit() and run.startswith("62")):
            return mask_id(run) or HIDDEN
        return HIDDEN
    if len(run) == 15 and run.isdigit():
        return mask_id(run) or HIDDEN
    if len(run) == 20:  # longer than any bank card: a certificate number holding an id
        return mask_id(run) or HIDDEN
    return HIDDEN if _bank_like(run) else text


def mask_lookalikes_text(value: str) -> str:
    """`value` with every id, phone or bank account inside it masked (see the module doc)."""
    return _LOOKALIKE.sub(_mask_match, value)


# Four digits in a row, of any script: every look-alike holds them. RE2's \p{Nd} holds every
# character Python's \d matches (tests/test_masking.py checks it for the pinned versions).
FOUR_DIGITS_RE2 = r"\p{Nd}{4}"


def mask_lookalikes(values: pd.Series) -> pd.Series:
    r"""Vectorised `mask_lookalikes_text` over any Series (as text; NA stays NA).

    The values that may hold a look-alike (four digits in a row) are found by Arrow's RE2 in
    one pass; only those go through Python's regex. pandas itself matches \d value by value
    in Python (its \d is Unicode's, RE2's ASCII): 2 s of a city night's publication."""
    text = values.astype("string")
    if not len(text):
        return text
    found = pc.match_substring_regex(text_array(text), FOUR_DIGITS_RE2)
    candidates = found.fill_null(False).to_numpy(zero_copy_only=False)
    if not candidates.any():
        return text
    out = text.copy()
    out[candidates] = text[candidates].str.replace(_LOOKALIKE, _mask_match, regex=True)
    return out


def mask_value(value: str | None, pii: str | None) -> str | None:
    """The masked form of one value of a column with the given PII kind (None: not personal,
    but an id, phone or bank account typed into it is masked all the same)."""
    if value is None:
        return value
    if pii is None:
        return mask_lookalikes_text(str(value))
    if pii == "id":
        return mask_id(value)
    if pii == "name":
        return mask_name(value)
    if pii == "phone":
        return mask_phone(value)
    return HIDDEN


def mask_series(values: pd.Series, pii: str | None) -> pd.Series:
    """Vectorised `mask_value` over a Series of text (NA stays NA).

    Ids, names and phones are masked by position in Arrow's compute kernels (lengths and
    slices in code points, as Python's), without the GIL: pandas mapped a Python function
    value by value, 0.19-0.24 s per column of 741k values against 0.07-0.09 s, holding the GIL
    the publication's other threads need. tests/test_masking.py holds every form to
    `mask_value`."""
    if pii is None:
        return mask_lookalikes(values)
    text = values.astype("string")
    if pii not in ("id", "name", "phone"):
        return pd.Series(HIDDEN, index=values.index, dtype="string").where(text.notna(), pd.NA)
    if not len(text):
        return text
    arrow = text_array(text)
    n = pc.utf8_length(arrow)
    if pii == "id":  # mask_id
        masked = pc.if_else(pc.greater_equal(n, 15), _keep(arrow, n, 6, 4), _HIDDEN)
    elif pii == "phone":  # mask_phone
        masked = pc.if_else(pc.greater_equal(n, 7), _keep(arrow, n, 3, 4), _HIDDEN)
    else:  # mask_name: the first character, and the last of three or more
        masked = pc.if_else(
            pc.less_equal(n, 1),
            _STAR,
            pc.if_else(
                pc.equal(n, 2),
                pc.binary_join_element_wise(pc.utf8_slice_codeunits(arrow, 0, 1), _STAR, _NONE),
                _keep(arrow, n, 1, 1),
            ),
        )
    return pd.Series(pd.array(masked, dtype=text.dtype), index=values.index)


def _keep(text: pa.Array, n: pa.Array, head: int, tail: int) -> pa.Array:
    """The first `head` and last `tail` characters with a star for each between (where the
    value is long enough: the caller chooses)."""
    stars = pc.binary_repeat(_STAR, pc.max_element_wise(pc.subtract(n, head + tail), 0))
    return pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(text, 0, head), stars, pc.utf8_slice_codeunits(text, -tail), _NONE
    )
