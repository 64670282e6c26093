"""The rules: one function per rule declared in domain/alert_rules.py, bound by @implements
(DQ-01, the name check, is in tasks.alerts.names)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from domain import definitions as dd
from domain.alert_rules import Rule, implements
from tasks.alerts.facts import Facts, _latest_delivery, household_burden, read_current
from tasks.alerts.findings import (
    _day,
    _money,
    _severity,
    _text,
    household_findings,
    join_groups,
    person_findings,
    sources,
)
from tasks.alerts.params import RuleParams

# --- the rules ------------------------------------------------------------------------------------
#
# One function per rule declared in domain/alert_rules.py, bound to it by @implements. Each
# takes a RuleInput and returns its findings through household_findings / person_findings
# (which take rule_id, risk_type and pushed_to from the declaration).


@dataclass(frozen=True)
class RuleInput:
    """What a rule function reads: its declaration, the facts as of D, the parameters, and
    the connection (for the few rules that read more than the facts)."""

    rule: Rule
    facts: Facts
    params: RuleParams
    conn: Connection


@implements("YB-01")
def _yb01(inp: RuleInput) -> pd.DataFrame:
    facts, params = inp.facts, inp.params
    limit = params.cents("medical_burden_household_12m")
    burden = household_burden(facts)
    hit = burden.loc[
        (burden["cents"] > limit) & ~facts.monitored_for(burden["household_id"], inp.rule.risk_type)
    ]
    active = facts.members.loc[facts.members["active"], ["person_key", "household_id"]]
    lineage = facts.settlements.merge(active, on="person_key").loc[
        lambda f: f["household_id"].isin(hit["household_id"])
    ]
    src = sources(lineage, "household_id")
    window = f"结算日期{facts.as_of - timedelta(days=364):%Y-%m-%d}至{facts.as_of:%Y-%m-%d}"
    evidence = (
        f"{window}，户内"
        + hit["persons"].astype(str)
        + "名在册成员医保结算"
        + hit["settlements"].astype(str)
        + "笔（已剔除冲销），个人负担合计"
        + _money(hit["cents"])
        + f"元，高于{_money(pd.Series([limit]))[0]}元"
        + np.where(hit["cents"] > 2 * limit, "的两倍", "")
        + "；"
        + hit["household_id"].map(src)
    )
    found = hit.assign(
        severity=_severity(hit["cents"] > 2 * limit, "high", "medium"), evidence=evidence
    )
    return household_findings(facts, found, inp.rule)


def _latest_assessment(conn: Connection, facts: Facts) -> pd.DataFrame:
    zj = read_current(
        conn,
        "ZJ_FANGWU",
        facts.as_of,
        ["head_person_key", "assessed_date", "grade", "renovation_status"],
    )
    return dd.latest_assessments(zj).reset_index(drop=True)


@implements("ZJ-01")
def _zj01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    latest = facts.extra["ZJ_FANGWU"]
    hh = facts.households[["household_id", "head_person_key"]].merge(
        latest, on="head_person_key", how="inner"
    )
    unsafe = dd.unsafe_house(hh["grade"])
    done = dd.renovation_done(hh["renovation_status"])
    hit = hh.loc[unsafe & ~done & ~facts.monitored_for(hh["household_id"], inp.rule.risk_type)]
    evidence = (
        "户主房屋最近一次安全鉴定（"
        + _day(hit["assessed_date"])
        + "）为"
        + _text(hit["grade"])
        + "级，改造状态"
        + hit["renovation_status"].astype("string").fillna("未填报")
        + "，未竣工或验收；"
        + hit["household_id"].map(sources(hit, "household_id"))
    )
    found = hit.assign(
        severity=_severity(hit["grade"] == "D", "high", "medium"), evidence=evidence
    )[["household_id", "severity", "evidence"]]
    return household_findings(facts, found, inp.rule)


@implements("JT-01")
def _jt01(inp: RuleInput) -> pd.DataFrame:
    conn, facts = inp.conn, inp.facts
    jt = facts.extra["JT_XUEJI"]
    m = facts.members
    kids = m.loc[
        m["active"]
        & dd.of_school_age(m["age"])
        & ~facts.monitored_for(m["household_id"], inp.rule.risk_type),
        ["person_key", "id_number", "name", "age"],
    ]
    kids = kids.merge(
        jt[["person_key", "enrolment_status", "status_date", "delivery_id", "source_file"]],
        on="person_key",
        how="left",
        validate="one_to_one",
    )
    listed = kids["enrolment_status"].notna()
    dropout = (kids["enrolment_status"] == "辍学").fillna(False).astype(bool)
    latest = _latest_delivery(conn, "JT_XUEJI", facts.as_of)
    # Absent from the latest JT_XUEJI only means something once there is one.
    absent = ~listed if latest is not None else pd.Series(False, index=kids.index)
    hit = kids.loc[dropout | absent]
    is_drop = dropout[hit.index]
    missing_src = (
        "" if latest is None else f"来源：{latest[1] or ''}〔{latest[0]}〕（最新学籍名单）"
    )
    src = "来源：" + _text(hit["source_file"]) + "〔" + _text(hit["delivery_id"]) + "〕"
    evidence = (
        hit["age"].astype(str)
        + "周岁在册人员，"
        + np.where(
            is_drop,
            "最新学籍状态为辍学（状态日期" + _day(hit["status_date"]) + "）；" + src,
            "不在最新学籍名单中（未查到学籍）；" + missing_src,
        )
    )
    found = hit.assign(severity=_severity(is_drop, "high", "medium"), evidence=evidence)
    return person_findings(facts, found, inp.rule)


@implements("CL-01")
def _cl01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    cl = facts.extra["CL_CANJI"]
    m = facts.members
    active = m.loc[m["active"], ["person_key", "household_id"]]
    severe = cl.loc[dd.severely_disabled(cl["cert_status"], cl["level"])]
    hit = severe.merge(active, on="person_key", how="inner")
    hit = hit.loc[~facts.monitored_for(hit["household_id"], inp.rule.risk_type)]
    evidence = (
        "持有效残疾人证，"
        + _text(hit["category"])
        + "残疾"
        + _text(hit["level"])
        + "；"
        + hit["person_key"].map(sources(hit, "person_key"))
    )
    found = hit.assign(
        severity=_severity(hit["level"] == "一级", "high", "medium"), evidence=evidence
    )[["person_key", "id_number", "name", "severity", "evidence"]]
    return person_findings(facts, found, inp.rule)


@implements("RS-01")
def _rs01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    rs = facts.extra["RS_JIUYE"]
    m = facts.members
    labour = m.loc[m["labour"], ["person_key", "household_id"]]
    listed = labour.merge(
        rs[["person_key", "employment_status", "delivery_id", "source_file"]],
        on="person_key",
        how="inner",
    )
    listed = listed.assign(idle=dd.unemployed(listed["employment_status"]))
    g = listed.groupby("household_id")
    per = pd.DataFrame({"listed": g.size(), "idle": g["idle"].sum()}).reset_index()
    per = per.merge(
        labour.groupby("household_id").size().rename("labour").reset_index(), on="household_id"
    )
    hit = per.loc[
        (per["listed"] >= 1)
        & (per["idle"] == per["listed"])
        & ~facts.monitored_for(per["household_id"], inp.rule.risk_type)
    ]
    src = sources(listed.loc[listed["household_id"].isin(hit["household_id"])], "household_id")
    evidence = (
        "户内劳动力"
        + hit["labour"].astype(str)
        + "人，其中"
        + hit["listed"].astype(str)
        + "人在务工就业名单中，均为未就业；"
        + hit["household_id"].map(src)
    )
    found = hit.assign(severity="medium", evidence=evidence)
    return household_findings(facts, found, inp.rule)


@implements("SL-01")
def _sl01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    sl = facts.extra["SL_YINSHUI"]
    hh = facts.households[["household_id", "head_person_key"]].merge(
        sl, on="head_person_key", how="inner"
    )
    unsafe = (hh["water_safe"] == False).fillna(False).astype(bool)  # noqa: E712 (nullable)
    hit = hh.loc[unsafe & ~facts.monitored_for(hh["household_id"], inp.rule.risk_type)]
    failed = pd.Series("", index=hit.index)
    for column, label in (
        ("quantity_ok", "水量"),
        ("quality_ok", "水质"),
        ("convenience_ok", "用水方便程度"),
        ("reliability_ok", "供水保证率"),
    ):
        bad = (hit[column] == False).fillna(False).astype(bool)  # noqa: E712
        failed = failed + np.where(bad, label + "、", "")
    failed = failed.str.rstrip("、")
    evidence = (
        "户主饮水安全入户核查（"
        + _day(hit["survey_date"])
        + "）结论为不安全"
        + np.where(failed != "", "（" + failed + "不达标）", "")
        + "；"
        + hit["household_id"].map(sources(hit, "household_id"))
    )
    found = hit.assign(severity="medium", evidence=evidence)[
        ["household_id", "severity", "evidence"]
    ]
    return household_findings(facts, found, inp.rule)


@implements("NY-01")
def _ny01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    ny = facts.extra["NY_CHANYE"]
    year = facts.as_of.year
    failed = ny.loc[
        (ny["project_status"] == "失败").fillna(False).astype(bool)
        & ny["year"].isin([year, year - 1]).fillna(False).astype(bool)
    ]
    joined = facts.households[["household_id", "head_person_key"]].merge(
        failed, on="head_person_key", how="inner"
    )
    joined = joined.loc[~facts.monitored_for(joined["household_id"], inp.rule.risk_type)]
    joined = joined.assign(
        label=_text(joined["project_id"])
        + "（"
        + joined["year"].astype(str)
        + "年度，"
        + _text(joined["industry"])
        + "）"
    )
    labels = (
        joined.sort_values(["household_id", "project_id"])
        .groupby("household_id")["label"]
        .agg("、".join)
    )
    hit = labels.reset_index()
    evidence = (
        "户主产业帮扶项目"
        + hit["label"]
        + "状态为失败；"
        + hit["household_id"].map(sources(joined, "household_id"))
    )
    found = hit.assign(severity="medium", evidence=evidence)
    return household_findings(facts, found, inp.rule)


@implements("INC-01")
def _inc01(inp: RuleInput) -> pd.DataFrame:
    facts, params = inp.facts, inp.params
    hh = facts.households
    limit = params.cents("income_threshold")
    cents = (hh["income_per_capita"].astype("Float64") * 100).round()
    hit = hh.loc[~dd.identified(hh["monitoring_category"]) & (cents < limit).fillna(False)]
    evidence = (
        "未纳入监测，人均纯收入"
        + _money(cents[hit.index].astype("int64"))
        + f"元，低于{params.year}年监测收入标准{_money(pd.Series([limit]))[0]}元；"
        + hit["household_id"].map(sources(hit, "household_id"))
    )
    found = hit.assign(severity="medium", evidence=evidence)[
        ["household_id", "severity", "evidence"]
    ]
    return household_findings(facts, found, inp.rule)


def _on_dibao(facts: Facts) -> pd.DataFrame:
    """Persons 在保 in the latest MZ_DIBAO: one row each, assistance types joined."""
    mz = facts.extra["MZ_DIBAO"]
    on = mz.loc[dd.on_dibao(mz["status"])].sort_values(["person_key", "assistance_type"])
    g = on.groupby("person_key", sort=True)
    first = g[["id_number", "name", "village_code"]].first()
    out = first.assign(
        assistance=join_groups(on["assistance_type"], on["person_key"], "、")
    ).reset_index()
    return out.assign(src=out["person_key"].map(sources(on, "person_key")).astype("string"))


@implements("MZ-01")
def _mz01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    on = facts.extra["on_dibao"]
    m = facts.members[["person_key", "active", "household_type", "monitored", "death_date"]]
    joined = on.merge(m, on="person_key", how="left")
    in_roster = joined["active"].notna()
    active = joined["active"].fillna(False).astype(bool)
    covered = (joined["household_type"] == "脱贫户").fillna(False).astype(bool) | joined[
        "monitored"
    ].fillna(False).astype(bool)
    hit = joined.loc[~active | ~covered]
    why = np.select(
        [~in_roster[hit.index], ~active[hit.index]],
        [
            "不在防返贫监测家庭成员名单中",
            "在家庭成员名单中，但公安户籍已登记死亡（" + _day(hit["death_date"]) + "）",
        ],
        "所在户既不是脱贫户，也不是监测户（或风险已消除）",
    )
    evidence = (
        "民政"
        + _text(hit["assistance"])
        + "在保，"
        + why
        + "，请核实该户是否应纳入监测；"
        + _text(hit["src"])
    )
    found = hit.assign(severity="medium", evidence=evidence)[
        ["person_key", "id_number", "name", "village_code", "severity", "evidence"]
    ]
    return person_findings(facts, found, inp.rule)


@implements("GA-01")
def _ga01(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    on = facts.extra["on_dibao"]
    cl = facts.extra["CL_CANJI"]
    living = cl["living_subsidy"].astype("Float64").fillna(0)
    care = cl["care_subsidy"].astype("Float64").fillna(0)
    paid = cl.loc[
        (cl["cert_status"] == dd.VALID_CERTIFICATE).fillna(False).astype(bool)
        & ((living > 0) | (care > 0)).fillna(False).astype(bool)
    ].assign(living=living, care=care)
    dead = facts.deaths
    mz_hit = dead.merge(on[["person_key", "assistance", "src"]], on="person_key", how="inner")
    cl_hit = dead.merge(
        paid[["person_key", "living", "care", "delivery_id", "source_file"]].rename(
            columns={"delivery_id": "cl_did", "source_file": "cl_file"}
        ),
        on="person_key",
        how="inner",
    )
    hit = dead.loc[
        dead["person_key"].isin(mz_hit["person_key"])
        | dead["person_key"].isin(cl_hit["person_key"])
    ].reset_index(drop=True)
    hit = hit.merge(mz_hit[["person_key", "assistance", "src"]], on="person_key", how="left")
    hit = hit.merge(
        cl_hit[["person_key", "living", "care", "cl_did", "cl_file"]], on="person_key", how="left"
    )
    by_mz, by_cl = hit["assistance"].notna(), hit["living"].notna()
    cents = {
        k: (hit[k].astype("Float64").fillna(0) * 100).round().astype("int64")
        for k in ("living", "care")
    }
    evidence = (
        "公安户籍登记死亡（"
        + _day(hit["death_date"])
        + "，来源："
        + _text(hit["source_file"])
        + "〔"
        + _text(hit["delivery_id"])
        + "〕）"
        + np.where(
            by_mz,
            "；死亡后民政"
            + _text(hit["assistance"])
            + "仍在保（"
            + _text(hit["src"]).str.removeprefix("来源：")
            + "）",
            "",
        )
        + np.where(
            by_cl,
            "；残联仍发放"
            + np.where(
                cents["living"] > 0, "困难残疾人生活补贴" + _money(cents["living"]) + "元/月", ""
            )
            + np.where((cents["living"] > 0) & (cents["care"] > 0), "、", "")
            + np.where(
                cents["care"] > 0, "重度残疾人护理补贴" + _money(cents["care"]) + "元/月", ""
            )
            + "（"
            + _text(hit["cl_file"])
            + "〔"
            + _text(hit["cl_did"])
            + "〕）",
            "",
        )
    )
    pushed = (
        pd.Series("XC", index=hit.index) + np.where(by_mz, ",MZ", "") + np.where(by_cl, ",CL", "")
    )
    found = hit.assign(severity="high", evidence=evidence)[
        ["person_key", "id_number", "name", "severity", "evidence"]
    ]
    return person_findings(facts, found, inp.rule, pushed)


@implements("GA-02")
def _ga02(inp: RuleInput) -> pd.DataFrame:
    facts = inp.facts
    m = facts.members
    hit = m.loc[~m["active"], ["person_key", "id_number", "name"]].merge(
        facts.deaths[["person_key", "death_date", "delivery_id", "source_file"]], on="person_key"
    )
    evidence = (
        "公安户籍登记死亡（" + _day(hit["death_date"]) + "），家庭成员名单仍在册，"
        "应作自然减少；来源：" + _text(hit["source_file"]) + "〔" + _text(hit["delivery_id"]) + "〕"
    )
    found = hit.assign(severity="low", evidence=evidence)
    return person_findings(facts, found, inp.rule)
