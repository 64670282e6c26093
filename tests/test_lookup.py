"""The rules' roster lookup (tasks.alerts.findings._lookup) is pandas' many-to-one left merge."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.alerts.findings import _lookup

keys = st.one_of(st.none(), st.sampled_from(["k0", "k1", "k2", "k3", "k4", "键5", ""]))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(keys, max_size=20),
    st.lists(keys, unique=True, max_size=7),
    st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=7, max_size=7),
)
def test_lookup_is_a_left_merge(
    left: list[str | None], right: list[str | None], names: list
) -> None:
    found = pd.DataFrame({"person_key": pd.Series(left, dtype="string"), "n": range(len(left))})
    roster = pd.DataFrame(
        {
            "person_key": pd.Series(right, dtype="string"),
            "roster_name": pd.Series(names[: len(right)], dtype="string"),
        }
    )
    expected = found.merge(roster, on="person_key", how="left", validate="many_to_one")
    pd.testing.assert_frame_equal(_lookup(found, roster), expected)


def test_a_roster_with_a_key_twice_is_refused_as_pandas_does() -> None:
    found = pd.DataFrame({"person_key": pd.Series(["a"], dtype="string")})
    roster = pd.DataFrame(
        {
            "person_key": pd.Series(["a", "a"], dtype="string"),
            "roster_name": pd.Series(["x", "y"], dtype="string"),
        }
    )
    with pytest.raises(pd.errors.MergeError):
        _lookup(found, roster)
