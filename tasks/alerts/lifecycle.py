"""The alert lifecycle: alert_days, alert_runs, feedback and the alerts table, night by night."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection, delete, func, insert, select

from datashare.settings import DEFAULT_PROVINCE
from tasks.alerts.evaluate import evaluate_rules, findings_inputs
from tasks.alerts.facts import (
    _DATES,
    _PANDAS_TYPES,
    _STATE_COLUMNS,
    CLOSED,
    FEEDBACK_STATUS,
    FINDING_COLUMNS,
    PUBLISHED_COLUMNS,
    read_current,
)
from tasks.alerts.params import load_rule_params
from warehouse.bulk import fetch_arrow, load_arrow
from warehouse.tables import history_merges
from warehouse.tables_alerts import alert_days, alert_feedback, alert_runs, alerts
from warehouse.tables_portal import read_portal_verifications

log = logging.getLogger(__name__)


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
    inputs = findings_inputs(conn, as_of, params)
    kept = conn.execute(
        select(alert_runs.c.inputs_sha256).where(alert_runs.c.exchange_date == as_of)
    ).scalar()
    # A re-run with nothing new since (issue 13): the findings are those kept in alert_days
    # (the same bytes evaluate_rules gave them); and when the alerts table is at this date (no
    # earlier date was re-run before it), its lifecycle dates are what advancing them again
    # would give. Feedback is applied as ever: it may have changed.
    same = kept == inputs
    findings = _kept_findings(conn, as_of) if same else evaluate_rules(conn, as_of, params)
    at = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if same and at is not None and _as_date(at) == as_of:
        state = _state_from_table(conn)
    else:
        runs = _run_dates(conn)
        prev = max((d for d in runs if d < as_of), default=None)
        state = advance(_state_before(conn, prev), prev, findings, as_of)
    feedback = read_feedback(conn, as_of)
    table = with_status(state, feedback, as_of)

    if not same:  # kept findings are alert_days' rows already
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
            inputs_sha256=inputs,
        )
    )
    log.info(
        "alerts %s: %s", as_of, {k: v for k, v in summary.__dict__.items() if isinstance(v, int)}
    )
    return summary


def _kept_findings(conn: Connection, as_of: date) -> pd.DataFrame:
    """The findings of a date as evaluate_rules returned them, from alert_days."""
    ad = alert_days.c
    rows = fetch_arrow(
        conn,
        select(*(ad[c] for c in FINDING_COLUMNS))
        .where(ad.exchange_date == as_of)
        .order_by(ad.rule_id, ad.subject),
        pa.schema([(c, pa.string()) for c in FINDING_COLUMNS]),
    )
    frame = rows.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    return frame.astype({c: "string" for c in FINDING_COLUMNS}).reset_index(drop=True)


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
