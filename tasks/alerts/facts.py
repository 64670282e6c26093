"""The frames the rules read, each pulled once: narrow as-of selects on the history tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import ColumnElement, Connection, select

from domain import definitions as dd
from domain.labels import FEEDBACK_STATUS  # XC_HECHA's outcomes, with their labels
from expectations.contract import get_contract
from tasks.alerts.params import DIVISIONS
from warehouse.bulk import fetch_arrow_all, is_postgres
from warehouse.history import as_of_read, history_schema
from warehouse.tables import deliveries, history_merges, history_tables

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
CLOSED = frozenset(FEEDBACK_STATUS.values())
_MAX_SOURCES = 3  # deliveries named in one evidence text; more are counted


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
    return read_current_all(conn, as_of, [(dataset, columns, where)])[0]


CurrentRead = tuple[str, Sequence[str], "ColumnElement[bool] | None"]


def read_current_all(
    conn: Connection, as_of: date, reads: Sequence[CurrentRead]
) -> list[pd.DataFrame]:
    """read_current of each (dataset, columns, where), the reads made several at once where
    they can be (warehouse.bulk.fetch_arrow_all)."""
    postgres = is_postgres(conn)
    plans = []
    for dataset, columns, where in reads:
        contract = get_contract(dataset)
        table = history_tables[dataset]
        names = list(dict.fromkeys([*columns, "delivery_id", "source_file"]))
        if postgres:
            query, schema = as_of_read(dataset, as_of, names, where)
            query = query.order_by(*(table.c[k] for k in contract.key))
        else:
            # SQLite compares keys (text, dates as ISO text, numbers) as Arrow does: sorting
            # here gives its ORDER BY's order for a fraction of its time (keys are unique on a
            # date).
            query, schema = as_of_read(dataset, as_of, [*names, *contract.key], where)
        plans.append((query, schema, names, contract))
    fetched = fetch_arrow_all(conn, [(query, schema) for query, schema, _, _ in plans])
    frames = []
    for rows, (_, _, names, contract) in zip(fetched, plans, strict=True):
        if not postgres:
            order = pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in contract.key])
            rows = rows.take(order).select(names)
        frame = rows.to_pandas(types_mapper=_PANDAS_TYPES.get, date_as_object=False)
        full = history_schema(contract)
        for name in names:
            if pa.types.is_date(full.field(name).type):
                frame[name] = frame[name].astype("datetime64[s]")
        frames.append(frame)
    return frames


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
    yb = history_tables["YB_JIESUAN"].c
    start = as_of - timedelta(days=365)
    hu, ren, ga, rows = read_current_all(
        conn,
        as_of,
        [
            (
                "XC_HU",
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
                None,
            ),
            (
                "XC_REN",
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
                None,
            ),
            (
                "GA_BIANDONG",
                ["event_id", "name", "id_number", "person_key", "change_type", "change_date"],
                None,
            ),
            (
                "YB_JIESUAN",
                [
                    "settlement_id",
                    "settle_kind",
                    "person_key",
                    "settle_date",
                    "self_burden",
                    "cancelled",
                ],
                (yb.settle_date > start) & (yb.settle_date <= as_of),
            ),
        ],
    )
    hu = hu.assign(monitored=dd.monitored(hu["monitoring_category"], hu["risk_eliminated"]))
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
