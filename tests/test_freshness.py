"""Freshness: the calendar, the judgement (on time, late, missing, failed) and its record."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import insert, select

from datashare.errors import ConfigurationError
from expectations.contract import EXPECTATIONS_DIR
from tasks.freshness import (
    check_freshness,
    expected_deliveries,
    expected_frame,
    freshness_frame,
    load_calendar,
)
from warehouse.db import connect, upgrade
from warehouse.tables import deliveries
from warehouse.tables_ops import freshness

WED = date(2025, 3, 12)  # a Wednesday: XC_HU, XC_REN daily; MZ_DIBAO and RS_JIUYE weekly
SHANGHAI = ZoneInfo("Asia/Shanghai")
DUE = datetime(2025, 3, 13, 1, 30, tzinfo=SHANGHAI)


def test_calendar_says_what_is_due_and_when() -> None:
    due = expected_deliveries(WED)
    assert [(dept, ds) for dept, ds, _ in due] == [
        ("MZ", "MZ_DIBAO"),
        ("RS", "RS_JIUYE"),
        ("XC", "XC_HU"),
        ("XC", "XC_REN"),
    ]
    assert {at for *_, at in due} == {DUE}
    thursday = {ds for _, ds, _ in expected_deliveries(WED + timedelta(days=1))}
    assert thursday == {"XC_HU", "XC_REN", "JT_XUEJI", "CL_CANJI"}
    # Events datasets are delivered when there is something to deliver: never expected.
    week = expected_frame(date(2025, 3, 10), date(2025, 3, 16))
    assert "YB_JIESUAN" not in set(week["dataset"])
    assert len(week[week["dataset"] == "XC_HU"]) == 7
    assert len(week[week["dataset"] == "MZ_DIBAO"]) == 1
    assert list(week.columns) == ["dept", "dataset", "exchange_date"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("datasets: {NOPE: {weekdays: daily}}", "未知的数据集"),
        ("datasets: {XC_HU: {weekdays: [someday]}}", "无法识别的星期"),
        ("datasets: {XC_HU: {weekdays: daily, by: '25:00'}}", "无效"),
    ],
)
def test_a_broken_calendar_fails_loudly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_calendar(path)


def test_every_dataset_needs_its_calendar_entry(tmp_path: Path) -> None:
    installed = (EXPECTATIONS_DIR / "calendar.yaml").read_text(encoding="utf-8")
    path = tmp_path / "calendar.yaml"
    # A forgotten entry would make the dataset silently never expected: refused, by name.
    path.write_text(installed.replace("  WJ_MANBING: {weekdays: [tue]}\n", ""))
    with pytest.raises(ConfigurationError, match=r"缺少数据集 \['WJ_MANBING'\] 的条目"):
        load_calendar(path)
    # So is an entry no contract declares, named with the missing one.
    path.write_text(installed.replace("WJ_MANBING:", "WJ_MANBIN:"))
    with pytest.raises(ConfigurationError) as caught:
        load_calendar(path)
    assert "未知的数据集 ['WJ_MANBIN']" in str(caught.value)
    assert "缺少数据集 ['WJ_MANBING'] 的条目" in str(caught.value)
    # "Not expected" is said explicitly, and is then never due.
    path.write_text(
        installed.replace("WJ_MANBING: {weekdays: [tue]}", "WJ_MANBING: {weekdays: []}")
    )
    calendar = load_calendar(path)
    tuesday = WED - timedelta(days=1)
    assert "WJ_MANBING" not in {ds for _, ds, _ in expected_deliveries(tuesday, calendar)}
    assert "WJ_MANBING" in {ds for _, ds, _ in expected_deliveries(tuesday)}


def _delivery(dataset: str, status: str, received_at: datetime, n: int = 0) -> dict[str, object]:
    return dict(
        delivery_id=f"{dataset}_{WED:%Y%m%d}_{n:012d}",
        dept=dataset[:2],
        dataset=dataset,
        exchange_date=WED,
        source_file=f"{dataset}_{WED:%Y%m%d}.csv",
        location="test",
        sha256=f"{n:064d}",
        received_at=received_at.astimezone(UTC),
        status=status,
        rows_in=1,
        rows_loaded=1 if status != "failed" else 0,
        rows_rejected=0 if status != "failed" else 1,
        duplicates=0,
    )


def test_on_time_late_missing_failed(warehouse_url: str) -> None:
    engine = connect(warehouse_url)
    upgrade(engine)
    run_at = DUE + timedelta(minutes=30)  # the scheduled 02:00 run
    ledger = [
        _delivery("XC_HU", "loaded", run_at, 1),  # on time
        _delivery("XC_REN", "failed", run_at, 2),  # failed, then
        _delivery("XC_REN", "loaded", run_at + timedelta(days=1), 3),  # corrected a night late
        _delivery("MZ_DIBAO", "failed", run_at, 4),  # failed, nothing else
        _delivery("YB_JIESUAN", "loaded", run_at, 5),  # not expected
    ]  # RS_JIUYE: missing
    try:
        with engine.begin() as conn:
            conn.execute(insert(deliveries), ledger)
            judged = check_freshness(conn, WED, now=run_at + timedelta(days=2))
        states = dict(zip(judged["dataset"], judged["state"], strict=True))
        assert states == {
            "MZ_DIBAO": "failed",
            "RS_JIUYE": "missing",
            "XC_HU": "on_time",
            "XC_REN": "late",
        }
        assert judged.set_index("dataset").loc["XC_REN", "delivery_id"] == ledger[2]["delivery_id"]
        with engine.connect() as conn:
            recorded = freshness_frame(conn, WED, WED)
        assert recorded[["dataset", "state"]].equals(judged[["dataset", "state"]])
        assert set(recorded["exchange_date"]) == {WED}
    finally:
        engine.dispose()


def test_a_rerun_gives_the_same_rows_and_a_late_arrival_turns_missing_into_late(
    warehouse_url: str,
) -> None:
    engine = connect(warehouse_url)
    upgrade(engine)
    run_at = DUE + timedelta(minutes=30)
    try:
        with engine.begin() as conn:
            conn.execute(insert(deliveries), [_delivery("XC_HU", "loaded", run_at, 1)])
            first = check_freshness(conn, WED, now=run_at)
        with engine.begin() as conn:  # re-run of the same night, a week later: nothing changes
            again = check_freshness(conn, WED, now=run_at + timedelta(days=7))
        pd.testing.assert_frame_equal(first, again)
        assert dict(zip(first["dataset"], first["state"], strict=True))["RS_JIUYE"] == "missing"
        with engine.begin() as conn:  # RS delivers three nights late, a backfill takes it in
            conn.execute(
                insert(deliveries), [_delivery("RS_JIUYE", "loaded", run_at + timedelta(days=3), 2)]
            )
            later = check_freshness(conn, WED, now=run_at + timedelta(days=3))
        assert dict(zip(later["dataset"], later["state"], strict=True))["RS_JIUYE"] == "late"
        with engine.connect() as conn:
            assert (
                conn.execute(
                    select(freshness.c.state).where(freshness.c.dataset == "RS_JIUYE")
                ).scalar_one()
                == "late"
            )
    finally:
        engine.dispose()


def test_before_the_due_time_nothing_is_missing_yet(warehouse_url: str) -> None:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(deliveries), [_delivery("XC_HU", "loaded", DUE - timedelta(hours=3), 1)]
            )
            judged = check_freshness(conn, WED, now=DUE - timedelta(hours=1))
        assert judged[["dataset", "state"]].values.tolist() == [["XC_HU", "on_time"]]
        with pytest.raises(ValueError, match="timezone-aware"), engine.begin() as conn:
            check_freshness(conn, WED, now=datetime(2025, 3, 13))
    finally:
        engine.dispose()


def test_only_the_named_datasets_are_rejudged(warehouse_url: str) -> None:
    engine = connect(warehouse_url)
    upgrade(engine)
    now = datetime(2025, 3, 20, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            check_freshness(conn, WED, now=now)
            conn.execute(insert(deliveries), [_delivery("XC_HU", "loaded", now, 1)])
            part = check_freshness(conn, WED, now=now, datasets=["XC_HU"])
            everything = freshness_frame(conn, WED, WED)
        assert part["dataset"].tolist() == ["XC_HU"]
        assert dict(zip(everything["dataset"], everything["state"], strict=True)) == {
            "MZ_DIBAO": "missing",
            "RS_JIUYE": "missing",
            "XC_HU": "late",
            "XC_REN": "missing",
        }
    finally:
        engine.dispose()
