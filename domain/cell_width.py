"""How wide text shows in a spreadsheet cell, in Excel's character units: one home for the
report workbooks (tasks/reports/render.py) and the published ones (warehouse/published.py)."""

from __future__ import annotations

import math

# From CJK Radicals Supplement on, characters are full width: two units.
_FULL_WIDTH_FROM = 0x2E80


def display_width(text: str) -> int:
    """Width in Excel character units: a CJK (full-width) character counts two."""
    return sum(2 if ord(ch) >= _FULL_WIDTH_FROM else 1 for ch in text)


def wrapped_lines(text: str, column: float) -> int:
    """How many lines `text` takes wrapped in a column `column` characters wide (about one
    character of the width is the cell's padding)."""
    return max(1, math.ceil(display_width(text) / max(column - 1.0, 1.0)))
