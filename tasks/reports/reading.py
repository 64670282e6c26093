"""What the report sections read from the warehouse, as of a period's end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, func, select

from domain import definitions as dd
from expectations.contract import load_common, load_contracts
from expectations.divisions import town_order
from tasks.alerts import read_current
from tasks.freshness import ACCEPTED
from tasks.reports.common import SOURCES
from warehouse.tables import deliveries, history_merges, history_tables
from warehouse.tables_alerts import alert_runs
from warehouse.tables_ops import nights

# --- reading the warehouse ------------------------------------------------------------------------


def _last_night(conn: Connection, end: date) -> date:
    """The last processed night on or before `end`: the latest exchange date a night completed,
    alerts ran or a delivery was recorded for. `end` itself when nothing has run yet."""
    latest = [
        conn.execute(select(func.max(col)).where(col <= end)).scalar_one_or_none()
        for col in (
            nights.c.exchange_date,
            alert_runs.c.exchange_date,
            deliveries.c.exchange_date,
        )
    ]
    found = [pd.Timestamp(d).date() for d in latest if d is not None]
    return max(found) if found else end


def _undelivered(conn: Connection, end: date) -> list[str]:
    """The report's SOURCES with no accepted delivery on or before `end` (in SOURCES order):
    a county's first week or month, or a department that has not started delivering."""
    d = deliveries.c
    delivered = set(
        conn.execute(
            select(d.dataset)
            .where(d.status.in_(ACCEPTED), d.exchange_date <= end, d.dataset.in_(SOURCES))
            .distinct()
        ).scalars()
    )
    return [s for s in SOURCES if s not in delivered]


def _undelivered_note(datasets: Sequence[str], end: date) -> str:
    """The report's note naming the departments (and their datasets) not delivered yet."""
    contracts = load_contracts()
    departments = load_common().departments
    by_dept: dict[str, list[str]] = {}
    for name in datasets:
        contract = contracts[name]
        by_dept.setdefault(contract.dept, []).append(
            f"{name} {contract.title.split(' (')[0].strip()}"
        )
    listed = "；".join(
        f"{departments.get(dept, dept)}（{'、'.join(items)}）" for dept, items in by_dept.items()
    )
    return (
        f"以下部门尚未报送（截至 {end:%Y-%m-%d} 无已接收的交付）：{listed}。"
        "相关指标按尚无数据计算，待报送后可用 datashare report 重新生成本报告。"
    )


def _households(conn: Connection, day: date) -> pd.DataFrame:
    """Roster households on `day` (XC_HU as of that date), the columns the report needs."""
    cols = [
        "household_id",
        "town",
        "village",
        "head_person_key",
        "monitoring_category",
        "risk_types",
        "risk_eliminated",
        "identified_month",
        "eliminated_month",
    ]
    return read_current(conn, "XC_HU", day, cols)[cols].reset_index(drop=True)


def _roster_persons(conn: Connection, day: date, hu: pd.DataFrame) -> pd.DataFrame:
    """Roster persons on `day` with household, town, age and whether they are active.

    Active: no GA_BIANDONG 死亡 event dated on or before `day`. The id number is read only to
    compute the age and is not kept.
    """
    cols = ["person_key", "household_id", "id_number", "labour_skill"]
    ren = read_current(conn, "XC_REN", day, cols)[cols].merge(
        hu[["household_id", "town"]], on="household_id", how="inner"
    )
    ga = read_current(
        conn,
        "GA_BIANDONG",
        day,
        ["person_key", "change_type", "change_date"],
        where=history_tables["GA_BIANDONG"].c.change_type == dd.DEATH,
    )
    dead = ga.loc[dd.died_by(ga["change_type"], ga["change_date"], day), "person_key"]
    return (
        ren.drop(columns="id_number")
        .assign(
            age=dd.ages_on(ren["id_number"], day).astype("float64"),  # NaN where unknown
            active=~ren["person_key"].isin(dead),
        )
        .reset_index(drop=True)
    )


def _town_order(hu: pd.DataFrame) -> list[str]:
    """Towns in the order of the county's division codes, then any others by name."""
    return town_order(hu["town"].dropna())


def _roster_baseline(conn: Connection, start: date, end: date) -> date | None:
    """The roster date period flows are measured from: the day before `start`; the first
    roster load when that falls inside the period; None when there is no roster by `end`."""
    hm = history_merges.c
    first = conn.execute(
        select(func.min(hm.exchange_date)).where(hm.dataset == "XC_HU")
    ).scalar_one_or_none()
    if first is None:
        return None
    first = pd.Timestamp(first).date()
    if first < start:
        return start - timedelta(days=1)
    return first if first <= end else None


def _ledger(conn: Connection, since: date, end: date) -> pd.DataFrame:
    d = deliveries.c
    frame = pd.read_sql(
        select(
            d.dept,
            d.dataset,
            d.exchange_date,
            d.source_file,
            d.status,
            d.rows_loaded,
            d.rows_rejected,
            d.received_at,
            d.reason,
        )
        .where(d.exchange_date >= since, d.exchange_date <= end)
        .order_by(d.exchange_date, d.dataset, d.received_at, d.delivery_id),
        conn,
    )
    return frame.assign(
        exchange_date=pd.to_datetime(frame["exchange_date"]).dt.normalize(),
        # SQLite hands back naive values of DateTime(timezone=True); the ledger writes UTC.
        received_at=pd.to_datetime(frame["received_at"], utc=True),
    )
