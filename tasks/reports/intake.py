"""The intake section: deliveries due and on time, lights, quarantine, reasons and pending files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from domain.labels import column_label, label
from expectations.contract import load_common
from tasks.freshness import ACCEPTED, Calendar, load_calendar
from tasks.reports.common import (
    LIGHT_RATE_MIN_DUE,
    LIGHT_RED_BELOW,
    LIGHT_YELLOW_QUARANTINE,
    OVERDUE_DAYS,
    TOTAL,
    _ratio,
)
from warehouse.tables import deliveries, rejects

# --- intake ---------------------------------------------------------------------------------------


def _deadlines(pairs: pd.DataFrame, calendar: Calendar) -> pd.Series:
    """When each (dataset, exchange_date) had to be taken in to count as on time (UTC): its due
    time in the delivery calendar (the calendar's defaults for datasets it never expects) plus
    the intake grace."""
    out = pd.Series(pd.NaT, index=pairs.index, dtype="datetime64[us, UTC]")
    for dataset, rows in pairs.groupby("dataset"):
        entry = calendar.datasets.get(str(dataset))
        offset = calendar.defaults.day_offset
        by = calendar.defaults.by
        if entry is not None:
            offset = offset if entry.day_offset is None else entry.day_offset
            by = entry.by or by
        local = (
            rows["exchange_date"]
            + pd.Timedelta(days=offset)
            + pd.Timedelta(hours=by.hour, minutes=by.minute, seconds=by.second)
        )
        due = local.dt.tz_localize(calendar.timezone).dt.tz_convert("UTC") + calendar.grace
        out.loc[rows.index] = due.astype("datetime64[us, UTC]")
    return out


def intake_figures(
    ledger: pd.DataFrame,
    expected: pd.DataFrame,
    start: date,
    end: date,
    calendar: Calendar | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per department over [start, end]: (table, day lights, failed list, missing list).

    A (dataset, exchange date) is *due* when expected or delivered; *missing* when expected and
    absent from the ledger; *on time* when its first accepted delivery (tasks.freshness
    ACCEPTED) was taken in by the calendar's due time plus grace (as tasks.freshness judges);
    *failed open* when it has a failed delivery and none accepted. Rows loaded and quarantined
    count the standing (status loaded) deliveries. Light: red on a missing or failed-open
    delivery, or an on-time rate below LIGHT_RED_BELOW over LIGHT_RATE_MIN_DUE or more due;
    yellow on any late or failed delivery or quarantined rows above LIGHT_YELLOW_QUARANTINE;
    else green; "—" when nothing was due.
    """
    calendar = calendar or load_calendar()
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    led = ledger.loc[ledger["exchange_date"].between(lo, hi)]
    exp = expected.assign(exchange_date=pd.to_datetime(expected["exchange_date"]).dt.normalize())
    exp = exp.loc[exp["exchange_date"].between(lo, hi), ["dept", "dataset", "exchange_date"]]
    pair = ["dept", "dataset", "exchange_date"]

    accepted = led.loc[led["status"].isin(ACCEPTED)]
    first_ok = accepted.groupby(pair)["received_at"].min().rename("first_ok")
    statuses = led.groupby(pair)["status"].agg(lambda s: ",".join(sorted(set(s))))
    pairs = pd.concat([exp, led[pair]]).drop_duplicates().set_index(pair)
    pairs_frame = pairs.join(first_ok).join(statuses.rename("statuses")).reset_index()
    delivered = pairs_frame["statuses"].notna()
    ok = pairs_frame["first_ok"].notna()
    on_time = ok & (pairs_frame["first_ok"] <= _deadlines(pairs_frame, calendar))
    has_failed = pairs_frame["statuses"].fillna("").str.contains("failed")
    pairs_frame = pairs_frame.assign(
        missing=~delivered,
        on_time=on_time,
        failed_open=has_failed & ~ok,
        day_light=np.select(
            [~delivered | (has_failed & ~ok), has_failed | ~on_time], ["红", "黄"], "绿"
        ),
    )

    departments = load_common().departments
    by_status = led.groupby(["dept", "status"]).size().unstack(fill_value=0)

    def status_count(*names: str) -> pd.Series:
        return sum(
            (by_status[n] for n in names if n in by_status), pd.Series(0, index=by_status.index)
        )

    standing = (
        led.loc[led["status"] == "loaded"].groupby("dept")[["rows_loaded", "rows_rejected"]].sum()
    )
    per_pair = pairs_frame.groupby("dept")[["missing", "on_time", "failed_open"]].sum()
    table = pd.DataFrame({"dept": list(departments)})
    dept = table["dept"]
    table = table.assign(
        dept_name=dept.map(departments),
        deliveries=dept.map(led.groupby("dept").size()),
        accepted=dept.map(status_count(*ACCEPTED)),
        failed=dept.map(status_count("failed")),
        failed_open=dept.map(per_pair["failed_open"]),
        duplicate=dept.map(status_count("duplicate")),
        missing=dept.map(per_pair["missing"]),
        rows_loaded=dept.map(standing["rows_loaded"]),
        rows_quarantined=dept.map(standing["rows_rejected"]),
        due=dept.map(pairs_frame.groupby("dept").size()),
        on_time=dept.map(per_pair["on_time"]),
    )
    counts = [c for c in table.columns if c not in ("dept", "dept_name")]
    table[counts] = table[counts].fillna(0).astype("int64")
    table = table.assign(
        quarantine_rate=_ratio(
            table["rows_quarantined"], table["rows_loaded"] + table["rows_quarantined"]
        ),
        on_time_rate=_ratio(table["on_time"], table["due"]),
    )
    rate = table["on_time_rate"].fillna(1.0)
    table = table.assign(
        light=np.select(
            [
                table["due"] == 0,
                (table["missing"] > 0)
                | (table["failed_open"] > 0)
                | ((rate < LIGHT_RED_BELOW) & (table["due"] >= LIGHT_RATE_MIN_DUE)),
                (table["failed"] > 0)
                | (table["on_time"] < table["due"])
                | (table["quarantine_rate"].fillna(0) > LIGHT_YELLOW_QUARANTINE),
            ],
            ["—", "红", "黄"],
            "绿",
        )
    )
    table = table[
        [
            "dept",
            "dept_name",
            "deliveries",
            "accepted",
            "failed",
            "failed_open",
            "duplicate",
            "missing",
            "rows_loaded",
            "rows_quarantined",
            "quarantine_rate",
            "due",
            "on_time",
            "on_time_rate",
            "light",
        ]
    ]

    order = {"绿": 0, "黄": 1, "红": 2}
    days = (
        pairs_frame.assign(rank=pairs_frame["day_light"].map(order))
        .groupby(["dept", "exchange_date"])["rank"]
        .max()
        .map({v: k for k, v in order.items()})
        .rename("light")
        .reset_index()
    )
    failed = led.loc[led["status"] == "failed"]
    failed = failed.assign(
        received_on=failed["received_at"]
        .dt.tz_convert(calendar.timezone)
        .dt.tz_localize(None)
        .dt.normalize()
    )[["dept", "dataset", "exchange_date", "source_file", "received_on", "reason"]]
    missing = pairs_frame.loc[pairs_frame["missing"], ["dept", "dataset", "exchange_date"]]
    return (
        table,
        days,
        failed.reset_index(drop=True),
        missing.sort_values(["exchange_date", "dataset"]).reset_index(drop=True),
    )


def change_table(items: Sequence[tuple[str, Any, Any]]) -> pd.DataFrame:
    """(label, this period, previous period or None when unknown) as a table with the change."""
    current = pd.Series([float(c) for _, c, _ in items], dtype="float64")
    previous = pd.Series([np.nan if p is None else float(p) for *_, p in items], dtype="float64")
    return pd.DataFrame(
        {
            "item": [name for name, *_ in items],
            "current": current,
            "previous": previous,
            "change": current - previous,
        }
    )


def with_landing_issues(
    table: pd.DataFrame, issues: pd.DataFrame, start: date, end: date
) -> pd.DataFrame:
    """The intake table with `landing_issues`: files in a department's landing folder over
    [start, end] that were not taken in (a name that does not parse, another department's
    dataset, two files for one dataset and date…; warehouse.tables_ops.landing_issues_frame).
    Files outside every department's folder are the bureau's (XC) to sort out."""
    days = pd.to_datetime(issues["exchange_date"])
    within = issues.loc[days.between(pd.Timestamp(start), pd.Timestamp(end))]
    per_dept = within["dept"].fillna("XC").value_counts()
    counts = table["dept"].map(per_dept).fillna(0).astype("int64")
    at = list(table.columns).index("missing") + 1
    table = pd.concat(
        [table.iloc[:, :at], counts.rename("landing_issues"), table.iloc[:, at:]], axis=1
    )
    # A file left untaken is something to look at: a green light turns yellow.
    untaken = (counts > 0) & (table["light"] == "绿")
    return table.assign(light=table["light"].where(~untaken, "黄"))


def explain_lights(table: pd.DataFrame) -> pd.DataFrame:
    """The intake table with `light_reason`: why each department has its light, in words
    (every condition of intake_figures' light that holds, worst first)."""

    def why(r: Any) -> str:
        if r.light == "—":
            return "本期无应报的交付"
        parts = []
        if r.missing:
            parts.append(f"缺报 {r.missing} 批")
        if r.failed_open:
            parts.append(f"退回后未重报 {r.failed_open} 批")
        late = r.due - r.on_time - r.missing - r.failed_open
        if r.due >= LIGHT_RATE_MIN_DUE and r.on_time_rate < LIGHT_RED_BELOW:
            parts.append(f"按时率 {r.on_time_rate:.1%}，低于 {LIGHT_RED_BELOW:.0%}")
        if late > 0:
            parts.append(f"迟报 {late} 批")
        if r.failed > r.failed_open:
            parts.append(f"曾退回 {r.failed - r.failed_open} 批（已重报）")
        if getattr(r, "landing_issues", 0):
            parts.append(f"交换区另有 {r.landing_issues} 个文件未接收（见交换台账）")
        if r.quarantine_rate > LIGHT_YELLOW_QUARANTINE:
            parts.append(f"问题数据占 {r.quarantine_rate:.1%}，超过 {LIGHT_YELLOW_QUARANTINE:.0%}")
        return "；".join(parts) if parts else "全部按时报送，问题数据不超过 5%"

    return table.assign(light_reason=[why(r) for r in table.itertuples()])


def _rejects(conn: Connection, start: date, end: date) -> pd.DataFrame:
    """Quarantined rows of the deliveries of [start, end]: dept, dataset, column, rule."""
    r, d = rejects.c, deliveries.c
    return pd.read_sql(
        select(d.dept, r.dataset, r.column, r.rule, func.count().label("rows"))
        .select_from(rejects.join(deliveries, r.delivery_id == d.delivery_id))
        .where(r.exchange_date >= start, r.exchange_date <= end)
        .group_by(d.dept, r.dataset, r.column, r.rule),
        conn,
    )


def top_reject_reasons(counts: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Each department's `top` most frequent (dataset, column, rule) among its quarantined rows,
    in Chinese: the column's header from the contract, the rule's text (domain.labels)."""
    departments = load_common().departments
    cols = ["dept_name", "dataset", "column_label", "rule_text", "rows"]
    if counts.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "rows" else object) for c in cols})
    order = {d: i for i, d in enumerate(departments)}
    ranked = counts.assign(
        rows=counts["rows"].astype("int64"),
        order=counts["dept"].map(order).fillna(len(order)),
    ).sort_values(["order", "rows", "dataset", "column", "rule"], ascending=[1, 0, 1, 1, 1])
    ranked = ranked.groupby("dept", sort=False).head(top)
    return pd.DataFrame(
        {
            "dept_name": [departments.get(d, d) for d in ranked["dept"]],
            "dataset": ranked["dataset"].to_numpy(),
            "column_label": [
                column_label(ds, c) if c else "（整个文件）"
                for ds, c in zip(ranked["dataset"], ranked["column"], strict=True)
            ],
            "rule_text": [label("rule", str(x)) for x in ranked["rule"]],
            "rows": ranked["rows"].to_numpy(),
        }
    )[cols].reset_index(drop=True)


def pending_figures(
    state: pd.DataFrame, end: date, towns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts awaiting verification (待核实: open on `end`) by town, and by each department they
    were pushed to: how many, how many older than OVERDUE_DAYS, the oldest and its wait.

    By department an alert pushed to several departments counts under each; the 合计 row
    counts each alert once."""
    p = state.loc[state["status_end"] == "open"]
    age = (pd.Timestamp(end) - p["first_raised"]).dt.days
    p = p.assign(age=age, over=age > OVERDUE_DAYS)

    def summary(frame: pd.DataFrame) -> dict[str, Any]:
        return {
            "pending": len(frame),
            "pending_overdue": int(frame["over"].sum()),
            "oldest": frame["first_raised"].min() if len(frame) else pd.NaT,
            "oldest_days": frame["age"].max() if len(frame) else np.nan,
        }

    def table(key: str, index: Sequence[str], frame: pd.DataFrame) -> pd.DataFrame:
        rows = [{key: k, **summary(frame.loc[frame[key] == k])} for k in index]
        rows.append({key: TOTAL, **summary(frame.drop_duplicates("alert_id"))})
        out = pd.DataFrame(rows)
        return out.astype(
            {"pending": "int64", "pending_overdue": "int64", "oldest_days": "float64"}
        ).assign(oldest=pd.to_datetime(out["oldest"]))

    town_list = list(towns) + sorted(set(p["town"]) - set(towns))
    by_town = table("town", town_list, p)
    departments = load_common().departments
    pushed = p.assign(dept=p["pushed_to"].str.split(",")).explode("dept")
    pushed = pushed.loc[pushed["dept"].fillna("") != ""]
    depts = [d for d in departments if d in set(pushed["dept"])]
    depts += sorted(set(pushed["dept"]) - set(depts))
    by_dept = table("dept", depts, pushed.assign(alert_id=pushed["alert_id"]))
    total = by_dept.index[-1]
    by_dept.loc[total] = pd.Series({"dept": TOTAL, **summary(p)})
    by_dept = by_dept.astype({"pending": "int64", "pending_overdue": "int64"})
    by_dept.insert(1, "dept_name", [departments.get(d, "") for d in by_dept["dept"]])
    return by_town, by_dept
