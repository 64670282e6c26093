"""Cross-department comparison (数据比对) and early-warning alerts (风险预警), as rules.md says.

    load_rule_params(province, year)     RuleParams from expectations/reference/rule_params.yaml
    load_facts(conn, as_of)              the frames the rules read, each pulled once (narrow,
                                         as-of selects on the history tables)
    evaluate_rules(conn, as_of, params)  one row per finding (rule_id, subject): set-based pandas;
                                         runs every rule declared in domain/alert_rules.py
                                         through its @implements function (one per rule)
    raise_alerts(conn, as_of)            alert_days of as_of, XC_HECHA feedback, the alerts table
    rebuild_alerts(conn, from, to)       re-run the evaluated nights of a range, in date order
    alerts_frame(conn, as_of)            the published `alerts` columns (plain) plus pushed_to

Lifecycle. `alert_days` holds, per evaluated exchange date (`alert_runs`), every finding that
held that night, with all its descriptive columns. The `alerts` table is a pure function of the
alert_days and alert_runs up to D and of XC_HECHA as of D:

    first_raised   the first run date on which the alert held
    last_seen      the latest run date on which it held
    opened_on      the first run date of its latest *episode* (an unbroken series of run dates on
                   which it held); equals first_raised until the alert re-opens
    resolved_on    the run date after last_seen, when it no longer holds (else empty)
    status         feedback (已纳入监测 confirmed, 核实排除 dismissed, 数据错误 data_error)
                   with checked_date <= D governs when it was given during or after the latest
                   episode (opened_on <= checked_date): the same evidence does not re-open it.
                   Otherwise open when it held on D, else resolved.

Nightly, the state of the previous run date is the alerts table itself (advanced by one run);
when the table is not at the previous run date (a re-run or backfill of a past date), that state
is derived from alert_days first. Either way, re-running D, then every later run date in order,
gives the same table as the nights did (tests/test_alerts.py).

Dates in returned frames are datetime64[s] (midnight; NaT when empty).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    delete,
    func,
    insert,
    select,
)

from datashare.errors import ConfigurationError
from datashare.settings import DEFAULT_PROVINCE
from domain import definitions as dd
from domain.alert_rules import (
    Rule,
    declared_rules,
    function_of,
    implements,
    param_defaults,
    param_names,
)
from expectations.contract import get_contract, load_contracts
from warehouse.bulk import fetch_arrow, is_postgres, load_arrow, staging
from warehouse.history import history_schema, rows_as_of
from warehouse.tables import (
    deliveries,
    history_merges,
    history_tables,
    person_key_column,
    valid_on,
)
from warehouse.tables_alerts import alert_days, alert_feedback, alert_runs, alerts
from warehouse.tables_portal import read_portal_verifications

log = logging.getLogger(__name__)

RULE_PARAMS = (
    Path(__file__).resolve().parent.parent / "expectations" / "reference" / ("rule_params.yaml")
)
DIVISIONS = RULE_PARAMS.parent / "divisions.csv"

DEPT_ORDER = ("XC", "MZ", "ZJ", "JT", "YB", "WJ", "RS", "NY", "CL", "SL", "GA")
FINDING_COLUMNS = [
    "alert_id",
    "rule_id",
    "risk_type",
    "subject_type",
    "subject",
    "household_id",
    "person_key",
    "id_number",
    "name",
    "town",
    "village",
    "severity",
    "evidence",
    "pushed_to",
]
PUBLISHED_COLUMNS = [
    "alert_id",
    "rule_id",
    "risk_type",
    "household_id",
    "person_key",
    "id_number",
    "name",
    "town",
    "village",
    "severity",
    "status",
    "first_raised",
    "last_seen",
    "resolved_on",
    "evidence",
]
_DATES = ["first_raised", "last_seen", "opened_on", "resolved_on"]
_STATE_COLUMNS = [*FINDING_COLUMNS, *_DATES]
FEEDBACK_STATUS = {"已纳入监测": "confirmed", "核实排除": "dismissed", "数据错误": "data_error"}
CLOSED = frozenset(FEEDBACK_STATUS.values())
_MAX_SOURCES = 3  # deliveries named in one evidence text; more are counted


# --- parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleParams:
    """The rule parameters of one province and year (rules.md: reference data, never code).

    `values` holds every parameter the declared rules need (domain/alert_rules.py), e.g.
    income_threshold (INC-01) and medical_burden_household_12m (YB-01), in yuan; each is also
    an attribute (`params.income_threshold`).
    """

    province: str
    year: int
    values: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        values = self.__dict__.get("values") or {}
        if name in values:
            return float(values[name])
        raise AttributeError(name)

    def value(self, name: str) -> float:
        """A parameter's value; one no declared rule needs fails naming it."""
        if name not in self.values:
            raise ConfigurationError(
                f"alert rule parameter {name} is not declared by any rule (domain/alert_rules.py)"
            )
        return float(self.values[name])

    def cents(self, name: str) -> int:
        """A money parameter in whole cents (money is compared to the cent)."""
        return round(self.value(name) * 100)


@cache
def _reference(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"rule parameters cannot be read from {path}: {exc}") from None
    return dict(data)


def load_rule_params(province: str, year: int, *, path: Path = RULE_PARAMS) -> RuleParams:
    """The alert rule parameters of a province and year; a missing one is a ConfigurationError.

    A value under the year wins over the province's defaults, which win over the default the
    rule declares (domain/alert_rules.py). Nothing is guessed: a province missing from the
    reference data, or a parameter with no value and no declared default, stops the run,
    naming parameter, province and year.
    """
    provinces = _reference(path).get("provinces") or {}
    entry = provinces.get(str(province))
    if entry is None:
        raise ConfigurationError(
            f"no alert rule parameters for province {province} (year {year}) in {path.name}; "
            f"needed: {', '.join(param_names())}"
        )
    merged = dict(entry.get("defaults") or {})
    merged.update((entry.get("years") or {}).get(int(year)) or {})
    values: dict[str, float] = {}
    defaults = param_defaults()
    for name in param_names():
        value = merged.get(name, defaults[name])
        if value is None:
            raise ConfigurationError(
                f"alert rule parameter {name} is missing for province {province}, year {year} "
                f"(reference data {path.name}); set it there, it is never guessed"
            )
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"alert rule parameter {name} for province {province}, year {year} is not a "
                f"number ({path.name})"
            ) from None
    return RuleParams(province=str(province), year=int(year), values=values)


# --- reading ------------------------------------------------------------------------------------

_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype("pyarrow"),
}


def read_current(
    conn: Connection,
    dataset: str,
    as_of: date,
    columns: Sequence[str],
    where: ColumnElement[bool] | None = None,
) -> pd.DataFrame:
    """Some columns (plus lineage) of the rows of `dataset` true on `as_of`, ordered by key.

    The narrow form of warehouse.history.current_rows: the same as-of semantics (latest
    snapshot on or before the date; current corrected events), only the columns a rule needs.
    """
    contract = get_contract(dataset)
    table = history_tables[dataset]
    names = list(dict.fromkeys([*columns, "delivery_id", "source_file"]))
    full = history_schema(contract)
    if is_postgres(conn):
        query = select(*(table.c[n] for n in names)).where(valid_on(table, as_of))
        if where is not None:
            query = query.where(where)
        query = query.order_by(*(table.c[k] for k in contract.key))
        rows = fetch_arrow(conn, query, pa.schema([full.field(n) for n in names]))
    else:
        # SQLite compares keys (text, dates as ISO text, numbers) as Arrow does: sorting here
        # gives its ORDER BY's order for a fraction of its time (keys are unique on a date).
        rows = rows_as_of(conn, dataset, as_of, [*names, *contract.key], where)
        order = pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in contract.key])
        rows = rows.take(order).select(names)
    frame = rows.to_pandas(types_mapper=_PANDAS_TYPES.get, date_as_object=False)
    for name in names:
        if pa.types.is_date(full.field(name).type):
            frame[name] = frame[name].astype("datetime64[s]")
    return frame


def _latest_delivery(conn: Connection, dataset: str, as_of: date) -> tuple[str, str] | None:
    """(delivery_id, source_file) of the dataset's latest merge on or before as_of."""
    hm, d = history_merges.c, deliveries.c
    row = conn.execute(
        select(hm.delivery_id, d.source_file)
        .select_from(history_merges.outerjoin(deliveries, d.delivery_id == hm.delivery_id))
        .where(hm.dataset == dataset, hm.exchange_date <= as_of)
        .order_by(hm.exchange_date.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return str(row[0]), (str(row[1]) if row[1] else "")


@cache
def divisions() -> pd.DataFrame:
    """Village code -> town and village names (expectations/reference/divisions.csv)."""
    return pd.read_csv(DIVISIONS, dtype=str)


# --- facts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the rules (and the profiles) read, as of one date; frames are never mutated."""

    as_of: date
    households: pd.DataFrame  # XC_HU rows + monitored (bool)
    members: pd.DataFrame  # XC_REN rows + household columns, age, death_date, active, labour
    deaths: pd.DataFrame  # first 死亡 on or before as_of per person_key, with lineage
    settlements: pd.DataFrame  # YB 正常, not cancelled, settle_date in (as_of - 365, as_of]
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    def monitored_for(self, household_ids: pd.Series, risk: str) -> pd.Series:
        """Per row: the household is monitored and `risk` is among its risk types."""
        hh = self.households
        known = hh.loc[hh["monitored"] & dd.has_risk(hh["risk_types"], risk), "household_id"]
        return household_ids.isin(known).fillna(False).astype(bool)


def load_facts(conn: Connection, as_of: date) -> Facts:
    """Roster, deaths and twelve-month settlements as of a date (the frames most rules share)."""
    hu = read_current(
        conn,
        "XC_HU",
        as_of,
        [
            "household_id",
            "town",
            "village",
            "village_code",
            "head_name",
            "head_id_number",
            "head_person_key",
            "household_size",
            "household_type",
            "monitoring_category",
            "risk_types",
            "risk_eliminated",
            "income_per_capita",
        ],
    )
    hu = hu.assign(monitored=dd.monitored(hu["monitoring_category"], hu["risk_eliminated"]))
    ren = read_current(
        conn,
        "XC_REN",
        as_of,
        [
            "household_id",
            "name",
            "id_number",
            "person_key",
            "relation",
            "gender",
            "birth_date",
            "labour_skill",
        ],
    )
    ga = read_current(
        conn,
        "GA_BIANDONG",
        as_of,
        [
            "event_id",
            "name",
            "id_number",
            "person_key",
            "change_type",
            "change_date",
        ],
    )
    deaths = (
        ga.loc[dd.died_by(ga["change_type"], ga["change_date"], as_of)]
        .sort_values(["person_key", "change_date", "event_id"])
        .drop_duplicates("person_key")
        .rename(columns={"change_date": "death_date"})[
            ["person_key", "id_number", "name", "death_date", "delivery_id", "source_file"]
        ]
        .reset_index(drop=True)
    )
    members = ren.merge(
        hu[
            [
                "household_id",
                "town",
                "village",
                "village_code",
                "household_type",
                "monitoring_category",
                "monitored",
            ]
        ],
        on="household_id",
        how="left",
        validate="many_to_one",
    ).merge(deaths[["person_key", "death_date"]], on="person_key", how="left")
    age = dd.ages_on(members["id_number"], as_of)
    active = members["death_date"].isna().astype(bool)
    members = members.assign(
        age=age,
        active=active,
        labour=dd.is_labour(active, age, members["labour_skill"]),
        monitored=members["monitored"].fillna(False).astype(bool),
    )

    yb = history_tables["YB_JIESUAN"].c
    start = as_of - timedelta(days=365)
    rows = read_current(
        conn,
        "YB_JIESUAN",
        as_of,
        [
            "settlement_id",
            "settle_kind",
            "person_key",
            "settle_date",
            "self_burden",
            "cancelled",
        ],
        where=(yb.settle_date > start) & (yb.settle_date <= as_of),
    )
    # History flags the cancelled 正常 row (cancelled); a 冲销 in the window is checked too.
    keep = dd.counted_settlements(rows["settlement_id"], rows["settle_kind"], rows["cancelled"])
    settlements = rows.loc[keep].assign(
        cents=(rows.loc[keep, "self_burden"].astype("float64") * 100).round().astype("int64")
    )
    return Facts(as_of, hu, members, deaths, settlements.reset_index(drop=True))


def household_burden(facts: Facts) -> pd.DataFrame:
    """Per roster household: settlements and self-paid cents of its active members (12 months)."""
    active = facts.members.loc[facts.members["active"], ["person_key", "household_id"]]
    joined = facts.settlements.merge(active, on="person_key", how="inner")
    grouped = joined.groupby("household_id", sort=True)
    return pd.DataFrame(
        {
            "cents": grouped["cents"].sum(),
            "settlements": grouped.size(),
            "persons": grouped["person_key"].nunique(),
        }
    ).reset_index()


# --- findings: shared shaping --------------------------------------------------------------------


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


def _money(cents: pd.Series) -> pd.Series:
    """Cents as yuan text with two decimals (vectorised)."""
    c = cents.astype("int64")
    sign = np.where(c < 0, "-", "")
    a = c.abs()
    return (
        pd.Series(sign, index=c.index)
        + (a // 100).astype(str)
        + "."
        + (a % 100).astype(str).str.zfill(2)
    )


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.strftime("%Y-%m-%d").astype("string").fillna("未填报")


def join_groups(values: pd.Series, keys: pd.Series, sep: str) -> pd.Series:
    """Per key, its values joined by `sep` in their current order (index: the sorted keys).

    Groups of one (nearly all) are taken as they are; only larger groups are joined in Python.
    """
    values = _text(values)
    size = keys.map(keys.value_counts())
    single = size == 1
    out = pd.Series(values[single].to_numpy(), index=keys[single].to_numpy(), dtype="string")
    if (~single).any():
        multi = values[~single].groupby(keys[~single].to_numpy(), sort=False).agg(sep.join)
        out = pd.concat([out, multi.astype("string")])
    return out.sort_index()


def sources(frame: pd.DataFrame, by: str) -> pd.Series:
    """Per `by` value: the deliveries behind the facts, as text naming file and delivery id.

    At most _MAX_SOURCES are named (sorted by delivery id); more are counted.
    """
    pairs = (
        frame[[by, "delivery_id", "source_file"]]
        .dropna(subset=[by])
        .drop_duplicates()
        .sort_values([by, "delivery_id"])
    )
    rank = pairs.groupby(by, sort=False).cumcount()
    label = _text(pairs["source_file"]) + "〔" + _text(pairs["delivery_id"]) + "〕"
    named = join_groups(label[rank < _MAX_SOURCES], pairs.loc[rank < _MAX_SOURCES, by], "、")
    count = pairs.groupby(by).size()
    more = (count - _MAX_SOURCES).clip(lower=0)
    suffix = pd.Series(
        np.where(more > 0, "等" + count.astype(str) + "批交付", ""), index=count.index
    )
    return ("来源：" + named.reindex(count.index) + suffix).astype("string")


def household_findings(facts: Facts, found: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """Findings whose subject is a roster household (found: household_id, severity, evidence)."""
    hh = facts.households[
        ["household_id", "head_person_key", "head_id_number", "head_name", "town", "village"]
    ]
    out = found.merge(hh, on="household_id", how="left", validate="one_to_one")
    return pd.DataFrame(
        {
            "rule_id": rule.rule_id,
            "risk_type": rule.risk_type,
            "subject_type": "household",
            "subject": out["household_id"],
            "household_id": out["household_id"],
            "person_key": out["head_person_key"],
            "id_number": out["head_id_number"],
            "name": out["head_name"],
            "town": out["town"],
            "village": out["village"],
            "severity": out["severity"],
            "evidence": out["evidence"],
            "pushed_to": ",".join(rule.pushed_to),
        }
    )


def person_findings(
    facts: Facts, found: pd.DataFrame, rule: Rule, pushed_to: pd.Series | None = None
) -> pd.DataFrame:
    """Findings whose subject is a person (found: person_key, id_number, name, severity,
    evidence[, village_code]); roster membership fills household, town and village."""
    m = facts.members[["person_key", "household_id", "name", "town", "village"]]
    out = _lookup(found.reset_index(drop=True), m.rename(columns={"name": "roster_name"}))
    town, village = out["town"], out["village"]
    if "village_code" in out:  # persons off the roster: the department's village code
        div = divisions().set_index("village_code")
        codes = out["village_code"].astype("string")
        town = town.fillna(codes.map(div["town"]))
        village = village.fillna(codes.map(div["village"]))
    pushed = ",".join(rule.pushed_to) if pushed_to is None else pushed_to.reset_index(drop=True)
    return pd.DataFrame(
        {
            "rule_id": rule.rule_id,
            "risk_type": rule.risk_type,
            "subject_type": "person",
            "subject": out["person_key"],
            "household_id": out["household_id"],
            "person_key": out["person_key"],
            "id_number": out["id_number"],
            "name": out["roster_name"].fillna(out["name"]),
            "town": town,
            "village": village,
            "severity": out["severity"],
            "evidence": out["evidence"],
            "pushed_to": pushed,
        }
    )


def _arrow_text(values: pd.Series) -> pa.Array:
    array = pa.array(values.astype("string[pyarrow]").array)
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return array.cast(pa.large_string())


def _lookup(left: pd.DataFrame, right: pd.DataFrame, on: str = "person_key") -> pd.DataFrame:
    """left.merge(right, on=on, how="left", validate="many_to_one") for text columns, by an
    Arrow hash lookup: pandas' merge factorises and sorts both sides' keys (a 700k-row right
    side six times per evaluation was a fifth of it)."""
    names = [c for c in right.columns if c != on]
    if set(names) & set(left.columns) or not all(
        isinstance(right[c].dtype, pd.StringDtype) for c in [on, *names]
    ):
        return left.merge(right, on=on, how="left", validate="many_to_one")
    keys = _arrow_text(right[on])
    if pc.count_distinct(keys, mode="all").as_py() != len(keys):
        raise pd.errors.MergeError(
            "Merge keys are not unique in right dataset; not a many-to-one merge"
        )
    wanted = _arrow_text(left[on])
    where = pc.index_in(wanted, value_set=keys).fill_null(-1).to_numpy(zero_copy_only=False)
    taken = {c: right[c].array.take(where, allow_fill=True) for c in names}
    return left.assign(**{c: pd.Series(v, index=left.index) for c, v in taken.items()})


def _severity(condition: pd.Series | np.ndarray, yes: str, no: str) -> np.ndarray:
    return np.where(np.asarray(condition, dtype=bool), yes, no)


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


def _name_pairs() -> list[tuple[str, str, str, str]]:
    """(dataset, dept, id column, name column) for every id18 column with a paired name."""
    pairs = []
    for dataset, contract in sorted(load_contracts().items()):
        names = set(contract.column_names)
        for column in contract.columns:
            if column.type != "id18":
                continue
            name = column.name.removesuffix("id_number") + "name"
            if name in names:
                pairs.append((dataset, contract.dept, column.name, name))
    return pairs


def normalise_names(names: pd.Series) -> pd.Series:
    """Names as compared across departments: NFKC, no whitespace, one form of the middle dot."""
    distinct = pd.Series(names.dropna().unique())
    clean = (
        distinct.map(lambda s: unicodedata.normalize("NFKC", str(s)))
        .str.replace(r"\s+", "", regex=True)
        .str.replace(r"[·•‧・.．]", "·", regex=True)
    )
    return names.map(dict(zip(distinct, clean, strict=True))).astype("string")


def id_names(conn: Connection, as_of: date, only: pd.Index | None = None) -> pd.DataFrame:
    """Every (person, dataset, name) in current data: latest snapshots and current events.

    Columns person_key, id_number, name, dataset, dept, delivery_id, source_file, norm (the
    name as compared: normalise_names). `only`: just these person_keys (staged in a temporary
    table). Read for DQ-01 and the profiles' names.
    """
    if only is not None:
        keys = pa.table({"person_key": pa.array(list(only.astype(str)), pa.string())})
        with staging(
            conn, "tmp_alert_keys", [("person_key", String(32))], keys, primary_key=["person_key"]
        ) as stage:
            return _id_names(
                conn,
                as_of,
                lambda dataset, column: column.in_(select(stage.c.person_key)),
            )
    return _id_names(conn, as_of, lambda dataset, column: None)


def _id_names(
    conn: Connection,
    as_of: date,
    where: Callable[[str, ColumnElement[Any]], ColumnElement[bool] | None],
) -> pd.DataFrame:
    """id_names with a condition per dataset (given its person_key column)."""
    parts = []
    for dataset, dept, id_col, name_col in _name_pairs():
        key_col = person_key_column(id_col)
        column = history_tables[dataset].c[key_col]
        rows = read_current(
            conn, dataset, as_of, [key_col, id_col, name_col], where=where(dataset, column)
        )
        rows = rows.loc[rows[key_col].notna()].drop_duplicates([key_col, name_col])
        parts.append(
            pd.DataFrame(
                {
                    "person_key": rows[key_col],
                    "id_number": rows[id_col],
                    "name": rows[name_col],
                    "dataset": dataset,
                    "dept": dept,
                    "delivery_id": rows["delivery_id"],
                    "source_file": rows["source_file"],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(norm=normalise_names(frame["name"]))


_SPACES = (" ", "\u3000", "\t", "\n", "\r", "\xa0")
_DOTS = ("•", "‧", "・", ".", "．")


def _comparable(names: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """normalise_names without NFKC (done at intake): equal here => equal there."""
    for space in _SPACES:
        names = pc.replace_substring(names, space, "")
    for dot in _DOTS:
        names = pc.replace_substring(names, dot, "·")
    return names


def name_keys(conn: Connection, as_of: date) -> pa.Table:
    """Every current (person, name) pair of every dataset, unordered and without lineage.

    Columns dataset, dept, lead (the row's first key column, as text: how DQ-01 finds the
    rows again through the primary key), person_key, name. Rows without a person_key are
    left out; rows without a name are kept (id_names keeps them).
    """
    parts = []
    for dataset, dept, id_col, name_col in _name_pairs():
        table = history_tables[dataset]
        lead = get_contract(dataset).key[0]
        key_col = person_key_column(id_col)
        rows = rows_as_of(
            conn, dataset, as_of, [lead, key_col, name_col], where=table.c[key_col].is_not(None)
        )
        n = rows.num_rows
        parts.append(
            pa.table(
                {
                    "dataset": pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, np.int32)), pa.array([dataset])
                    ),
                    "dept": pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, np.int32)), pa.array([dept])
                    ),
                    "lead": rows.column(lead).cast(pa.string()),
                    "person_key": rows.column(key_col).cast(pa.string()),
                    "name": rows.column(name_col).cast(pa.string()),
                }
            )
        )
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def _name_clash_candidates(pairs: pa.Table) -> pd.Index:
    """Persons whose current names differ across departments (before NFKC): the only persons
    DQ-01 reads back with their lineage (a few in a thousand).

    The same test the exact one (normalise_names, in _dq01) makes, on the cheaper comparable
    form: a superset of the exact clashes.
    """
    named = pairs.filter(pc.is_valid(pairs.column("name")))
    frame = pa.table(
        {
            "person_key": named.column("person_key"),
            "name": named.column("name"),
            "dept": named.column("dept").cast(pa.string()),
        }
    )
    with duckdb.connect() as duck:
        duck.register("pairs", frame)
        # Two names (as delivered) in two departments first: comparable names can only
        # differ where the names do, so only those persons' names are made comparable.
        maybe = duck.sql(
            "SELECT person_key, name, dept FROM pairs WHERE person_key IN ("
            "SELECT person_key FROM pairs GROUP BY person_key "
            "HAVING min(name) <> max(name) AND min(dept) <> max(dept))"
        ).arrow()
        if hasattr(maybe, "read_all"):
            maybe = maybe.read_all()
        duck.register("maybe", maybe.set_column(1, "norm", _comparable(maybe.column("name"))))
        keys = duck.sql(
            "SELECT person_key FROM maybe GROUP BY person_key "
            "HAVING count(DISTINCT norm) > 1 AND count(DISTINCT dept) > 1"
        ).fetchnumpy()["person_key"]
    return pd.Index(list(keys), dtype="string")


def _id_names_of(conn: Connection, as_of: date, only: pd.Index, pairs: pa.Table) -> pd.DataFrame:
    """id_names(conn, as_of, only), looked up through the primary keys of the history tables.

    `pairs` (name_keys) gives, per dataset, the first key column of every row of those
    persons: the rows are then probed by key (indexed) instead of scanning each table for
    the person_key (not indexed). Same rows, same order, same frame as id_names.
    """
    wanted = pairs.filter(
        pc.is_in(
            pairs.column("person_key"), value_set=pa.array(list(only.astype(str)), pa.string())
        )
    )
    leads = (
        pa.table(
            {
                "dataset": wanted.column("dataset").cast(pa.string()),
                "value": wanted.column("lead"),
            }
        )
        .group_by(["dataset", "value"])
        .aggregate([])
    )
    keys = pa.table({"person_key": pa.array(list(only.astype(str)), pa.string())})
    with (
        staging(
            conn, "tmp_alert_keys", [("person_key", String(32))], keys, primary_key=["person_key"]
        ) as key_stage,
        staging(
            conn,
            "tmp_alert_leads",
            [("dataset", String(32)), ("value", String())],
            leads,
            primary_key=["dataset", "value"],
        ) as lead_stage,
    ):

        def where(dataset: str, column: ColumnElement[Any]) -> ColumnElement[bool]:
            lead = history_tables[dataset].c[get_contract(dataset).key[0]]
            values = select(lead_stage.c.value).where(lead_stage.c.dataset == dataset)
            return lead.in_(values) & column.in_(select(key_stage.c.person_key))

        return _id_names(conn, as_of, where)


@implements("DQ-01")
def _dq01(inp: RuleInput) -> pd.DataFrame:
    conn, facts = inp.conn, inp.facts
    homes = (
        pd.concat(
            [
                facts.members[["person_key", "household_id"]],
                facts.households[["head_person_key", "household_id"]].rename(
                    columns={"head_person_key": "person_key"}
                ),
            ]
        )
        .dropna()
        .drop_duplicates()
    )
    n_homes = homes.groupby("person_key")["household_id"].nunique()
    pairs = name_keys(conn, facts.as_of)
    candidates = _name_clash_candidates(pairs).union(
        pd.Index(n_homes.index[n_homes >= 2], dtype="string")
    )
    seen = _id_names_of(conn, facts.as_of, candidates, pairs)
    named = seen.loc[seen["norm"].notna()]
    g = named.groupby("person_key")
    stats = pd.DataFrame({"names": g["norm"].nunique(), "depts": g["dept"].nunique()})
    clash = stats.index[(stats["names"] >= 2) & (stats["depts"] >= 2)]
    two_homes = n_homes.index[n_homes >= 2]
    subjects = pd.Index(clash).union(pd.Index(two_homes))
    if subjects.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS[1:])
    rel = seen.loc[seen["person_key"].isin(subjects)]
    # Names: each (dataset, name) once, in dataset order; households the id belongs to.
    shown = (
        rel.loc[rel["person_key"].isin(clash) & rel["name"].notna()]
        .sort_values(["person_key", "dataset", "name"])
        .drop_duplicates(["person_key", "dataset", "name"])
    )
    name_text = (
        (shown["dataset"] + "「" + _text(shown["name"]) + "」")
        .groupby(shown["person_key"])
        .agg("、".join)
    )
    home_text = (
        homes.loc[homes["person_key"].isin(two_homes)]
        .sort_values(["person_key", "household_id"])
        .groupby("person_key")["household_id"]
        .agg("、".join)
    )
    base = (
        rel.sort_values(["person_key", "dataset"])
        .drop_duplicates("person_key")
        .set_index("person_key")
    )
    src = sources(rel, "person_key")
    evidence = pd.Series("", index=subjects, dtype="string")
    evidence = evidence + ("同一身份证号在各部门现有数据中姓名不一致：" + name_text).reindex(
        subjects
    ).fillna("")
    both = subjects.isin(clash) & subjects.isin(two_homes)
    evidence = (
        evidence
        + np.where(both, "；", "")
        + ("同一身份证号属于两个及以上户：" + home_text).reindex(subjects).fillna("")
    )
    evidence = evidence + "；" + src.reindex(subjects).fillna("")
    depts = rel[["person_key", "dept"]].drop_duplicates()
    depts = depts.assign(order=depts["dept"].map({d: i for i, d in enumerate(DEPT_ORDER)}))
    pushed = (
        depts.loc[depts["dept"] != "XC"]
        .sort_values(["person_key", "order"])
        .groupby("person_key")["dept"]
        .agg(",".join)
        .reindex(subjects)
    )
    pushed = ("XC," + pushed).fillna("XC")
    found = pd.DataFrame(
        {
            "person_key": subjects,
            "id_number": base["id_number"].reindex(subjects).to_numpy(),
            "name": base["name"].reindex(subjects).to_numpy(),
            "severity": "low",
            "evidence": evidence.to_numpy(),
        }
    )
    return person_findings(facts, found, inp.rule, pd.Series(pushed.to_numpy()))


# --- evaluate -------------------------------------------------------------------------------------

_CROCKFORD = np.array(list("0123456789ABCDEFGHJKMNPQRSTVWXYZ"))


def alert_ids(rule_ids: pd.Series, subjects: pd.Series) -> pd.Series:
    """Stable, quotable ids: `YB01-7K3F9Q2M8X` = rule without dash + 50 bits of
    sha256(rule_id U+001F subject) in Crockford base32. Independent of run order and data."""
    if len(rule_ids) == 0:
        return pd.Series([], dtype="string")
    frame = pa.table(
        {"r": pa.array(rule_ids.astype(str).tolist()), "s": pa.array(subjects.astype(str).tolist())}
    )
    with duckdb.connect() as duck:
        duck.register("f", frame)
        bits = (
            duck.sql(
                "SELECT ('0x' || left(sha256(r || chr(31) || s), 13))::UBIGINT >> 2 AS v FROM f"
            )
            .fetchnumpy()["v"]
            .astype(np.uint64)
        )
    text = np.full(len(bits), "", dtype=object)
    for i in range(10):  # ten 5-bit digits, most significant first
        digit = (bits >> np.uint64(5 * (9 - i))) & np.uint64(31)
        text = text + _CROCKFORD[digit.astype(np.int64)].astype(object)
    prefix = rule_ids.astype(str).str.replace("-", "", regex=False).to_numpy(dtype=object)
    return pd.Series(prefix + "-" + text, index=rule_ids.index, dtype="string")


def load_department_facts(conn: Connection, facts: Facts) -> Facts:
    """Facts with the departments' latest data the rules read (facts.extra, by dataset)."""
    as_of = facts.as_of
    extra = {
        "ZJ_FANGWU": _latest_assessment(conn, facts),
        "JT_XUEJI": read_current(
            conn, "JT_XUEJI", as_of, ["person_key", "stage", "enrolment_status", "status_date"]
        ),
        "CL_CANJI": read_current(
            conn,
            "CL_CANJI",
            as_of,
            [
                "person_key",
                "id_number",
                "name",
                "category",
                "level",
                "cert_status",
                "living_subsidy",
                "care_subsidy",
            ],
        ),
        "RS_JIUYE": read_current(
            conn, "RS_JIUYE", as_of, ["person_key", "employment_status", "monthly_income"]
        ),
        "SL_YINSHUI": read_current(
            conn,
            "SL_YINSHUI",
            as_of,
            [
                "head_person_key",
                "survey_date",
                "water_safe",
                "quantity_ok",
                "quality_ok",
                "convenience_ok",
                "reliability_ok",
            ],
        ),
        "NY_CHANYE": read_current(
            conn,
            "NY_CHANYE",
            as_of,
            ["project_id", "head_person_key", "industry", "year", "project_status"],
        ),
        "MZ_DIBAO": read_current(
            conn,
            "MZ_DIBAO",
            as_of,
            ["person_key", "id_number", "name", "village_code", "assistance_type", "status"],
        ),
    }
    extra["CL_CANJI"] = extra["CL_CANJI"].loc[extra["CL_CANJI"]["person_key"].notna()]
    facts = Facts(
        facts.as_of, facts.households, facts.members, facts.deaths, facts.settlements, extra
    )
    extra["on_dibao"] = _on_dibao(facts)
    return facts


def evaluate_rules(conn: Connection, as_of: date, params: RuleParams) -> pd.DataFrame:
    """Every rule of rules.md on the state as of a date: one row per finding.

    Columns: alert_id, rule_id, risk_type, subject_type (household | person), subject
    (household_id, or person_key), household_id, person_key, id_number, name (for households:
    the head's), town, village, severity (high | medium | low), evidence (Chinese: the facts and
    the deliveries behind them; never bank account, diagnosis, disease or address), pushed_to
    (department codes, comma-separated). Ordered by rule_id, subject. Reads only; set-based.
    """
    facts = load_department_facts(conn, load_facts(conn, as_of))
    found = []
    for declared in declared_rules():
        function = function_of(declared.rule_id)
        found.append(_checked(declared, function(RuleInput(declared, facts, params, conn))))
    frame = (
        pd.concat([f for f in found if len(f)], ignore_index=True)
        if any(len(f) for f in found)
        else pd.DataFrame(columns=FINDING_COLUMNS[1:])
    )
    frame = frame.astype({c: "string" for c in FINDING_COLUMNS[1:]})
    frame = frame.sort_values(["rule_id", "subject"]).reset_index(drop=True)
    frame.insert(0, "alert_id", alert_ids(frame["rule_id"], frame["subject"]))
    dupes = frame.duplicated("alert_id")
    if dupes.any():  # a rule produced one subject twice, or (improbably) two ids collide
        rules = sorted(frame.loc[dupes, "rule_id"].unique())
        raise RuntimeError(f"alert ids repeated within one evaluation (rules {rules})")
    return frame[FINDING_COLUMNS]


def _checked(declared: Rule, found: pd.DataFrame) -> pd.DataFrame:
    """A rule's findings, held to its declaration: its id and risk type, its subject, its
    severities, and departments that include the declared ones."""
    if not len(found):
        return found
    problems = []
    if set(found["rule_id"]) != {declared.rule_id} or set(found["risk_type"]) != {
        declared.risk_type
    }:
        problems.append("rule_id/risk_type")
    if set(found["subject_type"]) != {declared.subject}:
        problems.append("subject_type")
    if not set(found["severity"]) <= set(declared.severities):
        problems.append(f"severity outside {declared.severities}")
    pushed = found["pushed_to"].astype("string").str.split(",")
    fixed = set(declared.pushed_to)
    if not pushed.map(lambda depts: fixed <= set(depts)).all() or (
        not declared.pushed_to_varies and not pushed.map(lambda d: set(d) == fixed).all()
    ):
        problems.append(f"pushed_to not {','.join(declared.pushed_to)}")
    if problems:
        raise RuntimeError(
            f"alert rule {declared.rule_id} gave findings its declaration does not allow: "
            + "; ".join(problems)
        )
    return found


# --- lifecycle ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertSummary:
    """What one raise_alerts did (counts only: no personal data)."""

    as_of: date
    findings: int
    open: int
    new: int
    reopened: int
    resolved: int  # resolved on this date (the condition ended)
    closed: int  # alerts whose status is set by feedback
    feedback: int  # feedback rows known as of the date
    feedback_unknown: int  # feedback rows naming an alert id that does not exist
    by_rule: dict[str, int] = field(default_factory=dict)  # open alerts per rule


def evaluated_dates(conn: Connection, upto: date | None = None) -> list[date]:
    """The exchange dates alerts were evaluated for (alert_runs), in order."""
    return _run_dates(conn, upto)


def _run_dates(conn: Connection, upto: date | None = None) -> list[date]:
    query = select(alert_runs.c.exchange_date).order_by(alert_runs.c.exchange_date)
    if upto is not None:
        query = query.where(alert_runs.c.exchange_date <= upto)
    return [_as_date(d) for (d,) in conn.execute(query)]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


_ARROW_DAY = pa.schema(
    [pa.field("exchange_date", pa.date32())] + [pa.field(c, pa.string()) for c in FINDING_COLUMNS]
)
_ARROW_STATE = pa.schema(
    [pa.field(c, pa.string()) for c in FINDING_COLUMNS] + [pa.field(c, pa.date32()) for c in _DATES]
)


def _dates_to_ns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    return frame.assign(**{c: pd.to_datetime(frame[c]).astype("datetime64[s]") for c in columns})


def _state_from_days(conn: Connection, upto: date) -> pd.DataFrame:
    """The lifecycle state of every alert as of run date `upto`, from alert_days alone."""
    runs = _run_dates(conn, upto)
    if not runs:
        return _empty_state()
    ad = alert_days.c
    held = fetch_arrow(
        conn,
        select(ad.alert_id, ad.exchange_date).where(ad.exchange_date <= upto),
        pa.schema([("alert_id", pa.string()), ("exchange_date", pa.date32())]),
    ).to_pandas()
    if held.empty:
        return _empty_state()
    index = {d: i for i, d in enumerate(runs)}
    held = held.assign(exchange_date=pd.to_datetime(held["exchange_date"]).dt.date)
    held = held.assign(run=held["exchange_date"].map(index)).sort_values(["alert_id", "run"])
    episode = held["run"] - held.groupby("alert_id").cumcount()
    held = held.assign(episode=episode)
    g = held.groupby("alert_id", sort=True)
    last_episode = held.loc[held["episode"] == g["episode"].transform("max")]
    state = pd.DataFrame(
        {
            "first_raised": g["exchange_date"].min(),
            "last_seen": g["exchange_date"].max(),
            "last_run": g["run"].max(),
            "opened_on": last_episode.groupby("alert_id")["exchange_date"].min(),
        }
    )
    run_after = pd.Series([*runs[1:], None])
    state["resolved_on"] = np.where(
        state["last_run"] < len(runs) - 1, state["last_run"].map(run_after), None
    )
    # Descriptive columns: the alert_days row of each alert's last_seen.
    latest = (
        select(ad.alert_id, func.max(ad.exchange_date).label("last"))
        .where(ad.exchange_date <= upto)
        .group_by(ad.alert_id)
        .subquery()
    )
    described = fetch_arrow(
        conn,
        select(*(ad[c] for c in FINDING_COLUMNS)).select_from(
            alert_days.join(
                latest, (latest.c.alert_id == ad.alert_id) & (latest.c.last == ad.exchange_date)
            )
        ),
        pa.schema([(c, pa.string()) for c in FINDING_COLUMNS]),
    ).to_pandas(types_mapper=_PANDAS_TYPES.get)
    out = described.merge(
        state.drop(columns="last_run"), left_on="alert_id", right_index=True, validate="one_to_one"
    )
    return _dates_to_ns(out, _DATES)[_STATE_COLUMNS].sort_values("alert_id").reset_index(drop=True)


def _empty_state() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in FINDING_COLUMNS})
    return frame.assign(**{c: pd.Series(dtype="datetime64[s]") for c in _DATES})


def _state_from_table(conn: Connection) -> pd.DataFrame:
    a = alerts.c
    rows = fetch_arrow(conn, select(*(a[c] for c in _STATE_COLUMNS)), _ARROW_STATE).to_pandas(
        types_mapper=_PANDAS_TYPES.get, date_as_object=False
    )
    return _dates_to_ns(rows, _DATES).sort_values("alert_id").reset_index(drop=True)


def _state_before(conn: Connection, prev: date | None) -> pd.DataFrame:
    """The state as of the previous run date: the alerts table when it is at that date."""
    if prev is None:
        return _empty_state()
    at = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if at is not None and _as_date(at) == prev:
        return _state_from_table(conn)
    return _state_from_days(conn, prev)


def advance(
    state: pd.DataFrame, prev: date | None, findings: pd.DataFrame, as_of: date
) -> pd.DataFrame:
    """The state after run date `as_of`, from the state at the previous run date (pure)."""
    today = pd.Timestamp(as_of)
    was = state.set_index("alert_id")
    now = findings.set_index("alert_id")
    held_before = (
        (was["last_seen"] == pd.Timestamp(prev)) if prev else pd.Series(False, index=was.index)
    )
    # Alerts that hold tonight: tonight's description; dates from before.
    kept = was.reindex(now.index)
    continuing = held_before.reindex(now.index).fillna(False).astype(bool)
    today_s = pd.Series(today, index=now.index).astype("datetime64[s]")
    holding = now[FINDING_COLUMNS[1:]].assign(
        first_raised=kept["first_raised"].fillna(today_s),
        last_seen=today_s,
        opened_on=kept["opened_on"].where(continuing, today_s),
        resolved_on=pd.Series(pd.NaT, index=now.index, dtype="datetime64[s]"),
    )
    # Alerts that do not: resolved tonight if they held at the previous run.
    gone = was.loc[~was.index.isin(now.index)]
    ended = held_before.reindex(gone.index).fillna(False).astype(bool)
    gone = gone.assign(resolved_on=gone["resolved_on"].where(~ended, today).astype("datetime64[s]"))
    out = pd.concat([holding, gone]).rename_axis("alert_id").reset_index()
    return _dates_to_ns(out, _DATES)[_STATE_COLUMNS].sort_values("alert_id").reset_index(drop=True)


def read_feedback(conn: Connection, as_of: date) -> pd.DataFrame:
    """XC_HECHA verification results known on as_of (checked_date on or before it), and the
    verifications XC recorded in the portal, read the same way: per alert the latest
    checked_date wins (on a tie, the portal's, recorded after the file's night)."""
    fb = read_current(conn, "XC_HECHA", as_of, ["alert_id", "outcome", "checked_date"])
    fb = fb.loc[(fb["checked_date"] <= pd.Timestamp(as_of)).fillna(False).astype(bool)]
    portal = read_portal_verifications(conn, as_of)
    if len(portal) and not len(fb):
        fb = portal
    elif len(portal):
        both = pd.concat([fb.assign(_portal=0), portal.assign(_portal=1)], ignore_index=True)
        both = both.sort_values(["alert_id", "checked_date", "_portal"], kind="mergesort")
        fb = both.drop_duplicates("alert_id", keep="last").drop(columns="_portal")
    return fb.sort_values("alert_id").reset_index(drop=True)


def with_status(state: pd.DataFrame, feedback: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Status and feedback columns of every alert as of a run date (pure)."""
    fb = feedback[["alert_id", "outcome", "checked_date"]].rename(
        columns={"outcome": "feedback_outcome", "checked_date": "feedback_date"}
    )
    out = state.merge(fb, on="alert_id", how="left", validate="one_to_one")
    out = out.assign(
        feedback_outcome=out["feedback_outcome"].astype("string"),
        feedback_date=out["feedback_date"].astype("datetime64[s]"),
    )
    governs = out["feedback_date"].notna() & (out["opened_on"] <= out["feedback_date"])
    natural = np.where(out["last_seen"] == pd.Timestamp(as_of), "open", "resolved")
    status = np.where(governs, out["feedback_outcome"].map(FEEDBACK_STATUS).astype(object), natural)
    return out.assign(
        status=pd.Series(status, index=out.index, dtype="string"), as_of=pd.Timestamp(as_of)
    ).assign(as_of=lambda f: f["as_of"].astype("datetime64[s]"))


def _to_arrow(frame: pd.DataFrame, table_columns: Sequence[str]) -> pa.Table:
    columns = {}
    for name in table_columns:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            columns[name] = pa.array(values.dt.date.where(values.notna(), None), type=pa.date32())
        else:
            columns[name] = pa.array(
                values.astype(object).where(values.notna(), None), type=pa.string()
            )
    return pa.table(columns)


def raise_alerts(
    conn: Connection, as_of: date, *, province: str = DEFAULT_PROVINCE
) -> AlertSummary:
    """Evaluate every rule on as_of, record the night, apply feedback, update the alerts table.

    Runs in the caller's transaction. alert_days of as_of is replaced; `alerts` becomes the
    state as of as_of (see the module docstring), so re-running a date, or re-running a range
    in date order, gives the same alerts with the same dates. A missing rule parameter raises
    ConfigurationError before anything is written.
    """
    params = load_rule_params(province, as_of.year)
    findings = evaluate_rules(conn, as_of, params)
    runs = _run_dates(conn)
    prev = max((d for d in runs if d < as_of), default=None)
    state = advance(_state_before(conn, prev), prev, findings, as_of)
    feedback = read_feedback(conn, as_of)
    table = with_status(state, feedback, as_of)

    conn.execute(delete(alert_days).where(alert_days.c.exchange_date == as_of))
    day = findings.assign(exchange_date=pd.Timestamp(as_of)).assign(
        exchange_date=lambda f: f["exchange_date"].astype("datetime64[s]")
    )
    load_arrow(conn, alert_days.name, _to_arrow(day, _ARROW_DAY.names))
    conn.execute(delete(alerts))
    load_arrow(conn, alerts.name, _to_arrow(table, [c.name for c in alerts.columns]))
    known = feedback.loc[feedback["alert_id"].isin(table["alert_id"])]
    conn.execute(delete(alert_feedback))
    load_arrow(
        conn,
        alert_feedback.name,
        pa.table(
            {
                "alert_id": pa.array(known["alert_id"].astype(str).tolist(), pa.string()),
                "outcome": pa.array(known["outcome"].astype(str).tolist(), pa.string()),
                "feedback_date": pa.array(known["checked_date"].dt.date.tolist(), pa.date32()),
                "delivery_id": pa.array(known["delivery_id"].astype(str).tolist(), pa.string()),
            }
        ),
    )

    today = pd.Timestamp(as_of)
    is_open = table["status"] == "open"
    summary = AlertSummary(
        as_of=as_of,
        findings=len(findings),
        open=int(is_open.sum()),
        new=int((table["first_raised"] == today).sum()),
        reopened=int(
            (is_open & (table["opened_on"] == today) & (table["first_raised"] < today)).sum()
        ),
        resolved=int(((table["resolved_on"] == today) & (table["status"] == "resolved")).sum()),
        closed=int(table["status"].isin(CLOSED).sum()),
        feedback=len(feedback),
        feedback_unknown=len(feedback) - len(known),
        by_rule={
            str(k): int(v)
            for k, v in table.loc[is_open].groupby("rule_id").size().sort_index().items()
        },
    )
    conn.execute(delete(alert_runs).where(alert_runs.c.exchange_date == as_of))
    conn.execute(
        insert(alert_runs).values(
            exchange_date=as_of,
            province=params.province,
            income_threshold=params.income_threshold,
            medical_burden_household_12m=params.medical_burden_household_12m,
            findings=summary.findings,
            open=summary.open,
            new=summary.new,
            reopened=summary.reopened,
            resolved=summary.resolved,
            closed=summary.closed,
        )
    )
    log.info(
        "alerts %s: %s", as_of, {k: v for k, v in summary.__dict__.items() if isinstance(v, int)}
    )
    return summary


def rebuild_alerts(
    conn: Connection,
    from_date: date,
    to_date: date,
    *,
    province: str = DEFAULT_PROVINCE,
    dates: Iterable[date] | None = None,
) -> list[AlertSummary]:
    """Re-run raise_alerts for every run date in [from_date, to_date], in order.

    The dates are, by default, those already evaluated in the range plus every exchange date
    merged into history in it (a backfill evaluates each night that had deliveries); pass
    `dates` to choose. Run dates after to_date keep their alert_days; `alerts` ends at to_date.
    """
    if dates is None:
        hm = history_merges.c
        merged = {
            _as_date(d)
            for (d,) in conn.execute(
                select(hm.exchange_date)
                .distinct()
                .where(hm.exchange_date >= from_date, hm.exchange_date <= to_date)
            )
        }
        dates = merged | {d for d in _run_dates(conn, to_date) if d >= from_date}
    return [raise_alerts(conn, d, province=province) for d in sorted(set(dates))]


def alerts_frame(conn: Connection, as_of: date) -> pd.DataFrame:
    """The published `alerts` table as of a date: publishing.md's columns, then pushed_to.

    Plain form (masking is the publisher's). The state of the latest run on or before as_of:
    the alerts table when it is at that date, else derived from alert_days and XC_HECHA.
    Dates are datetime64[s]; ordered by alert_id.
    """
    runs = _run_dates(conn, as_of)
    if not runs:
        return _published(with_status(_empty_state(), read_feedback(conn, as_of), as_of))
    run = runs[-1]
    at = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if at is not None and _as_date(at) == run:
        a = alerts.c
        schema = pa.schema(
            [
                (c, pa.date32() if c in _DATES else pa.string())
                for c in [*PUBLISHED_COLUMNS, "pushed_to"]
            ]
        )
        rows = fetch_arrow(
            conn, select(*(a[c] for c in schema.names)).order_by(a.alert_id), schema
        ).to_pandas(types_mapper=_PANDAS_TYPES.get, date_as_object=False)
        return _published(rows)
    return _published(with_status(_state_from_days(conn, run), read_feedback(conn, run), run))


def _published(frame: pd.DataFrame) -> pd.DataFrame:
    dates = ["first_raised", "last_seen", "resolved_on"]
    out = _dates_to_ns(frame, dates)[[*PUBLISHED_COLUMNS, "pushed_to"]]
    out = out.astype({c: "string" for c in out.columns if c not in dates})
    return out.sort_values("alert_id").reset_index(drop=True)
