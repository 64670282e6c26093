"""Masking a column of text at once gives what masking each value gives (domain.masking).

mask_lookalikes finds the values that may hold an id, a phone or a bank account with Arrow's
RE2 (four digits in a row, \\p{Nd}) and sends only those through Python's regex; both must agree
on what a digit is, in every script, for the pinned versions.
"""

from __future__ import annotations

import re
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from domain.masking import (
    FOUR_DIGITS_RE2,
    mask_lookalikes,
    mask_lookalikes_text,
    mask_series,
    mask_value,
)

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def test_every_digit_python_matches_is_a_digit_to_re2() -> None:
    digits = [chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\d", chr(c))]
    assert len(digits) > 600  # every script's digits, not only 0-9
    runs = pa.array([d * 4 for d in digits])
    found = pc.match_substring_regex(runs, FOUR_DIGITS_RE2)
    missed = [d for d, hit in zip(digits, found.to_pylist(), strict=True) if not hit]
    assert missed == []


def _id(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17)  # python-stdnum: the oracle


BIRTH = r"(19[5-9][0-9]|20[01][0-9])(0[1-9]|1[0-2])[0-2][1-9]"
ids = st.from_regex(rf"\A6[1-5][0-9]{{4}}{BIRTH}[0-9]{{3}}\Z")
pieces = st.one_of(
    ids.map(_id),
    ids.map(lambda first17: _id(first17).translate(FULL_WIDTH)),  # typed with a Chinese IME
    st.from_regex(r"\A1[3-9][0-9]{9}\Z"),  # a mobile number
    st.from_regex(r"\A62[0-9]{14,17}\Z"),  # a UnionPay card
    st.from_regex(r"\A[0-9]{1,6}\Z"),
    st.text(alphabet="0123456789０１２３４５٣٤٥੧੨ Xx-+号身份证电话：，", max_size=24),
)
texts = st.one_of(st.none(), st.lists(pieces, max_size=4).map("".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, max_size=30))
def test_a_column_is_masked_as_each_of_its_values(values: list[str | None]) -> None:
    column = pd.Series(values, dtype="string")
    one_by_one = [None if v is None else mask_lookalikes_text(v) for v in values]
    assert mask_lookalikes(column).astype(object).where(column.notna(), None).tolist() == one_by_one


def test_a_full_width_id_is_masked_in_a_column() -> None:
    typed = _id("61030220120901412").translate(FULL_WIDTH)
    column = pd.Series(["身份证" + typed, "无", None], dtype="string")
    masked = mask_lookalikes(column)
    assert masked[0] == mask_lookalikes_text("身份证" + typed) != "身份证" + typed
    assert masked[1] == "无" and masked.isna()[2]


# Ids, names and phones as typed: any script, characters outside the BMP, combining marks,
# empty values, missing values; lengths around each form's limits.
typed = st.one_of(
    st.none(),
    ids.map(_id),
    ids.map(lambda first17: _id(first17).translate(FULL_WIDTH)),
    st.from_regex(r"\A1[3-9][0-9]{9}\Z"),
    st.text(alphabet="张王李欧阳𠀀𠮷a\u0301 ·0123456789Xx", max_size=20),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(typed, max_size=30), st.sampled_from(["id", "name", "phone", "bank", "health"]))
def test_a_personal_column_is_masked_as_each_of_its_values(
    values: list[str | None], pii: str
) -> None:
    column = pd.Series(values, dtype="string", index=[f"r{i}" for i in range(len(values))])
    masked = mask_series(column, pii)
    one_by_one = [None if v is None else mask_value(v, pii) for v in values]
    assert masked.astype(object).where(column.notna(), None).tolist() == one_by_one
    assert masked.index.equals(column.index) and masked.dtype == column.dtype
