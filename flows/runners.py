"""The task runner a run uses, chosen by configuration (settings `task_runner`).

    threads  ThreadPoolTaskRunner(max_workers): one machine, the default
    dask     prefect_dask.DaskTaskRunner: the per-dataset tasks run on a Dask cluster — the one
             at `dask_address` (tcp://scheduler:8786), or, with no address, a LocalCluster of
             `max_workers` single-threaded worker processes started for the run

A runner must be attached before the flow is called (`flow.with_options(task_runner=...)`), so
entry points that Prefect starts (deployments, `serve`) read the setting at their entry and call
the nightly flow as a subflow with it: see `nightly_configured` here and
`flows.backfill.scheduled_nightly`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from datashare.settings import Settings, current_settings, use_settings


def task_runner(settings: Settings) -> Any:
    """A fresh task runner for one run, as configured (see the module docstring)."""
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": settings.max_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            },
        )
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)


def run_nightly_configured(
    exchange_date: date,
    settings: Settings,
    *,
    datasets: list[str] | None = None,
    force: list[str] | None = None,
) -> Any:
    """Call the nightly flow with the configured task runner (in a flow: as a subflow)."""
    from flows.nightly import nightly

    with use_settings(settings):  # the nightly flow's entry reads these
        return nightly.with_options(task_runner=task_runner(settings))(
            exchange_date=exchange_date, datasets=datasets, force=force
        )


@flow(
    name="nightly-configured",
    flow_run_name="nightly {exchange_date}（配置的执行器）",
    log_prints=False,
)
def nightly_configured(
    exchange_date: date, datasets: list[str] | None = None, force: list[str] | None = None
) -> int:
    """Run the nightly flow for one date on the configured task runner (threads or Dask)."""
    result = run_nightly_configured(
        exchange_date, current_settings(), datasets=datasets, force=force
    )
    return len(result.deliveries)
