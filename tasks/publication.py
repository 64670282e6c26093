"""What a publication is computed from, and publishing with it (the steps' side of publication).

    collect_shared_tables(conn, as_of)   the plain shared tables: profiles (tasks.profiles),
                                         alerts (tasks.alerts), the ledger, the current rows of
                                         every dataset, as of a date
    read_ahead(conn, as_of)              the profiles read before the publication asks for
                                         them (the night reads them beside the alerts)
    town_summary(hp, pp, alerts)         PUBLIC's one table, from the prepared frames
    publish(engine, publish_dir, …)      warehouse.publish.write_publication with these two

The warehouse writes every byte (warehouse.publish: access, forms, version folders, SQL, audit);
what is published is computed here, so that the warehouse never imports the steps above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from datashare.errors import PublishError
from domain import definitions as dd
from expectations.contract import load_contracts
from expectations.divisions import town_order
from warehouse.publish import (
    RISK_COLUMNS,
    SHARED_TABLES,
    SUPPRESSED,
    XLSX_BULK_MAX_ROWS,
    XLSX_MAX_ROWS,
    AccessMatrix,
    Publication,
    SharedTables,
    SqlTarget,
    ledger_tables,
    write_publication,
)
from warehouse.published import Retention

__all__ = [
    "Publication",
    "Retention",
    "SqlTarget",
    "collect_shared_tables",
    "publish",
    "read_ahead",
    "town_summary",
]


# --- town_summary (PUBLIC) ------------------------------------------------------------------------


def _count(n: int) -> str:
    return SUPPRESSED if n < 5 else str(n)


def town_summary(
    household_profile: pd.DataFrame, person_profile: pd.DataFrame, alerts: pd.DataFrame
) -> pd.DataFrame:
    """One row per town, from prepared (plain) frames; every count below 5 is "<5".

    Monitored: the household has a monitoring category; eliminated: and its risk is eliminated.
    Persons: living roster persons of those households. A rate is left empty when either of
    its counts is suppressed. No county total: it would give away suppressed town figures.
    """
    hp = household_profile
    monitored = dd.identified(hp["monitoring_category"])
    eliminated = dd.eliminated(hp["monitoring_category"], hp["risk_eliminated"])
    households = pd.DataFrame(
        {
            "household_id": hp["household_id"],
            "town": hp["town"],
            "monitored": monitored,
            "eliminated": eliminated,
        }
    )
    pp = person_profile
    living = pp["in_roster"].fillna(False).astype(bool) & ~pp["deceased"].fillna(False).astype(bool)
    persons = pp.loc[living, ["household_id"]].merge(households, on="household_id", how="inner")
    open_alerts = alerts[alerts["status"] == "open"]
    rows = []
    for town in town_order(hp["town"].dropna().unique()):  # division order (issue 14)
        h = households[households["town"] == town]
        p = persons[persons["town"] == town]
        counts = {
            "monitored_households": int(h["monitored"].sum()),
            "eliminated_households": int(h["eliminated"].sum()),
            "monitored_persons": int(p["monitored"].sum()),
            "eliminated_persons": int(p["eliminated"].sum()),
        }
        row: dict[str, Any] = {"town": town}
        row |= {k: _count(v) for k, v in counts.items()}
        for unit in ("households", "persons"):
            num, den = counts[f"eliminated_{unit}"], counts[f"monitored_{unit}"]
            row[f"elimination_rate_{unit}"] = round(num / den, 4) if min(num, den) >= 5 else None
        in_town = open_alerts[open_alerts["town"] == town]
        for risk, slug in RISK_COLUMNS.items():
            row[f"open_alerts_{slug}"] = _count(int((in_town["risk_type"] == risk).sum()))
        rows.append(row)
    names = SHARED_TABLES["town_summary"].names
    return pd.DataFrame(rows, columns=list(names))


def collect_shared_tables(
    conn: Connection,
    as_of: date,
    *,
    datasets: Iterable[str] | None = None,
    ledger: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every shared table as of a date, plain: profiles and alerts from their providers
    (tasks.profiles, tasks.alerts — imported here, lazily), the ledger, the current rows of
    every dataset. `datasets` narrows it to the datasets and derived tables named
    (town_summary: the profiles and alerts it is computed from); `ledger=False` leaves the
    ledger out (a publication reads it with its first part)."""
    from warehouse.history import current_rows

    try:
        from tasks import alerts as alert_provider
        from tasks import profiles
    except ImportError as exc:
        raise PublishError(
            f"无法加载画像和预警模块 {exc.name}，不能发布：安装可能不完整，请重新安装 datashare"
        ) from None
    wanted = None if datasets is None else set(datasets)

    def wants(table: str) -> bool:
        return wanted is None or bool(wanted & {table, "town_summary"})

    tables: dict[str, pd.DataFrame] = {}
    if wants("person_profile"):
        tables["person_profile"] = profiles.person_profile(conn, as_of)
    if wants("household_profile"):
        tables["household_profile"] = profiles.household_profile(conn, as_of)
    if wants("alerts"):
        tables["alerts"] = alert_provider.alerts_frame(conn, as_of)
    if ledger:
        tables |= ledger_tables(conn, as_of)
    for dataset in load_contracts():
        if wanted is None or dataset in wanted:
            tables[dataset] = current_rows(conn, dataset, as_of)
    return tables


def read_ahead(conn: Connection, as_of: date) -> int:
    """Read person_profile and household_profile's facts (all but its open alerts) as of a
    date ahead of the publication, which then takes these readings (tasks.profiles: read
    once per state of the warehouse within the night's `facts_read_once`). They read no
    alert, so the night reads them while the alerts are raised; the rows read."""
    from tasks import profiles

    return len(profiles.person_profile(conn, as_of)) + len(profiles.household_facts(conn, as_of))


# --- publishing ----------------------------------------------------------------------------------


def publish(
    engine: Engine,
    publish_dir: Path,
    *,
    as_of: date,
    secret: bytes,
    tables: SharedTables | None = None,
    keep_days: int = 30,
    actor: str = "nightly",
    access: AccessMatrix | None = None,
    sql: SqlTarget | None = None,
    xlsx_max_rows: int = XLSX_MAX_ROWS,
    xlsx_bulk_max_rows: int = XLSX_BULK_MAX_ROWS,
    on_consumer: Callable[[str], None] | None = None,
    retention: Retention | None = None,
    incremental: bool = True,
    workers: int | None = None,
) -> Publication:
    """Publish the shared dataset to every consumer, atomically, with an audit trail.

    warehouse.publish.write_publication with collect_shared_tables and town_summary as its
    providers; its docstring says what each argument does.
    """
    return write_publication(
        engine,
        publish_dir,
        collect=collect_shared_tables,
        summarise=town_summary,
        as_of=as_of,
        secret=secret,
        tables=tables,
        keep_days=keep_days,
        actor=actor,
        access=access,
        sql=sql,
        xlsx_max_rows=xlsx_max_rows,
        xlsx_bulk_max_rows=xlsx_bulk_max_rows,
        on_consumer=on_consumer,
        retention=retention,
        incremental=incremental,
        workers=workers,
    )
