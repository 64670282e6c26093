"""The nightly flow end to end under a real Prefect API, on SQLite and PostgreSQL.

Run twice = identical; a failed delivery and its corrected re-delivery; the CLI's exit codes;
the demo's output is clean.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import inspect, select

from datashare.settings import Settings
from datashare.synth import build_county, truncated_snapshot, write_night
from datashare.synth.county import redeliver
from flows.nightly import run_nightly
from warehouse.db import connect
from warehouse.tables import history_tables

DAY1 = date(2025, 3, 10)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch, prefect_api: None
) -> Settings:
    """Settings as a deployed run reads them: from DATASHARE_* variables."""
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASHARE_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DATASHARE_SECRET", "test-secret-not-for-production-0123456789")
    monkeypatch.setenv("DATASHARE_BUILD_DOCS", "false")
    monkeypatch.setenv("DATASHARE_MAX_WORKERS", "2")
    return Settings()


def _state(settings: Settings) -> dict[str, object]:
    """Everything a run leaves behind, in comparable form (received_at is a clock reading)."""
    engine = connect(str(settings.warehouse_url))
    state: dict[str, object] = {}
    try:
        with engine.connect() as conn:
            ledger = pd.read_sql("select * from deliveries order by delivery_id", conn)
            state["deliveries"] = ledger.drop(columns=["received_at"]).to_csv(index=False)
            state["rejects"] = (
                pd.read_sql("select * from rejects order by delivery_id, source_row, rule", conn)
                .drop(columns=["id"], errors="ignore")
                .to_csv(index=False)
            )
            for name in ("alerts", "alert_days", "freshness"):
                frame = pd.read_sql(f"select * from {name}", conn)
                frame = frame.drop(columns=["received_at"], errors="ignore")
                state[name] = frame.sort_values(list(frame.columns)).to_csv(index=False)
            for name, table in sorted(history_tables.items()):
                keys = [c for c in table.primary_key.columns]
                rows = conn.execute(select(table).order_by(*keys)).all()
                state[name] = [tuple(r) for r in rows]
            state["tables"] = sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    lake = Path(str(settings.lake))
    state["lake"] = {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }
    published = Path(str(settings.publish_dir))
    # Every published table of every consumer, byte for byte (the catalog carries the
    # publication id and XC's audit log grows with each publication: both left out).
    current = published / "current"
    state["published"] = {
        str(p.relative_to(current)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(current.rglob("*.parquet"))
        if p.stem != "audit_log"
    }
    for name in ("deliveries", "rejects"):
        frame = pq.read_table(published / "XC" / f"{name}.parquet").to_pandas()
        state[f"published_{name}"] = frame.drop(columns=["received_at"], errors="ignore").to_csv(
            index=False
        )
    return state


@pytest.mark.quick_sample("sqlite")
def test_the_same_nights_run_twice_change_nothing(env: Settings) -> None:
    county = build_county(11, 40)
    landing = Path(str(env.landing))
    for offset in range(2):
        write_night(county, landing, DAY1 + timedelta(days=offset))
    for offset in range(2):
        run_nightly(DAY1 + timedelta(days=offset), env)
    first = _state(env)
    assert len(first["published"]) > 50  # type: ignore[arg-type]  # 12 consumers' tables
    ledger = pd.read_csv(io.StringIO(str(first["deliveries"])))
    assert len(ledger) >= 16 and (ledger["status"] == "loaded").any()
    assert first["XC_REN"], "the roster was merged into history"

    again = [
        s for offset in range(2) for s in run_nightly(DAY1 + timedelta(days=offset), env).deliveries
    ]
    assert {s.status for s in again} == {"unchanged"}
    assert _state(env) == first


@pytest.mark.quick_sample("postgres")
def test_a_failed_delivery_then_its_corrected_redelivery(env: Settings) -> None:
    county = build_county(12, 40)
    landing = Path(str(env.landing))
    day2 = DAY1 + timedelta(days=1)
    write_night(county, landing, DAY1, datasets=["XC_HU"], defects=False)
    run_nightly(DAY1, env)
    truncated_snapshot(county, landing, "XC_HU", day2, keep_fraction=0.3)
    [failed] = run_nightly(day2, env).deliveries
    assert failed.status == "failed" and failed.rows_loaded == 0
    assert "整批退回" in (failed.reason or "")
    assert failed.rows_in == failed.rows_rejected + failed.duplicates

    published = Path(str(env.publish_dir)) / "XC"
    rejects = pq.read_table(published / "rejects.parquet").to_pandas()
    mine = rejects[rejects["source_file"] == failed.source_file]
    assert list(mine["rule"]) == ["truncated_snapshot"] and mine["source_row"].isna().all()

    redeliver(county, landing, "XC_HU", day2, defects=False)
    [fixed] = run_nightly(day2, env).deliveries
    assert fixed.status == "loaded" and fixed.rows_loaded > 0
    ledger = pq.read_table(published / "deliveries.parquet").to_pandas()
    statuses = ledger.loc[ledger["exchange_date"] == day2, "status"].tolist()
    assert sorted(statuses) == ["failed", "loaded"]
    # History on day 2 holds exactly the keys of the corrected delivery.
    accepted = ledger.loc[ledger["exchange_date"] == day2].query("status == 'loaded'")
    assert len(accepted) == 1
    lake = Path(str(env.lake))
    [parquet] = lake.glob(f"accepted/XC_HU/exchange_date={day2}/{fixed.delivery_id}.parquet")
    keys = set(pq.read_table(parquet).column("household_id").to_pylist())
    engine = connect(str(env.warehouse_url))
    try:
        from warehouse.history import current_rows

        with engine.connect() as conn:
            current = current_rows(conn, "XC_HU", day2)
        assert set(current["household_id"]) == keys and len(keys) == fixed.rows_loaded
    finally:
        engine.dispose()


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=timeout,
    )


def test_cli_exit_codes_give_a_one_line_reason(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()  # an operator's missing landing is refused (exit 2) first
    base = {
        "DATASHARE_HOME": str(tmp_path),
        "DATASHARE_SECRET": "s" * 32,  # production refuses a secret shorter than 32 bytes
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    bad_date = _cli("run", "--date", "2025-13-01", env=base)
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr

    no_secret = {**base, "DATASHARE_SECRET": ""}
    missing = _cli("run", "--date", "2025-03-10", env=no_secret)
    assert missing.returncode == 2 and "DATASHARE_SECRET" in missing.stderr

    unreachable = {**base, "DATASHARE_WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    down = _cli("run", "--date", "2025-03-10", env=unreachable)
    assert down.returncode == 3, down.stderr
    assert "无法连接仓库" in down.stderr and "nobody@127.0.0.1:1/none" in down.stderr
    for result in (bad_date, missing, down):
        assert "Traceback" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # ~110 s on a loaded 2-core machine: `datashare demo` in a subprocess, two nights
def test_demo_output_is_what_a_user_should_see(tmp_path: Path) -> None:
    result = _cli(
        "demo",
        "--households",
        "30",
        "--days",
        "2",
        "--home",
        str(tmp_path / "demo"),
        env={"COLUMNS": "120"},
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "交换台账" in output and "合计" in output
    # Night 2's export is cut short and refused, then re-delivered: its line counts both.
    assert re.search(r"2025-03-11: 交付 退回 1，已入库 [1-9]", output), output
    # The bureau's feedback on night 1's published alerts closes them on night 2.
    assert re.search(r"2025-03-11: .*核查办结累计 [1-9]", output), output
    assert "XC_HECHA" in output
    for noise in (
        "Traceback",
        "ERROR",
        "database is locked",
        "Warning",
        "WARNING",
        "telemetry",
        "analytics",
    ):
        assert noise not in output, f"{noise!r} in demo output:\n{output}"
