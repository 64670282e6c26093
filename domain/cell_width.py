"""How wide text shows in a spreadsheet cell, in Excel's character units: one home for the
report workbooks (tasks/reports/render.py) and the published ones (warehouse/published.py)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# From CJK Radicals Supplement on, characters are full width: two units.
_FULL_WIDTH_FROM = 0x2E80


def display_width(text: str) -> int:
    """Width in Excel character units: a CJK (full-width) character counts two."""
    return sum(2 if ord(ch) >= _FULL_WIDTH_FROM else 1 for ch in text)


def wrapped_lines(text: str, column: float) -> int:
    """How many lines `text` takes wrapped in a column `column` characters wide (about one
    character of the width is the cell's padding)."""
    return max(1, math.ceil(display_width(text) / max(column - 1.0, 1.0)))


# Full-width characters, as display_width counts them (RE2 syntax, for Arrow).
_FULL_WIDTH_RE2 = r"[\x{2E80}-\x{10FFFF}]"


def wrapped_lines_each(texts: pa.Array | pa.ChunkedArray, column: float) -> np.ndarray:
    """wrapped_lines of every text of a column (a missing one: 1), computed by Arrow: a
    city's alert workbook asked it of 70k evidence texts one character at a time."""
    if len(texts) == 0:
        return np.ones(0, dtype=np.int64)
    width = pc.add(pc.utf8_length(texts), pc.count_substring_regex(texts, pattern=_FULL_WIDTH_RE2))
    width = pc.fill_null(width, 0).to_numpy(zero_copy_only=False).astype(np.float64)
    return np.maximum(1, np.ceil(width / max(column - 1.0, 1.0))).astype(np.int64)
