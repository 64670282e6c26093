"""一人一档 and 一户一档: person_profile and household_profile as of an exchange date.

    person_profile(conn, as_of)     one row per person seen in any dataset (person_sources with
                                    first_seen <= as_of), facts from the latest data of each
                                    department on as_of
    household_profile(conn, as_of)  one row per roster household (XC_HU on as_of)

Both return exactly publishing.md's columns, in its order, in plain form (masking is the
publisher's job); person_key comes from history. They read the same facts as the alert rules
(tasks.alerts.load_facts), so "active member", "labour member", "twelve-month self burden" and
"monitored" mean the same in a profile as in an alert. Dates are datetime64[s] (NaT when empty);
money is float64 yuan rounded to the cent; counts are int64.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from tasks.alerts import (
    DEPT_ORDER,
    Facts,
    ages,
    alerts_frame,
    divisions,
    household_burden,
    id_names,
    load_department_facts,
    load_facts,
    read_current,
)
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
    return load_department_facts(conn, load_facts(conn, as_of))


def _count(keys: pd.Series, index: pd.Series) -> pd.Series:
    """How often each value of `index` occurs in `keys` (int64, 0 when never)."""
    return index.map(keys.value_counts()).fillna(0).astype("int64")


def household_profile(conn: Connection, as_of: date) -> pd.DataFrame:
    """一户一档: one row per roster household on as_of (publishing.md columns, in order)."""
    facts = _facts(conn, as_of)
    hh = facts.households
    m = facts.members
    active = m.loc[m["active"]]
    ids = hh["household_id"]
    house = facts.extra["ZJ_FANGWU"].set_index("head_person_key")
    water = (
        facts.extra["SL_YINSHUI"].drop_duplicates("head_person_key").set_index("head_person_key")
    )
    on_dibao = active["person_key"].isin(facts.extra["on_dibao"]["person_key"])
    cl = facts.extra["CL_CANJI"]
    severe_keys = cl.loc[
        (cl["cert_status"] == "有效").fillna(False).astype(bool)
        & cl["level"].isin(["一级", "二级"]).fillna(False).astype(bool),
        "person_key",
    ]
    rs = facts.extra["RS_JIUYE"].set_index("person_key")["employment_status"]
    labour = m.loc[m["labour"]]
    status = _pick(labour["person_key"], rs)
    employed = labour.loc[status.notna() & (status != "未就业").fillna(False).astype(bool)]
    burden = household_burden(facts).set_index("household_id")["cents"]
    open_alerts = alerts_frame(conn, as_of).loc[lambda f: f["status"] == "open", "household_id"]
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
            "open_alerts": _count(open_alerts, ids),
            "as_of": pd.Timestamp(as_of),
        }
    )
    out["as_of"] = out["as_of"].astype("datetime64[s]")
    return out[HOUSEHOLD_COLUMNS].sort_values("household_id").reset_index(drop=True)


def _seen(conn: Connection, as_of: date) -> pd.DataFrame:
    """Persons first seen on or before as_of, with the departments that hold them."""
    ps = person_sources.c
    rows = pd.read_sql(
        select(ps.person_key, ps.id_number, ps.dept).where(ps.first_seen <= as_of), conn
    )
    rows = rows.assign(order=rows["dept"].map({d: i for i, d in enumerate(DEPT_ORDER)}))
    depts = (
        rows[["person_key", "dept", "order"]]
        .drop_duplicates()
        .sort_values(["person_key", "order", "dept"])
    )
    joined = depts.groupby("person_key")["dept"].agg(",".join)
    ids = rows.sort_values(["person_key", "id_number"]).drop_duplicates("person_key")
    return (
        ids[["person_key", "id_number"]]
        .assign(sources=ids["person_key"].map(joined))
        .reset_index(drop=True)
    )


def _pick(keys: pd.Series, values: pd.Series) -> pd.Series:
    """values[key] for each key (NA where absent); values has a unique index."""
    return values.reindex(keys.to_numpy()).set_axis(keys.index)


def _first_by(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    return frame.sort_values(order).drop_duplicates("person_key").set_index("person_key")


def person_profile(conn: Connection, as_of: date) -> pd.DataFrame:
    """一人一档: one row per person seen in any dataset by as_of (publishing.md columns)."""
    facts = _facts(conn, as_of)
    people = _seen(conn, as_of)
    keys = people["person_key"]
    m = facts.members.set_index("person_key")
    ids = people["id_number"].astype("string")

    # Names: the roster's, else the first current record (department order, then dataset).
    named = id_names(conn, as_of).dropna(subset=["name"])
    named = named.assign(order=named["dept"].map({d: i for i, d in enumerate(DEPT_ORDER)}))
    other_name = _first_by(named, ["person_key", "order", "dataset", "name"])["name"]

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

    in_roster = keys.isin(m.index)
    village_code = (
        _pick(keys, m["village_code"])
        .astype("string")
        .fillna(_pick(keys, mz["village_code"]).astype("string"))
    )
    towns = divisions().set_index("village_code")["town"]
    digit17 = pd.to_numeric(ids.str.slice(16, 17), errors="coerce")
    births = pd.to_datetime(ids.str.slice(6, 14), format="%Y%m%d", errors="coerce")
    out = pd.DataFrame(
        {
            "person_key": keys.astype("string"),
            "id_number": ids,
            "name": _pick(keys, m["name"])
            .astype("string")
            .fillna(_pick(keys, other_name).astype("string")),
            "household_id": _pick(keys, m["household_id"]).astype("string"),
            "gender": pd.Series(
                np.where(digit17.isna(), None, np.where(digit17 % 2 == 1, "男", "女")),
                index=keys.index,
                dtype="string",
            ),
            "birth_date": births.astype("datetime64[s]"),
            "age": ages(ids, as_of),
            "village_code": village_code,
            "town": _pick(keys, m["town"])
            .astype("string")
            .fillna(_pick(village_code, towns).astype("string")),
            "in_roster": in_roster.astype(bool),
            "household_type": _pick(keys, m["household_type"]).astype("string"),
            "monitoring_category": _pick(keys, m["monitoring_category"]).astype("string"),
            "deceased": keys.isin(deaths.index).astype(bool),
            "death_date": _pick(keys, deaths).astype("datetime64[s]"),
            "dibao_status": _pick(keys, mz["status"]).astype("string"),
            "assistance_type": _pick(keys, mz["assistance_type"]).astype("string"),
            "disability_category": _pick(keys, cl["category"]).astype("string"),
            "disability_level": _pick(keys, cl["level"]).astype("string"),
            "school_stage": _pick(keys, jt["stage"]).astype("string"),
            "enrolment_status": _pick(keys, jt["enrolment_status"]).astype("string"),
            "insured_status": _pick(keys, insured["status"]).astype("string"),
            "self_burden_12m": (_pick(keys, paid).fillna(0).astype("int64") / 100).round(2),
            "employment_status": _pick(keys, rs["employment_status"]).astype("string"),
            "monthly_income": _pick(keys, rs["monthly_income"]).astype("float64"),
            "sources": people["sources"].astype("string"),
            "as_of": pd.Series(pd.Timestamp(as_of), index=keys.index).astype("datetime64[s]"),
        }
    )
    return out[PERSON_COLUMNS].sort_values("person_key").reset_index(drop=True)
