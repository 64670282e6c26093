"""`datashare serve`: the nightly schedule on this machine, with no Prefect server to install.

    serve_schedule(settings)          prefect.serve() of two deployments, until interrupted:
      nightly   scheduled_nightly on `schedule_cron` in `schedule_timezone` (02:00 Asia/Shanghai)
      backfill  no schedule: started from the UI or `prefect deployment run backfill/backfill`

Without PREFECT_API_URL it starts a local Prefect API for itself (`prefect server start` on
127.0.0.1, port 4200 or a free one, state in PREFECT_HOME) and stops it on exit: Prefect's
in-process "ephemeral" API does not run the scheduler service, so schedules would never fire.
Nothing to install: the server is part of the prefect package. With PREFECT_API_URL, the same
deployments register on that server. Each flow run executes in
a subprocess of this one, from this working directory. For a server with workers, use
prefect.yaml instead (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from datashare.errors import DatashareError
from datashare.settings import Settings


def serve_schedule(
    settings: Settings,
    *,
    cron: str | None = None,
    interval_seconds: float | None = None,
    limit: int | None = None,
) -> None:
    """Register the deployments and run their schedules in this process until interrupted.

    `interval_seconds` replaces the cron (demos and tests: a run every few seconds).
    """
    from prefect import serve
    from prefect.schedules import Cron, Interval

    from flows.backfill import backfill, scheduled_nightly

    tz = settings.schedule_timezone
    schedule = (
        Interval(timedelta(seconds=interval_seconds), timezone=tz)
        if interval_seconds is not None
        else Cron(cron or settings.schedule_cron, timezone=tz)
    )
    nightly = scheduled_nightly.to_deployment(
        name="nightly",
        tags=["datashare", "nightly"],
        schedule=schedule,
        description="每晚接收前一交换日的全部交付；按 catch_up 补跑漏跑的夜晚。",
    )
    backfill_deployment = backfill.to_deployment(
        name="backfill",
        tags=["datashare", "backfill"],
        description="按日期范围补跑（缺失、失败、重新报送或强制重推）。",
    )
    deployments: list[Any] = [nightly, backfill_deployment]  # sync flows: not coroutines
    with local_api(settings.home / "prefect") as api_url:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        print(f"Prefect API: {api_url}", flush=True)
        with temporary_settings({PREFECT_API_URL: api_url}):
            serve(*deployments, limit=limit, print_starting_message=False)


def _port(preferred: int = 4200) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_api(prefect_home: Path, *, timeout: float = 120) -> Iterator[str]:
    """PREFECT_API_URL if set; otherwise a local Prefect server for the duration."""
    if url := os.environ.get("PREFECT_API_URL"):
        yield url
        return
    port = _port()
    url = f"http://127.0.0.1:{port}/api"
    prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(prefect_home.resolve())}
    prefect_cli = Path(sys.executable).with_name("prefect")
    log = (prefect_home / "server.log").open("ab")
    server = subprocess.Popen(
        [str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise DatashareError(f"本地 Prefect 服务未能启动：原因见 {log.name}")
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = url  # flow runs are subprocesses: they inherit it
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
