"""一人一档 and 一户一档: person_profile and household_profile as of an exchange date.

    person_profile(conn, as_of)     one row per person seen in any dataset (person_sources with
                                    first_seen <= as_of), facts from the latest data of each
                                    department on as_of
    household_profile(conn, as_of)  one row per roster household (XC_HU on as_of)
    household_facts(conn, as_of)    household_profile but its open alerts (read ahead)

Both return exactly publishing.md's columns, in its order, in plain form (masking is the
publisher's job); person_key comes from history. They read the same facts as the alert rules
(tasks.alerts.load_facts), so "active member", "labour member", "twelve-month self burden" and
"monitored" mean the same in a profile as in an alert. Dates are datetime64[s] (NaT when empty);
money is float64 yuan rounded to the cent; counts are int64.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Connection, String, column, func, literal, select, values

from domain import definitions as dd
from tasks.alerts import (
    DEPT_ORDER,
    Facts,
    _arrow_text,
    alerts_frame,
    department_facts,
    divisions,
    household_burden,
    name_keys,
    read_current,
    read_once,
)
from warehouse.bulk import fetch_arrow, is_postgres
from warehouse.tables import person_sources

PERSON_COLUMNS = [
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
HOUSEHOLD_COLUMNS = [
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
_DIBAO_ORDER = {"在保": 0, "停保": 1, "退出": 2}


def _facts(conn: Connection, as_of: date) -> Facts:
    return department_facts(conn, as_of)


def _count(keys: pd.Series, index: pd.Series) -> pd.Series:
    """How often each value of `index` occurs in `keys` (int64, 0 when never)."""
    return index.map(keys.value_counts()).fillna(0).astype("int64")


def household_profile(conn: Connection, as_of: date) -> pd.DataFrame:
    """一户一档: one row per roster household on as_of (publishing.md columns, in order).

    All but open_alerts is read once per state of the warehouse within `facts_read_once`
    (household_facts: the night reads it ahead, beside the alerts); the open alerts are
    counted here, from the alerts as they are now."""
    base = household_facts(conn, as_of)
    open_alerts = alerts_frame(conn, as_of).loc[lambda f: f["status"] == "open", "household_id"]
    return base.assign(open_alerts=_count(open_alerts, base["household_id"]))[HOUSEHOLD_COLUMNS]


def household_facts(conn: Connection, as_of: date) -> pd.DataFrame:
    """household_profile without open_alerts (it reads no alert), ordered by household_id;
    read once per state of the warehouse within `facts_read_once` (a shared frame: never
    changed in place)."""
    return read_once("household_facts", conn, as_of, lambda: _household_facts(conn, as_of))


def _household_facts(conn: Connection, as_of: date) -> pd.DataFrame:
    facts = _facts(conn, as_of)
    hh = facts.households
    m = facts.members
    # Only the two columns the counts read: filtering every column of the roster's members
    # was 2 s of a city night's publication.
    members = m[["person_key", "household_id"]]
    active = members.loc[m["active"]]
    ids = hh["household_id"]
    house = facts.extra["ZJ_FANGWU"].set_index("head_person_key")
    water = (
        facts.extra["SL_YINSHUI"].drop_duplicates("head_person_key").set_index("head_person_key")
    )
    on_dibao = active["person_key"].isin(facts.extra["on_dibao"]["person_key"])
    cl = facts.extra["CL_CANJI"]
    severe_keys = cl.loc[dd.severely_disabled(cl["cert_status"], cl["level"]), "person_key"]
    rs = facts.extra["RS_JIUYE"].set_index("person_key")["employment_status"]
    labour = members.loc[m["labour"]]
    status = _pick(labour["person_key"], rs)
    employed = labour.loc[status.notna() & ~dd.unemployed(status)]
    burden = household_burden(facts).set_index("household_id")["cents"]
    out = pd.DataFrame(
        {
            "household_id": ids,
            "village_code": hh["village_code"],
            "town": hh["town"],
            "village": hh["village"],
            "head_person_key": hh["head_person_key"],
            "head_id_number": hh["head_id_number"],
            "head_name": hh["head_name"],
            "household_size": hh["household_size"],
            "active_members": _count(active["household_id"], ids),
            "household_type": hh["household_type"],
            "monitoring_category": hh["monitoring_category"],
            "risk_types": hh["risk_types"],
            "risk_eliminated": hh["risk_eliminated"],
            "income_per_capita": hh["income_per_capita"].astype("float64").round(2),
            "house_grade": _pick(hh["head_person_key"], house["grade"]).astype("string"),
            "renovation_status": _pick(hh["head_person_key"], house["renovation_status"]).astype(
                "string"
            ),
            "water_safe": _pick(hh["head_person_key"], water["water_safe"]).astype("boolean"),
            "members_on_dibao": _count(active.loc[on_dibao, "household_id"], ids),
            "members_severely_disabled": _count(
                active.loc[active["person_key"].isin(severe_keys), "household_id"], ids
            ),
            "labour_members": _count(labour["household_id"], ids),
            "labour_members_employed": _count(employed["household_id"], ids),
            "self_burden_12m": (_pick(ids, burden).fillna(0).astype("int64") / 100).round(2),
            "as_of": pd.Timestamp(as_of),
        }
    )
    out["as_of"] = out["as_of"].astype("datetime64[s]")
    return out.sort_values("household_id").reset_index(drop=True)


def _in_dept_order(name: str, rows: pa.Table, sql: str) -> pa.Table:
    """`sql` run in DuckDB over `rows` (as table `name`) and dept_order (dept, rank: its place
    in DEPT_ORDER), as Arrow."""
    order = pa.table(
        {"dept": pa.array(list(DEPT_ORDER)), "rank": pa.array(range(len(DEPT_ORDER)), pa.int64())}
    )
    with duckdb.connect() as duck:
        duck.register(name, rows)
        duck.register("dept_order", order)
        return duck.sql(sql).to_arrow_table()


def _seen(conn: Connection, as_of: date) -> pd.DataFrame:
    """Persons first seen on or before as_of, with the departments that hold them.

    person_key, the smallest id_number seen with it, sources (its departments in DEPT_ORDER,
    comma-separated); one row per person, ordered by person_key. Aggregated in DuckDB (a
    million persons: pandas' per-group join took most of person_profile's time).
    """
    ps = person_sources.c
    if is_postgres(conn):
        people = _seen_in_postgres(conn, as_of)
        if people is not None:
            return _named_sources(people)
    rows = fetch_arrow(
        conn,
        select(ps.person_key, ps.id_number, ps.dept).where(ps.first_seen <= as_of),
        pa.schema([("person_key", pa.string()), ("id_number", pa.string()), ("dept", pa.string())]),
    )
    return _seen_rows(rows)


def _seen_in_postgres(conn: Connection, as_of: date) -> pa.Table | None:
    """_seen_rows' GROUP BY run in PostgreSQL: (person_key, id_number, depts), a row per person
    instead of a row per person and dataset (2.9M rows of a city sent through COPY were 13 s of
    its night). Text compares byte by byte (COLLATE "C"), as in DuckDB. None when a department
    outside DEPT_ORDER is seen (the caller then aggregates the rows itself)."""
    ps = person_sources.c
    order = values(column("dept", String), column("rank", BigInteger), name="dept_order").data(
        [(dept, rank) for rank, dept in enumerate(DEPT_ORDER)]
    )
    ranked = (
        select(ps.person_key, ps.id_number, order.c.rank)
        .select_from(person_sources.outerjoin(order, order.c.dept == ps.dept))
        .where(ps.first_seen <= as_of)
        .subquery()
    )
    key = ranked.c.person_key.collate("C")
    people = fetch_arrow(
        conn,
        select(
            key.label("person_key"),
            func.min(ranked.c.id_number.collate("C")).label("id_number"),
            func.bit_or(literal(1, BigInteger).op("<<")(ranked.c.rank)).label("depts"),
            func.bool_or(ranked.c.rank.is_(None)).label("unknown"),
        )
        .group_by(key)
        .order_by(key),
        pa.schema(
            [
                ("person_key", pa.string()),
                ("id_number", pa.string()),
                ("depts", pa.int64()),
                ("unknown", pa.bool_()),
            ]
        ),
    )
    if pc.any(people.column("unknown")).as_py():
        return None
    return people.drop_columns(["unknown"])


def _seen_rows(rows: pa.Table) -> pd.DataFrame:
    """_seen from person_sources' (person_key, id_number, dept) rows."""
    known = set(DEPT_ORDER)
    if not set(pc.unique(rows.column("dept")).to_pylist()) <= known:
        return _seen_any_dept(rows)
    # Each department a bit (its place in DEPT_ORDER): one GROUP BY gives the smallest id and
    # the set of departments, named once per distinct set (a few hundred), not per person.
    # An ordered string_agg over 2.9M rows was 12 s of a city night's publication.
    people = _in_dept_order(
        "seen",
        rows,
        "SELECT person_key, min(id_number) AS id_number, "
        "bit_or(CAST(1 AS BIGINT) << rank) AS depts FROM seen JOIN dept_order USING (dept) "
        "GROUP BY person_key ORDER BY person_key",
    )
    return _named_sources(people)


def _named_sources(people: pa.Table) -> pd.DataFrame:
    """_seen's frame from (person_key, id_number, depts: a bit per department in DEPT_ORDER),
    ordered by person_key."""
    depts = people.column("depts").combine_chunks()
    sets = pc.unique(depts)
    names = pa.array(
        [",".join(d for i, d in enumerate(DEPT_ORDER) if m >> i & 1) for m in sets.to_pylist()],
        pa.string(),
    )
    sources = pc.take(names, pc.index_in(depts, value_set=sets))
    return pd.DataFrame(
        {
            "person_key": pd.array(people.column("person_key"), dtype="string"),
            "id_number": pd.array(people.column("id_number"), dtype="string"),
            "sources": pd.array(sources, dtype="string"),
        }
    )


def _seen_any_dept(rows: pa.Table) -> pd.DataFrame:
    """_seen when person_sources names a department outside DEPT_ORDER (never in a county's
    data): ordered after the known ones, by name."""
    people = _in_dept_order(
        "seen",
        rows,
        "WITH depts AS (SELECT DISTINCT person_key, dept FROM seen) "
        "SELECT i.person_key, i.id_number, d.sources FROM "
        "(SELECT person_key, min(id_number) AS id_number FROM seen GROUP BY person_key) i "
        "JOIN (SELECT person_key, string_agg(dept, ',' ORDER BY rank NULLS LAST, dept) "
        "AS sources FROM depts LEFT JOIN dept_order USING (dept) GROUP BY person_key) d "
        "USING (person_key) ORDER BY i.person_key",
    )
    return pd.DataFrame(
        {
            c: pd.array(people.column(c), dtype="string")
            for c in ("person_key", "id_number", "sources")
        }
    )


def _pick(keys: pd.Series, values: pd.Series) -> pd.Series:
    """values[key] for each key (NA where absent); values has a unique index.

    values.reindex(keys) by an Arrow hash lookup when both are text (reindexing a text index
    by 800k keys, twenty times, was a sixth of person_profile).
    """
    return _Picker(keys)(values)


def _text(index: pd.Index | pd.Series) -> bool:
    return isinstance(index.dtype, pd.StringDtype)


class _Picker:
    """_pick for one set of keys, each frame's index looked up once (and which keys it holds).

    person_profile picks some twenty columns for the same million person keys from nine
    frames: the keys' positions in a frame's index (an Arrow hash lookup) serve every column of
    that frame, so they are found once per frame, not once per column (the repeated lookups
    were 10 s of a city night on a slow machine). `pick(frame, column)` for a frame's column,
    `pick(series)` for a series of its own.
    """

    def __init__(self, keys: pd.Series) -> None:
        self.keys = keys
        self._keys_arrow: pa.Array | None = None
        # id(frame) -> (the frame, kept so that its id is not reused; the keys' positions)
        self._found: dict[int, tuple[object, np.ndarray | None]] = {}

    def _positions(self, owner: object, index: pd.Index) -> np.ndarray | None:
        """Where each key is in `index` (`owner`'s), -1 where it is not; None when the keys
        or the index are not text or the index is not unique (then pandas looks up)."""
        known = self._found.get(id(owner))
        if known is not None and known[0] is owner:
            return known[1]
        positions = None
        if _text(index) and _text(self.keys) and index.is_unique:
            if self._keys_arrow is None:
                self._keys_arrow = _arrow_text(self.keys)
            where = pc.index_in(self._keys_arrow, value_set=_arrow_text(pd.Series(index)))
            positions = where.fill_null(-1).to_numpy(zero_copy_only=False)
        self._found[id(owner)] = (owner, positions)
        return positions

    def __call__(self, values: pd.Series | pd.DataFrame, column: str | None = None) -> pd.Series:
        series = values[column] if isinstance(values, pd.DataFrame) else values
        keys = self.keys
        where = self._positions(values, values.index)
        if where is None:
            return series.reindex(keys.to_numpy()).set_axis(keys.index)
        array = series.array
        if isinstance(array, pd.arrays.NumpyExtensionArray):
            taken = pd.api.extensions.take(array.to_numpy(), where, allow_fill=True)
        else:
            taken = array.take(where, allow_fill=True)
        return pd.Series(taken, index=keys.index, name=series.name)

    def isin(self, owner: pd.Series | pd.DataFrame) -> pd.Series:
        """Which keys are in `owner`'s index."""
        keys, index = self.keys, owner.index
        where = self._positions(owner, index)
        if where is not None:
            found = where >= 0
        elif _text(index) and _text(keys):  # a text index with repeated keys
            if self._keys_arrow is None:
                self._keys_arrow = _arrow_text(keys)
            value_set = _arrow_text(pd.Series(index))
            found = pc.is_in(self._keys_arrow, value_set=value_set).to_numpy(zero_copy_only=False)
        else:
            return keys.isin(index).astype(bool)
        return pd.Series(found, index=keys.index, dtype=bool)


def _first_by(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per person_key, its first row by `order` (person_key, then the columns that rank its
    rows; missing values last, ties by position), indexed by person_key.

    frame.sort_values(order).drop_duplicates("person_key") picked in DuckDB by the row
    numbers, not by sorting a million text keys in pandas (8 s of a slow machine's night).
    """
    if order[0] != "person_key":
        raise ValueError("_first_by orders by person_key first")
    table = pa.table(
        {
            **{c: pa.Array.from_pandas(frame[c]) for c in order},  # NaN as null
            "_row": pa.array(np.arange(len(frame), dtype=np.int64)),
        }
    )
    ranked = ", ".join(f'"{c}" ASC NULLS LAST' for c in order[1:])
    with duckdb.connect() as duck:
        duck.register("f", table)
        chosen = duck.sql(
            f"SELECT _row FROM f QUALIFY row_number() OVER (PARTITION BY person_key "
            f"ORDER BY {ranked}, _row) = 1 ORDER BY _row"
        ).fetchnumpy()["_row"]
    return frame.iloc[chosen].set_index("person_key")


def _first_names(conn: Connection, as_of: date) -> pd.Series:
    """Per person_key, the first current name in department order, then dataset, then name.

    Over every id/name pair of current data (tasks.alerts.name_keys: one narrow read per
    dataset, no lineage), picked in DuckDB; strings compare by code point, as in pandas.
    """
    pairs = name_keys(conn, as_of)
    named = pairs.filter(pc.is_valid(pairs.column("name")))
    frame = pa.table(
        {
            "person_key": named.column("person_key"),
            "name": named.column("name"),
            "dataset": named.column("dataset").cast(pa.string()),
            "dept": named.column("dept").cast(pa.string()),
        }
    )
    first = _first_names_of(frame)
    return pd.Series(
        pd.array(first.column("name"), dtype="string[pyarrow]"),
        index=pd.Index(
            pd.array(first.column("person_key"), dtype="string[pyarrow]"), name="person_key"
        ),
        name="name",
    )


# The first name per person, as SELECT DISTINCT ON (person_key) … ORDER BY person_key, rank,
# dataset, name would give it, by a hash aggregate instead of a sort of 3.1M rows (about a
# third faster on a city; a name never NULL here, so the struct orders as the ORDER BY does).
FIRST_NAME_SQL = (
    "SELECT person_key, arg_min(name, struct_pack(rank, dataset, name)) AS name "
    "FROM named JOIN dept_order USING (dept) GROUP BY person_key"
)


def _first_names_of(named: pa.Table) -> pa.Table:
    """(person_key, name): per person, the first of its named rows (person_key, name,
    dataset, dept; no NULL name) in department order, then dataset, then name."""
    return _in_dept_order("named", named, FIRST_NAME_SQL)


def person_profile(conn: Connection, as_of: date) -> pd.DataFrame:
    """一人一档: one row per person seen in any dataset by as_of (publishing.md columns).

    Read once per state of the warehouse within `facts_read_once` (tasks.alerts.reading): the
    night reads it ahead, while the alerts are raised, and its publication takes that reading
    (the frame is shared: never changed in place)."""
    return read_once("person_profile", conn, as_of, lambda: _person_profile(conn, as_of))


def _person_profile(conn: Connection, as_of: date) -> pd.DataFrame:
    facts = _facts(conn, as_of)
    people = _seen(conn, as_of)
    keys = people["person_key"]
    m = facts.members.set_index("person_key")
    ids = people["id_number"].astype("string")

    # Names: the roster's, else the first current record (department order, then dataset).
    other_name = _first_names(conn, as_of)

    mz = facts.extra["MZ_DIBAO"]
    mz = _first_by(
        mz.assign(rank=mz["status"].map(_DIBAO_ORDER)), ["person_key", "rank", "assistance_type"]
    )
    cl = facts.extra["CL_CANJI"].drop_duplicates("person_key").set_index("person_key")
    jt = facts.extra["JT_XUEJI"].drop_duplicates("person_key").set_index("person_key")
    rs = facts.extra["RS_JIUYE"].drop_duplicates("person_key").set_index("person_key")
    yb = read_current(conn, "YB_CANBAO", as_of, ["person_key", "year", "status"])
    yb = yb.loc[(yb["year"] <= as_of.year).fillna(False).astype(bool)]
    # The year of as_of, else the latest earlier year.
    insured = _first_by(yb.assign(neg=-yb["year"].astype("int64")), ["person_key", "neg"])
    deaths = facts.deaths.set_index("person_key")["death_date"]
    paid = facts.settlements.groupby("person_key")["cents"].sum()

    pick = _Picker(keys)  # the keys' positions in each frame found once
    in_roster = pick.isin(m)
    village_code = (
        pick(m, "village_code").astype("string").fillna(pick(mz, "village_code").astype("string"))
    )
    towns = divisions().set_index("village_code")["town"]
    births = dd.birth_dates(ids)
    out = pd.DataFrame(
        {
            "person_key": keys.astype("string"),
            "id_number": ids,
            "name": pick(m, "name").astype("string").fillna(pick(other_name).astype("string")),
            "household_id": pick(m, "household_id").astype("string"),
            "gender": dd.genders(ids).set_axis(keys.index),
            "birth_date": births.astype("datetime64[s]"),
            "age": dd.ages_on(ids, as_of),
            "village_code": village_code,
            "town": pick(m, "town")
            .astype("string")
            .fillna(_pick(village_code, towns).astype("string")),
            "in_roster": in_roster.astype(bool),
            "household_type": pick(m, "household_type").astype("string"),
            "monitoring_category": pick(m, "monitoring_category").astype("string"),
            "deceased": pick.isin(deaths),
            "death_date": pick(deaths).astype("datetime64[s]"),
            "dibao_status": pick(mz, "status").astype("string"),
            "assistance_type": pick(mz, "assistance_type").astype("string"),
            "disability_category": pick(cl, "category").astype("string"),
            "disability_level": pick(cl, "level").astype("string"),
            "school_stage": pick(jt, "stage").astype("string"),
            "enrolment_status": pick(jt, "enrolment_status").astype("string"),
            "insured_status": pick(insured, "status").astype("string"),
            "self_burden_12m": (pick(paid).fillna(0).astype("int64") / 100).round(2),
            "employment_status": pick(rs, "employment_status").astype("string"),
            "monthly_income": pick(rs, "monthly_income").astype("float64"),
            "sources": people["sources"].astype("string"),
            "as_of": pd.Series(pd.Timestamp(as_of), index=keys.index).astype("datetime64[s]"),
        }
    )
    return out[PERSON_COLUMNS].sort_values("person_key").reset_index(drop=True)
