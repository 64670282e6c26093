"""Scale-out: the nightly flow on a local multi-process Dask cluster publishes what threads do."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from sqlalchemy import select

from datashare.settings import Settings
from datashare.synth import build_county, write_night
from flows.runners import run_nightly_configured, task_runner
from warehouse.db import connect
from warehouse.tables import history_tables

DATASETS = ["XC_HU", "MZ_DIBAO", "GA_BIANDONG"]


def _use(monkeypatch: pytest.MonkeyPatch, home: Path, landing: Path, runner: str) -> Settings:
    for key, value in {
        "HOME": str(home),
        "LANDING": str(landing),
        "ENVIRONMENT": "test",
        "SECRET": "s" * 32,
        "BUILD_DOCS": "false",
        "MAX_WORKERS": "2",
        "TASK_RUNNER": runner,
    }.items():
        monkeypatch.setenv(f"DATASHARE_{key}", value)
    monkeypatch.delenv("DATASHARE_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("DATASHARE_DASK_ADDRESS", raising=False)
    return Settings()


def test_runner_follows_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    threads = task_runner(_use(monkeypatch, tmp_path, tmp_path, "threads"))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 2
    local = task_runner(_use(monkeypatch, tmp_path, tmp_path, "dask"))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["processes"]
    monkeypatch.setenv("DATASHARE_DASK_ADDRESS", "tcp://scheduler:8786")
    remote = task_runner(Settings())
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler:8786"


def _published(settings: Settings) -> dict[str, object]:
    publish = Path(str(settings.publish_dir))
    ledger = pq.read_table(publish / "XC" / "deliveries.parquet").drop(["received_at"])
    out: dict[str, object] = {
        "deliveries.parquet": ledger.to_pylist(),
        "rejects.parquet": (publish / "XC" / "rejects.parquet").read_bytes(),
    }
    # Every consumer's published tables; the ledger (received_at is a clock reading) is
    # compared above, and the audit log records run-specific file hashes.
    current = publish / "current"
    for path in sorted(current.rglob("*.parquet")):
        if path.stem not in {"audit_log", "deliveries"}:
            out[str(path.relative_to(current))] = pq.read_table(path).to_pylist()
    assert len(out) > 50
    engine = connect(str(settings.warehouse_url))
    try:
        with engine.connect() as conn:
            for name, table in history_tables.items():
                out[name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
    finally:
        engine.dispose()
    return out


@pytest.mark.slow  # ~35 s: a LocalCluster of two worker processes starts for the run
def test_nightly_on_a_local_dask_cluster_publishes_what_threads_do(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    county = build_county(7, 40)
    landing = tmp_path / "landing"
    write_night(county, landing, county.start, datasets=DATASETS)

    threads = _use(monkeypatch, tmp_path / "threads", landing, "threads")
    by_threads = run_nightly_configured(county.start, threads)
    dask = _use(monkeypatch, tmp_path / "dask", landing, "dask")
    by_dask = run_nightly_configured(county.start, dask)

    assert sorted(s.delivery_id for s in by_dask.deliveries) == sorted(
        s.delivery_id for s in by_threads.deliveries
    )
    assert {s.status for s in by_dask.deliveries} == {"loaded"}
    assert by_dask.alerts.by_rule == by_threads.alerts.by_rule
    assert _published(dask) == _published(threads)
