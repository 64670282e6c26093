"""The roster sections: monitoring (identified, eliminated), 三保障 and water, medical, jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd

from domain import definitions as dd
from tasks.reports.common import (
    CATEGORIES,
    COMPULSORY_AGES,
    EMPLOYMENT,
    PAYMENTS,
    RISK_TYPES,
    TOTAL,
    _among,
    _pick,
    _ratio,
    _with_total,
)
from tasks.reports.periods import Period

# --- monitoring -----------------------------------------------------------------------------------


def _identified(hu: pd.DataFrame) -> pd.Series:
    return dd.identified(hu["monitoring_category"])


def _eliminated(hu: pd.DataFrame) -> pd.Series:
    return dd.eliminated(hu["monitoring_category"], hu["risk_eliminated"])


def monitoring_figures(
    hu: pd.DataFrame,
    baseline: pd.DataFrame,
    ren: pd.DataFrame,
    period: Period,
    towns: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Monitoring stock on period.end and flows: by town, by category, unresolved by risk type.

    Identified (监测对象): a roster household with a monitoring_category; monitored: identified
    and risk not eliminated; 风险消除率 = eliminated / identified, households and persons.
    Persons are a household's active roster members. Period flows compare the roster on the day
    before the period with period.end (new: identified now, not then; eliminated: eliminated
    now, not then); year-to-date flows use identified_month / eliminated_month.
    """
    members = ren.loc[ren["active"]].groupby("household_id").size()
    ym_lo, ym_hi = f"{period.ytd_start:%Y-%m}", f"{period.end:%Y-%m}"
    was_identified = set(baseline.loc[_identified(baseline), "household_id"])
    was_eliminated = set(baseline.loc[_eliminated(baseline), "household_id"])
    ident, elim = _identified(hu), _eliminated(hu)
    h = pd.DataFrame(
        {
            "town": hu["town"],
            "category": hu["monitoring_category"],
            "persons": _pick(hu["household_id"], members).fillna(0).astype("int64"),
            "identified": ident,
            "monitored": ident & ~elim,
            "eliminated": elim,
            "new": ident & ~hu["household_id"].isin(was_identified),
            "new_elim": elim & ~hu["household_id"].isin(was_eliminated),
            # The year to date contains the period: a household the period saw identified is
            # identified this year even when its identified_month says otherwise.
            "ytd_new": ident
            & (
                hu["identified_month"].between(ym_lo, ym_hi)
                | ~hu["household_id"].isin(was_identified)
            ),
            "ytd_elim": elim
            & (
                hu["eliminated_month"].between(ym_lo, ym_hi)
                | ~hu["household_id"].isin(was_eliminated)
            ),
        }
    )
    flags = {
        "identified": "identified",
        "monitored": "monitored",
        "eliminated": "eliminated",
        "new": "new",
        "new_elim": "new_elim",
        "ytd_new": "ytd_new",
        "ytd_elim": "ytd_elim",
    }

    def counts(by: str, index: Sequence[str]) -> pd.DataFrame:
        out = {}
        for name, flag in flags.items():
            sel = h.loc[h[flag]]
            out[f"{name}_hh"] = sel.groupby(by).size()
            out[f"{name}_persons"] = sel.groupby(by)["persons"].sum()
        table = pd.DataFrame(out).reindex(list(index)).fillna(0).astype("int64")
        return table.rename_axis(by).reset_index()

    def rates(table: pd.DataFrame) -> pd.DataFrame:
        table = table.assign(
            elim_rate_hh=_ratio(table["eliminated_hh"], table["identified_hh"]),
            elim_rate_persons=_ratio(table["eliminated_persons"], table["identified_persons"]),
        )
        return table

    cols = [
        "identified_hh",
        "identified_persons",
        "monitored_hh",
        "monitored_persons",
        "eliminated_hh",
        "eliminated_persons",
        "elim_rate_hh",
        "elim_rate_persons",
        "new_hh",
        "new_persons",
        "new_elim_hh",
        "new_elim_persons",
    ]
    ytd = ["ytd_new_hh", "ytd_new_persons", "ytd_elim_hh", "ytd_elim_persons"]
    count_cols = [c for c in cols + ytd if "rate" not in c]
    by_town = counts("town", towns)
    by_town = rates(_with_total(by_town, "town", count_cols))[["town", *cols, *ytd]]
    cats = list(CATEGORIES) + sorted(set(h["category"].dropna()) - set(CATEGORIES))
    by_cat = counts("category", cats)
    by_cat = rates(_with_total(by_cat, "category", count_cols))[["category", *cols]]

    monitored = h.loc[h["monitored"]]
    risks = hu.loc[monitored.index, "risk_types"].fillna("").astype(str).str.split("、").explode()
    risks = risks.loc[risks != ""]
    per_risk = pd.DataFrame({"risk": risks, "persons": monitored["persons"].reindex(risks.index)})
    names = list(RISK_TYPES) + sorted(set(risks) - set(RISK_TYPES))
    by_risk = pd.DataFrame(
        {
            "risk_type": names,
            "monitored_hh": per_risk.groupby("risk").size().reindex(names).fillna(0).to_numpy(),
            "monitored_persons": per_risk.groupby("risk")["persons"]
            .sum()
            .reindex(names)
            .fillna(0)
            .to_numpy(),
        }
    )
    by_risk = by_risk.astype({"monitored_hh": "int64", "monitored_persons": "int64"})
    by_risk = by_risk.assign(share_hh=_ratio(by_risk["monitored_hh"], len(monitored)))
    return by_town, by_cat, by_risk


# --- 三保障 and water -----------------------------------------------------------------------------


def assurance_figures(
    hu: pd.DataFrame,
    ren: pd.DataFrame,
    end: date,
    towns: Sequence[str],
    *,
    canbao: pd.DataFrame,
    xueji: pd.DataFrame,
    fangwu: pd.DataFrame,
    yinshui: pd.DataFrame,
) -> pd.DataFrame:
    """By town on `end`, over active roster persons and roster households.

    Insured: a YB_CANBAO row of end's year with status 正常参保. Out of school: aged 6–15 and
    辍学 in JT_XUEJI, or absent from it. Houses: the head's latest assessment (greatest
    assessed_date) is C or D; done = 竣工 or 验收. Water: the head's SL_YINSHUI water_safe is 否;
    unsurveyed: no SL_YINSHUI row for the head.
    """
    active = ren.loc[ren["active"]]
    insured_keys = canbao.loc[
        (canbao["year"] == end.year) & (canbao["status"] == "正常参保"), "person_key"
    ]
    status = _pick(
        active["person_key"],
        xueji.drop_duplicates("person_key").set_index("person_key")["enrolment_status"],
    )
    lo, hi = COMPULSORY_AGES
    child = active["age"].between(lo, hi)
    p = pd.DataFrame(
        {
            "town": active["town"],
            "household_id": active["household_id"],
            "roster_persons": True,
            "insured": active["person_key"].isin(insured_keys),
            "children": child,
            "dropout": child & _among(status, ["辍学"]),
            "not_enrolled": child & status.isna(),
        }
    )
    p = p.assign(uninsured=~p["insured"], out_of_school=p["dropout"] | p["not_enrolled"])
    persons = p.groupby("town")[
        [
            "roster_persons",
            "insured",
            "uninsured",
            "children",
            "dropout",
            "not_enrolled",
            "out_of_school",
        ]
    ].sum()
    persons["out_of_school_hh"] = (
        p.loc[p["out_of_school"]].groupby("town")["household_id"].nunique()
    )

    latest = dd.latest_assessments(fangwu).set_index("head_person_key")
    grade = _pick(hu["head_person_key"], latest["grade"])
    reno = _pick(hu["head_person_key"], latest["renovation_status"])
    cd = _among(grade, list(dd.UNSAFE_HOUSE_GRADES))
    water = _pick(
        hu["head_person_key"],
        yinshui.drop_duplicates("head_person_key").set_index("head_person_key")["water_safe"],
    )
    members = active.groupby("household_id").size()
    unsafe = _among(water, [False])
    h = pd.DataFrame(
        {
            "town": hu["town"],
            "cd_hh": cd,
            "cd_done": cd & _among(reno, list(dd.RENOVATION_DONE)),
            "cd_building": cd & _among(reno, ["在建"]),
            "cd_not_started": cd & _among(reno, ["未开工"]),
            "water_unsafe_hh": unsafe,
            "water_unsafe_persons": _pick(hu["household_id"], members).fillna(0).where(unsafe, 0),
            "water_unsurveyed_hh": water.isna(),
        }
    )
    h = h.assign(cd_other=h["cd_hh"] & ~(h["cd_done"] | h["cd_building"] | h["cd_not_started"]))
    houses = h.groupby("town").sum()
    cols = [
        "roster_persons",
        "insured",
        "uninsured",
        "children",
        "dropout",
        "not_enrolled",
        "out_of_school",
        "out_of_school_hh",
        "cd_hh",
        "cd_done",
        "cd_building",
        "cd_not_started",
        "cd_other",
        "water_unsafe_hh",
        "water_unsafe_persons",
        "water_unsurveyed_hh",
    ]
    table = persons.join(houses, how="outer").reindex(list(towns)).fillna(0).astype("int64")
    table = _with_total(table.rename_axis("town").reset_index(), "town", cols)
    table = table.assign(
        insured_rate=_ratio(table["insured"], table["roster_persons"]),
        renovation_rate=_ratio(table["cd_done"], table["cd_hh"]),
    )
    order = [
        "town",
        "roster_persons",
        "insured",
        "uninsured",
        "insured_rate",
        "children",
        "dropout",
        "not_enrolled",
        "out_of_school",
        "out_of_school_hh",
        "cd_hh",
        "cd_done",
        "cd_building",
        "cd_not_started",
        "cd_other",
        "renovation_rate",
        "water_unsafe_hh",
        "water_unsafe_persons",
        "water_unsurveyed_hh",
    ]
    return table[order]


# --- medical and employment -----------------------------------------------------------------------


def medical_figures(
    jiesuan: pd.DataFrame, ren: pd.DataFrame, lo: date, hi: date, towns: Sequence[str]
) -> pd.DataFrame:
    """Inpatient settlements of roster persons settled in [lo, hi], by town.

    Counted: settle_kind 正常, not cancelled by a 冲销 (as of the warehouse date), visit_type 住院,
    the person on the roster on period.end (deceased included). Missing amounts count as 0.
    实际报销比例 = (fund + critical illness + medical aid + other) / total cost;
    政策范围内报销比例 = the same / in_policy_cost.
    """
    town_of = ren.drop_duplicates("person_key").set_index("person_key")
    s = jiesuan.loc[
        (jiesuan["settle_kind"] == "正常")
        & ~jiesuan.get("cancelled", pd.Series(False, index=jiesuan.index))
        .fillna(False)
        .astype(bool)
        & (jiesuan["visit_type"] == "住院")
        & jiesuan["settle_date"].between(pd.Timestamp(lo), pd.Timestamp(hi))
        & jiesuan["person_key"].isin(town_of.index)
    ]
    money = ["total_cost", "in_policy_cost", *PAYMENTS, "self_burden"]
    s = s[["person_key", *money]].fillna({c: 0.0 for c in money})
    s = s.assign(
        town=_pick(s["person_key"], town_of["town"]),
        household_id=_pick(s["person_key"], town_of["household_id"]),
        reimbursed=s[list(PAYMENTS)].sum(axis=1),
    )
    g = s.groupby("town")
    table = pd.DataFrame(
        {
            "settlements": g.size(),
            "persons": g["person_key"].nunique(),
            "households": g["household_id"].nunique(),
        }
    )
    sums = g[[*money, "reimbursed"]].sum()
    table = table.join(sums).reindex(list(towns))
    ints = ["settlements", "persons", "households"]
    table[ints] = table[ints].fillna(0).astype("int64")
    table = table.fillna(0.0).rename_axis("town").reset_index()
    total = {
        "town": TOTAL,
        "settlements": len(s),
        "persons": s["person_key"].nunique(),
        "households": s["household_id"].nunique(),
        **{c: s[c].sum() for c in [*money, "reimbursed"]},
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    money_cols = [*money, "reimbursed"]
    table[money_cols] = table[money_cols].astype("float64").round(2)
    table = table.assign(
        actual_ratio=_ratio(table["reimbursed"], table["total_cost"]),
        policy_ratio=_ratio(table["reimbursed"], table["in_policy_cost"]),
    )
    return table[
        [
            "town",
            "settlements",
            "persons",
            "households",
            "total_cost",
            "in_policy_cost",
            *PAYMENTS,
            "reimbursed",
            "self_burden",
            "actual_ratio",
            "policy_ratio",
        ]
    ]


def employment_figures(
    ren: pd.DataFrame, jiuye: pd.DataFrame, towns: Sequence[str]
) -> pd.DataFrame:
    """Labour members (active roster persons aged 16–60, 技能/普通劳动力) by their RS_JIUYE
    employment_status on the report date, by town; employed = every status but 未就业."""
    lab = ren.loc[dd.is_labour(ren["active"], ren["age"], ren["labour_skill"])]
    status = _pick(
        lab["person_key"],
        jiuye.drop_duplicates("person_key").set_index("person_key")["employment_status"],
    )
    p = pd.DataFrame(
        {
            "town": lab["town"],
            "household_id": lab["household_id"],
            "labour": True,
            **{col: _among(status, [s]) for s, col in EMPLOYMENT.items()},
            "unemployed": _among(status, ["未就业"]),
            "unregistered": status.isna(),
        }
    )
    p = p.assign(employed=p[list(EMPLOYMENT.values())].any(axis=1))
    cols = ["labour", *EMPLOYMENT.values(), "employed", "unemployed", "unregistered"]
    table = p.groupby("town")[cols].sum()
    table["labour_hh"] = p.groupby("town")["household_id"].nunique()
    table["employed_hh"] = p.loc[p["employed"]].groupby("town")["household_id"].nunique()
    cols += ["labour_hh", "employed_hh"]
    table = table.reindex(list(towns)).fillna(0).astype("int64").rename_axis("town")
    total = {c: int(p[c].sum()) for c in cols[:-2]}
    total |= {
        "labour_hh": p["household_id"].nunique(),
        "employed_hh": p.loc[p["employed"], "household_id"].nunique(),
    }
    table = pd.concat(
        [table.reset_index(), pd.DataFrame([{"town": TOTAL, **total}])], ignore_index=True
    )
    return table.assign(employment_rate=_ratio(table["employed"], table["labour"]))
