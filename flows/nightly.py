"""The nightly run: take in every delivery of one exchange date, then publish the ledger.

Each dataset delivered for the date is one Prefect task; tasks run concurrently (they touch
disjoint datasets). A task returns a small summary, never a frame.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from expectations.contract import load_common, load_contracts
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef, open_landing
from warehouse.published import publish_ledger
from warehouse.db import connect, upgrade


class RunConfig(BaseModel):
    """Plain values a run needs, built from Settings at the edge (CLI, deployment)."""

    landing: str
    warehouse_url: str
    lake: str
    publish_dir: str
    gx_root: str
    gx_max_rows: int = 200_000
    build_docs: bool = True
    datasets: list[str] | None = None
    force: list[str] = []
    max_workers: int = 4
    sql_url: str | None = None
    sql_views: dict[str, str] = {}


def is_transient_io(_task: object, _run: object, state: object) -> bool:
    """Retry only IO that can fail transiently (landing, network, database connection)."""
    try:
        state.result()  # type: ignore[attr-defined]
    except (OSError, httpx.TransportError, OperationalError):
        return True
    except Exception:
        return False
    return False


@task(name="discover_deliveries", retries=3, retry_delay_seconds=[2, 10, 30],
      retry_condition_fn=is_transient_io)
def discover_deliveries(config: RunConfig, exchange_date: date) -> list[DeliveryRef]:
    """List the deliveries in the landing area for one exchange date."""
    contracts = load_contracts()
    wanted = [c for name, c in contracts.items() if not config.datasets or name in config.datasets]
    landing = open_landing(config.landing, sql_url=config.sql_url, sql_views=config.sql_views)
    return sorted(landing.discover(exchange_date, wanted),
                  key=lambda r: (r.dataset, r.file_name))


@task(name="take_in_dataset", retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=is_transient_io, task_run_name="take_in {dataset}")
def take_in_dataset(config: RunConfig, dataset: str, refs: list[DeliveryRef]) -> list[IntakeSummary]:
    """Fetch, read, validate and record every delivery of one dataset for the date."""
    contract = load_contracts()[dataset]
    common = load_common()
    landing = open_landing(config.landing, sql_url=config.sql_url, sql_views=config.sql_views)
    engine = connect(config.warehouse_url)
    options = IntakeOptions(
        lake_root=Path(config.lake), gx_root=Path(config.gx_root),
        gx_max_rows=config.gx_max_rows, build_docs=config.build_docs,
        force=dataset in config.force,
    )
    try:
        return [intake_delivery(ref, landing.fetch(ref), contract, common, engine, options)
                for ref in refs]
    finally:
        engine.dispose()


@flow(name="nightly", log_prints=False)
def nightly(exchange_date: date, config: RunConfig) -> list[IntakeSummary]:
    """Take in every department's deliveries for one exchange date and publish the ledger."""
    logger = get_run_logger()
    engine = connect(config.warehouse_url)
    upgrade(engine)
    refs = discover_deliveries(config, exchange_date)
    by_dataset: dict[str, list[DeliveryRef]] = defaultdict(list)
    for ref in refs:
        by_dataset[ref.dataset].append(ref)
    futures = [take_in_dataset.submit(config, ds, rs) for ds, rs in sorted(by_dataset.items())]
    summaries = [s for f in futures for s in f.result()]
    publish_ledger(engine, Path(config.publish_dir))
    engine.dispose()
    logger.info("%s: %d deliveries (%s)", exchange_date, len(summaries),
                ", ".join(f"{k} {v}" for k, v in _count(summaries).items()))
    create_table_artifact(
        key=f"deliveries-{exchange_date:%Y%m%d}",
        table=[{
            "部门": s.dept, "数据集": s.dataset, "文件": s.source_file, "状态": s.status,
            "行数": s.rows_in, "入库": s.rows_loaded, "问题": s.rows_rejected,
            "重复": s.duplicates, "原因": s.reason or "",
        } for s in summaries],
        description=f"交换台账 {exchange_date}（不含个人信息）",
    )
    return summaries


def _count(summaries: list[IntakeSummary]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in summaries:
        counts[s.status] += 1
    return dict(sorted(counts.items()))


def run_nightly(exchange_date: date, config: RunConfig) -> list[IntakeSummary]:
    """Run the nightly flow with the configured number of concurrent dataset tasks."""
    runner = ThreadPoolTaskRunner(max_workers=config.max_workers)
    return nightly.with_options(task_runner=runner)(exchange_date=exchange_date, config=config)
