"""Backfills and catch-up: redo a range of exchange dates, and the scheduled entry point.

    backfill(date_from, date_to, ...)       the Prefect flow (deployment `backfill`)
      plan_backfill                         what it will redo and why, per (date, dataset)
      redo_range (subflow, bounded runner)  rebuild forced datasets, then every planned night
                                            in date order through flows.nightly.night
    scheduled_nightly()                     the scheduled entry point (deployment `nightly`,
                                            `datashare serve`): D = yesterday in the schedule's
                                            timezone, plus missed dates per the catch-up policy

Why a (date, dataset) is redone:
  missing        the landing area has it, the ledger has nothing for that dataset and date
  failed         the ledger has only failed deliveries for it, the landing has other bytes
  re-delivered   the landing's bytes differ from the delivery loaded for that date
  forced         --force: re-derive its history from the deliveries kept in the lake
Anything else is unchanged and costs nothing: a night over unchanged files adds nothing.

The result equals night-by-night runs because a backfill *is* night-by-night runs: the same
`night()` per date, oldest first; a delivery for a date before the latest merged one makes intake
replay that dataset's history from the lake (warehouse.history.rebuild_from). The whole backfill
holds the writer lock, and is recorded in `backfills` (who, range, datasets, the plan, start,
end, outcome).

Catch-up after downtime (settings `catch_up`), for the nightly schedule:
  all      every missed date, oldest first, then D (default)
  latest   only the most recent missed date, then D; older ones are left to a backfill
  skip     no missed date; only D
"Missed" means after the latest date in `nights` (a completed night or backfill) and before D.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Engine, insert, select, update

from datashare.settings import Settings, current_settings, use_settings
from expectations.contract import load_contracts
from flows.nightly import (
    NightResult,
    RunConfig,
    RunMarks,
    completed,
    night,
    night_marks,
    progress,
)
from flows.runners import run_nightly_configured, task_runner
from tasks.landing import Landing
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import rebuild_from
from warehouse.lock import writer_lock
from warehouse.tables import deliveries
from warehouse.tables_ops import backfills, last_night

Reason = Literal["missing", "failed", "re-delivered", "forced"]
Policy = Literal["all", "latest", "skip"]
ACCEPTED = ("loaded", "duplicate", "superseded")
# Why a (date, dataset) is redone, as a person reads it (the plan keeps the codes).
REASON_LABELS: dict[str, str] = {
    "missing": "未接收",
    "failed": "此前失败",
    "re-delivered": "重新报送",
    "forced": "强制重推",
}


@dataclass(frozen=True)
class PlanItem:
    """One (date, dataset) a backfill redoes, and why (no personal data: names and counts)."""

    exchange_date: date
    dataset: str
    dept: str
    reason: Reason
    detail: str


def _dates(date_from: date, date_to: date) -> list[date]:
    if date_to < date_from:
        raise ValueError(f"--to {date_to} 早于 --from {date_from}：请把较早的日期写在 --from")
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


def plan_backfill(
    engine: Engine,
    landing: Landing,
    date_from: date,
    date_to: date,
    datasets: list[str] | tuple[str, ...] | None = None,
    *,
    force: bool = False,
) -> list[PlanItem]:
    """What a backfill of the range redoes and why, by date then dataset (reads only)."""
    contracts = load_contracts()
    unknown = set(datasets or ()) - set(contracts)
    if unknown:
        raise ValueError(f"未知的数据集 {sorted(unknown)}：请检查 --dataset 的拼写")
    wanted = [c for name, c in sorted(contracts.items()) if not datasets or name in datasets]
    d = deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.dataset, d.exchange_date, d.sha256, d.status, d.source_file).where(
                d.exchange_date.between(date_from, date_to)
            )
        ).all()
    ledger_by: dict[tuple[date, str], list[tuple[str, str, str]]] = {}
    for ds, day, sha, status, name in rows:
        ledger_by.setdefault((day, ds), []).append((sha, status, name))

    plan: dict[tuple[date, str], PlanItem] = {}
    for day in _dates(date_from, date_to):
        for ref in landing.discover(day, wanted):
            key = (day, ref.dataset)
            sha = hashlib.sha256(landing.fetch(ref)).hexdigest()
            known = ledger_by.get(key, [])
            if any(s == sha for s, _, _ in known) or key in plan:
                continue
            if not known:
                reason: Reason = "missing"
                detail = f"落地区有 {ref.file_name}，台账无记录"
            elif any(status in ACCEPTED for _, status, _ in known):
                reason, detail = (
                    "re-delivered",
                    f"{ref.file_name} 与已入库的交付内容不同（重新报送）",
                )
            else:
                reason, detail = "failed", f"此前交付失败，落地区的 {ref.file_name} 为新内容"
            plan[key] = PlanItem(day, ref.dataset, ref.dept, reason, detail)
        if force:
            for contract in wanted:
                key = (day, contract.dataset)
                loaded = [name for _, status, name in ledger_by.get(key, []) if status == "loaded"]
                if loaded and key not in plan:
                    plan[key] = PlanItem(
                        day,
                        contract.dataset,
                        contract.dept,
                        "forced",
                        f"由湖中已接收的 {loaded[0]} 重新推导",
                    )
    return [plan[k] for k in sorted(plan)]


def missed_dates(engine: Engine, today: date, policy: Policy) -> list[date]:
    """Exchange dates the schedule missed before D = today - 1, per the catch-up policy."""
    target = today - timedelta(days=1)
    with engine.connect() as conn:
        last = last_night(conn)
    if last is None or last >= target - timedelta(days=1):
        return []
    gap = _dates(last + timedelta(days=1), target - timedelta(days=1))
    if policy == "all":
        return gap
    if policy == "latest":
        return gap[-1:]
    if policy == "skip":
        return []
    raise ValueError(f"未知的补跑策略 DATASHARE_CATCH_UP={policy!r}：应为 all、latest 或 skip")


@task(
    name="rebuild_dataset",
    task_run_name="rebuild {dataset} from {from_date}",
    cache_policy=NO_CACHE,
)
def rebuild_dataset(config: RunConfig, dataset: str, from_date: date) -> int:
    """Re-derive one dataset's history from `from_date` on, from the deliveries in the lake."""
    from pathlib import Path

    engine = connect(config.warehouse_url.get_secret_value())
    try:
        # ledger.writing: SQLite takes one writer at a time; threads of one process queue here.
        with ledger.writing(engine) as conn:
            stats = rebuild_from(
                conn,
                load_contracts()[dataset],
                from_date,
                lake_root=Path(config.lake),
                secret=config.secret.get_secret_value().encode(),
            )
        return len(stats)
    finally:
        engine.dispose()


def _redo_name() -> str:
    from prefect.runtime import flow_run

    plan = flow_run.parameters.get("plan") or []
    days = sorted({str(_field(p, "exchange_date")) for p in plan})
    return f"backfill-redo {days[0]}..{days[-1]}" if days else "backfill-redo (空)"


def _field(item: object, name: str) -> object:
    return item.get(name) if isinstance(item, dict) else getattr(item, name)


@flow(name="backfill-redo", flow_run_name=_redo_name, log_prints=False)
def redo_range(plan: list[PlanItem], config: RunConfig) -> list[NightResult]:
    """Rebuild the forced datasets, then run every planned night in date order."""
    earliest: dict[str, date] = {}
    for item in plan:
        if item.reason == "forced":
            earliest[item.dataset] = min(
                earliest.get(item.dataset, item.exchange_date), item.exchange_date
            )
    futures = [rebuild_dataset.submit(config, ds, day) for ds, day in sorted(earliest.items())]
    for f in futures:
        f.result()
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        days = sorted({item.exchange_date for item in plan})
        results = []
        for n, day in enumerate(days, 1):
            progress("补跑第 %d/%d 夜：%s", n, len(days), day)
            results.append(night(day, config, kind="backfill"))  # records the night itself
        return results
    finally:
        engine.dispose()


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did: its id (None for a dry run), the plan, and the nights it ran."""

    backfill_id: str | None
    plan: list[PlanItem]
    nights: int


def _plan_json(plan: list[PlanItem]) -> str:
    return json.dumps(
        [{**asdict(p), "exchange_date": p.exchange_date.isoformat()} for p in plan],
        ensure_ascii=False,
    )


def _requested_by() -> str:
    from prefect.runtime import flow_run

    return f"prefect:{flow_run.name}" if flow_run.name else "prefect"


@flow(name="backfill", flow_run_name="backfill {date_from}..{date_to}", log_prints=False)
def backfill(
    date_from: date,
    date_to: date,
    datasets: list[str] | None = None,
    dry_run: bool = False,
    max_parallel: int | None = None,
    force: bool = False,
    requested_by: str | None = None,
) -> BackfillResult:
    """Redo a range of exchange dates (missing, failed, re-delivered, or forced), oldest first."""
    logger = get_run_logger()
    settings = current_settings()
    config = RunConfig.from_settings(settings, datasets=datasets)
    engine = connect(config.warehouse_url.get_secret_value())
    try:
        if dry_run:
            upgrade(engine)
            plan = plan_backfill(
                engine, config.open_landing(), date_from, date_to, datasets, force=force
            )
            _plan_artifact(plan, date_from, date_to, dry_run=True)
            logger.info("backfill %s..%s (dry run): %d to redo", date_from, date_to, len(plan))
            marks = RunMarks(f"试运行：计划补跑 {len(plan)} 项，未做任何更改", ())
            return cast(BackfillResult, completed(BackfillResult(None, plan, 0), marks))
        owner = f"backfill {date_from}..{date_to}"
        with writer_lock(engine, owner=owner, wait_seconds=settings.lock_wait_seconds):
            upgrade(engine)
            plan = plan_backfill(
                engine, config.open_landing(), date_from, date_to, datasets, force=force
            )
            _plan_artifact(plan, date_from, date_to, dry_run=False)
            progress("补跑计划：%d 项，%d 夜", len(plan), len({p.exchange_date for p in plan}))
            backfill_id = uuid.uuid4().hex
            with engine.begin() as conn:
                conn.execute(
                    insert(backfills).values(
                        backfill_id=backfill_id,
                        requested_by=(requested_by or _requested_by())[:64],
                        date_from=date_from,
                        date_to=date_to,
                        datasets=json.dumps(sorted(datasets)) if datasets else None,
                        force=force,
                        plan=_plan_json(plan),
                        status="running",
                        started_at=datetime.now(UTC),
                    )
                )
            status, error = "failed", None
            results: list[NightResult] = []
            try:
                runner = _bounded_runner(settings, max_parallel)
                results = redo_range.with_options(task_runner=runner)(plan, config)
                status = "completed"
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                with engine.begin() as conn:
                    conn.execute(
                        update(backfills)
                        .where(backfills.c.backfill_id == backfill_id)
                        .values(status=status, error=error, finished_at=datetime.now(UTC))
                    )
        nights = len(results)
        logger.info(
            "backfill %s..%s: %d to redo, %d nights run", date_from, date_to, len(plan), nights
        )
        marks = night_marks(results, lead=f"已完成补跑 {nights} 夜")
        return cast(BackfillResult, completed(BackfillResult(backfill_id, plan, nights), marks))
    finally:
        engine.dispose()


def _bounded_runner(settings: Settings, max_parallel: int | None) -> Any:
    """The configured runner, with at most `max_parallel` datasets at a time."""
    if max_parallel is not None and max_parallel < 1:
        raise ValueError("--max-parallel 至少为 1")
    if settings.task_runner == "dask":
        bounded = settings.model_copy(update={"max_workers": max_parallel or settings.max_workers})
        return task_runner(bounded)
    return ThreadPoolTaskRunner(max_workers=max_parallel or settings.max_workers)


def _plan_artifact(plan: list[PlanItem], date_from: date, date_to: date, *, dry_run: bool) -> None:
    create_table_artifact(
        key=f"backfill-{date_from:%Y%m%d}-{date_to:%Y%m%d}",
        table=[
            {
                "日期": p.exchange_date.isoformat(),
                "部门": p.dept,
                "数据集": p.dataset,
                "原因": REASON_LABELS.get(p.reason, p.reason),
                "说明": p.detail,
            }
            for p in plan
        ]
        or [{"日期": "", "部门": "", "数据集": "", "原因": "无需补跑", "说明": ""}],
        description=f"补跑计划 {date_from} – {date_to}{'（试运行）' if dry_run else ''}",
    )


def run_backfill(
    settings: Settings,
    date_from: date,
    date_to: date,
    *,
    datasets: list[str] | None = None,
    dry_run: bool = False,
    max_parallel: int | None = None,
    force: bool = False,
) -> BackfillResult:
    """Run the backfill flow in this process (the CLI's way in); who asked is the OS user."""
    connect(str(settings.warehouse_url)).dispose()  # unreachable: fail before Prefect starts
    with use_settings(settings):  # the flow's entry reads these, not the environment
        return backfill(
            date_from=date_from,
            date_to=date_to,
            datasets=datasets,
            dry_run=dry_run,
            max_parallel=max_parallel,
            force=force,
            requested_by=f"cli:{getpass.getuser()}",
        )


def _scheduled_today(tz: ZoneInfo) -> date:
    from prefect.runtime import flow_run

    # A late run (after downtime) is for the night it was scheduled for, not for today.
    when = flow_run.scheduled_start_time if flow_run.id else None
    return (when or datetime.now(UTC)).astimezone(tz).date()


def _scheduled_name() -> str:
    from prefect.runtime import flow_run

    day = flow_run.parameters.get("exchange_date")
    if day is None:  # D = yesterday in the schedule's timezone, as the flow computes it
        day = _scheduled_today(ZoneInfo(current_settings().schedule_timezone)) - timedelta(days=1)
    return f"nightly {day}（定时）"


@flow(name="scheduled-nightly", flow_run_name=_scheduled_name, log_prints=False)
def scheduled_nightly(exchange_date: date | None = None, catch_up: Policy | None = None) -> int:
    """The scheduled nightly run: yesterday (Asia/Shanghai) plus missed nights per catch-up."""
    logger = get_run_logger()
    settings = current_settings()
    engine = connect(str(settings.warehouse_url))
    try:
        upgrade(engine)
        if exchange_date is None:
            today = _scheduled_today(ZoneInfo(settings.schedule_timezone))
            dates = [
                *missed_dates(engine, today, catch_up or settings.catch_up),
                today - timedelta(days=1),
            ]
        else:
            dates = [exchange_date]
        owner = f"nightly {dates[-1]}" + (f" (+{len(dates) - 1} missed)" if len(dates) > 1 else "")
        try:
            with writer_lock(engine, owner=owner, wait_seconds=settings.lock_wait_seconds):
                for day in dates:
                    run_nightly_configured(day, settings)  # records the night itself
        except Exception as exc:
            _notify_failure(settings, dates[-1], exc)
            raise
        logger.info(
            "nightly: %d night(s) run: %s", len(dates), ", ".join(d.isoformat() for d in dates)
        )
        return len(dates)
    finally:
        engine.dispose()


def _notify_failure(settings: Settings, day: date, exc: BaseException) -> None:
    from prefect.runtime import flow_run

    from tasks.notify import notify_night

    notify_night(settings.notify_urls, day, [], None, error=exc, run_name=flow_run.name)
