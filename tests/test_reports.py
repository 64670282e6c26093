"""Reports (周报/月报): periods, the pure figure functions on inline frames, and whole reports from
a small synthetic county merged into history — figures checked against numbers computed here,
independently, from the delivered frames; HTML self-contained and free of personal data; XLSX
typed; the same warehouse gives byte-identical files. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pytest
from conftest import POSTGRES_ENV, postgres_or_skip
from sqlalchemy import Engine, create_engine, insert, text

from datashare.synth import build_county, dataset_rows, datasets_due
from domain.cell_width import wrapped_lines
from expectations.contract import get_contract
from tasks.reports import (
    TOTAL,
    Period,
    ReportFigures,
    build_report,
    closing_periods,
    intake_figures,
    report_figures,
    top_reject_reasons,
)
from tasks.reports.render import _html_table
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import accepted_schema, merge_delivery
from warehouse.tables_alerts import alert_days, alert_runs, alerts

# conftest.postgres_or_skip leaves a pooled psycopg connection to the garbage collector.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

SECRET = b"report-test-secret"
START = date(2025, 3, 10)  # Monday of 2025-W11, the synthetic county's first exchange date
NIGHTS = [START + timedelta(days=k) for k in range(14)]  # W11 and W12
W12 = Period.parse_week("2025-W12")
MARCH = Period.parse_month("2025-03")


# --- periods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2025-W11", date(2025, 3, 10), date(2025, 3, 16)),
        ("2025-W01", date(2024, 12, 30), date(2025, 1, 5)),
        ("2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
    ],
)
def test_parse_week_is_iso_monday_to_sunday(text: str, start: date, end: date) -> None:
    p = Period.parse_week(text)
    assert (p.kind, p.start, p.end, p.label) == ("week", start, end, text)
    assert p.name == f"周报_{text}"


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("2025-03", date(2025, 3, 31)),
        ("2024-02", date(2024, 2, 29)),
        ("2025-02", date(2025, 2, 28)),
        ("2025-12", date(2025, 12, 31)),
    ],
)
def test_parse_month(text: str, end: date) -> None:
    p = Period.parse_month(text)
    assert (p.kind, p.start, p.end, p.label, p.name) == (
        "month",
        end.replace(day=1),
        end,
        text,
        f"月报_{text}",
    )


@pytest.mark.parametrize("bad", ["2025-W54", "2025-W00", "2025-11", "2025W11", "2025-w11"])
def test_bad_weeks_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Period.parse_week(bad)


@pytest.mark.parametrize("bad", ["2025-13", "2025-00", "2025-3", "2025-W11", "202503"])
def test_bad_months_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Period.parse_month(bad)


@pytest.mark.parametrize(
    ("day", "labels"),
    [
        (date(2025, 3, 16), ["2025-W11"]),  # a Sunday
        (date(2025, 3, 31), ["2025-03", "2025-Q1"]),  # end of a month and a quarter, a Monday
        (date(2025, 6, 30), ["2025-06", "2025-Q2", "2025-H1"]),  # 半年小结
        (date(2025, 12, 31), ["2025-12", "2025-Q4", "2025"]),  # 年度总结 (it stands for H2)
        (date(2025, 4, 30), ["2025-04"]),
        (date(2025, 8, 31), ["2025-W35", "2025-08"]),  # both
        (date(2025, 3, 12), []),
        (date(2024, 12, 29), ["2024-W52"]),
        (date(2027, 1, 3), ["2026-W53"]),  # an ISO week that closes in the next year
        (date(2024, 2, 29), ["2024-02"]),
    ],
)
def test_closing_periods(day: date, labels: list[str]) -> None:
    closing = closing_periods(day)
    assert [p.label for p in closing] == labels
    assert all(p.end == day for p in closing)


@pytest.mark.parametrize(
    ("kind", "text", "start", "end", "name", "title"),
    [
        (
            "quarter",
            "2025-Q1",
            date(2025, 1, 1),
            date(2025, 3, 31),
            "季调度_2025-Q1",
            "2025年第1季度",
        ),
        (
            "quarter",
            "2024-Q4",
            date(2024, 10, 1),
            date(2024, 12, 31),
            "季调度_2024-Q4",
            "2024年第4季度",
        ),
        (
            "half",
            "2025-H1",
            date(2025, 1, 1),
            date(2025, 6, 30),
            "半年小结_2025-H1",
            "2025年上半年",
        ),
        (
            "half",
            "2024-H2",
            date(2024, 7, 1),
            date(2024, 12, 31),
            "半年小结_2024-H2",
            "2024年下半年",
        ),
        ("year", "2024", date(2024, 1, 1), date(2024, 12, 31), "年度总结_2024", "2024年"),
    ],
)
def test_quarters_halves_and_years(
    kind: str, text: str, start: date, end: date, name: str, title: str
) -> None:
    p = Period.parse(kind, text)  # type: ignore[arg-type]
    assert (p.kind, p.start, p.end, p.label, p.name, p.title) == (
        kind,
        start,
        end,
        text,
        name,
        title,
    )
    assert p.previous().end == start - timedelta(days=1) and p.previous().kind == kind
    assert Period.of(kind, end) == p  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["2025-Q5", "2025-Q0", "2025-H3", "25", "2025-q1"])
def test_bad_quarters_halves_and_years_are_refused(bad: str) -> None:
    for kind in ("quarter", "half", "year"):
        with pytest.raises(ValueError):
            Period.parse(kind, bad)  # type: ignore[arg-type]


def test_titles_are_chinese() -> None:
    assert Period.parse_week("2025-W11").title == "2025年第11周（3月10日至3月16日）"
    assert MARCH.title == "2025年3月"
    assert Period.parse_week("2025-W01").year_start == date(2025, 1, 1)


# --- intake on inline ledgers -------------------------------------------------------------------


def _ledger_row(
    dataset: str,
    day: str,
    status: str = "loaded",
    received: str | None = None,
    loaded: int = 100,
    rejected: int = 0,
) -> dict[str, object]:
    """One ledger row; taken in at 22:00 local time on the exchange date unless `received`
    (local time) says otherwise. The calendar's due time is D + 1 at 01:30, plus 6 h grace."""
    local = pd.Timestamp(received or f"{day} 22:00").tz_localize("Asia/Shanghai")
    return {
        "dept": dataset[:2],
        "dataset": dataset,
        "exchange_date": pd.Timestamp(day),
        "source_file": f"{dataset}_{day.replace('-', '')}.csv",
        "status": status,
        "rows_loaded": loaded,
        "rows_rejected": rejected,
        "reason": None,
        "received_at": local.tz_convert("UTC"),
    }


def _expected(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"dept": ds[:2], "dataset": ds, "exchange_date": pd.Timestamp(day)} for ds, day in pairs],
        columns=["dept", "dataset", "exchange_date"],
    )


def test_intake_counts_lights_missing_failed_and_on_time() -> None:
    led = pd.DataFrame(
        [
            _ledger_row("XC_HU", "2025-03-10"),
            _ledger_row(
                "XC_HU", "2025-03-11", received="2025-03-12 07:30"
            ),  # the last on-time minute
            _ledger_row("XC_HU", "2025-03-12", received="2025-03-13 07:31"),  # late
            _ledger_row("MZ_DIBAO", "2025-03-12", "failed", loaded=0, rejected=50),
            _ledger_row(
                "MZ_DIBAO", "2025-03-12", "loaded", received="2025-03-13 02:10", rejected=3
            ),
            _ledger_row("JT_XUEJI", "2025-03-13", "failed", loaded=0, rejected=9),  # never fixed
            _ledger_row("RS_JIUYE", "2025-03-12", "superseded", loaded=10, rejected=1),
            _ledger_row("RS_JIUYE", "2025-03-12", "loaded", loaded=10, rejected=0),
            _ledger_row("YB_JIESUAN", "2025-03-11", "loaded", loaded=5),
            _ledger_row("YB_JIESUAN", "2025-03-20", "loaded", loaded=5),  # outside the period
        ]
    )
    expected = _expected(
        ("XC_HU", "2025-03-10"),
        ("XC_HU", "2025-03-11"),
        ("XC_HU", "2025-03-12"),
        ("MZ_DIBAO", "2025-03-12"),
        ("CL_CANJI", "2025-03-13"),
        ("RS_JIUYE", "2025-03-12"),
    )
    table, days, failed, missing = intake_figures(
        led, expected, date(2025, 3, 10), date(2025, 3, 16)
    )
    t = table.set_index("dept")
    assert list(t.index) == ["XC", "MZ", "ZJ", "JT", "YB", "WJ", "RS", "NY", "CL", "SL", "GA"]
    assert t.loc["XC", ["deliveries", "due", "on_time", "missing"]].tolist() == [3, 3, 2, 0]
    assert t.loc["XC", "on_time_rate"] == pytest.approx(2 / 3)
    assert t.loc["XC", "light"] == "黄"  # one late delivery of three
    assert t.loc[
        "MZ",
        [
            "deliveries",
            "accepted",
            "failed",
            "failed_open",
            "rows_loaded",
            "rows_quarantined",
            "on_time",
        ],
    ].tolist() == [2, 1, 1, 0, 100, 3, 1]
    assert t.loc["MZ", "light"] == "黄"  # a failed delivery, re-delivered on time
    assert t.loc["JT", ["failed", "failed_open", "due", "on_time"]].tolist() == [1, 1, 1, 0]
    assert t.loc["JT", "light"] == "红"
    assert t.loc["CL", ["deliveries", "missing", "due"]].tolist() == [0, 1, 1]
    assert t.loc["CL", "light"] == "红"
    # the superseded delivery counts as accepted, its rows no longer stand
    assert t.loc["RS", ["deliveries", "accepted", "rows_loaded", "rows_quarantined"]].tolist() == [
        2,
        2,
        10,
        0,
    ]
    assert t.loc["RS", "light"] == "绿"
    assert t.loc["YB", ["deliveries", "due", "on_time"]].tolist() == [
        1,
        1,
        1,
    ]  # events: as delivered
    assert t.loc["GA", "light"] == "—" and np.isnan(t.loc["GA", "on_time_rate"])
    assert failed[["dataset", "exchange_date"]].values.tolist() == [
        ["MZ_DIBAO", pd.Timestamp("2025-03-12")],
        ["JT_XUEJI", pd.Timestamp("2025-03-13")],
    ]
    assert missing.values.tolist() == [["CL", "CL_CANJI", pd.Timestamp("2025-03-13")]]
    day_light = days.set_index(["dept", "exchange_date"])["light"]
    assert day_light[("XC", pd.Timestamp("2025-03-10"))] == "绿"
    assert day_light[("XC", pd.Timestamp("2025-03-12"))] == "黄"
    assert day_light[("CL", pd.Timestamp("2025-03-13"))] == "红"


def test_an_on_time_rate_below_80_percent_over_five_deliveries_is_red() -> None:
    days = [f"2025-03-{d}" for d in range(10, 16)]
    led = pd.DataFrame(
        [_ledger_row("XC_HU", d) for d in days[:4]]
        + [_ledger_row("XC_HU", d, received="2025-03-20 09:00") for d in days[4:]]
    )
    table, *_ = intake_figures(led, _expected(), date(2025, 3, 10), date(2025, 3, 16))
    row = table.set_index("dept").loc["XC"]
    assert row[["due", "on_time"]].tolist() == [6, 4] and row["light"] == "红"
    # 2 of 4 on time: too few deliveries to judge a rate, late is yellow
    table, *_ = intake_figures(led.iloc[2:], _expected(), date(2025, 3, 10), date(2025, 3, 16))
    assert table.set_index("dept").loc["XC", ["due", "on_time", "light"]].tolist() == [4, 2, "黄"]


def test_quarantine_above_five_percent_is_yellow() -> None:
    led = pd.DataFrame([_ledger_row("SL_YINSHUI", "2025-03-14", loaded=90, rejected=10)])
    table, *_ = intake_figures(led, _expected(), date(2025, 3, 10), date(2025, 3, 16))
    row = table.set_index("dept").loc["SL"]
    assert row["quarantine_rate"] == pytest.approx(0.1) and row["light"] == "黄"


# --- a small county in the warehouse ------------------------------------------------------------

NEW_HH_DAY, ELIM_HH_DAY = date(2025, 3, 18), date(2025, 3, 19)
FAILED = ("WJ_MANBING", date(2025, 3, 18))  # delivered, failed, never re-delivered
SKIPPED = ("CL_CANJI", date(2025, 3, 20))  # due, never delivered
LATE = ("MZ_DIBAO", date(2025, 3, 19))  # received three days late


@dataclass
class County:
    """What was delivered, as the department sent it (the test's own source of truth)."""

    frames: dict[tuple[str, date], pd.DataFrame]
    new_household: str
    eliminated_household: str

    def last(self, dataset: str, on: date) -> pd.DataFrame:
        """The latest snapshot delivered on or before `on`."""
        day = max(d for (ds, d) in self.frames if ds == dataset and d <= on)
        return self.frames[(dataset, day)]

    def events(self, dataset: str, on: date) -> pd.DataFrame:
        return pd.concat(
            [
                f
                for (ds, d), f in sorted(self.frames.items(), key=lambda kv: kv[0][1])
                if ds == dataset and d <= on
            ],
            ignore_index=True,
        )


@pytest.fixture(scope="module")
def county() -> County:
    synth = build_county(11, 150)
    frames: dict[tuple[str, date], pd.DataFrame] = {}
    for day in NIGHTS:
        for dataset in datasets_due(synth, day):
            if (dataset, day) == SKIPPED:
                continue
            frames[(dataset, day)] = dataset_rows(synth, dataset, day)
    first = frames[("XC_HU", START)]
    new_hh = first.loc[first["monitoring_category"].isna(), "household_id"].iloc[0]
    elim_hh = first.loc[
        first["monitoring_category"].notna() & first["risk_eliminated"].ne(True), "household_id"
    ].iloc[0]
    for (dataset, day), frame in frames.items():
        if dataset != "XC_HU":
            continue
        rows = frame.copy()
        if day >= NEW_HH_DAY:
            at = rows["household_id"] == new_hh
            rows.loc[at, ["monitoring_category", "risk_types", "identified_month"]] = [
                "边缘易致贫户",
                "因病、因学",
                "2025-03",
            ]
            rows["risk_eliminated"] = rows["risk_eliminated"].astype(object)
            rows.loc[at, "risk_eliminated"] = False
        if day >= ELIM_HH_DAY:
            at = rows["household_id"] == elim_hh
            rows.loc[at, ["elimination_method", "eliminated_month"]] = ["帮扶消除", "2025-03"]
            rows["risk_eliminated"] = rows["risk_eliminated"].astype(object)
            rows.loc[at, "risk_eliminated"] = True
        frames[(dataset, day)] = rows
    return County(frames, new_hh, elim_hh)


def _accepted(frame: pd.DataFrame, dataset: str, did: str) -> pa.Table:
    schema = accepted_schema(get_contract(dataset))
    frame = frame.assign(
        delivery_id=did, source_file=f"{did}.csv", source_row=np.arange(len(frame)) + 2
    )
    arrays = []
    for f in schema:
        values = frame[f.name] if f.name in frame else pd.Series([None] * len(frame), dtype=object)
        if pa.types.is_date32(f.type):
            values = pd.to_datetime(values).astype(object).where(values.notna(), None)
            values = values.map(lambda v: v.date() if v is not None else None)
        arrays.append(
            pa.array(values.astype(object).where(values.notna(), None).tolist(), type=f.type)
        )
    return pa.Table.from_arrays(arrays, schema=schema)


def _received(day: date, late_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, 14, tzinfo=UTC) + timedelta(days=late_days)


def load_county(engine: Engine, county: County) -> None:
    """Ledger + history for every delivery, one transaction each, night by night."""
    for (dataset, day), frame in sorted(county.frames.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        did = f"{dataset}_{day:%Y%m%d}_t"
        failed = (dataset, day) == FAILED
        contract = get_contract(dataset)
        rec = ledger.DeliveryRecord(
            delivery_id=did,
            dept=contract.dept,
            dataset=dataset,
            exchange_date=day,
            source_file=f"{dataset}_{day:%Y%m%d}.csv",
            location="test",
            sha256=did.ljust(64, "0"),
            received_at=_received(day, 3 if (dataset, day) == LATE else 0),
            status="failed" if failed else "loaded",
            rows_in=len(frame),
            rows_loaded=0 if failed else len(frame),
            rows_rejected=len(frame) if failed else 0,
            duplicates=0,
            reason="问题数据占比 30.0%，超过 20%，整批退回" if failed else None,
        )
        with ledger.writing(engine) as conn:
            ledger.record(
                conn,
                rec,
                pd.DataFrame(columns=["source_row", "column", "rule", "value_masked", "message"]),
            )
            if not failed:
                merge_delivery(
                    conn,
                    contract,
                    _accepted(frame, dataset, did),
                    delivery_id=did,
                    exchange_date=day,
                    secret=SECRET,
                )


# Alerts: (alert_id, rule_id, unit, nights held (first, last) per episode, XC_HECHA feedback)
ALERTS = [
    ("A1", "YB-01", "户", [(date(2025, 3, 5), date(2025, 3, 23))], None),  # 18 days: overdue
    ("A2", "ZJ-01", "户", [(date(2025, 3, 12), date(2025, 3, 18))], None),  # resolved 03-19
    ("A3", "JT-01", "人", [(date(2025, 3, 17), date(2025, 3, 23))], None),  # new in W12
    (
        "A4",
        "SL-01",
        "户",
        [(date(2025, 3, 11), date(2025, 3, 19))],
        ("已纳入监测", date(2025, 3, 20)),
    ),
    ("A5", "DQ-01", "人", [(date(2025, 3, 18), date(2025, 3, 23))], None),  # no town
    (
        "A6",
        "INC-01",
        "户",
        [(date(2025, 3, 10), date(2025, 3, 11))],
        ("核实排除", date(2025, 3, 12)),
    ),
    ("A7", "MZ-01", "人", [(date(2025, 3, 10), date(2025, 3, 23))], None),  # 13 days
    ("A8", "YB-01", "户", [(date(2025, 3, 8), date(2025, 3, 23))], None),  # exactly 15 days
    # dismissed on 03-13, then the condition held again from 03-20: a new episode, open again
    (
        "A9",
        "CL-01",
        "人",
        [(date(2025, 3, 10), date(2025, 3, 12)), (date(2025, 3, 20), date(2025, 3, 23))],
        ("核实排除", date(2025, 3, 13)),
    ),
]
RUNS = [date(2025, 3, 5) + timedelta(days=k) for k in range(19)]  # alert runs 03-05 .. 03-23


def insert_alerts(engine: Engine, county: County) -> pd.DataFrame:
    """Alerts as the alert engine (tasks/alerts.py) leaves them after the run of 2025-03-23:
    alert_runs, alert_days, the alerts table, XC_HECHA feedback in history. Names, id numbers
    and phones are in the columns and the evidence; the reports must never show them."""
    hu = county.last("XC_HU", NIGHTS[-1]).reset_index(drop=True)
    rows, days = [], []
    for i, (aid, rule, unit, episodes, fb) in enumerate(ALERTS):
        h = hu.iloc[i * 7]
        last = episodes[-1][1]
        finding = {
            "rule_id": rule,
            "risk_type": "因病",
            "subject_type": "household" if unit == "户" else "person",
            "subject": f"S{i}",
            "household_id": h["household_id"],
            "person_key": None,
            "id_number": h["head_id_number"],
            "name": h["head_name"],
            "town": None if rule == "DQ-01" else h["town"],
            "village": h["village"],
            "severity": "medium",
            "pushed_to": "XC",
            "evidence": f"{h['head_name']} {h['head_id_number']} 电话 {h['phone']}",
        }
        natural = "open" if last == RUNS[-1] else "resolved"
        governs = fb is not None and episodes[-1][0] <= fb[1]
        rows.append(
            {
                "alert_id": aid,
                **finding,
                "status": {"已纳入监测": "confirmed", "核实排除": "dismissed"}[fb[0]]
                if governs
                else natural,
                "first_raised": episodes[0][0],
                "last_seen": last,
                "opened_on": episodes[-1][0],
                "resolved_on": None if natural == "open" else last + timedelta(days=1),
                "feedback_outcome": fb[0] if fb else None,
                "feedback_date": fb[1] if fb else None,
                "as_of": RUNS[-1],
            }
        )
        for first, end in episodes:
            days += [
                {"exchange_date": first + timedelta(days=k), "alert_id": aid, **finding}
                for k in range((end - first).days + 1)
            ]
    with engine.begin() as conn:
        conn.execute(
            insert(alert_runs),
            [
                {
                    "exchange_date": d,
                    "province": "61",
                    "income_threshold": 7500,
                    "medical_burden_household_12m": 10000,
                    "findings": 0,
                    "open": 0,
                    "new": 0,
                    "reopened": 0,
                    "resolved": 0,
                    "closed": 0,
                }
                for d in RUNS
            ],
        )
        conn.execute(insert(alert_days), days)
        conn.execute(insert(alerts), rows)
        for aid, *_, fb in sorted(ALERTS, key=lambda a: a[-1][1] if a[-1] else START):
            if fb:
                did = f"XC_HECHA_{fb[1]:%Y%m%d}_t"
                frame = pd.DataFrame(
                    [
                        {
                            "alert_id": aid,
                            "outcome": fb[0],
                            "checked_date": pd.Timestamp(fb[1]),
                            "checker": "郝建国",
                        }
                    ]
                )
                merge_delivery(
                    conn,
                    get_contract("XC_HECHA"),
                    _accepted(frame, "XC_HECHA", did),
                    delivery_id=did,
                    exchange_date=fb[1],
                    secret=SECRET,
                )
    return pd.DataFrame(rows)


BACKENDS = (
    ["sqlite", "postgres"] if (os.environ.get(POSTGRES_ENV) or os.environ.get("CI")) else ["sqlite"]
)


@pytest.fixture(scope="module", params=BACKENDS)
def warehouse(
    request: pytest.FixtureRequest, county: County, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, pd.DataFrame]]:
    """The county loaded once per backend for the module (the tests only read it)."""
    admin, schema = None, ""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'warehouse.db'}"
    else:
        base = postgres_or_skip()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    engine = connect(url)
    try:
        upgrade(engine)
        load_county(engine, county)
        yield engine, insert_alerts(engine, county)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


# --- independent figures ------------------------------------------------------------------------


def _active_roster(county: County, on: date) -> pd.DataFrame:
    hu = county.last("XC_HU", on)
    ren = county.last("XC_REN", on).merge(hu[["household_id", "town"]], on="household_id")
    ga = county.events("GA_BIANDONG", on)
    dead = ga.loc[
        (ga["change_type"] == "死亡") & (ga["change_date"] <= pd.Timestamp(on)), "id_number"
    ]
    return ren.assign(active=~ren["id_number"].isin(dead))


def _medical_by_hand(county: County, on: date, lo: date, hi: date) -> dict[str, float]:
    ren = county.last("XC_REN", on)
    bills = county.events("YB_JIESUAN", on)
    reversed_ids = set(bills.loc[bills["settle_kind"] == "冲销", "settlement_id"])
    kept = bills.loc[
        (bills["settle_kind"] == "正常")
        & ~bills["settlement_id"].isin(reversed_ids)
        & (bills["visit_type"] == "住院")
        & (bills["settle_date"] >= pd.Timestamp(lo))
        & (bills["settle_date"] <= pd.Timestamp(hi))
        & bills["id_number"].isin(ren["id_number"])
    ]
    paid = sum(
        kept[c].fillna(0).sum()
        for c in ("fund_paid", "critical_illness_paid", "medical_aid_paid", "other_paid")
    )
    return {
        "settlements": len(kept),
        "total": kept["total_cost"].sum(),
        "in_policy": kept["in_policy_cost"].fillna(0).sum(),
        "paid": paid,
    }


def test_figures_match_the_delivered_data(
    warehouse: tuple[Engine, pd.DataFrame], county: County
) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        fig = report_figures(conn, W12)
    end = W12.end
    hu = county.last("XC_HU", end)
    roster = _active_roster(county, end)
    members = roster.loc[roster["active"]].groupby("household_id").size()

    # 风险消除率, by town and in total, households and persons
    identified = hu.loc[hu["monitoring_category"].notna()]
    eliminated = identified.loc[identified["risk_eliminated"].eq(True)]
    mon = fig.monitoring_by_town.set_index("town")
    persons_of = identified["household_id"].map(members).fillna(0)
    assert mon.loc[TOTAL, "identified_hh"] == len(identified)
    assert mon.loc[TOTAL, "eliminated_hh"] == len(eliminated) > 0
    assert mon.loc[TOTAL, "elim_rate_hh"] == pytest.approx(len(eliminated) / len(identified))
    elim_persons = eliminated["household_id"].map(members).fillna(0).sum()
    assert mon.loc[TOTAL, "elim_rate_persons"] == pytest.approx(elim_persons / persons_of.sum())
    for town, group in identified.groupby("town"):
        e = group.loc[group["risk_eliminated"].eq(True)]
        assert mon.loc[town, "identified_hh"] == len(group)
        assert mon.loc[town, "elim_rate_hh"] == pytest.approx(len(e) / len(group))
    assert mon.loc[TOTAL, "monitored_hh"] == len(identified) - len(eliminated)
    # the period's flows: the tampered households, and nothing else changed in W12
    before = county.last("XC_HU", W12.start - timedelta(days=1))
    was = set(before.loc[before["monitoring_category"].notna(), "household_id"])
    new = set(identified["household_id"]) - was
    assert county.new_household in new
    assert mon.loc[TOTAL, "new_hh"] == len(new)
    assert mon.loc[TOTAL, "new_persons"] == sum(members.get(h, 0) for h in new)
    assert mon.loc[TOTAL, "new_elim_hh"] >= 1
    risk = fig.unresolved_by_risk.set_index("risk_type")
    assert risk.loc["因学", "monitored_hh"] >= 1

    # medical, the period and the year to date
    for frame, lo in ((fig.medical_by_town, W12.start), (fig.medical_ytd_by_town, W12.year_start)):
        by_hand = _medical_by_hand(county, end, lo, end)
        total = frame.set_index("town").loc[TOTAL]
        assert total["settlements"] == by_hand["settlements"]
        assert total["total_cost"] == pytest.approx(by_hand["total"], abs=0.005)
        assert total["actual_ratio"] == pytest.approx(by_hand["paid"] / by_hand["total"])
        assert total["policy_ratio"] == pytest.approx(by_hand["paid"] / by_hand["in_policy"])
    assert fig.medical_ytd_by_town.iloc[-1]["settlements"] > 0

    # insured rate of active roster persons
    canbao = county.last("YB_CANBAO", end)
    insured = set(
        canbao.loc[(canbao["year"] == 2025) & (canbao["status"] == "正常参保"), "id_number"]
    )
    active = roster.loc[roster["active"]]
    assurance = fig.assurance_by_town.set_index("town").loc[TOTAL]
    assert assurance["roster_persons"] == len(active)
    assert assurance["insured_rate"] == pytest.approx(active["id_number"].isin(insured).mean())
    water = county.last("SL_YINSHUI", end)
    unsafe_heads = set(water.loc[water["water_safe"].eq(False), "head_id_number"])
    assert assurance["water_unsafe_hh"] == hu["head_id_number"].isin(unsafe_heads).sum()

    # intake against the injected faults
    intake = fig.intake.set_index("dept")
    assert intake.loc["WJ", ["failed", "failed_open"]].tolist() == [1, 1]
    assert intake.loc["CL", "missing"] == 1 and intake.loc["CL", "light"] == "红"
    assert intake.loc["MZ", "on_time"] == intake.loc["MZ", "due"] - 1
    assert intake.loc["XC", "light"] == "绿"
    assert intake.loc["XC", "deliveries"] == 14  # XC_HU and XC_REN, seven nights
    assert fig.missing_deliveries["dataset"].tolist() == ["CL_CANJI"]
    # the freshness calendar is the default; a caller's `expected` replaces it
    with engine.connect() as conn:
        none_due = report_figures(
            conn, W12, pd.DataFrame(columns=["dept", "dataset", "exchange_date"])
        )
    assert none_due.intake.set_index("dept").loc["CL", ["missing", "light"]].tolist() == [0, "—"]


def test_alert_figures_by_rule_and_town(warehouse: tuple[Engine, pd.DataFrame]) -> None:
    engine, rows = warehouse
    with engine.connect() as conn:
        week = report_figures(conn, W12)
        month = report_figures(conn, MARCH)  # as of 03-31: the last run is 03-23
        w11 = report_figures(conn, Period.parse_week("2025-W11"))  # lifecycle from alert_days
    r = week.alerts_by_rule.set_index("rule_id")
    assert r.loc["JT-01", ["new", "open", "unit"]].tolist() == [1, 1, "人"]
    assert r.loc["DQ-01", ["new", "open"]].tolist() == [1, 1]
    assert r.loc["ZJ-01", ["new", "resolved", "open", "ytd_resolved"]].tolist() == [0, 1, 0, 1]
    assert r.loc["SL-01", ["confirmed", "open", "ytd_confirmed"]].tolist() == [1, 0, 1]
    assert r.loc["INC-01", ["dismissed", "ytd_dismissed", "ytd_new"]].tolist() == [0, 1, 1]
    assert r.loc["CL-01", ["open", "dismissed", "ytd_dismissed"]].tolist() == [1, 0, 0]
    assert r.loc["YB-01", ["open", "overdue", "unit"]].tolist() == [2, 1, "户"]
    assert r.loc[TOTAL, ["new", "open", "overdue", "ytd_new"]].tolist() == [2, 6, 1, 9]
    assert week.alerts_overdue["alert_id"].tolist() == ["A1"]
    assert list(week.alerts_overdue.columns) == [
        "alert_id",
        "rule_id",
        "town",
        "village",
        "first_raised",
        "days_open",
    ]
    assert week.alerts_overdue["days_open"].tolist() == [18]
    t = week.alerts_by_town.set_index("town")
    assert t.loc["（未落户）", "open"] == 1
    assert t.loc[TOTAL, "open"] == 6
    assert t.loc[rows.set_index("alert_id").loc["A1", "town"], "overdue"] == 1

    m = month.alerts_by_rule.set_index("rule_id").loc[TOTAL]
    assert m[["new", "open", "resolved", "confirmed", "dismissed"]].tolist() == [9, 6, 1, 1, 1]
    # Built after the run of 03-23 (the last night): ages run to 03-23, not to 03-31 (which
    # listed A8, A7 and A9 as overdue for nights that had not run: issue 14).
    assert month.data_end == date(2025, 3, 23)
    assert month.alerts_overdue["alert_id"].tolist() == ["A1"]

    e = w11.alerts_by_rule.set_index("rule_id").loc[TOTAL]
    assert e[["new", "open", "dismissed", "confirmed", "overdue"]].tolist() == [5, 5, 2, 0, 0]
    assert w11.alerts_by_rule.set_index("rule_id").loc["SL-01", "open"] == 1  # feedback is later

    trend = week.alerts_trend.set_index("night")
    assert trend.index[0] == pd.Timestamp("2025-03-05")  # four weeks back, from the first run
    assert trend.loc[pd.Timestamp("2025-03-18"), "ZJ-01"] == 1
    assert trend.loc[pd.Timestamp("2025-03-19"), "ZJ-01"] == 0
    assert trend.loc[pd.Timestamp("2025-03-19"), "SL-01"] == 1
    assert trend.loc[pd.Timestamp("2025-03-20"), "SL-01"] == 0
    assert trend["CL-01"].loc["2025-03-11":"2025-03-23"].tolist() == [1, 1] + [0] * 7 + [1] * 4
    assert trend.loc[pd.Timestamp("2025-03-23")].sum() == 6


def _personal_values(county: County, alert_rows: pd.DataFrame) -> set[str]:
    values: set[str] = set()
    for frame in county.frames.values():
        for col in (
            "id_number",
            "head_id_number",
            "name",
            "head_name",
            "phone",
            "household_id",
            "cert_no",
            "bank_account",
            "student_no",
        ):
            if col in frame:
                values |= {str(v) for v in frame[col].dropna() if len(str(v)) >= 2}
    values |= set(alert_rows["evidence"])
    return values


def test_reports_are_self_contained_typed_and_personal_data_free(
    warehouse: tuple[Engine, pd.DataFrame],
    county: County,
    tmp_path: Path,
) -> None:
    engine, alert_rows = warehouse
    out = tmp_path / "publish" / "XC" / "reports"
    with engine.connect() as conn:
        files = build_report(conn, W12, out)
        monthly = build_report(conn, MARCH, out)
    assert files.html == out / "周报_2025-W12.html" and files.xlsx == out / "周报_2025-W12.xlsx"
    assert monthly.html.name == "月报_2025-03.html"
    assert isinstance(files.figures, ReportFigures)
    assert sorted(p.name for p in out.iterdir()) == [
        "周报_2025-W12.html",
        "周报_2025-W12.xlsx",
        "月报_2025-03.html",
        "月报_2025-03.xlsx",
    ]

    for html_path in (files.html, monthly.html):
        html = html_path.read_text("utf-8")
        # Self-contained: nothing fetched from anywhere, no script at all.
        assert "http://" not in html and "https://" not in html
        assert not re.search(r"<script|<link|<img|<iframe|@import|@font-face|url\((?!#)", html)
        # The only references are the SVGs' own fragments (markers, clip paths).
        assert {ref[:1] for ref in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html)} <= {"#"}
        assert html.count("<svg") == 3 and "风险消除率" in html and "交换信号灯" in html
        assert "font-family: " in html and "Noto Sans CJK SC" in html
        # The style is ours, not escaped text: an &#34; in it voided the whole font-family
        # declaration and the report showed the browser's default serif (issue 14).
        style = html[html.index("<style>") : html.index("</style>")]
        assert not re.search(r"&#?\w+;", style)
        assert 'font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei"' in style
        # Codes and dates on one line ("YB-/01", "2025-03-/11" before); the risk type in words
        assert '<td class="short">GA-01</td><td class="short">数据质量</td>' in html
        assert re.search(r'<td class="short">2025-\d\d-\d\d</td>', html)
        assert re.search(r'<th class="short">[A-Z]+-\d\d</th>', html)  # the trend's rules
        assert "DQ：" not in html and ">DQ<" not in html
        # Aggregates only: no id number, name, phone, household id or evidence of the data.
        text = html
        leaked = [v for v in _personal_values(county, alert_rows) if v in text]
        assert leaked == []
        assert "A1" in html  # the overdue list shows alert ids

    book = openpyxl.load_workbook(files.xlsx)
    assert book.sheetnames == [
        "概览",
        "待办事项",  # issue 14: what to do first
        "交换接收",
        "风险预警",
        "监测对象",
        "三保障和饮水安全",
        "医疗保障",
        "务工就业",
    ]
    sheet = book["监测对象"]
    header = [c.value for c in sheet[4]]
    assert header[:3] == ["乡镇", "监测对象户数", "监测对象人数"]
    assert all(re.search(r"[\u4e00-\u9fff]", str(h)) for h in header)
    rows = list(sheet.iter_rows(min_row=5, values_only=True))
    total = next(r for r in rows if r[0] == TOTAL)
    rate_col = header.index("风险消除率（户）")
    assert isinstance(total[1], int | float) and isinstance(total[rate_col], float)
    mon_total = files.figures.monitoring_by_town.iloc[-1]
    assert total[1] == mon_total["identified_hh"]
    assert total[rate_col] == pytest.approx(mon_total["elim_rate_hh"])
    for r in rows[: len(files.figures.monitoring_by_town)]:
        assert all(isinstance(v, int | float) for v in r[1:] if v is not None)
    alerts_sheet = book["风险预警"]
    dates = [c for row in alerts_sheet.iter_rows() for c in row if c.is_date]
    assert dates and all(isinstance(c.value, datetime) for c in dates)
    every_text = " ".join(
        str(c.value)
        for ws in book.worksheets
        for row in ws.iter_rows()
        for c in row
        if c.value is not None
    )
    assert [v for v in _personal_values(county, alert_rows) if v in every_text] == []


def test_the_same_warehouse_gives_byte_identical_reports(
    warehouse: tuple[Engine, pd.DataFrame],
    county: County,
    tmp_path: Path,
) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        a = build_report(conn, W12, tmp_path / "a")
        b = build_report(conn, W12, tmp_path / "b")
    assert a.html.read_bytes() == b.html.read_bytes()
    assert a.xlsx.read_bytes() == b.xlsx.read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".tmp")]


def test_an_empty_warehouse_still_reports(warehouse_url: str, tmp_path: Path) -> None:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        with engine.connect() as conn:
            files = build_report(conn, Period.parse_week("2025-W11"), tmp_path)
        assert files.figures.monitoring_by_town["town"].tolist() == [TOTAL]
        assert "（无）" in files.html.read_text("utf-8")
        openpyxl.load_workbook(files.xlsx)
    finally:
        engine.dispose()


# --- issue 14: figures that agree with each other ---------------------------------------------

FLOW_PAIRS = {
    "alerts_by_rule": [
        ("new", "ytd_new"),
        ("resolved", "ytd_resolved"),
        ("confirmed", "ytd_confirmed"),
        ("dismissed", "ytd_dismissed"),
        ("data_error", "ytd_data_error"),
    ],
    "monitoring_by_town": [
        ("new_hh", "ytd_new_hh"),
        ("new_persons", "ytd_new_persons"),
        ("new_elim_hh", "ytd_elim_hh"),
        ("new_elim_persons", "ytd_elim_persons"),
    ],
}
CLOSED_FLOWS = ["resolved", "confirmed", "dismissed", "data_error"]


@pytest.mark.parametrize("label", ["2025-W11", "2025-W12", "2025-03"])
def test_the_year_to_date_contains_the_period(
    warehouse: tuple[Engine, pd.DataFrame], label: str
) -> None:
    engine, _ = warehouse
    period = Period.parse_month(label) if "W" not in label else Period.parse_week(label)
    with engine.connect() as conn:
        fig = report_figures(conn, period)
    for name, pairs in FLOW_PAIRS.items():
        frame = getattr(fig, name)
        for flow, ytd in pairs:
            smaller = frame.loc[frame[flow] > frame[ytd]]
            assert smaller.empty, (name, flow, smaller.iloc[:, 0].tolist())
    assert fig.alerts_by_town[["new", "ytd_new"]].diff(axis=1)["ytd_new"].min() >= 0
    for frame, ytd in ((fig.intake, fig.intake_ytd),):
        merged = frame.merge(ytd, on="dept", suffixes=("", "_ytd"))
        for col in ("deliveries", "due", "missing", "failed", "on_time"):
            assert (merged[col] <= merged[f"{col}_ytd"]).all(), col
    week, ytd = fig.medical_by_town.iloc[-1], fig.medical_ytd_by_town.iloc[-1]
    assert week["settlements"] <= ytd["settlements"]
    assert week["total_cost"] <= ytd["total_cost"] + 0.005


def test_the_tampered_household_is_new_in_the_period_and_in_the_year(
    warehouse: tuple[Engine, pd.DataFrame], county: County
) -> None:
    """The county's new household was identified inside W12 (history) and its identified_month
    says 2025-03; a household whose roster month says another year but which the period saw
    identified still counts in the year to date (issue 14: 本期 1, 年度 0)."""
    engine, _ = warehouse
    with engine.connect() as conn:
        fig = report_figures(conn, W12)
    hu = county.last("XC_HU", W12.end).set_index("household_id")
    town = hu.loc[county.new_household, "town"]
    row = fig.monitoring_by_town.set_index("town").loc[town]
    assert row["new_hh"] >= 1 and row["ytd_new_hh"] >= row["new_hh"]


def test_alert_stock_is_the_previous_stock_plus_in_minus_out(
    warehouse: tuple[Engine, pd.DataFrame],
) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        w11 = report_figures(conn, Period.parse_week("2025-W11"))
        w12 = report_figures(conn, W12)
    for name, key in (("alerts_by_rule", "rule_id"), ("alerts_by_town", "town")):
        prev = getattr(w11, name).set_index(key)
        cur = getattr(w12, name).set_index(key)
        # the stock at the end of W11 is W12's opening stock
        assert (cur["opening"] == prev["open"].reindex(cur.index, fill_value=0)).all()
        balance = cur["opening"] + cur["new"] + cur["reopened"] - cur[CLOSED_FLOWS].sum(axis=1)
        assert (balance == cur["open"]).all(), name
    r = w12.alerts_by_rule.set_index("rule_id")
    # A9 (CL-01) was dismissed in W11 and held again from 03-20: re-opened in W12, not new.
    assert r.loc["CL-01", ["opening", "new", "reopened", "open"]].tolist() == [0, 0, 1, 1]
    assert r.loc[TOTAL, ["opening", "new", "reopened", "open"]].tolist() == [5, 2, 1, 6]


def test_a_healthy_week_has_an_empty_overdue_list(
    warehouse: tuple[Engine, pd.DataFrame], tmp_path: Path
) -> None:
    """W11: no alert older than 15 days on 03-16 — the list is empty, not a row per alert."""
    engine, _ = warehouse
    w11 = Period.parse_week("2025-W11")
    with engine.connect() as conn:
        files = build_report(conn, w11, tmp_path)
    fig = files.figures
    assert fig.headline["alerts_overdue"] == 0
    assert len(fig.alerts_overdue) == 0
    assert list(fig.alerts_overdue.columns)[-1] == "days_open"
    html = files.html.read_text("utf-8")
    section = html[html.index("天未结的预警（乡村振兴局逐条督办）") :]
    section = section[: section.index("</h3>", 10) + 200]
    assert "（无）" in section and "<td" not in section
    sheet = openpyxl.load_workbook(files.xlsx)["待办事项"]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    at = next(i for i, r in enumerate(values) if str(r[0]).startswith("超过15天未结"))
    assert values[at + 2][0] == "（无）"


def test_a_mid_month_build_judges_only_the_nights_that_ran(
    warehouse: tuple[Engine, pd.DataFrame], tmp_path: Path
) -> None:
    """The month report built after the night of 03-23: dated 03-23, no 缺报 for 03-24..31,
    alerts aged to 03-23, and the page says so."""
    engine, _ = warehouse
    with engine.connect() as conn:
        files = build_report(conn, MARCH, tmp_path)
    fig = files.figures
    assert fig.data_end == date(2025, 3, 23)
    assert fig.missing_deliveries["exchange_date"].max() <= pd.Timestamp("2025-03-23")
    assert fig.intake_days["exchange_date"].max() <= pd.Timestamp("2025-03-23")
    intake = fig.intake.set_index("dept")
    # XC delivered XC_HU and XC_REN every night, on time: green, 28 due (03-10 .. 03-23)
    assert intake.loc["XC", ["due", "on_time", "missing", "light"]].tolist() == [28, 28, 0, "绿"]
    assert (fig.alerts_overdue["days_open"] <= (date(2025, 3, 23) - date(2025, 3, 5)).days).all()
    html = files.html.read_text("utf-8")
    assert "数据截至 2025-03-23" in html and "数据截至 2025-03-31" not in html
    assert any("本期尚未结束" in n for n in fig.notes)
    overview = openpyxl.load_workbook(files.xlsx)["概览"]
    assert overview["A2"].value == "数据截至 2025-03-23"


def test_the_first_alert_run_is_a_baseline_note(warehouse: tuple[Engine, pd.DataFrame]) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        first = report_figures(conn, Period.parse_week("2025-W10"))  # the first run: 03-05
        later = report_figures(conn, W12)
    assert any("首次运行" in n and "2025-03-05" in n for n in first.notes)
    assert not any("首次运行" in n for n in later.notes)


def test_reports_print_on_a4_landscape(
    warehouse: tuple[Engine, pd.DataFrame], tmp_path: Path
) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        files = build_report(conn, W12, tmp_path)
    assert "@page { size: A4 landscape" in files.html.read_text("utf-8")
    tables = {title: len(subs) for title, subs in files.figures.sections()}
    book = openpyxl.load_workbook(files.xlsx)
    for ws in book.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.page_setup.paperSize == 9, ws.title  # A4
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        # fitToWidth 1 is the OOXML default (xlsxwriter omits it, openpyxl reads None)
        assert (ws.page_setup.fitToWidth or 1, ws.page_setup.fitToHeight) == (1, 0), ws.title
        # A sheet of one table repeats its title and header and is frozen below them. On a
        # sheet of several tables the first one's header printed above the rows of the others
        # (page 3 of 待办事项 read "指标 本期 上期 变化" over the reject reasons): only the
        # title repeats there, and the panes freeze below it.
        if ws.title == "概览" or tables[ws.title] == 1:
            assert ws.print_title_rows == "$1:$4", ws.title
            assert ws.freeze_panes == ("A5" if ws.title == "概览" else "B5"), ws.title
        else:
            assert ws.print_title_rows == "$1:$2", ws.title
            assert ws.freeze_panes == "B3", ws.title
    assert tables["待办事项"] > 1 and tables["三保障和饮水安全"] == 1


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("YB-01", 10.0, 1),
        ("城关镇", 7.0, 1),  # 6 wide: fits
        ("同一主键有多条内容不同的记录", 36.0, 1),  # 28 wide
        ("身份证号位数错误（应为18位，老证15位）", 36.0, 2),  # 38 wide
        ("身份证号被Excel转成了数字（科学计数法或末位被置0），请按文本格式重新导出", 36.0, 3),
        ("a" * 100, 11.0, 10),
    ],
)
def test_wrapped_lines_count_cjk_as_two(text: str, width: float, lines: int) -> None:
    assert wrapped_lines(text, width) == lines


def test_short_text_cells_stay_on_one_line_and_reasons_wrap() -> None:
    frame = pd.DataFrame(
        {
            "dept_name": ["人力资源和社会保障局"],
            "rule_id": ["YB-01"],
            "rule_text": ["身份证号第7-14位的出生日期不合理（不是真实日期）"],
            "first_raised": [pd.Timestamp("2025-03-11")],
            "pending": [3],
        }
    )
    cells = _html_table(frame)["rows"][0]["cells"]
    assert [(c["short"], c["num"]) for c in cells] == [
        (True, False),
        (True, False),
        (False, False),
        (True, False),
        (False, True),
    ]


def test_wrapped_report_cells_get_the_height_of_their_lines(
    warehouse: tuple[Engine, pd.DataFrame], tmp_path: Path
) -> None:
    """A reason wrapped in its column, on a row one line high, printed over the next row in
    LibreOffice: each row is as high as its longest wrapped cell."""
    engine, _ = warehouse
    with engine.connect() as conn:
        files = build_report(conn, MARCH, tmp_path)
    book = openpyxl.load_workbook(files.xlsx)
    wrapped = 0
    for ws in book.worksheets[1:]:
        for row in ws.iter_rows(min_row=3):
            needed = 1
            for cell in row:
                if not isinstance(cell.value, str) or cell.font.b:
                    continue  # titles and headers
                # a lower bound, independent of the code's estimate: the column's full width
                width = ws.column_dimensions[cell.column_letter].width
                shown = sum(2 if ord(ch) > 0x2E7F else 1 for ch in cell.value)
                needed = max(needed, -(-shown // int(width)))
            height = ws.row_dimensions[row[0].row].height
            if needed > 1:
                wrapped += 1
                assert height is not None and height >= 15 * needed, (ws.title, row[0].row)
    assert wrapped > 0


def test_alerts_awaiting_verification_by_town_and_department(
    warehouse: tuple[Engine, pd.DataFrame],
) -> None:
    engine, rows = warehouse
    with engine.connect() as conn:
        fig = report_figures(conn, W12)
    # independently: the alerts whose status after the run of 03-23 is open
    waiting = rows.loc[rows["status"] == "open"].assign(
        town=lambda f: f["town"].fillna("（未落户）"),
        first=lambda f: pd.to_datetime(f["first_raised"]),
    )
    waiting = waiting.assign(days=(pd.Timestamp(W12.end) - waiting["first"]).dt.days)
    town = fig.pending_by_town.set_index("town")
    for name, group in waiting.groupby("town"):
        assert town.loc[name, "pending"] == len(group)
        assert town.loc[name, "oldest"] == group["first"].min()
        assert town.loc[name, "oldest_days"] == group["days"].max()
        assert town.loc[name, "pending_overdue"] == (group["days"] > 15).sum()
    assert town.loc[TOTAL, ["pending", "pending_overdue"]].tolist() == [len(waiting), 1]
    assert town.drop(index=TOTAL)["pending"].sum() == len(waiting)
    dept = fig.pending_by_dept.set_index("dept")
    assert dept.loc["XC", ["dept_name", "pending"]].tolist() == ["乡村振兴局", len(waiting)]
    assert dept.loc[TOTAL, "oldest"] == pd.Timestamp("2025-03-05")  # A1
    assert fig.headline["alerts_open"] == len(waiting)


def test_every_light_is_explained_in_words(warehouse: tuple[Engine, pd.DataFrame]) -> None:
    engine, _ = warehouse
    with engine.connect() as conn:
        fig = report_figures(conn, W12)
    why = fig.intake.set_index("dept")["light_reason"]
    assert "缺报 1 批" in why["CL"]
    assert "退回后未重报 1 批" in why["WJ"]
    assert "迟报 1 批" in why["MZ"]
    assert why["XC"] == "全部按时报送，问题数据不超过 5%"
    lit = fig.intake.loc[fig.intake["light"].isin(["红", "黄"])]
    assert len(fig.light_reasons) == len(lit) > 0
    named = zip(fig.light_reasons, lit["dept_name"], strict=True)
    assert all(r.startswith(f"{n}：") for r, n in named)


def test_top_reject_reasons_per_department_in_chinese() -> None:
    counts = pd.DataFrame(
        [
            ("MZ", "MZ_DIBAO", "id_number", "id_checksum", 7),
            ("MZ", "MZ_DIBAO", "amount", "min", 2),
            ("MZ", "MZ_DIBAO", "name", "required", 5),
            ("MZ", "MZ_DIBAO", "id_number", "key_conflict", 1),
            ("XC", "XC_HU", "town", "enum", 3),
        ],
        columns=["dept", "dataset", "column", "rule", "rows"],
    )
    top = top_reject_reasons(counts)
    assert top["dept_name"].tolist() == ["乡村振兴局", "民政局", "民政局", "民政局"]
    assert top["rows"].tolist() == [3, 7, 5, 2]
    assert top.loc[1, "column_label"] == get_contract("MZ_DIBAO").column("id_number").header
    assert top.loc[3, "rule_text"] == "小于允许的最小值"
    assert not top["rule_text"].str.fullmatch(r"[a-z_]+").any()
    assert top_reject_reasons(counts.iloc[:0]).empty


def test_week_over_week_changes(warehouse: tuple[Engine, pd.DataFrame], county: County) -> None:
    engine, rows = warehouse
    with engine.connect() as conn:
        w11 = report_figures(conn, Period.parse_week("2025-W11"))
        w12 = report_figures(conn, W12)
    ch = w12.changes.set_index("item")
    first = pd.to_datetime(rows["first_raised"])
    raised_w11 = first.between(pd.Timestamp("2025-03-10"), pd.Timestamp("2025-03-16")).sum()
    assert ch.loc["新增预警", ["current", "previous", "change"]].tolist() == [
        2,
        raised_w11,
        2 - raised_w11,
    ]
    prev_total = w11.alerts_by_rule.iloc[-1]
    assert ch.loc["期末未结预警（待核实）", ["current", "previous"]].tolist() == [
        6,
        prev_total["open"],
    ]
    assert ch.loc["超15天未结预警", ["current", "previous"]].tolist() == [1, prev_total["overdue"]]
    assert ch.loc["缺报批次", "previous"] == w11.intake["missing"].sum()
    # monitored households at the end of W11, from the delivered roster
    before = county.last("XC_HU", date(2025, 3, 16))
    monitored = before["monitoring_category"].notna() & before["risk_eliminated"].ne(True)
    assert ch.loc["未消除风险监测户", "previous"] == monitored.sum()
    # the county's first week has no earlier roster: unknown, not 0
    assert np.isnan(w11.changes.set_index("item").loc["未消除风险监测户", "previous"])


@pytest.mark.parametrize("period", [Period.parse_quarter("2025-Q1"), Period.parse_year("2025")])
def test_quarter_and_year_reports_on_the_same_engine(
    warehouse: tuple[Engine, pd.DataFrame], county: County, period: Period, tmp_path: Path
) -> None:
    """季调度 and 年度总结 built mid-period (after the night of 03-23), against the delivered
    data and the alert rows computed here."""
    engine, rows = warehouse
    with engine.connect() as conn:
        files = build_report(conn, period, tmp_path)
    fig, end = files.figures, date(2025, 3, 23)
    assert fig.data_end == end
    assert files.html.name == f"{period.name}.html" and files.xlsx.exists()
    assert f"{period.title} 防返贫动态监测{period.report_kind}" in files.html.read_text("utf-8")
    total = fig.alerts_by_rule.set_index("rule_id").loc[TOTAL]
    first = pd.to_datetime(rows["first_raised"])
    assert total["new"] == (first >= pd.Timestamp(period.start)).sum() == len(rows)
    assert total["open"] == (rows["status"] == "open").sum()
    assert total["ytd_new"] == total["new"]  # the year to date is the period here
    by_hand = _medical_by_hand(county, end, period.start, end)
    med = fig.medical_by_town.set_index("town").loc[TOTAL]
    assert med["settlements"] == by_hand["settlements"]
    assert med["total_cost"] == pytest.approx(by_hand["total"], abs=0.005)
    hu = county.last("XC_HU", end)
    assert (
        fig.monitoring_by_town.iloc[-1]["identified_hh"] == hu["monitoring_category"].notna().sum()
    )
    assert fig.intake.set_index("dept").loc["XC", "due"] == 28  # 03-10 .. 03-23, two datasets
