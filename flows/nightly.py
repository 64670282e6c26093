"""The nightly run: take in every delivery of one exchange date, merge it, and publish.

Over 600 lines on purpose: the one place that wires a night's tasks in order, with the run's
configuration, artifacts and state message beside the tasks they describe; the work is below.

    nightly(exchange_date)            the Prefect flow (the deployment's entrypoint)
      discover_deliveries             one task: what the landing area holds for the date
      take_in_dataset × N             one task per dataset, concurrent: read, validate, gate,
                                      record, merge into history (each delivery atomic)
      mirror_history                  the merged history, ledger, identity as Parquet in the
                                      lake, concurrent with the next two
      raise_alerts                    every rule of rules.md as of the date; lifecycle
      check_freshness                 expected deliveries: on time, late, missing, failed
      mirror_to_lake                  alerts and freshness as Parquet in the lake
      publish                         every consumer's files (and PostgreSQL schemas)
      build_reports                   周报/月报 when a week or month closes on the date,
                                      beside the publication (they read the warehouse)
    all under the warehouse's writer lock; then artifacts and notifications.

What the operator sees (issue 14): the run is named by kind and date (`nightly 2025-03-16`);
one progress line per stage in the run's log (counts only; `progress`, shown live by the CLI);
a night with missing or refused deliveries ends Completed with a Chinese message in counts and
tags (`night_marks`: missing-delivery, refused-delivery, late-delivery, report-failed); the
artifacts link to what exists, as absolute file:// URLs.

A failure that belongs to one part does not take the night down: an unexpected error in one
delivery fails that delivery (tasks.intake), and a report that cannot be built is recorded in
the NightResult, an artifact and the notification (class only) while the publication stands;
`datashare report --week/--month` rebuilds it.

Settings are read here, at the flow's entry (`current_settings()`: the caller's, e.g. the CLI's,
or else the environment's `DATASHARE_*`): flow parameters are only what a person chooses for a
run (date, datasets, force), so no URL, password or secret ever lands in Prefect's database or
UI. A task returns a small summary, never a frame.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy.exc import OperationalError

from datashare.settings import Settings, current_settings, use_settings
from domain.labels import label
from expectations.contract import load_common, load_contracts
from flows.preflight import checked
from tasks.alerts import (
    AlertSummary,
    evaluated_dates,
    facts_read_once,
    raise_alerts,
    rebuild_alerts,
)
from tasks.freshness import check_freshness
from tasks.gx_offline import docs_index_path
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef, discover_and_record, open_landing
from tasks.notify import notify_night
from tasks.publication import Publication, Retention, SqlTarget, publish, read_ahead
from tasks.read import SPREADSHEET_FORMATS, ReadLimits
from tasks.reports import build_report, closing_periods
from warehouse.db import connect, upgrade
from warehouse.lock import writer_lock
from warehouse.mirror import mirror_tables, mirror_to_lake
from warehouse.tables_ops import night_landing_issues, record_night

# The `extra` key that marks a progress line of a run's log (the CLI shows these live).
PROGRESS = "datashare_progress"


def progress(message: str, *args: object) -> None:
    """One progress line in the current run's log: a stage and its counts, never personal data."""
    get_run_logger().info(message, *args, extra={PROGRESS: True})


class RunConfig(BaseModel):
    """Plain values a run needs, built from Settings at the flow's entry (never a parameter).

    Only `from_settings` makes one: no field has a default of its own (the defaults are
    Settings'), except the run's own choices, `datasets` and `force`.
    """

    model_config = ConfigDict(frozen=True)

    landing: str
    warehouse_url: SecretStr  # may carry a password: repr and logs show '**********'
    lake: str
    publish_dir: str
    gx_root: str
    secret: SecretStr
    gx_max_rows: int
    build_docs: bool
    max_workers: int
    sql_url: SecretStr | None
    sql_views: dict[str, str]
    notify_urls: tuple[SecretStr, ...]  # Apprise URLs carry tokens
    lock_wait_seconds: float
    province: str
    publish_keep_days: int
    publish_keep_month_ends: int
    publish_reader_grace_seconds: float
    publish_workers: int
    pg_schema_prefix: str
    pg_role_prefix: str
    read_limits: ReadLimits
    datasets: tuple[str, ...] = ()  # the run's choice: only these datasets
    force: tuple[str, ...] = ()  # the run's choice: accept these truncated-looking snapshots

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        datasets: list[str] | None = None,
        force: list[str] | None = None,
    ) -> RunConfig:
        return cls(
            landing=str(settings.landing),
            warehouse_url=SecretStr(str(settings.warehouse_url)),
            lake=str(settings.lake),
            publish_dir=str(settings.publish_dir),
            gx_root=str(settings.home / "gx"),
            secret=SecretStr(settings.person_key_secret().decode()),
            gx_max_rows=settings.gx_max_rows,
            build_docs=settings.build_docs,
            datasets=tuple(datasets or ()),
            force=tuple(force or ()),
            max_workers=settings.max_workers,
            sql_url=SecretStr(settings.landing_sql_url) if settings.landing_sql_url else None,
            sql_views=settings.landing_sql_views,
            notify_urls=tuple(SecretStr(u) for u in settings.notify_urls),
            lock_wait_seconds=settings.lock_wait_seconds,
            province=settings.province,
            publish_keep_days=settings.publish_keep_days,
            publish_keep_month_ends=settings.publish_keep_month_ends,
            publish_reader_grace_seconds=settings.publish_reader_grace_seconds,
            publish_workers=settings.publish_workers,
            pg_schema_prefix=settings.pg_schema_prefix,
            pg_role_prefix=settings.pg_role_prefix,
            read_limits=ReadLimits(
                max_columns=settings.read_max_columns,
                max_cells=settings.read_max_cells,
                max_field_chars=settings.read_max_field_chars,
                max_json_depth=settings.read_max_json_depth,
                max_unzipped_bytes=settings.read_max_unzipped_mb << 20,
                worker_memory_bytes=settings.read_worker_memory_mb << 20,
                worker_timeout_seconds=settings.read_worker_timeout_seconds,
            ),
        )

    def sql_target(self) -> SqlTarget:
        return SqlTarget(schema_prefix=self.pg_schema_prefix, role_prefix=self.pg_role_prefix)

    def open_landing(self):  # type: ignore[no-untyped-def]
        return open_landing(
            self.landing,
            sql_views=self.sql_views,
            sql_url=self.sql_url.get_secret_value() if self.sql_url else None,
        )


def is_transient_io(_task: object, _run: object, state: object) -> bool:
    """Retry only IO that can fail transiently (landing, network, database connection)."""
    try:
        state.result()  # type: ignore[attr-defined]
    except (OSError, httpx.TransportError, OperationalError):
        return True
    except Exception:
        return False
    return False


@task(
    name="discover_deliveries",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=is_transient_io,
    cache_policy=NO_CACHE,
)
def discover_deliveries(config: RunConfig, exchange_date: date) -> list[DeliveryRef]:
    """List the deliveries in the landing area for one exchange date."""
    contracts = load_contracts()
    wanted = [c for name, c in contracts.items() if not config.datasets or name in config.datasets]
    return sorted(
        discover_and_record(
            config.open_landing(), exchange_date, wanted, config.warehouse_url.get_secret_value()
        ),
        key=lambda r: (r.dataset, r.file_name),
    )


@task(
    name="take_in_dataset",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=is_transient_io,
    task_run_name="take_in {dataset}",
    cache_policy=NO_CACHE,
)
def take_in_dataset(
    config: RunConfig, dataset: str, refs: list[DeliveryRef]
) -> list[IntakeSummary]:
    """Fetch, read, validate, record and merge every delivery of one dataset for the date."""
    contract = load_contracts()[dataset]
    common = load_common()
    landing = config.open_landing()
    engine = connect(config.warehouse_url.get_secret_value())
    options = IntakeOptions(
        lake_root=Path(config.lake),
        gx_root=Path(config.gx_root),
        gx_max_rows=config.gx_max_rows,
        build_docs=config.build_docs,
        force=dataset in config.force,
        secret=config.secret.get_secret_value().encode(),
        read_limits=config.read_limits,
    )
    try:
        return [
            intake_delivery(ref, landing.fetch(ref), contract, common, engine, options)
            for ref in refs
        ]
    finally:
        engine.dispose()


def take_in_night(exchange_date: date, config: RunConfig) -> list[IntakeSummary]:
    """Discover and take in every delivery of one exchange date (inside a flow)."""
    refs = discover_deliveries(config, exchange_date)
    by_dataset: dict[str, list[DeliveryRef]] = defaultdict(list)
    for ref in refs:
        by_dataset[ref.dataset].append(ref)
    progress("%s 发现交付：%d 个文件，%d 个数据集", exchange_date, len(refs), len(by_dataset))
    # The longest intakes start first (a roster workbook, read in a worker, takes as long as
    # a dozen CSV files): started last, it left the other threads idle while the night
    # waited for it. Results are gathered in name order whatever the order of starting.
    submitted = {
        ds: take_in_dataset.submit(config, ds, by_dataset[ds])
        for ds in sorted(by_dataset, key=lambda ds: (-intake_work(by_dataset[ds]), ds))
    }
    futures = [(ds, rs, submitted[ds]) for ds, rs in sorted(by_dataset.items())]
    summaries: list[IntakeSummary] = []
    for dataset, dataset_refs, future in futures:
        try:
            taken = future.result()
        except Exception as exc:
            # intake_delivery records any delivery's own error; what reaches here is transient
            # IO that outlasted its retries (landing or warehouse). The other datasets go on.
            taken = _task_failed(dataset, dataset_refs, exc)
        summaries += taken
        progress(
            "接收 %s %s：%s；%d 行，入库 %d，问题 %d，重复 %d",
            taken[0].dept if taken else "",
            dataset,
            _statuses(taken),
            sum(s.rows_in for s in taken),
            sum(s.rows_loaded for s in taken),
            sum(s.rows_rejected for s in taken),
            sum(s.duplicates for s in taken),
        )
    return summaries


# A workbook's byte costs about four times a CSV byte to take in (its cells are unzipped,
# parsed and converted in Python; CSV is parsed by Arrow's threads): the city's 48 MB roster
# workbook took ~25 s, a 40 MB CSV a few seconds.
WORKBOOK_WEIGHT = 4
SPREADSHEETS = tuple(f".{ext}" for ext in SPREADSHEET_FORMATS)


def intake_work(refs: list[DeliveryRef]) -> int:
    """How long a dataset's deliveries take to take in, roughly: their bytes, a workbook's
    weighed (0 where the landing did not list sizes: those start after the rest)."""
    return sum(
        (r.size or 0) * (WORKBOOK_WEIGHT if r.file_name.lower().endswith(SPREADSHEETS) else 1)
        for r in refs
    )


def _statuses(summaries: list[IntakeSummary]) -> str:
    """Counts by ledger status, in Chinese (`已入库 2，退回 1`), or 无."""
    return "，".join(f"{label('ledger', k)} {v}" for k, v in _count(summaries).items()) or "无"


def _task_failed(dataset: str, refs: list[DeliveryRef], exc: BaseException) -> list[IntakeSummary]:
    """Summaries (no ledger row: the warehouse or landing could not be reached) for the
    deliveries of a take_in task that failed after its retries; the error's class only."""
    get_run_logger().error(
        "take_in %s failed after its retries (%s); the night goes on without it",
        dataset,
        type(exc).__name__,
    )
    dept = load_contracts()[dataset].dept
    reason = f"接收任务重试后仍失败（{type(exc).__name__}），未入库；请检查交换区和仓库连接后重跑"
    return [
        IntakeSummary("", dept, dataset, r.exchange_date, r.file_name, "failed", 0, 0, 0, 0, reason)
        for r in refs
    ]


@task(name="raise_alerts", cache_policy=NO_CACHE)
def raise_alerts_task(
    config: RunConfig, exchange_date: date, rebuilt_from: date | None
) -> AlertSummary:
    """Compare the departments' data as of the date and update the alerts (rules.md).

    Re-running a past date, or a delivery that rewrote history from an earlier date, re-derives
    every evaluated night from there to the latest, in order: the same alerts with the same
    dates as if the nights had run in turn.
    """
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with engine.begin() as conn:
            latest = max(evaluated_dates(conn), default=exchange_date)
            start = min(rebuilt_from or exchange_date, exchange_date)
            if start >= latest:
                return raise_alerts(conn, exchange_date, province=config.province)
            end = max(latest, exchange_date)
            dates = {d for d in evaluated_dates(conn) if start <= d <= end} | {exchange_date}
            summaries = rebuild_alerts(conn, start, end, province=config.province, dates=dates)
            return next(s for s in summaries if s.as_of == exchange_date)
    finally:
        engine.dispose()


FRESHNESS_SHOWN = ("dept", "dataset", "state")


@task(name="check_freshness", cache_policy=NO_CACHE)
def check_freshness_task(config: RunConfig, exchange_date: date) -> list[dict[str, str]]:
    """Judge the expected deliveries of the date (on time, late, missing, failed).

    Returns one small record per expected delivery (dept, dataset, state), not the frame.
    """
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with engine.begin() as conn:
            judged = check_freshness(
                conn, exchange_date, datetime.now(UTC), datasets=config.datasets
            )
    finally:
        engine.dispose()
    return judged[list(FRESHNESS_SHOWN)].astype(str).to_dict("records")


@task(name="mirror_history", cache_policy=NO_CACHE)
def mirror_history_task(config: RunConfig, datasets: list[str]) -> int:
    """Mirror what the intake wrote into the lake as Parquet: the history of the datasets it
    merged, the ledger and identity. Runs while the alerts are raised: it reads only what
    the intake committed, and its reads (SQLite's C, Arrow) and Parquet writes leave the
    interpreter to the alerts (issue 13: 14 s of a city's ordinary night)."""
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with engine.connect() as conn:
            return mirror_to_lake(
                conn, Path(config.lake), mirror_tables(datasets, "intake"), merged=datasets
            )
    finally:
        engine.dispose()


@task(name="profiles_ahead", cache_policy=NO_CACHE)
def profiles_ahead_task(config: RunConfig, exchange_date: date) -> int | None:
    """Read the profiles for the night's publication while the alerts are raised: person_profile
    and all of household_profile but its open alerts read no alert, and the publication takes
    these readings (tasks.publication.read_ahead). The rules are pandas on one core; the
    profiles' reads and joins, in SQLite's C, DuckDB and Arrow, take the other (issue 13:
    about 13 s of a city night's publication).

    The date is the one the publication will be as of (the latest evaluated night, tonight
    among them). A failure here costs only the reading: it is logged (its class; the text may
    quote a value) and the publication reads the profiles itself, failing there if it must."""
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with engine.connect() as conn:
            as_of = max([*evaluated_dates(conn), exchange_date])
            return read_ahead(conn, as_of)
    except Exception as exc:
        get_run_logger().warning("提前读取画像未成功（%s），发布时将重新读取", type(exc).__name__)
        return None
    finally:
        engine.dispose()


def _in_this_process() -> bool:
    """Whether the flow's submitted tasks run in this process (threads, not Dask workers)."""
    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, ThreadPoolTaskRunner)


@task(name="mirror_to_lake", cache_policy=NO_CACHE)
def mirror_task(config: RunConfig, alerts_from: date) -> int:
    """Mirror the alerts and freshness into the lake as Parquet (the alert dates from
    `alerts_from`), after the steps that write them."""
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with engine.connect() as conn:
            return mirror_to_lake(
                conn, Path(config.lake), mirror_tables(part="derived"), alerts_from=alerts_from
            )
    finally:
        engine.dispose()


@task(name="publish", cache_policy=NO_CACHE)
def publish_task(config: RunConfig, as_of: date, actor: str) -> Publication:
    """Publish the shared dataset to every consumer (files, and PostgreSQL schemas)."""
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        return publish(
            engine,
            Path(config.publish_dir),
            as_of=as_of,
            actor=actor,
            secret=config.secret.get_secret_value().encode(),
            retention=Retention(
                nights=config.publish_keep_days,
                month_ends=config.publish_keep_month_ends,
                grace_seconds=config.publish_reader_grace_seconds,
            ),
            workers=config.publish_workers,
            sql=config.sql_target(),
        )
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ReportFailure:
    """A report the night could not build: its period and the error's class (its text may
    quote a value, so it is logged only as a class and rebuilt with `datashare report`)."""

    period: str  # 2025-W11 | 2025-03
    kind: str  # week | month
    error: str  # the exception's class name

    @property
    def command(self) -> str:
        return f"datashare report --{self.kind} {self.period}"


@task(name="build_reports", cache_policy=NO_CACHE)
def build_reports_task(
    config: RunConfig, exchange_date: date
) -> tuple[list[str], list[ReportFailure]]:
    """The weekly and monthly reports whose period closes on this date.

    Each period is built on its own: one that fails is returned as a ReportFailure (and the
    others are still built), never raised, so the night's publication stands.
    """
    periods = closing_periods(exchange_date)
    if not periods:
        return [], []
    logger = get_run_logger()
    built: list[str] = []
    failures: list[ReportFailure] = []
    engine = connect(config.warehouse_url.get_secret_value())
    out_dir = Path(config.publish_dir) / "XC" / "reports"
    try:
        for period in periods:
            try:
                with engine.connect() as conn:
                    built.append(build_report(conn, period, out_dir).html.name)
            except Exception as exc:  # a report must not fail the night (issue 16)
                failure = ReportFailure(period.label, period.kind, type(exc).__name__)
                failures.append(failure)
                logger.error(
                    "report %s failed (%s); the night goes on; rebuild with `%s`",
                    period.label,
                    failure.error,
                    failure.command,
                )
    finally:
        engine.dispose()
    return built, failures


@dataclass(frozen=True)
class NightResult:
    """What one night did: counts and ids only (it is shown in the UI and the CLI)."""

    exchange_date: date
    deliveries: list[IntakeSummary]
    alerts: AlertSummary
    freshness: dict[str, int]
    publication_id: str | None
    reports: list[str]
    report_failures: list[ReportFailure] = field(default_factory=list)
    landing_issues: int = 0  # files of the night's landing area refused before intake
    missing_depts: tuple[str, ...] = ()  # departments with an expected delivery missing


@dataclass(frozen=True)
class RunMarks:
    """How a run's end is marked in Prefect: its final state's message and its tags."""

    message: str
    tags: tuple[str, ...]


def night_marks(results: list[NightResult], lead: str = "已完成") -> RunMarks:
    """The message and tags of a run over these nights, in counts (never names or values).

    `已完成：2 个部门未报送（3 个数据集缺报），1 个文件被拒收`; a clean night says so.
    """
    missing_depts = {d for r in results for d in r.missing_depts}
    missing = sum(r.freshness.get("missing", 0) for r in results)
    late = sum(r.freshness.get("late", 0) for r in results)
    refused = sum(r.landing_issues for r in results) + sum(
        1 for r in results for s in r.deliveries if s.status == "failed"
    )
    failed_reports = sum(len(r.report_failures) for r in results)
    parts: list[str] = []
    tags: list[str] = []
    if missing:
        parts.append(f"{len(missing_depts)} 个部门未报送（{missing} 个数据集缺报）")
        tags.append("missing-delivery")
    if refused:
        parts.append(f"{refused} 个文件被拒收")
        tags.append("refused-delivery")
    if late:
        parts.append(f"{late} 个数据集迟报")
        tags.append("late-delivery")
    if failed_reports:
        parts.append(f"{failed_reports} 份报告未生成")
        tags.append("report-failed")
    loaded = sum(1 for r in results for s in r.deliveries if s.status == "loaded")
    text = "，".join(parts) if parts else f"全部正常，{loaded} 个交付入库"
    return RunMarks(f"{lead}：{text}", tuple(tags))


def mark_run(marks: RunMarks) -> None:
    """Add the marks' tags to the current flow run (`prefect.tags` only tags runs created
    inside it; the API's update replaces the tags, so the run's own are kept)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not marks.tags or not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)
            client.update_flow_run(run.id, tags=sorted({*run.tags, *marks.tags}))
    except Exception as exc:  # the night is done and published: a tag must not fail it
        get_run_logger().warning("could not tag the run (%s)", type(exc).__name__)


def completed(result: object, marks: RunMarks) -> Any:
    """The flow's final state: Completed with the marks' message, holding `result`.

    Prefect uses a returned State as the run's final state and hands callers its data, so
    `nightly(...)` still returns the NightResult (and `return_state=True` its state).
    """
    mark_run(marks)
    return Completed(message=marks.message, data=result)


@flow(name="nightly", flow_run_name="nightly {exchange_date}", log_prints=False)
def nightly(
    exchange_date: date, datasets: list[str] | None = None, force: list[str] | None = None
) -> NightResult:
    """Take in every department's deliveries for one exchange date, merge, alert and publish."""
    config = RunConfig.from_settings(
        checked(current_settings(), datasets, force), datasets=datasets, force=force
    )
    result = night(exchange_date, config)
    return cast(NightResult, completed(result, night_marks([result])))


def _alerts_and_freshness(
    config: RunConfig, exchange_date: date, rebuilt: date | None
) -> tuple[AlertSummary, pd.DataFrame, dict[Any, int]]:
    """Raise the night's alerts, then judge freshness (what the deliveries step leaves)."""
    alerts = raise_alerts_task(config, exchange_date, rebuilt)
    progress(
        "预警：未结 %d，新增 %d，重新打开 %d，解除 %d",
        alerts.open,
        alerts.new,
        alerts.reopened,
        alerts.resolved,
    )
    judged = cast(list[dict[str, str]], check_freshness_task(config, exchange_date))
    fresh = pd.DataFrame(judged, columns=list(FRESHNESS_SHOWN))
    states = fresh["state"].value_counts().to_dict() if len(fresh) else {}
    progress(
        "应报交付：%s",
        "，".join(f"{label('freshness', k)} {v}" for k, v in sorted(states.items()))
        or "今日无应报",
    )
    return alerts, fresh, states


def night(exchange_date: date, config: RunConfig, *, kind: str = "nightly") -> NightResult:
    """The body of the nightly flow for one date (also run by backfills, inside their flow).

    Holds the warehouse's writer lock throughout: take in → alerts → freshness (the lake
    mirror of what the intake wrote, and the profiles for the publication, meanwhile) →
    mirror of the alerts → publication (and the reports of a closing week or month,
    meanwhile).
    Notifications go out after the lock is released.
    """
    logger = get_run_logger()
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        with (
            writer_lock(
                engine, owner=f"{kind} {exchange_date}", wait_seconds=config.lock_wait_seconds
            ),
            facts_read_once(),  # the alerts and the profiles read the same facts once
            ExitStack() as waits,  # what is read ahead: waited for before the lock is left
        ):
            upgrade(engine)
            summaries = take_in_night(exchange_date, config)
            merged = sorted({s.dataset for s in summaries if s.status == "loaded"})
            progress("合并入历史：%d 个数据集（%s）", len(merged), _statuses(summaries))
            rebuilt = min((s.rebuilt_from for s in summaries if s.rebuilt_from), default=None)
            mirrored = mirror_history_task.submit(config, merged)
            # Only when history changed tonight: with nothing merged the publication mostly
            # links what it has (an unchanged re-run), and reads the profiles itself if not.
            # On a Dask worker the reading would be another process's.
            if merged and _in_this_process():
                ahead = profiles_ahead_task.submit(config, exchange_date)
                waits.callback(ahead.wait)  # the publication may start before it is done
            try:
                alerts, fresh, states = _alerts_and_freshness(config, exchange_date, rebuilt)
            finally:
                mirrored.wait()  # never leave the lock with the mirror still writing
            mirrored.result()
            mirror_task(config, min(rebuilt or exchange_date, exchange_date))
            with engine.connect() as conn:
                as_of = max(evaluated_dates(conn), default=exchange_date)
            # A week or month closing tonight: its reports read the warehouse, never the
            # publication (which never touches XC/reports/), so they are built beside it.
            reporting = None
            if closing_periods(exchange_date):
                reporting = build_reports_task.submit(config, exchange_date)
                waits.callback(reporting.wait)  # never leave the lock with a report writing
            publication = publish_task(config, as_of, kind)
            progress(
                "发布 %s：%d 个使用方，%d 个文件",
                publication.publication_id,
                len(publication.consumers),
                publication.files,
            )
            reports, report_failures = (
                cast(tuple[list[str], list[ReportFailure]], reporting.result())
                if reporting is not None
                else ([], [])
            )
            progress("报告：生成 %d 份，未能生成 %d 份", len(reports), len(report_failures))
            with engine.begin() as conn:
                record_night(conn, exchange_date, kind, datetime.now(UTC))
                landing_issues = sum(
                    len(v) for v in night_landing_issues(conn, exchange_date).values()
                )
    finally:
        engine.dispose()

    missing_depts = tuple(sorted(set(fresh.loc[fresh["state"] == "missing", "dept"])))
    logger.info(
        "%s 完成：%d 个交付（%s）；未结预警 %d；发布 %s",
        exchange_date,
        len(summaries),
        _statuses(summaries),
        alerts.open,
        publication.publication_id,
    )
    _artifacts(exchange_date, summaries, alerts, fresh, config, report_failures)
    notify_night(
        [u.get_secret_value() for u in config.notify_urls],
        exchange_date,
        summaries,
        fresh,
        report_failures=[(f.period, f.error, f.command) for f in report_failures],
    )
    return NightResult(
        exchange_date,
        summaries,
        alerts,
        {str(k): int(v) for k, v in states.items()},
        publication.publication_id,
        reports,
        report_failures,
        landing_issues,
        missing_depts,
    )


def _artifacts(
    exchange_date: date,
    summaries: list[IntakeSummary],
    alerts: AlertSummary,
    fresh: pd.DataFrame,
    config: RunConfig,
    report_failures: list[ReportFailure] | None = None,
) -> None:
    """Prefect artifacts of the night: counts, statuses and links; never personal data."""
    day = f"{exchange_date:%Y%m%d}"
    create_table_artifact(
        key=f"deliveries-{day}",
        table=[
            {
                "部门": s.dept,
                "数据集": s.dataset,
                "文件": s.source_file,
                "状态": label("ledger", s.status),
                "行数": s.rows_in,
                "入库": s.rows_loaded,
                "问题": s.rows_rejected,
                "重复": s.duplicates,
                "原因": s.reason or "",
            }
            for s in summaries
        ],
        description=f"交换台账 {exchange_date}（不含个人信息）",
    )
    create_table_artifact(
        key=f"alerts-{day}",
        table=[
            {"规则": label("rule", rule), "未结预警": n}
            for rule, n in sorted(alerts.by_rule.items())
        ],
        description=(
            f"预警 {exchange_date}：未结 {alerts.open}，新增 {alerts.new}，"
            f"重新打开 {alerts.reopened}，自动解除 {alerts.resolved}"
        ),
    )
    if len(fresh):
        create_table_artifact(
            key=f"freshness-{day}",
            table=[
                {"部门": r["dept"], "数据集": r["dataset"], "状态": label("freshness", r["state"])}
                for r in fresh.to_dict("records")
            ],
            description=f"应报交付 {exchange_date}：按时、迟报、缺报、退回",
        )
    docs = docs_index_path(Path(config.gx_root))
    reports = Path(config.publish_dir) / "XC" / "reports"
    if report_failures:
        create_table_artifact(
            key=f"report-failures-{day}",
            table=[
                {"报告": f.period, "错误类型": f.error, "重新生成": f.command}
                for f in report_failures
            ],
            description=f"{exchange_date} 未能生成的报告（发布不受影响，可重新生成）",
        )
    create_markdown_artifact(
        key=f"links-{day}",
        markdown=links_markdown(
            {
                "Data Docs（质量报告，已脱敏）": docs,
                "周报、月报等报告": reports,
                "发布目录": Path(config.publish_dir) / "current",
            }
        ),
        description="本夜的质量报告、周报月报与发布目录",
    )


def links_markdown(targets: dict[str, Path]) -> str:
    """A Markdown list of links as absolute file:// URLs; a target that does not exist is
    said to be missing instead of linked (a link in the UI must open something)."""
    lines = []
    for text, path in targets.items():
        path = path.absolute()  # not resolved: `current` is a link that moves
        if path.exists():
            lines.append(f"- [{text}]({path.as_uri()})")
        else:
            lines.append(f"- {text}：尚未生成（{path}）")
    return "\n".join(lines)


def _count(summaries: list[IntakeSummary]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in summaries:
        counts[s.status] += 1
    return dict(sorted(counts.items()))


def run_nightly(
    exchange_date: date,
    settings: Settings,
    *,
    datasets: list[str] | None = None,
    force: list[str] | None = None,
) -> NightResult:
    """Run the nightly flow in this process with the configured task runner."""
    from flows.runners import task_runner

    connect(str(settings.warehouse_url)).dispose()  # unreachable: fail before Prefect starts
    with use_settings(settings):  # the flow's entry reads these, not the environment
        return nightly.with_options(task_runner=task_runner(settings))(
            exchange_date=exchange_date, datasets=datasets, force=force
        )


def publish_all(settings: Settings, as_of: date) -> Publication:
    """Re-publish without re-ingesting (`datashare publish`), under the writer lock."""
    engine = connect(str(settings.warehouse_url))
    try:
        with writer_lock(engine, owner=f"publish {as_of}", wait_seconds=settings.lock_wait_seconds):
            upgrade(engine)
            return publish(
                engine,
                Path(str(settings.publish_dir)),
                as_of=as_of,
                secret=settings.person_key_secret(),
                actor="publish",
                retention=Retention(
                    nights=settings.publish_keep_days,
                    month_ends=settings.publish_keep_month_ends,
                    grace_seconds=settings.publish_reader_grace_seconds,
                ),
                workers=settings.publish_workers,
                sql=SqlTarget(
                    schema_prefix=settings.pg_schema_prefix, role_prefix=settings.pg_role_prefix
                ),
            )
    finally:
        engine.dispose()
