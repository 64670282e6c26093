"""Running it for real: prefect.yaml deploys, `datashare serve` runs the nightly, IO retries."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from prefect import flow
from sqlalchemy import select

from datashare.errors import LayoutError
from datashare.settings import Settings
from datashare.synth import build_county, write_night
from flows.nightly import RunConfig, take_in_dataset
from tasks.landing import open_landing
from tasks.reports import closing_periods
from warehouse.db import connect
from warehouse.tables import deliveries
from warehouse.tables_ops import nights

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _end_group(pgid: int) -> None:
    """Kill what is left of a process group the test started (flow runs serve spawned and
    that outlive it would otherwise keep running after the test)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A temporary Prefect server (own PREFECT_HOME, free port); yields the env to reach it."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_KEY", None)
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Prefect server did not start in 120 s"
            time.sleep(0.5)
        yield env
    finally:
        _stop(server, signal.SIGTERM)
        log.close()


@pytest.mark.slow  # ~60 s: starts a real Prefect server and runs `prefect deploy --all`
def test_prefect_yaml_deploys_to_a_temporary_server(
    prefect_server: dict[str, str], tmp_path: Path
) -> None:
    env = {**prefect_server, "DATASHARE_ROOT": str(ROOT)}
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    expected = {"nightly", "backfill", "report"}
    if not (ROOT / "flows" / "report.py").exists():
        # The report flow is another engineer's; deploy it once it exists.
        spec["deployments"] = [d for d in spec["deployments"] if d["name"] != "report"]
        expected.discard("report")
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))

    pool = subprocess.run(
        [PREFECT, "work-pool", "create", "datashare", "--type", "process"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    api = env["PREFECT_API_URL"]
    found = {
        d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    }
    assert set(found) == expected
    nightly = found["nightly"]
    assert nightly["entrypoint"] == "flows/backfill.py:scheduled_nightly"
    assert nightly["work_pool_name"] == "datashare"
    assert set(nightly["tags"]) == {"datashare", "nightly"}
    assert nightly["parameters"] == {"catch_up": "all"}
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "Asia/Shanghai"
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    ]
    backfill = found["backfill"]
    assert backfill["entrypoint"] == "flows/backfill.py:backfill"
    assert backfill["parameters"]["dry_run"] is True
    assert {"date_from", "date_to"} <= set(backfill["parameter_openapi_schema"]["required"])


def _yesterday_in_shanghai() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)


@pytest.mark.slow  # ~40 s: `datashare serve` starts its own Prefect API and runs a nightly
def test_serve_starts_and_runs_the_nightly(tmp_path: Path) -> None:
    # The schedule itself triggers the run (every 5 s here instead of 02:00). With SQLAlchemy
    # 2.1, Prefect 3.8.8's scheduler could not insert scheduled runs ("Can't evaluate bulk DML
    # statement"): this test is what found it, and why the lock pins SQLAlchemy 2.0.
    # The scheduled run takes yesterday from the clock of the process serve starts, so the date
    # cannot be pinned here: whatever kind of day it is (a Sunday or a month's last day closes a
    # report over a county with one dataset, issue 16), the night must complete.
    # tests/test_night_failures.py runs the same night on each kind of day with pinned dates.
    day = _yesterday_in_shanghai()
    county = build_county(7, 30)
    home = tmp_path / "home"
    write_night(county, home / "landing", day, datasets=["XC_HU"])
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DATASHARE_HOME": str(home),
        "DATASHARE_ENVIRONMENT": "test",
        "DATASHARE_SECRET": "s" * 32,
        "DATASHARE_BUILD_DOCS": "false",
        "PYTHONPATH": str(ROOT),
    }
    for key in (
        "PREFECT_API_URL",
        "DATASHARE_WAREHOUSE_URL",
        "DATASHARE_LANDING",
        "DATASHARE_TASK_RUNNER",
    ):
        env.pop(key, None)  # no server configured: serve must stand on its own
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    serve = subprocess.Popen(
        # One run at a time: on a loaded machine a run takes longer than the interval, and
        # runs started every 5 s would pile up and starve each other.
        [sys.executable, "-m", "cli", "serve", "--interval", "5", "--limit", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the runs and API it starts end with it
    )
    try:
        api = _wait_for(lambda: _api_url(log_path), 120, serve, log_path)
        _wait_for(lambda: _deployment_id(api), 60, serve, log_path)
        run = _wait_for(lambda: _completed_run(api), 240, serve, log_path)
        assert run["auto_scheduled"], "the run was created by the schedule, not by hand"
    finally:
        _stop(serve)
        _end_group(serve.pid)
        log.close()
    engine = connect(f"sqlite:///{home / 'warehouse.db'}")
    try:
        with engine.connect() as conn:
            assert day in conn.execute(select(nights.c.exchange_date)).scalars().all()
            taken = conn.execute(select(deliveries.c.dataset, deliveries.c.status)).all()
    finally:
        engine.dispose()
    assert [tuple(t) for t in taken] == [("XC_HU", "loaded")]
    reports = home / "published" / "XC" / "reports"
    for period in closing_periods(day):
        assert (reports / f"{period.name}.html").is_file(), f"{period.label} closes on {day}"


def _api_url(log_path: Path) -> str | None:
    found = re.search(r"Prefect API: (\S+)", log_path.read_text(errors="replace"))
    return found.group(1) if found else None


def _deployment_id(api: str) -> str | None:
    try:
        found = httpx.get(f"{api}/deployments/name/scheduled-nightly/nightly", timeout=10)
    except httpx.TransportError:  # a loaded machine (timeout, refused): ask again, bounded
        return None
    return found.json()["id"] if found.status_code == 200 else None


def _completed_run(api: str) -> dict[str, Any] | None:
    try:
        response = httpx.post(
            f"{api}/flow_runs/filter",
            timeout=10,
            json={
                "flow_runs": {
                    "state": {"type": {"any_": ["COMPLETED"]}},
                    "parent_task_run_id": {"is_null_": True},
                },
                "flows": {"name": {"any_": ["scheduled-nightly"]}},
            },
        )
    except httpx.TransportError:  # a loaded machine (timeout, refused): ask again, bounded
        return None
    if response.status_code != 200:  # a busy server answers 503: ask again
        return None
    runs = response.json()
    return runs[0] if runs else None


def _wait_for(probe: Any, seconds: float, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while (found := probe()) is None:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    return found


# --- retries: IO only ----------------------------------------------------------------------


class _FlakyLanding:
    """A landing whose first fetch fails with `error`, then serves the real bytes."""

    def __init__(self, url: str, error: Exception) -> None:
        self.real = open_landing(url)
        self.error: Exception | None = error
        self.fetches = 0

    def discover(self, exchange_date: date, contracts: Any) -> Any:
        return self.real.discover(exchange_date, contracts)

    def fetch(self, ref: Any) -> bytes:
        self.fetches += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.real.fetch(ref)


def _config(tmp_path: Path) -> RunConfig:
    # RunConfig has no defaults of its own: it is made from Settings (issue 12).
    settings = Settings(
        home=tmp_path,
        landing=str(tmp_path / "landing"),
        warehouse_url=f"sqlite:///{tmp_path / 'warehouse.db'}",
        lake=str(tmp_path / "lake"),
        publish_dir=tmp_path / "published",
        secret="s" * 32,  # type: ignore[arg-type]
        environment="test",
        build_docs=False,
    )
    return RunConfig.from_settings(settings)


@pytest.mark.parametrize(
    "error, retried",
    [
        (ConnectionResetError("landing went away"), True),  # transient IO: retried, then loaded
        (LayoutError("缺少必需列", dataset="XC_HU"), False),  # a validation failure: never retried
    ],
)
def test_only_transient_io_is_retried(
    prefect_api: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    retried: bool,
) -> None:
    from expectations.contract import load_contracts
    from warehouse.db import upgrade

    county = build_county(7, 20)
    write_night(county, tmp_path / "landing", county.start, datasets=["XC_HU"])
    config = _config(tmp_path)
    engine = connect(config.warehouse_url.get_secret_value())
    upgrade(engine)
    engine.dispose()
    landing = _FlakyLanding(config.landing, error)
    monkeypatch.setattr(RunConfig, "open_landing", lambda self: landing)
    [ref] = landing.discover(county.start, [load_contracts()["XC_HU"]])
    fast = take_in_dataset.with_options(retry_delay_seconds=0)  # same retries and condition

    @flow
    def one() -> Any:
        return fast(config, "XC_HU", [ref])

    if retried:
        [summary] = one()
        assert summary.status == "loaded" and landing.fetches == 2
    else:
        with pytest.raises(LayoutError):
            one()
        assert landing.fetches == 1
