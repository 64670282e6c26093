"""The alerts section: alert state as of a night, figures by rule and by town, the trend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, select

from domain.labels import label
from tasks.alerts import FEEDBACK_STATUS, alerts_frame, read_feedback
from tasks.reports.common import NO_TOWN, OVERDUE_DAYS, RULES, TREND_MIN_DAYS, _lookup, _with_total
from tasks.reports.periods import Period
from warehouse.tables_alerts import alert_days, alert_runs

# --- alerts ---------------------------------------------------------------------------------------


def alert_state(conn: Connection, end: date) -> pd.DataFrame:
    """Every alert raised by `end`, with its status on `end` (the alert engine's lifecycle:
    tasks.alerts.alerts_frame of the last run on or before `end`) and the day it closed:
    resolved_on, or the checked_date of the XC_HECHA feedback that closed it."""
    frame = alerts_frame(conn, end)
    feedback = read_feedback(conn, end).drop_duplicates("alert_id", keep="last")
    status = frame["status"].astype(str)
    checked = _lookup(frame["alert_id"], feedback.set_index("alert_id")["checked_date"])
    resolved = pd.to_datetime(frame["resolved_on"]).astype("datetime64[s]")
    closed_on = resolved.where(
        status == "resolved", checked.where(status.isin(list(FEEDBACK_STATUS.values())))
    )
    return pd.DataFrame(
        {
            "alert_id": frame["alert_id"].astype(str),
            "rule_id": frame["rule_id"].astype(str),
            "town": frame["town"].astype(object).where(frame["town"].notna(), NO_TOWN),
            "village": frame["village"].astype(object),
            "first_raised": pd.to_datetime(frame["first_raised"]),
            "status_end": status,
            "closed_on": closed_on,
            "pushed_to": frame["pushed_to"].astype(object).fillna("").astype(str),
        }
    )


def alert_figures(
    state: pd.DataFrame,
    period: Period,
    towns: Sequence[str],
    before: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Alerts by rule and by town (period and year-to-date flows, stock on period.end), and the
    open alerts older than OVERDUE_DAYS on period.end.

    Flows are read from the status on period.end: new = first raised in the span; resolved /
    confirmed / dismissed / data_error = has that status on period.end and closed in the span
    (an alert closed and re-opened within the span counts as open only).
    before: alert_state on the day before the period (None: nothing was open). opening = open
    then; reopened = first raised before the period, not open then, and open on period.end or
    closed in the span; so 期末未结 = opening + new + reopened − the four closed flows.
    """
    end = pd.Timestamp(period.end)
    open_before = (
        set() if before is None else set(before.loc[before["status_end"] == "open", "alert_id"])
    )
    was_open = state["alert_id"].isin(open_before)

    def flows(lo: date, prefix: str) -> pd.DataFrame:
        span = (pd.Timestamp(lo), end)
        closed = state["closed_on"].between(*span)
        return pd.DataFrame(
            {
                f"{prefix}new": state["first_raised"].between(*span),
                **{
                    f"{prefix}{s}": closed & (state["status_end"] == s)
                    for s in ("resolved", "confirmed", "dismissed", "data_error")
                },
            }
        )

    age = (end - state["first_raised"]).dt.days
    is_open = state["status_end"] == "open"
    period_flows = flows(period.start, "")
    closed_in_span = period_flows[["resolved", "confirmed", "dismissed", "data_error"]].any(axis=1)
    reopened = (
        (state["first_raised"] < pd.Timestamp(period.start))
        & ~was_open
        & (is_open | closed_in_span)
    )
    marks = pd.concat(
        [
            pd.DataFrame({"opening": was_open}),
            period_flows.iloc[:, :1],
            pd.DataFrame({"reopened": reopened}),
            period_flows.iloc[:, 1:],
            pd.DataFrame({"open": is_open, "overdue": is_open & (age > OVERDUE_DAYS)}),
            flows(period.ytd_start, "ytd_"),
        ],
        axis=1,
    ).astype("int64")
    cols = list(marks.columns)

    rules = list(RULES) + sorted(set(state["rule_id"]) - set(RULES))
    by_rule = marks.groupby(state["rule_id"]).sum().reindex(rules, fill_value=0)
    by_rule = by_rule.rename_axis("rule_id").reset_index()
    risk = by_rule["rule_id"].map(lambda r: label("risk", RULES.get(r, ("", ""))[0]))
    by_rule.insert(1, "risk_type", risk)  # "数据质量", not the code "DQ"
    by_rule.insert(2, "unit", by_rule["rule_id"].map(lambda r: RULES.get(r, ("", "条"))[1]))
    by_rule = _with_total(by_rule, "rule_id", cols)

    town_list = list(towns) + sorted(set(state["town"]) - set(towns))
    by_town = marks.groupby(state["town"]).sum().reindex(town_list, fill_value=0)
    by_town = _with_total(by_town.rename_axis("town").reset_index(), "town", cols)

    # Ages of the selected rows only: assigning the whole `age` Series to an empty selection
    # gives the frame age's index (pandas), i.e. one empty row per alert — the 175 rows of "—".
    selected = marks["overdue"] == 1
    overdue = state.loc[selected].assign(days_open=age.loc[selected].to_numpy())
    overdue = overdue.sort_values(["first_raised", "alert_id"])[
        ["alert_id", "rule_id", "town", "village", "first_raised", "days_open"]
    ]
    return by_rule, by_town, overdue.astype({"days_open": "int64"}).reset_index(drop=True)


def alert_trend(conn: Connection, period: Period) -> pd.DataFrame:
    """Open alerts by rule on each alert run date of the trend window (at least
    TREND_MIN_DAYS days ending period.end, or the period).

    Open on run date n (as tasks.alerts.with_status decides): held on n, and not closed by
    feedback checked on or before n during the episode that n belongs to.
    """
    lo = min(period.start, period.end - timedelta(days=TREND_MIN_DAYS - 1))
    runs = [
        pd.Timestamp(d)
        for d in conn.execute(
            select(alert_runs.c.exchange_date)
            .where(alert_runs.c.exchange_date <= period.end)
            .order_by(alert_runs.c.exchange_date)
        ).scalars()
    ]
    ad = alert_days.c
    in_window = select(ad.alert_id).where(ad.exchange_date >= lo, ad.exchange_date <= period.end)
    held = pd.read_sql(
        select(ad.alert_id, ad.rule_id, ad.exchange_date).where(
            ad.exchange_date <= period.end, ad.alert_id.in_(in_window)
        ),
        conn,
    )
    held = held.assign(night=pd.to_datetime(held["exchange_date"]))
    run_no = {r: i for i, r in enumerate(runs)}
    held = held.assign(run=held["night"].map(run_no)).dropna(subset=["run"])
    held = held.sort_values(["alert_id", "night"])
    held = held.assign(episode=held["run"] - held.groupby("alert_id").cumcount())
    held = held.assign(opened_on=held.groupby(["alert_id", "episode"])["night"].transform("min"))
    feedback = read_feedback(conn, period.end).drop_duplicates("alert_id", keep="last")
    checked = _lookup(held["alert_id"], feedback.set_index("alert_id")["checked_date"])
    governed = checked.notna() & (checked <= held["night"]) & (held["opened_on"] <= checked)
    shown = held.loc[~governed & (held["night"] >= pd.Timestamp(lo))]
    trend = shown.groupby(["night", "rule_id"]).size().unstack(fill_value=0)
    nights = pd.DatetimeIndex([r for r in runs if r >= pd.Timestamp(lo)], name="night")
    trend = trend.reindex(nights, fill_value=0)
    rules = [r for r in RULES if r in trend.columns] + sorted(set(trend.columns) - set(RULES))
    return trend[rules].astype("int64").reset_index().rename_axis(columns=None)
