"""A workbook's cells become text columns by Arrow a group at a time (tasks.read._sheet_columns,
issue 13): the same text and the same number-cell flags as converting cell by cell
(`_column_text`, `_inexact_number`), whatever mix of cells calamine hands over."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.read import _column_text, _inexact_number, _sheet_columns

# What python-calamine gives for a cell: text ("" for an empty cell), a float for every number,
# an int (ods, xls), a bool, a date, a datetime, a time, a duration; None past a short row.
_CELLS = st.one_of(
    st.text(max_size=6),
    st.just(""),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60).map(float),  # integral floats, also beyond 2^53
    st.integers(-(10**18), 10**18).map(lambda i: i / 100),  # money and fractions
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.timedeltas(min_value=timedelta(days=-9999), max_value=timedelta(days=9999)),
)
# Columns as the synthetic county has them: text, or numbers with empty cells between.
_COLUMN_KINDS = st.sampled_from(["any", "text", "numbers"])


@st.composite
def _sheets(draw: st.DrawFn) -> tuple[list[list[object]], int]:
    width = draw(st.integers(1, 5))
    height = draw(st.integers(0, 40))
    kinds = [draw(_COLUMN_KINDS) for _ in range(width)]
    cell = {
        "any": _CELLS,
        "text": st.one_of(st.text(max_size=4), st.just(""), st.none()),
        "numbers": st.one_of(st.just(""), st.integers(-(2**54), 2**54).map(float), _CELLS),
    }
    rows = [[draw(cell[k]) for k in kinds] for _ in range(height)]
    short = draw(st.booleans())
    if rows and short:  # a short row (not calamine's) is padded with None
        rows[-1] = rows[-1][: draw(st.integers(0, width - 1))]
    return rows, width


def _cell_by_cell(rows: list[list[object]], width: int) -> tuple[list[list[str | None]], list]:
    padded = [[*r, *[None] * (width - len(r))] for r in rows]
    columns = [[r[p] for r in padded] for p in range(width)]
    return [_column_text(c) for c in columns], [[_inexact_number(v) for v in c] for c in columns]


@settings(max_examples=400, deadline=None)
@given(_sheets())
@example(([[6.103271990010112e17, 1.0, "", True]], 4))
@example(([[-0.0, 2.0**53, 1e-5, 1e21], [None, -(2.0**53) + 1, 0.1, math.inf]], 4))
@example(([[datetime(2025, 3, 10), date(2025, 3, 10), time(8, 30), timedelta(days=1.5)]], 4))
def test_columns_by_arrow_equal_cell_by_cell(sheet: tuple[list[list[object]], int]) -> None:
    rows, width = sheet
    columns, numbers = _sheet_columns(rows, width, set(range(width)))
    expected_text, expected_flags = _cell_by_cell(rows, width)
    assert len(columns) == width
    for p in range(width):
        assert columns[p].type == pa.large_string()
        assert columns[p].to_pylist() == (expected_text[p] if rows else [])
        if rows:
            assert numbers[p].tolist() == expected_flags[p]


def test_only_identifier_positions_get_flags() -> None:
    rows = [[1.5, 1.5, "x"], [2.0, "a", None]]
    columns, numbers = _sheet_columns(rows, 3, {0, 2})
    assert sorted(numbers) == [0, 2]
    assert numbers[0].tolist() == [True, False]
    assert numbers[2].tolist() == [False, False]
    assert [c.to_pylist() for c in columns] == [["1.5", "2"], ["1.5", "a"], ["x", None]]
