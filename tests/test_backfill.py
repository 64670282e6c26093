"""Backfills: the plan and its reasons, dry run, range = night-by-night, subsets, catch-up."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import pg_schema_url
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from cli.app import app
from datashare.settings import Settings
from datashare.synth import build_county, redeliver, truncated_snapshot, write_night
from flows.backfill import missed_dates, plan_backfill, run_backfill
from flows.nightly import run_nightly
from tasks.landing import open_landing
from warehouse.db import connect, upgrade
from warehouse.tables import deliveries, history_tables, rejects
from warehouse.tables_ops import backfills, nights, record_night

DATASETS = ["XC_HU", "GA_BIANDONG"]  # a snapshot and an events dataset keep the test quick


@pytest.fixture(scope="module")
def county():  # type: ignore[no-untyped-def]
    return build_county(7, 40)


@pytest.fixture
def second_url(warehouse_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty warehouse on the same backend as `warehouse_url`."""
    if warehouse_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'backfilled.db'}"
        return
    with pg_schema_url() as url:
        yield url


def _use(monkeypatch: pytest.MonkeyPatch, home: Path, url: str, landing: Path) -> Settings:
    """Point the flows (which read Settings at their entry) at one warehouse."""
    for key, value in {
        "HOME": str(home),
        "WAREHOUSE_URL": url,
        "LANDING": str(landing),
        "ENVIRONMENT": "test",
        "SECRET": "s" * 32,
        "BUILD_DOCS": "false",
        "MAX_WORKERS": "2",
    }.items():
        monkeypatch.setenv(f"DATASHARE_{key}", value)
    return Settings()


def _contents(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Ledger (without received_at), rejects and every history table, in a stable order."""
    engine = connect(url)
    out: dict[str, list[tuple[object, ...]]] = {}
    try:
        with engine.connect() as conn:
            cols = [c for c in deliveries.c if c.name not in {"received_at", "location"}]
            out["deliveries"] = [
                tuple(r) for r in conn.execute(select(*cols).order_by(deliveries.c.delivery_id))
            ]
            out["rejects"] = sorted((tuple(r) for r in conn.execute(select(rejects))), key=repr)
            for name, table in history_tables.items():
                out[name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
    finally:
        engine.dispose()
    return out


def _reasons(plan: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(p.exchange_date.isoformat(), p.dataset, p.reason) for p in plan]


def test_plan_says_what_and_why(county, warehouse_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = tmp_path / "landing"
    d0 = county.start
    write_night(county, landing, d0, datasets=["XC_HU", "XC_REN", "MZ_DIBAO", "RS_JIUYE"])
    engine = connect(warehouse_url)
    upgrade(engine)

    def sha(dataset: str, dept: str, ext: str = "csv") -> str:
        path = landing / dept / f"{dataset}_{d0:%Y%m%d}.{ext}"
        matches = list(path.parent.glob(f"{dataset}_{d0:%Y%m%d}.*"))
        return hashlib.sha256(matches[0].read_bytes()).hexdigest()

    def row(dataset: str, status: str, sha256: str) -> dict[str, object]:
        return dict(
            delivery_id=f"{dataset}_{sha256[:12]}",
            dept=dataset[:2],
            dataset=dataset,
            exchange_date=d0,
            source_file=f"{dataset}.csv",
            location="x",
            sha256=sha256,
            received_at=datetime.now(UTC),
            status=status,
            rows_in=1,
            rows_loaded=1,
            rows_rejected=0,
            duplicates=0,
        )

    with engine.begin() as conn:
        conn.execute(
            insert(deliveries),
            [
                row("XC_HU", "loaded", sha("XC_HU", "XC")),  # same bytes: nothing to do
                row("XC_REN", "loaded", "0" * 64),  # other bytes loaded: re-delivered
                row("MZ_DIBAO", "failed", "1" * 64),  # failed before: corrected now
            ],
        )  # RS_JIUYE: missing
    try:
        plan = plan_backfill(engine, open_landing(str(landing)), d0, d0 + timedelta(days=1))
        assert _reasons(plan) == [
            (d0.isoformat(), "MZ_DIBAO", "failed"),
            (d0.isoformat(), "RS_JIUYE", "missing"),
            (d0.isoformat(), "XC_REN", "re-delivered"),
        ]
        forced = plan_backfill(
            engine, open_landing(str(landing)), d0, d0, ["XC_HU", "XC_REN"], force=True
        )
        assert _reasons(forced) == [
            (d0.isoformat(), "XC_HU", "forced"),
            (d0.isoformat(), "XC_REN", "re-delivered"),
        ]
        assert all("身份证" not in p.detail for p in plan)
        with pytest.raises(ValueError, match="未知的数据集"):
            plan_backfill(engine, open_landing(str(landing)), d0, d0, ["NOPE"])
    finally:
        engine.dispose()


def test_dry_run_prints_the_plan_and_changes_nothing(
    prefect_api: None,
    county,
    warehouse_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing = tmp_path / "landing"
    d0 = county.start
    for n in range(2):
        write_night(county, landing, d0 + timedelta(days=n), datasets=["XC_HU"])
    _use(monkeypatch, tmp_path / "home", warehouse_url, landing)
    result = CliRunner().invoke(
        app,
        [
            "backfill",
            "--from",
            d0.isoformat(),
            "--to",
            (d0 + timedelta(days=1)).isoformat(),
            "--dry-run",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "补跑计划" in result.output and "试运行" in result.output
    assert result.output.count("未接收") == 2 and "XC_HU" in result.output
    engine = connect(warehouse_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(deliveries)).first() is None
            assert conn.execute(select(backfills)).first() is None
    finally:
        engine.dispose()
    bad = CliRunner().invoke(app, ["backfill", "--from", "2025-03-12", "--to", "2025-03-10"])
    assert bad.exit_code == 2


@pytest.mark.slow  # ~45 s per backend: two warehouses, three nights, corrections, force
def test_range_run_equals_night_by_night(
    prefect_api: None,
    county,
    warehouse_url: str,
    second_url: str,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing = tmp_path / "landing"
    days = [county.start + timedelta(days=n) for n in range(3)]
    for day in days:
        write_night(county, landing, day, datasets=DATASETS)
    truncated_snapshot(county, landing, "XC_HU", days[1])  # fails its gate that night

    # Night by night, as the schedule would have run them.
    nightly_settings = _use(monkeypatch, tmp_path / "a", warehouse_url, landing)
    for day in days:
        run_nightly(day, nightly_settings)
    # The same range in one backfill, on an empty warehouse.
    backfill_settings = _use(monkeypatch, tmp_path / "b", second_url, landing)
    result = run_backfill(backfill_settings, days[0], days[-1], max_parallel=2)
    assert {r for _, _, r in _reasons(result.plan)} == {"missing"}
    assert result.nights == 3
    assert _contents(warehouse_url) == _contents(second_url)
    status = [c.name for c in deliveries.c if c.name not in {"received_at", "location"}].index(
        "status"
    )
    failed = [r for r in _contents(second_url)["deliveries"] if r[status] == "failed"]
    assert len(failed) == 1  # the truncated snapshot, in both

    # Corrections arrive: a corrected XC_HU for day 1, a re-delivered GA_BIANDONG for day 0.
    redeliver(county, landing, "XC_HU", days[1])
    redeliver(county, landing, "GA_BIANDONG", days[0])
    _use(monkeypatch, tmp_path / "a", warehouse_url, landing)
    for day in days[:2]:  # night-by-night: the nights with new files re-run in turn
        run_nightly(day, nightly_settings)
    backfill_settings = _use(monkeypatch, tmp_path / "b", second_url, landing)
    result = run_backfill(backfill_settings, days[0], days[-1])
    assert _reasons(result.plan) == [
        (days[0].isoformat(), "GA_BIANDONG", "re-delivered"),
        (days[1].isoformat(), "XC_HU", "failed"),
    ]
    assert _contents(warehouse_url) == _contents(second_url)

    # Forced: re-derive XC_HU from the lake; the state does not move.
    result = run_backfill(backfill_settings, days[0], days[-1], datasets=["XC_HU"], force=True)
    assert {r for _, _, r in _reasons(result.plan)} == {"forced"}
    assert _contents(warehouse_url) == _contents(second_url)

    engine = connect(second_url)
    try:
        with engine.connect() as conn:
            audit = conn.execute(select(backfills).order_by(backfills.c.started_at)).all()
            done = conn.execute(select(nights.c.exchange_date)).scalars().all()
    finally:
        engine.dispose()
    assert [a.status for a in audit] == ["completed"] * 3
    assert audit[0].requested_by.startswith("cli:") and audit[0].finished_at is not None
    assert json.loads(audit[1].plan)[0]["reason"] == "re-delivered"
    assert json.loads(audit[2].datasets) == ["XC_HU"] and audit[2].force
    assert sorted(done) == days


@pytest.mark.quick_sample("sqlite")
def test_dataset_subset_only_touches_those_datasets(
    prefect_api: None,
    county,
    warehouse_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing = tmp_path / "landing"
    d0 = county.start
    write_night(county, landing, d0, datasets=DATASETS)
    settings = _use(monkeypatch, tmp_path / "home", warehouse_url, landing)
    result = run_backfill(settings, d0, d0, datasets=["GA_BIANDONG"])
    assert _reasons(result.plan) == [(d0.isoformat(), "GA_BIANDONG", "missing")]
    engine = connect(warehouse_url)
    try:
        with engine.connect() as conn:
            taken = conn.execute(select(deliveries.c.dataset)).scalars().all()
    finally:
        engine.dispose()
    assert taken == ["GA_BIANDONG"]
    again = run_backfill(settings, d0, d0)  # the rest, later
    assert _reasons(again.plan) == [(d0.isoformat(), "XC_HU", "missing")]


def _with_nights(url: str, *done: date) -> Engine:
    engine = connect(url)
    upgrade(engine)
    with engine.begin() as conn:
        for day in done:
            record_night(conn, day, "nightly", datetime.now(UTC))
    return engine


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("all", [date(2025, 3, 12), date(2025, 3, 13), date(2025, 3, 14)]),
        ("latest", [date(2025, 3, 14)]),
        ("skip", []),
    ],
)
def test_catch_up_policies(warehouse_url: str, policy: str, expected: list[date]) -> None:
    # Last completed night 03-11; the machine was down; today 03-16 means D = 03-15.
    engine = _with_nights(warehouse_url, date(2025, 3, 10), date(2025, 3, 11))
    try:
        assert missed_dates(engine, date(2025, 3, 16), policy) == expected  # type: ignore[arg-type]
        assert missed_dates(engine, date(2025, 3, 13), policy) == []  # on time: nothing missed
    finally:
        engine.dispose()


def test_no_catch_up_before_the_first_night(warehouse_url: str) -> None:
    engine = _with_nights(warehouse_url)
    try:
        assert missed_dates(engine, date(2025, 3, 16), "all") == []
        with engine.begin() as conn:
            record_night(conn, date(2025, 3, 1), "nightly", datetime.now(UTC))
        with pytest.raises(ValueError, match="未知的补跑策略"):
            missed_dates(engine, date(2025, 3, 16), "sometimes")  # type: ignore[arg-type]
    finally:
        engine.dispose()
