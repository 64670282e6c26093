"""Identical duplicates are collapsed before any rule that looks across rows (issue 17).

A household head's row delivered twice, byte for byte, is one head: the household loads. A head
delivered twice with one differing cell is a key conflict (both rows quarantined, the members
load). Two different heads break `one_head_per_household`: the two heads are quarantined and
named in the message, the members load. Each case runs the real intake on real files in every
format the reader takes (CSV UTF-8 and GB18030, XLSX, JSON), on SQLite and PostgreSQL; a
property test shows that identical copies of any rows, anywhere, change only the duplicate count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from datashare.synth import build_county, make_delivery, render_delivery, source_row
from expectations.contract import get_contract, load_common
from tasks.checks import id18_check_char
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef
from tasks.read import read_delivery
from tasks.validate import Validated, validate_rows
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import current_rows

DAY = date(2025, 3, 12)
COMMON = load_common()
REN = get_contract("XC_REN")


def vid(first17: str) -> str:
    return first17 + str(id18_check_char(pd.Series([first17]))[0])


def person(household: str, name: str, first17: str, relation: str) -> dict[str, str]:
    return {
        "household_id": household,
        "name": name,
        "id_number": vid(first17),
        "relation": relation,
        "ethnicity": "汉族",
        "health": "健康",
    }


H1, H2, H3, H4, H5 = (f"61032710020100{i:02d}" for i in range(1, 6))
# 13 persons in 5 households (two quarantined rows stay under the 20% gate); names with 堃 and
# the GB18030-only 䶮.
ROSTER = [
    person(H1, "张大山", "61032719600101001", "户主"),  # 0
    person(H1, "李秀英", "61032719620202002", "配偶"),  # 1
    person(H1, "张堃", "61032719900303003", "之子"),  # 2
    person(H2, "王建国", "61032719550404004", "户主"),  # 3
    person(H2, "王䶮", "61032719880505005", "之女"),  # 4
    person(H3, "赵六", "61032719700606006", "户主"),  # 5
    person(H3, "赵小七", "61032719950707007", "之子"),  # 6
    person(H3, "刘芳", "61032719960808008", "之儿媳"),  # 7
    person(H4, "陈志强", "61032719651010011", "户主"),  # 8
    person(H4, "陈思", "61032719921111012", "之女"),  # 9
    person(H4, "陈默", "61032719941212013", "之子"),  # 10
    person(H5, "孙桂兰", "61032719480115014", "户主"),  # 11
    person(H5, "孙晓燕", "61032719750216025", "之女"),  # 12
]
N = len(ROSTER)


@dataclass(frozen=True)
class Case:
    """A delivery made from the roster, and what the intake must make of it (0-based data
    positions in the delivered file)."""

    rows: list[dict[str, str]]
    loaded: list[int]
    collapsed: list[int]
    quarantined: dict[int, str]  # position -> primary rule
    named_together: tuple[int, ...] = ()  # positions one message names as the group's rows


def _cases() -> dict[str, Case]:
    r = ROSTER
    everyone = list(range(N))
    renamed_head = r[0] | {"name": "张大三"}
    second_head = r[4] | {"relation": "户主"}
    rule = "one_head_per_household"
    return {
        "head_twice_adjacent": Case(
            [r[0], r[0], *r[1:]], loaded=[0, *range(2, N + 1)], collapsed=[1], quarantined={}
        ),
        "head_twice_far_apart": Case([*r, r[3]], loaded=everyone, collapsed=[N], quarantined={}),
        "member_twice": Case(
            [*r[:7], r[2], *r[7:]],
            loaded=[*range(7), *range(8, N + 1)],
            collapsed=[7],
            quarantined={},
        ),
        "head_twice_one_cell_differs": Case(
            [*r, renamed_head],
            loaded=list(range(1, N)),
            collapsed=[],
            quarantined={0: rule, N: rule},
            named_together=(0, N),
        ),
        "two_distinct_heads": Case(
            [*r[:4], second_head, *r[5:]],
            loaded=[p for p in everyone if p not in (3, 4)],
            collapsed=[],
            quarantined={3: rule, 4: rule},
            named_together=(3, 4),
        ),
        "two_distinct_heads_and_a_copy_of_one": Case(
            [*r[:4], second_head, *r[5:], r[3]],
            loaded=[p for p in everyone if p not in (3, 4)],
            collapsed=[N],
            quarantined={3: rule, 4: rule},
            named_together=(3, 4),
        ),
    }


CASES = _cases()
FORMATS = {
    "csv-utf8": ("csv", "utf-8"),
    "csv-gb18030": ("csv", "gb18030"),
    "xlsx": ("xlsx", None),
    "json": ("json", "utf-8"),
}


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def take(engine: Engine, tmp_path: Path, content: bytes, ext: str) -> IntakeSummary:
    name = f"XC_REN_{DAY:%Y%m%d}.{ext}"
    ref = DeliveryRef("XC", "XC_REN", DAY, name, f"landing/XC/{name}")
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=False, secret=b"t"
    )
    return intake_delivery(ref, content, REN, COMMON, engine, options)


@pytest.mark.quick_sample("csv-utf8", "xlsx")
@pytest.mark.parametrize("fmt_name", sorted(FORMATS))
@pytest.mark.parametrize("case_name", sorted(CASES))
def test_duplicates_collapse_before_rules_across_rows(
    engine: Engine, tmp_path: Path, case_name: str, fmt_name: str
) -> None:
    case = CASES[case_name]
    fmt, encoding = FORMATS[fmt_name]
    content = render_delivery(REN, case.rows, fmt=fmt, encoding=encoding)
    if encoding == "gb18030":
        content.decode("gb18030")
        with pytest.raises(UnicodeDecodeError):
            content.decode("utf-8")  # a real GB18030 file, not UTF-8 that happens to decode
    summary = take(engine, tmp_path, content, fmt)

    def at(position: int) -> int:
        return source_row(fmt, REN.title_rows if fmt == "xlsx" else 0, position)

    assert summary.status == "loaded", summary
    assert (summary.rows_in, summary.rows_loaded, summary.rows_rejected, summary.duplicates) == (
        len(case.rows),
        len(case.loaded),
        len(case.quarantined),
        len(case.collapsed),
    )
    rejects = ledger.rejects_frame(engine)
    rejects = rejects[rejects["delivery_id"] == summary.delivery_id]
    assert sorted(zip(rejects["source_row"].astype(int), rejects["rule"], strict=True)) == sorted(
        (at(p), rule) for p, rule in case.quarantined.items()
    )
    with engine.connect() as conn:
        current = current_rows(conn, "XC_REN")
    assert sorted(current["id_number"]) == sorted({case.rows[p]["id_number"] for p in case.loaded})
    assert len(current) == len(case.loaded)
    if case.named_together:
        listed = "、".join(str(at(p)) for p in case.named_together)
        for message in rejects["message"]:
            assert f"每户须有且只有一名户主（同一户编号下违反此规则的：第 {listed} 行）" in message
    for message, value in zip(rejects["message"], rejects["value_masked"], strict=True):
        for row in case.rows:  # names and ids never appear unmasked
            assert row["name"] not in message and row["id_number"] not in message
            assert value is None or row["id_number"] not in value


def test_a_head_with_one_differing_cell_is_a_key_conflict_too() -> None:
    case = CASES["head_twice_one_cell_differs"]
    v = run_rows(case.rows)
    messages = v.rejects["message"].tolist()
    assert all("同一主键有多条内容不同的记录" in m for m in messages), messages
    assert all(f"同一主键的：第 2、{N + 2} 行" in m for m in messages), messages


# --- the rule itself, on frames ------------------------------------------------------------------


def run_rows(rows: Sequence[Mapping[str, str]], first_row: int = 2) -> Validated:
    frame = pd.DataFrame(rows).astype("string")
    frame["source_row"] = range(first_row, first_row + len(frame))
    return validate_rows(frame, REN, COMMON, exchange_date=DAY, excel=False)


def test_a_household_without_a_head_is_quarantined_whole() -> None:
    r = ROSTER
    v = run_rows([r[0], r[1], r[4], *r[5:]])  # H2's only member, no head
    assert v.rejects[["source_row", "rule"]].values.tolist() == [[4, "one_head_per_household"]]
    second = person(H2, "王小二", "61032719900909009", "之子")
    v = run_rows([*r[:3], *r[5:], second, r[4]])  # H2: two members, no head
    assert v.rejects["source_row"].tolist() == [13, 14]
    assert "第 13、14 行" in v.rejects["message"].iloc[0]


def test_a_member_whose_relation_is_unreadable_does_not_take_the_household_down() -> None:
    r = ROSTER
    # H2's head delivered with a relation outside the enum: that row is quarantined for it;
    # the household is not judged headless, since that row may well be the head.
    v = run_rows([*r[:3], r[3] | {"relation": "户 主人"}, *r[4:]])
    assert v.rejects[["source_row", "rule"]].values.tolist() == [[5, "enum"]]
    assert v.rows_loaded == N - 1


def test_a_quarantined_head_still_counts_as_the_head() -> None:
    r = ROSTER
    bad_id = r[3]["id_number"][:17] + ("1" if r[3]["id_number"][17] != "1" else "2")
    v = run_rows([*r[:3], r[3] | {"id_number": bad_id}, *r[4:]])
    assert v.rejects[["source_row", "rule"]].values.tolist() == [[5, "id_checksum"]]
    assert v.rows_loaded == N - 1


def test_a_message_names_at_most_ten_rows_of_a_group() -> None:
    heads = [person(H1, f"户主{i}", f"61032719600101{i:03d}", "户主") for i in range(12)]
    v = run_rows(heads)
    assert v.rows_quarantined == 12
    rows = "、".join(str(n) for n in range(2, 12))
    assert f"第 {rows} 行等 12 行" in v.rejects["message"].iloc[0]


# --- property: identical copies change only the duplicate count ----------------------------------


@pytest.fixture(scope="module")
def delivered() -> dict[str, tuple[pd.DataFrame, Validated]]:
    """Raw frames (as read from real files) of synthetic deliveries with defects planted, and
    their validation."""
    county = build_county(7, 60)
    out = {}
    for dataset in ("XC_REN", "XC_HU"):
        d = make_delivery(county, Path("landing"), dataset, county.start, defect_rate=0.08)
        contract = get_contract(dataset)
        raw = read_delivery(d.content, d.path.name, contract, COMMON).frame
        out[dataset] = (raw, validate_rows(raw, contract, COMMON, exchange_date=DAY, excel=False))
    return out


_COPY_BASE = 10_000_000


def _row_lists_mapped(message: str, origin: dict[int, int]) -> str:
    """The message with the row numbers it lists mapped to their originals, sorted."""

    def mapped(m: re.Match[str]) -> str:
        numbers = sorted({origin.get(int(n), int(n)) for n in m.group(1).split("、")})
        return "第 " + "、".join(str(n) for n in numbers) + " 行"

    return re.sub(r"第 ([\d、]+) 行", mapped, message)


def _outcome(v: Validated, origin: dict[int, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What was loaded and what was quarantined, with copies' row numbers mapped back."""
    loaded = v.accepted.assign(source_row=v.accepted["source_row"].map(lambda r: origin.get(r, r)))
    rejects = v.rejects.assign(
        source_row=v.rejects["source_row"].map(lambda r: origin.get(r, r)),
        message=v.rejects["message"].map(lambda m: _row_lists_mapped(m, origin)),
    )
    return (
        loaded.sort_values("source_row").reset_index(drop=True),
        rejects.sort_values("source_row").reset_index(drop=True),
    )


@pytest.mark.parametrize("dataset", ["XC_REN", "XC_HU"])
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_identical_copies_change_only_the_duplicate_count(
    delivered: dict[str, tuple[pd.DataFrame, Validated]], dataset: str, data: st.DataObject
) -> None:
    raw, base = delivered[dataset]
    contract = get_contract(dataset)
    n = len(raw)
    assert base.rows_quarantined > 0  # planted defects: quarantines to keep unchanged
    # Copies of rows the delivery keeps (a copy of a collapsed row placed before the row it
    # repeats would only change which of them is kept, i.e. the row number).
    kept = np.flatnonzero(~base.duplicate).tolist()
    copies = data.draw(
        st.lists(st.tuples(st.sampled_from(kept), st.integers(0, n)), min_size=1, max_size=12),
        label="copies (row, insert before position)",
    )

    order = list(range(n))
    origin: dict[int, int] = {}
    labels = raw["source_row"].to_list()
    for k, (row, position) in enumerate(copies):
        order.insert(min(position, len(order)), n + k)
        labels.append(_COPY_BASE + k)
        origin[_COPY_BASE + k] = int(raw["source_row"].iloc[row])
    copied = pd.concat([raw, raw.iloc[[row for row, _ in copies]]], ignore_index=True)
    copied = copied.assign(source_row=np.array(labels, dtype=np.int64))
    copied = copied.iloc[order].reset_index(drop=True)
    grown = validate_rows(copied, contract, COMMON, exchange_date=DAY, excel=False)

    assert grown.rows_in == base.rows_in + len(copies)
    assert grown.duplicates == base.duplicates + len(copies)
    assert (grown.rows_loaded, grown.rows_quarantined) == (base.rows_loaded, base.rows_quarantined)
    base_loaded, base_rejects = _outcome(base, {})
    grown_loaded, grown_rejects = _outcome(grown, origin)
    pd.testing.assert_frame_equal(grown_loaded, base_loaded)
    pd.testing.assert_frame_equal(grown_rejects, base_rejects)
