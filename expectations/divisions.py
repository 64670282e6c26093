"""The county's administrative divisions (expectations/reference/divisions.csv): the order in
which people expect towns and villages — the order of their division codes, not of their
names' code points. Reports and published tables list towns by `town_order`."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pandas as pd

_CSV = Path(__file__).parent / "reference" / "divisions.csv"


@cache
def _known_towns() -> tuple[str, ...]:
    divisions = pd.read_csv(_CSV, dtype=str)
    return tuple(dict.fromkeys(divisions.sort_values("village_code")["town"]))


def town_order(towns: Iterable[str]) -> list[str]:
    """`towns` (each once) in the order of the county's division codes, then any town the
    divisions do not list, by name."""
    present = {t for t in towns if isinstance(t, str) and t}
    known = [t for t in _known_towns() if t in present]
    return known + sorted(present - set(known))
