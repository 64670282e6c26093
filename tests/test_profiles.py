"""一人一档 / 一户一档: the columns of publishing.md in order, and the facts behind them (the same
meaning of active, labour, twelve-month burden and open alerts as the rules) — SQLite and
PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from test_alerts import (  # the same hand-built deliveries
    D,
    born,
    cert,
    dibao,
    ga_death,
    home,
    job,
    key,
    load,
    pid,
    roster,
    settlement,
)

from tasks.alerts import DEPT_ORDER, alerts_frame, raise_alerts
from tasks.profiles import (
    HOUSEHOLD_COLUMNS,
    PERSON_COLUMNS,
    _first_by,
    _first_names_of,
    _in_dept_order,
    _Picker,
    _seen,
    _seen_any_dept,
    _seen_rows,
    household_profile,
    person_profile,
)
from warehouse.db import connect, upgrade
from warehouse.tables import person_sources

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = connect(warehouse_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def test_profile_columns_are_publishings() -> None:
    assert PERSON_COLUMNS == [
        "person_key",
        "id_number",
        "name",
        "household_id",
        "gender",
        "birth_date",
        "age",
        "village_code",
        "town",
        "in_roster",
        "household_type",
        "monitoring_category",
        "deceased",
        "death_date",
        "dibao_status",
        "assistance_type",
        "disability_category",
        "disability_level",
        "school_stage",
        "enrolment_status",
        "insured_status",
        "self_burden_12m",
        "employment_status",
        "monthly_income",
        "sources",
        "as_of",
    ]
    assert HOUSEHOLD_COLUMNS == [
        "household_id",
        "village_code",
        "town",
        "village",
        "head_person_key",
        "head_id_number",
        "head_name",
        "household_size",
        "active_members",
        "household_type",
        "monitoring_category",
        "risk_types",
        "risk_eliminated",
        "income_per_capita",
        "house_grade",
        "renovation_status",
        "water_safe",
        "members_on_dibao",
        "members_severely_disabled",
        "labour_members",
        "labour_members_employed",
        "self_burden_12m",
        "open_alerts",
        "as_of",
    ]


def test_profiles_of_a_small_county(engine: Engine) -> None:
    head, wife, grandpa = pid(born(40)), pid(born(38), male=False), pid(born(75))
    child, outsider = pid(born(8)), pid(born(50))
    worker = {"labour_skill": "普通劳动力"}
    h1, members = home(
        "H1",
        head,
        members=[(wife, "配偶"), (grandpa, "之父"), (child, "之子")],
        income_per_capita=7000.0,
        household_type="脱贫户",
    )
    members = [{**m, **(worker if m["id_number"] in (head, wife) else {})} for m in members]
    members[0]["labour_skill"] = "技能劳动力"
    names = {str(m["id_number"]): m["name"] for m in members}

    def named(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        # The departments spell every name as the roster does (no DQ-01 here).
        return [{**r, "name": names.get(str(r["id_number"]), "某人")} for r in rows]

    load(
        engine,
        D,
        {
            "XC_HU": [h1],
            "XC_REN": members,
            "GA_BIANDONG": named([ga_death(grandpa, D - timedelta(days=20))]),
            "MZ_DIBAO": named([dibao(wife), dibao(grandpa), dibao(outsider, "停保")]),
            "CL_CANJI": named([cert(wife, "二级")]),
            "RS_JIUYE": named([job(head, "省外务工"), job(wife, "未就业")]),
            "YB_JIESUAN": named(
                [
                    settlement("S1", head, 6000.0),
                    settlement("S2", wife, 500.5),
                    settlement("S3", wife, 9000.0),
                    settlement("S3", wife, 9000.0, kind="冲销"),
                    settlement("S4", grandpa, 3000.0),
                ]
            ),
        },
    )
    with engine.begin() as conn:
        raise_alerts(conn, D)
        people = person_profile(conn, D).set_index("person_key")
        homes = household_profile(conn, D)
    assert list(people.reset_index().columns) == PERSON_COLUMNS
    assert list(homes.columns) == HOUSEHOLD_COLUMNS
    assert set(people.index) == {key(p) for p in (head, wife, grandpa, child, outsider)}

    w = people.loc[key(wife)]
    assert (w["gender"], w["age"], w["household_id"], w["in_roster"], w["deceased"]) == (
        "女",
        38,
        "H1",
        True,
        False,
    )
    assert (w["dibao_status"], w["disability_level"], w["employment_status"]) == (
        "在保",
        "二级",
        "未就业",
    )
    assert w["self_burden_12m"] == 500.5  # the reversed 9000 does not count
    assert w["sources"] == "XC,MZ,YB,RS,CL"
    g = people.loc[key(grandpa)]
    assert g["deceased"] and g["death_date"] == pd.Timestamp(D - timedelta(days=20))
    o = people.loc[key(outsider)]
    assert (o["in_roster"], o["dibao_status"], o["town"], o["sources"]) == (
        False,
        "停保",
        "城关镇",
        "MZ",
    )
    assert people.loc[key(child), "age"] == 8

    h = homes.set_index("household_id").loc["H1"]
    assert (h["household_size"], h["active_members"], h["members_on_dibao"]) == (4, 3, 1)
    assert (h["labour_members"], h["labour_members_employed"]) == (2, 1)
    assert h["members_severely_disabled"] == 1
    assert h["self_burden_12m"] == 6500.5  # the dead grandfather's bill is not the household's
    assert h["head_person_key"] == key(head)
    # Open alerts of the household (its own and its members'): INC-01 (7000 < 7500, not
    # monitored), CL-01 (wife), GA-01, GA-02 and MZ-01 (the dead grandfather still 在保 and
    # listed). The outsider's MZ_DIBAO row is 停保: nothing.
    with engine.connect() as conn:
        rules = sorted(alerts_frame(conn, D)["rule_id"])
    assert rules == ["CL-01", "GA-01", "GA-02", "INC-01", "MZ-01"]
    assert h["open_alerts"] == 5
    assert (homes["as_of"] == pd.Timestamp(D)).all()


def test_household_open_alerts_drop_when_resolved(engine: Engine) -> None:
    low = home("H1", income_per_capita=100.0)
    load(engine, D, roster(low))
    with engine.begin() as conn:
        raise_alerts(conn, D)
        assert household_profile(conn, D)["open_alerts"].tolist() == [1]
    day = D + timedelta(days=1)
    load(engine, day, roster(home("H1", str(low[0]["head_id_number"]), income_per_capita=9000.0)))
    with engine.begin() as conn:
        raise_alerts(conn, day)
        assert household_profile(conn, day)["open_alerts"].tolist() == [0]


def test_profile_name_off_roster_comes_from_the_department(engine: Engine) -> None:
    outsider = pid(born(50))
    load(
        engine,
        D,
        {**roster(home("H1")), "RS_JIUYE": [{**job(outsider, "县内务工"), "name": "赵六"}]},
    )
    with engine.connect() as conn:
        people = person_profile(conn, D).set_index("person_key")
    assert people.loc[key(outsider), "name"] == "赵六"
    assert not people.loc[key(outsider), "in_roster"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["k1", "k2", "k3", "k10", "K2"]),
            st.sampled_from(["610327199001011234", "61032719900101123X", "110101200001010011"]),
            st.sampled_from(list(DEPT_ORDER)),
        ),
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_persons_seen_by_department_sets_equal_the_ordered_aggregate(
    rows: list[tuple[str, str, str]],
) -> None:
    """_seen's one GROUP BY with a bit per department names the same departments in the same
    order (DEPT_ORDER), with the same smallest id, as the ordered string_agg it replaced (kept
    for a department outside DEPT_ORDER)."""
    table = pa.table(
        {
            "person_key": pa.array([r[0] for r in rows], pa.string()),
            "id_number": pa.array([r[1] for r in rows], pa.string()),
            "dept": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    fast = _seen_rows(table)
    assert fast.equals(_seen_any_dept(table))
    assert fast["person_key"].tolist() == sorted({r[0] for r in rows})


def test_a_department_outside_the_order_comes_after_the_known_ones() -> None:
    table = pa.table(
        {
            "person_key": ["k1", "k1", "k1"],
            "id_number": ["2", "1", "3"],
            "dept": ["ZZ", "GA", "XC"],
        }
    )
    seen = _seen_rows(table)
    expected = {"person_key": "k1", "id_number": "1", "sources": "XC,GA,ZZ"}
    assert seen.to_dict("records") == [expected]


_KEYS = st.sampled_from(["k1", "k2", "k3", "k10", "K2", "张三", "k\u00e9"])


@given(
    st.lists(
        st.tuples(
            _KEYS,
            st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.0])),
            st.one_of(st.none(), st.sampled_from(["A", "B", "b", "特困", "低保"])),
            st.integers(0, 9),
        ),
        max_size=40,
    ),
    st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_first_row_per_person_is_the_sorted_frames_first(
    rows: list[tuple[str, float | None, str | None, int]], two_keys: bool
) -> None:
    """_first_by (row numbers picked in DuckDB) gives, for every person, the row that
    sort_values(order).drop_duplicates("person_key") gives: missing values last, equal keys
    in their order in the frame (the `other` column tells the tied rows apart)."""
    frame = pd.DataFrame(
        {
            "person_key": pd.array([r[0] for r in rows], dtype="string"),
            "rank": pd.array([float("nan") if r[1] is None else r[1] for r in rows], "float64"),
            "kind": pd.array([r[2] for r in rows], dtype="string"),
            "other": pd.array([r[3] for r in rows], dtype="int64"),
        }
    )
    order = ["person_key", "rank", "kind"] if two_keys else ["person_key", "rank"]
    expected = frame.sort_values(order).drop_duplicates("person_key").set_index("person_key")
    got = _first_by(frame, order)
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index())


@given(
    st.lists(_KEYS, max_size=30),
    st.lists(st.tuples(_KEYS, st.integers(0, 9)), max_size=30),
)
@settings(max_examples=80, deadline=None)
def test_picker_equals_reindex_and_isin(keys: list[str], rows: list[tuple[str, int]]) -> None:
    """_Picker, which finds the keys' positions once per frame, picks what reindex picks and
    finds what isin finds, for each of a frame's columns and again on a second use."""
    wanted = pd.Series(pd.array(keys, dtype="string"), index=pd.RangeIndex(len(keys)) + 7)
    frame = pd.DataFrame(
        {
            "person_key": pd.array([r[0] for r in rows], dtype="string"),
            "n": pd.array([r[1] for r in rows], dtype="int64"),
            "t": pd.array([str(r[1]) for r in rows], dtype="string"),
        }
    ).drop_duplicates("person_key")
    unique = frame.set_index("person_key")
    pick = _Picker(wanted)
    for _ in range(2):
        for column in ("n", "t"):
            expected = unique[column].reindex(wanted.to_numpy()).set_axis(wanted.index)
            got = pick(unique, column)
            assert got.astype(object).where(got.notna(), None).tolist() == (
                expected.astype(object).where(expected.notna(), None).tolist()
            )
            assert got.index.equals(wanted.index)
        assert pick.isin(unique).tolist() == wanted.isin(unique.index).tolist()
    doubled = pd.Series(1, index=pd.Index(pd.array([r[0] for r in rows] * 2, dtype="string")))
    assert pick.isin(doubled).tolist() == wanted.isin(doubled.index).tolist()


@given(
    st.lists(
        st.tuples(
            _KEYS,
            st.sampled_from(["王五", "王伍", "Wang", "王五 ", "李四"]),
            st.sampled_from(["XC_REN", "MZ_DIBAO", "MZ_LINSHI", "YB_CANBAO"]),
            st.sampled_from(list(DEPT_ORDER)),
        ),
        max_size=40,
    )
)
@settings(max_examples=80, deadline=None)
def test_first_names_equal_the_ordered_distinct_on(rows: list[tuple[str, str, str, str]]) -> None:
    """The hash aggregate (arg_min over department rank, dataset, name) picks, per person,
    the name that DISTINCT ON with ORDER BY person_key, rank, dataset, name picked."""
    named = pa.table(
        {
            "person_key": pa.array([r[0] for r in rows], pa.string()),
            "name": pa.array([r[1] for r in rows], pa.string()),
            "dataset": pa.array([r[2] for r in rows], pa.string()),
            "dept": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    ordered = _in_dept_order(
        "named",
        named,
        "SELECT DISTINCT ON (person_key) person_key, name "
        "FROM named JOIN dept_order USING (dept) ORDER BY person_key, rank, dataset, name",
    )
    got = _first_names_of(named).sort_by("person_key")
    assert got.to_pylist() == ordered.to_pylist()


def test_persons_seen_are_aggregated_alike_in_every_warehouse(engine: Engine) -> None:
    """_seen in the warehouse (PostgreSQL aggregates in the database, SQLite reads the rows)
    equals _seen_rows over the rows first seen by the date: keys and ids compared byte by byte
    (K2 before k1, é after z), the smallest id, departments in DEPT_ORDER; a department outside
    it comes after them."""
    rng = random.Random(13)
    keys = ["k1", "k2", "K2", "k10", "z", "é", "0"]
    ids = ["610327199001011234", "61032719900101123X", "110101200001010011"]
    rows = {}
    for _ in range(300):
        person = rng.choice(keys)
        dataset = rng.choice(["XC_REN", "MZ_DIBAO", "YB_CANBAO", "GA_BIANDONG", "CL_CANJI"])
        rows[(person, dataset, rng.choice(["id_number", "head_id_number"]))] = {
            "dept": rng.choice(DEPT_ORDER),
            "id_number": rng.choice(ids),
            "first_seen": D + timedelta(days=rng.randint(-3, 2)),
        }

    def inserted(more: dict[tuple[str, str, str], dict[str, object]]) -> pd.DataFrame:
        with engine.begin() as conn:
            conn.execute(
                person_sources.insert(),
                [
                    {"person_key": p, "dataset": d, "id_column": c, **v}
                    for (p, d, c), v in more.items()
                ],
            )
        with engine.connect() as conn:
            return _seen(conn, D)

    def expected() -> pd.DataFrame:
        seen = [(k, v) for k, v in rows.items() if v["first_seen"] <= D]
        return _seen_rows(
            pa.table(
                {
                    "person_key": pa.array([k[0] for k, _ in seen], pa.string()),
                    "id_number": pa.array([v["id_number"] for _, v in seen], pa.string()),
                    "dept": pa.array([v["dept"] for _, v in seen], pa.string()),
                }
            )
        )

    got = inserted(rows)
    assert got.equals(expected())
    assert got["person_key"].tolist()[:3] == ["0", "K2", "k1"]
    outside = {("k1", "ZZ_NEW", "id_number"): {"dept": "ZZ", "id_number": ids[0], "first_seen": D}}
    rows |= outside
    got = inserted(outside)
    assert got.equals(expected())
    assert got.set_index("person_key").loc["k1", "sources"].endswith(",ZZ")
