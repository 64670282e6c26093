"""The nightly run: take in every delivery of one exchange date, merge it, and publish.

    nightly(exchange_date)            the Prefect flow (the deployment's entrypoint)
      discover_deliveries             one task: what the landing area holds for the date
      take_in_dataset × N             one task per dataset, concurrent: read, validate, gate,
                                      record, merge into history (each delivery atomic)
      publish_ledger                  XC/deliveries.parquet and rejects.parquet

Settings are read here, at the flow's entry, from the environment (`DATASHARE_*`): flow
parameters are only what a person chooses for a run (date, datasets, force), so no URL, password
or secret ever lands in Prefect's database or UI. A task returns a small summary, never a frame.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy.exc import OperationalError

from datashare.settings import Settings
from expectations.contract import load_common, load_contracts
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef, open_landing
from warehouse.db import connect, upgrade
from warehouse.published import publish_ledger


class RunConfig(BaseModel):
    """Plain values a run needs, built from Settings at the flow's entry (never a parameter)."""

    model_config = ConfigDict(frozen=True)

    landing: str
    warehouse_url: SecretStr  # may carry a password: repr and logs show '**********'
    lake: str
    publish_dir: str
    gx_root: str
    secret: SecretStr
    gx_max_rows: int = 200_000
    build_docs: bool = True
    datasets: tuple[str, ...] = ()
    force: tuple[str, ...] = ()
    max_workers: int = 4
    sql_url: SecretStr | None = None
    sql_views: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, datasets: list[str] | None = None,
                      force: list[str] | None = None) -> RunConfig:
        return cls(
            landing=str(settings.landing), warehouse_url=SecretStr(str(settings.warehouse_url)),
            lake=str(settings.lake), publish_dir=str(settings.publish_dir),
            gx_root=str(settings.home / "gx"),
            secret=SecretStr(settings.person_key_secret().decode()),
            gx_max_rows=settings.gx_max_rows, build_docs=settings.build_docs,
            datasets=tuple(datasets or ()), force=tuple(force or ()),
            max_workers=settings.max_workers,
            sql_url=SecretStr(settings.landing_sql_url) if settings.landing_sql_url else None,
            sql_views=settings.landing_sql_views,
        )

    def open_landing(self):  # type: ignore[no-untyped-def]
        return open_landing(self.landing, sql_views=self.sql_views,
                            sql_url=self.sql_url.get_secret_value() if self.sql_url else None)


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
      retry_condition_fn=is_transient_io, cache_policy=NO_CACHE)
def discover_deliveries(config: RunConfig, exchange_date: date) -> list[DeliveryRef]:
    """List the deliveries in the landing area for one exchange date."""
    contracts = load_contracts()
    wanted = [c for name, c in contracts.items() if not config.datasets or name in config.datasets]
    return sorted(config.open_landing().discover(exchange_date, wanted),
                  key=lambda r: (r.dataset, r.file_name))


@task(name="take_in_dataset", retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=is_transient_io, task_run_name="take_in {dataset}",
      cache_policy=NO_CACHE)
def take_in_dataset(config: RunConfig, dataset: str, refs: list[DeliveryRef]) -> list[IntakeSummary]:
    """Fetch, read, validate, record and merge every delivery of one dataset for the date."""
    contract = load_contracts()[dataset]
    common = load_common()
    landing = config.open_landing()
    engine = connect(config.warehouse_url.get_secret_value())
    options = IntakeOptions(
        lake_root=Path(config.lake), gx_root=Path(config.gx_root),
        gx_max_rows=config.gx_max_rows, build_docs=config.build_docs,
        force=dataset in config.force, secret=config.secret.get_secret_value().encode(),
    )
    try:
        return [intake_delivery(ref, landing.fetch(ref), contract, common, engine, options)
                for ref in refs]
    finally:
        engine.dispose()


def take_in_night(exchange_date: date, config: RunConfig) -> list[IntakeSummary]:
    """Discover and take in every delivery of one exchange date (inside a flow)."""
    refs = discover_deliveries(config, exchange_date)
    by_dataset: dict[str, list[DeliveryRef]] = defaultdict(list)
    for ref in refs:
        by_dataset[ref.dataset].append(ref)
    futures = [take_in_dataset.submit(config, ds, rs) for ds, rs in sorted(by_dataset.items())]
    return [s for f in futures for s in f.result()]


@flow(name="nightly", log_prints=False)
def nightly(exchange_date: date, datasets: list[str] | None = None,
            force: list[str] | None = None) -> list[IntakeSummary]:
    """Take in every department's deliveries for one exchange date, merge and publish."""
    config = RunConfig.from_settings(Settings(), datasets=datasets, force=force)
    return night(exchange_date, config)


def night(exchange_date: date, config: RunConfig) -> list[IntakeSummary]:
    """The body of the nightly flow, for one date (also used by backfills, inside a flow)."""
    logger = get_run_logger()
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        upgrade(engine)
        summaries = take_in_night(exchange_date, config)
        publish_ledger(engine, Path(config.publish_dir))
    finally:
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


def run_nightly(exchange_date: date, settings: Settings, *, datasets: list[str] | None = None,
                force: list[str] | None = None) -> list[IntakeSummary]:
    """Run the nightly flow in this process with the configured task runner."""
    connect(str(settings.warehouse_url)).dispose()  # unreachable: fail before Prefect starts
    runner = ThreadPoolTaskRunner(max_workers=settings.max_workers)
    return nightly.with_options(task_runner=runner)(
        exchange_date=exchange_date, datasets=datasets, force=force)
