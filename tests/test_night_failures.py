"""One bad delivery, or one report, never takes the night down (issues 11 and 16).

Real Prefect flows (the `prefect_api` fixture), real SQLite and PostgreSQL, real files, a real
webhook for the notification; every night on a pinned date, including every kind of closing day.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from test_notify import _Hook

import flows.nightly
import tasks.intake
from datashare.settings import Settings
from datashare.synth import build_county, write_night
from flows.nightly import ReportFailure, run_nightly
from flows.report import periods_asked, write_reports
from tasks.reports import closing_periods
from warehouse.db import connect
from warehouse.tables import deliveries, history_tables, rejects
from warehouse.tables_alerts import alert_runs
from warehouse.tables_ops import nights
from warehouse.tables_publish import publications

DAY = date(2025, 3, 10)  # the synthetic county's first night, a Monday: no report closes
ID_LIKE = "610102199001011234"  # what an exception message might quote: never shown


@pytest.fixture
def hook() -> Iterator[_Hook]:
    with _Hook() as h:
        yield h


@pytest.fixture
def env(
    tmp_path: Path,
    warehouse_url: str,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: None,
    hook: _Hook,
) -> Settings:
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASHARE_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DATASHARE_SECRET", "test-secret-not-for-production-0123456789")
    monkeypatch.setenv("DATASHARE_BUILD_DOCS", "false")
    monkeypatch.setenv("DATASHARE_MAX_WORKERS", "2")
    monkeypatch.setenv("DATASHARE_NOTIFY_URLS", json.dumps([f"json://127.0.0.1:{hook.port}/n"]))
    return Settings()


def _messages(hook: _Hook) -> str:
    return "\n".join(f"{m.get('title')}\n{m.get('message')}" for _, m in hook.received)


def _table(settings: Settings, query: Any) -> pd.DataFrame:
    engine = connect(str(settings.warehouse_url))
    try:
        with engine.connect() as conn:
            return pd.read_sql(query, conn)
    finally:
        engine.dispose()


@pytest.mark.quick_sample("RuntimeError")
@pytest.mark.postgres_sample("RecursionError")
@pytest.mark.parametrize("crash", [RuntimeError, RecursionError])
def test_a_delivery_whose_reader_crashes_fails_alone_and_the_night_goes_on(
    env: Settings, hook: _Hook, monkeypatch: pytest.MonkeyPatch, crash: type[Exception]
) -> None:
    county = build_county(7, 40)
    write_night(county, Path(str(env.landing)), DAY, defects=False)
    real_read = tasks.intake.read_delivery

    def read(content: bytes, file_name: str, contract: Any, *args: Any, **kwargs: Any) -> Any:
        if contract.dataset == "JT_XUEJI":
            raise crash(f"cannot parse {ID_LIKE}")  # a message that quotes a value
        return real_read(content, file_name, contract, *args, **kwargs)

    monkeypatch.setattr(tasks.intake, "read_delivery", read)
    result = run_nightly(DAY, env)

    # The crashed delivery: failed, with a Chinese reason naming the class, not the message.
    by_dataset = {s.dataset: s for s in result.deliveries}
    crashed = by_dataset["JT_XUEJI"]
    assert crashed.status == "failed"
    assert crash.__name__ in (crashed.reason or "") and "意外错误" in (crashed.reason or "")
    assert ID_LIKE not in (crashed.reason or "")
    d = deliveries.c
    ledger = _table(env, select(d.dataset, d.status, d.reason, d.raw_path, d.delivery_id))
    row = ledger.loc[ledger["dataset"] == "JT_XUEJI"].iloc[0]
    assert (row["status"], row["reason"]) == ("failed", crashed.reason)
    assert row["raw_path"], "the bad file is kept in the lake's raw area for inspection"
    rule = _table(env, select(rejects.c.rule).where(rejects.c.delivery_id == row["delivery_id"]))[
        "rule"
    ]
    assert rule.tolist() == ["unexpected_error"]
    assert _table(env, select(func.count()).select_from(history_tables["JT_XUEJI"])).iat[0, 0] == 0

    # Everyone else was taken in, and the night went on: alerts, publication, the night record.
    others = ledger.loc[ledger["dataset"] != "JT_XUEJI"]
    assert len(others) >= 10 and set(others["status"]) == {"loaded"}
    assert _table(env, select(func.count()).select_from(history_tables["XC_REN"])).iat[0, 0] > 0
    runs = _table(env, select(alert_runs.c.exchange_date))["exchange_date"]
    assert DAY in set(pd.to_datetime(runs).dt.date)
    assert result.alerts.as_of == DAY and result.alerts.open > 0
    assert result.publication_id is not None
    published = _table(env, select(publications.c.publication_id))["publication_id"]
    assert result.publication_id in set(published)
    assert (Path(str(env.publish_dir)) / "current").is_dir()
    assert DAY in set(
        pd.to_datetime(_table(env, select(nights.c.exchange_date)).iloc[:, 0]).dt.date
    )

    # The notification tells the watchers, without the quoted value.
    text = _messages(hook)
    assert "JT_XUEJI" in text and crash.__name__ in text and "被退回" in text
    assert ID_LIKE not in text

    # The failure was not the file's fault: once the reader is mended, the next run of the same
    # night takes the same bytes in (no --force needed), replacing the failed record.
    monkeypatch.setattr(tasks.intake, "read_delivery", real_read)
    again = {s.dataset: s for s in run_nightly(DAY, env).deliveries}
    assert again["JT_XUEJI"].status == "loaded"
    assert {s.status for n, s in again.items() if n != "JT_XUEJI"} == {"unchanged"}
    ledger = _table(env, select(d.dataset, d.status))
    assert ledger.loc[ledger["dataset"] == "JT_XUEJI", "status"].tolist() == ["loaded"]
    assert _table(env, select(func.count()).select_from(history_tables["JT_XUEJI"])).iat[0, 0] > 0


@pytest.mark.quick_sample("sqlite")
def test_a_report_that_fails_is_recorded_and_the_night_still_publishes(
    env: Settings, hook: _Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = date(2025, 8, 31)  # a Sunday and a month's last day: 2025-W35 and 2025-08 close
    county = build_county(7, 30)
    write_night(county, Path(str(env.landing)), day, datasets=["XC_HU"], defects=False)
    real_build = flows.nightly.build_report

    def build(conn: Any, period: Any, out_dir: Path, expected: Any = None) -> Any:
        if period.kind == "week":
            raise ValueError(f"figure broke on {ID_LIKE}")
        return real_build(conn, period, out_dir, expected)

    monkeypatch.setattr(flows.nightly, "build_report", build)
    result = run_nightly(day, env)

    assert result.report_failures == [ReportFailure("2025-W35", "week", "ValueError")]
    assert result.reports == ["月报_2025-08.html"]  # the other report was still built
    assert result.publication_id is not None
    assert [s.status for s in result.deliveries] == ["loaded"]
    assert day in set(
        pd.to_datetime(_table(env, select(nights.c.exchange_date)).iloc[:, 0]).dt.date
    )
    text = _messages(hook)
    assert "1 份报告未生成" in text and "datashare report --week 2025-W35" in text
    assert "ValueError" in text and ID_LIKE not in text

    # `datashare report --week 2025-W35` rebuilds it from the warehouse the night left.
    monkeypatch.undo()
    written = write_reports(Settings(), periods_asked("2025-W35", None))
    assert sorted(p.name for p in written) == ["周报_2025-W35.html", "周报_2025-W35.xlsx"]
    assert "以下部门尚未报送" in written[0].read_text("utf-8")


@pytest.mark.parametrize("publication", ["succeeds", "fails"])
def test_the_reports_are_built_beside_the_publication_and_waited_for(
    env: Settings, monkeypatch: pytest.MonkeyPatch, publication: str
) -> None:
    """A closing week's reports read the warehouse, not the publication, so the night builds
    them while it publishes (issue 13): here the publication waits until the report has begun
    (in the old order it never would). When the publication fails, the night still waits for
    the report before it leaves the writer lock."""
    day = date(2025, 3, 16)  # a Sunday: 2025-W11 closes
    write_night(build_county(7, 30), Path(str(env.landing)), day, datasets=["XC_HU"])
    real_build, real_publish = flows.nightly.build_report, flows.nightly.publish
    began = threading.Event()
    events: list[str] = []

    def build(conn: Any, period: Any, out_dir: Path, expected: Any = None) -> Any:
        began.set()
        events.append("report began")
        files = real_build(conn, period, out_dir, expected)
        time.sleep(0.5)  # still writing when a failed publication has already raised
        events.append("report ended")
        return files

    def publish(*args: Any, **kwargs: Any) -> Any:
        events.append("publication began")
        assert began.wait(timeout=60), "the report had not begun while the night published"
        if publication == "fails":
            raise OSError("publish folder full")
        done = real_publish(*args, **kwargs)
        events.append("publication ended")
        return done

    monkeypatch.setattr(flows.nightly, "build_report", build)
    monkeypatch.setattr(flows.nightly, "publish", publish)
    if publication == "fails":
        with pytest.raises(OSError, match="publish folder full"):
            run_nightly(day, env)
        assert events[-1] == "report ended"  # waited for before the night ended
        return
    result = run_nightly(day, env)
    assert result.reports == ["周报_2025-W11.html"] and result.report_failures == []
    assert events.index("report began") < events.index("publication ended")
    assert (Path(str(env.publish_dir)) / "XC" / "reports" / "周报_2025-W11.html").exists()


# Every kind of night: an ordinary one, a Sunday, a month's last day, a quarter's last day, a
# Sunday that closes a month, a year's last day; and the Sunday of issue 16 (2026-12-06).
KINDS_OF_DAY = [
    date(2025, 3, 12),
    date(2025, 3, 16),
    date(2025, 3, 31),
    date(2025, 9, 30),
    date(2025, 8, 31),
    date(2025, 12, 31),
    date(2026, 12, 6),
]


@pytest.mark.quick_sample(date(2025, 12, 31), date(2026, 12, 6))
@pytest.mark.postgres_sample(date(2025, 8, 31), date(2026, 12, 6))
@pytest.mark.parametrize("day", KINDS_OF_DAY, ids=str)
def test_a_night_with_only_the_roster_delivered_on_every_kind_of_day(
    env: Settings, hook: _Hook, day: date
) -> None:
    county = build_county(7, 30)
    write_night(county, Path(str(env.landing)), day, datasets=["XC_HU"], defects=False)
    result = run_nightly(day, env)

    assert [s.status for s in result.deliveries] == ["loaded"]
    assert result.publication_id is not None and result.report_failures == []
    expected = [f"{p.name}.html" for p in closing_periods(day)]
    assert result.reports == expected
    reports = Path(str(env.publish_dir)) / "XC" / "reports"
    for name in expected:
        html = (reports / name).read_text("utf-8")
        assert "以下部门尚未报送" in html and "ZJ_FANGWU" in html
        assert (reports / name).with_suffix(".xlsx").stat().st_size > 0
    assert "未生成" not in _messages(hook)


@pytest.mark.parametrize("failing", ["mirror", "alerts"])
def test_the_mirror_beside_the_alerts_fails_the_night_and_is_waited_for(
    env: Settings, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # The lake mirror of the intake's tables runs while the alerts are raised (issue 13). Its
    # failure fails the night before anything is published; when the alerts fail, the night
    # fails too and the mirror beside them has finished its work.
    write_night(build_county(7, 30), Path(str(env.landing)), DAY, defects=False)
    real_mirror, real_alerts = flows.nightly.mirror_to_lake, flows.nightly.raise_alerts
    finished: list[str] = []

    def mirror(conn: Any, lake_root: Path, tables: Any, **kw: Any) -> int:
        names = [t.name for t in tables]
        if failing == "mirror" and "deliveries" in names:
            raise OSError(f"lake full while writing {ID_LIKE}")
        rows = real_mirror(conn, lake_root, tables, **kw)
        finished.append("history" if "deliveries" in names else "derived")
        return rows

    def alerts(conn: Any, *a: Any, **kw: Any) -> Any:
        if failing == "alerts":
            raise RuntimeError("a rule broke")
        return real_alerts(conn, *a, **kw)

    monkeypatch.setattr(flows.nightly, "mirror_to_lake", mirror)
    monkeypatch.setattr(flows.nightly, "raise_alerts", alerts)
    expected = OSError if failing == "mirror" else RuntimeError
    with pytest.raises(expected):
        run_nightly(DAY, env)
    assert _table(env, select(func.count()).select_from(publications)).iloc[0, 0] == 0
    assert finished == ([] if failing == "mirror" else ["history"])
