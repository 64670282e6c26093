"""The `datashare` command: the edge where settings are read and runs are started.

The top of the layers (issue 12): it imports flows, steps, the warehouse and the portal;
nothing imports it. Settings are built here once and passed down as arguments (flows read them
through `datashare.settings.current_settings`), never by writing `DATASHARE_*` into os.environ.

Exit codes (`EXIT_CODES`, one mapping over the tree drawn in datashare/errors.py): 0 the run
completed (deliveries may have failed their gates: that is a recorded business outcome); 2 bad
configuration or an operator mistake, refused before any work (flows/preflight.py); 3 warehouse
unreachable; 4 another run holds the lock (or this run lost it); 1 anything unexpected. Every
refusal is one line on stderr, without a traceback: a run takes the writer lock here, before
Prefect starts, so a conflict never reaches Prefect's logs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from datashare.errors import (
    AccountError,
    CheckFailed,
    ConfigurationError,
    ConservationError,
    DatashareError,
    DeliveryError,
    GateFailed,
    HistoryError,
    LayoutError,
    LockLost,
    MergeOrderError,
    PublishError,
    PublishLocked,
    RunLocked,
    UnreadableDelivery,
    WarehouseUnavailable,
)
from datashare.settings import Settings, settings_error

if TYPE_CHECKING:
    from flows.nightly import NightResult
    from tasks.intake import IntakeSummary

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="datashare — county data exchange for 防返贫动态监测.",
)
db_app = typer.Typer(help="Warehouse schema.")
app.add_typer(db_app, name="db")
console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)  # one-line reasons stay one line

_STATUS_STYLE = {
    "loaded": "green",
    "failed": "red",
    "duplicate": "yellow",
    "unchanged": "dim",
    "superseded": "dim",
}


# The exit code of every class in the tree (datashare/errors.py). Each class is listed, not
# inherited, so that a new class is a decision: tests/test_errors.py walks the tree.
EXIT_CODES: dict[type[DatashareError], int] = {
    DatashareError: 1,
    ConfigurationError: 2,
    AccountError: 2,
    WarehouseUnavailable: 3,
    RunLocked: 4,
    LockLost: 4,
    PublishLocked: 4,
    DeliveryError: 1,  # recorded in the ledger by the intake; reaching the CLI is unexpected
    UnreadableDelivery: 1,
    LayoutError: 1,
    GateFailed: 1,
    HistoryError: 1,
    MergeOrderError: 1,
    PublishError: 1,
    CheckFailed: 1,
    ConservationError: 1,
}


def exit_code(exc: DatashareError) -> int:
    """The exit code of an error: its class's, or its nearest listed ancestor's."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]  # type: ignore[index]
    return 1


def one_line(message: str) -> str:
    """A message as the one line stderr shows (a message is one line; this keeps it so)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def quiet_prefect(settings: Settings) -> None:
    """Keep Prefect's own chatter (ephemeral API start-up, telemetry) away from users.

    The one place the CLI writes os.environ, deliberately: these are Prefect's settings, read
    by Prefect (and inherited by the flow-run subprocesses of `serve`), not ours; setdefault
    leaves whatever the operator chose. Our own options are passed as arguments.
    """
    home = settings.home.resolve()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_CLI_PROMPT": "false",
        # A loaded 2-core machine was seen to need over 60 s to start the embedded API.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def summary_table(title: str, summaries: list[IntakeSummary]) -> Table:
    """One row per delivery: counts and outcome (file names are in the published ledger)."""
    from tasks.labels import label

    table = Table(title=title, show_lines=False)
    numeric = {"行数", "入库", "问题", "重复"}
    for header in ("日期", "数据集", "状态", "行数", "入库", "问题", "重复", "原因"):
        table.add_column(
            header,
            justify="right" if header in numeric else "left",
            no_wrap=header != "原因",
            overflow="fold",
        )
    for s in summaries:
        style = _STATUS_STYLE.get(s.status, "")
        table.add_row(
            f"{s.exchange_date:%m-%d}",
            s.dataset,
            f"[{style}]{label('ledger', s.status)}[/]",
            f"{s.rows_in:,}",
            f"{s.rows_loaded:,}",
            f"{s.rows_rejected:,}",
            f"{s.duplicates:,}",
            DeliveryError.reason_of(s.reason or "")[:60],
        )
    if summaries:
        table.add_section()
        table.add_row(
            "合计",
            f"{len(summaries)} 个交付",
            "",
            *(
                f"{sum(getattr(s, f) for s in summaries):,}"
                for f in ("rows_in", "rows_loaded", "rows_rejected", "duplicates")
            ),
            "",
        )
    return table


def _fail(code: int, message: str) -> NoReturn:
    err_console.print(f"[red]错误：[/]{message}")
    raise typer.Exit(code)


def _guarded(fn: Callable[[], T]) -> T:
    """Run `fn`; an error of the tree becomes one line on stderr and its exit code."""
    try:
        return fn()
    except DatashareError as exc:
        _fail(exit_code(exc), one_line(str(exc)))


def _settings(**overrides: object) -> Settings:
    """The settings of this command: the environment and .env, with the command's options on
    top (passed as arguments, never written to os.environ)."""
    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        settings.person_key_secret()
    except ConfigurationError as exc:
        _fail(2, str(exc))
    except ValidationError as exc:
        _fail(2, settings_error(exc))
    except ValueError as exc:
        _fail(2, f"设置无效：{str(exc).splitlines()[0]}")
    quiet_prefect(settings)
    return settings


def _preflight(settings: Settings, **checks: object) -> None:
    """Refuse operator mistakes before any work: one line, exit 2 (flows/preflight.py)."""
    from flows.preflight import preflight

    try:
        preflight(settings, **checks)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        _fail(2, str(exc))


def _locked(settings: Settings, owner: str, fn):  # type: ignore[no-untyped-def]
    """Run `fn` holding the warehouse's writer lock, taken here so that a conflict is one line
    and exit 4 before Prefect starts (the flow takes the same lock again at no cost)."""
    from warehouse.db import connect
    from warehouse.lock import writer_lock

    def go():  # type: ignore[no-untyped-def]
        engine = connect(str(settings.warehouse_url))
        try:
            with writer_lock(engine, owner=owner, wait_seconds=settings.lock_wait_seconds):
                return fn()
        finally:
            engine.dispose()

    return _guarded(go)


AllowFuture = Annotated[
    bool,
    typer.Option(
        "--allow-future-date",
        help="Accept an exchange date after today (Asia/Shanghai); refused otherwise.",
    ),
]


@app.command()
def run(
    exchange_date: Annotated[str, typer.Option("--date", help="Exchange date, YYYY-MM-DD.")],
    datasets: Annotated[list[str] | None, typer.Option("--dataset", help="Only these.")] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force", help="Accept a snapshot of this dataset below half of the previous one."
        ),
    ] = None,
    allow_future: AllowFuture = False,
) -> None:
    """Take in every delivery for one exchange date (the nightly run)."""
    try:
        day = date.fromisoformat(exchange_date)
    except ValueError:
        _fail(2, f"--date must be YYYY-MM-DD, got {exchange_date!r}")
    settings = _settings()
    _preflight(
        settings,
        exchange_dates=[day],
        datasets=datasets,
        force=force,
        allow_future=allow_future,
    )
    from flows.nightly import run_nightly

    result = _locked(
        settings,
        f"nightly {day}",
        lambda: run_nightly(day, settings, datasets=datasets or None, force=force or None),
    )
    console.print(summary_table(f"交换台账 {day}", result.deliveries))
    console.print(night_line(result))
    refused = _guarded(lambda: landing_issue_counts(settings, day))
    if refused:
        console.print(landing_line(refused))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the warehouse schema to the newest revision."""
    settings = _settings()
    _preflight(settings, landing=False)
    from warehouse.db import connect, current_revision, upgrade

    def go() -> None:
        engine = connect(str(settings.warehouse_url))
        upgrade(engine)
        console.print(f"warehouse at revision {current_revision(engine)}")

    _guarded(go)


@app.command()
def report(
    week: Annotated[str | None, typer.Option("--week", help="周报：ISO 周，如 2025-W11。")] = None,
    month: Annotated[str | None, typer.Option("--month", help="月报：月份，如 2025-03。")] = None,
    quarter: Annotated[
        str | None, typer.Option("--quarter", help="季调度：季度，如 2025-Q1。")
    ] = None,
    half: Annotated[str | None, typer.Option("--half", help="半年小结：如 2025-H1。")] = None,
    year: Annotated[str | None, typer.Option("--year", help="年度总结：如 2025。")] = None,
) -> None:
    """生成乡村振兴局的周报、月报、季调度、半年小结或年度总结（HTML 含图表，及 XLSX）。"""
    settings = _settings()
    _preflight(settings, landing=False)
    from flows.report import periods_asked, write_reports

    try:
        periods = periods_asked(week, month, quarter, half, year)
    except ValueError as exc:
        _fail(2, str(exc))
    written = _guarded(lambda: write_reports(settings, periods))
    for path in written:
        console.print(str(path))


@app.command()
def publish(
    exchange_date: Annotated[str, typer.Option("--date", help="As of this exchange date.")],
    allow_future: AllowFuture = False,
) -> None:
    """Re-publish the shared dataset for every consumer without re-ingesting."""
    day = _parse_date(exchange_date, "--date")
    settings = _settings()
    _preflight(settings, exchange_dates=[day], allow_future=allow_future, landing=False)
    from flows.nightly import publish_all

    publication = _guarded(lambda: publish_all(settings, day))
    console.print(
        f"publication {publication.publication_id}: {publication.files} files, "
        f"{len(publication.consumers)} consumers → {settings.publish_dir}"
    )


@app.command()
def demo(
    households: Annotated[int, typer.Option(help="Size of the synthetic county.")] = 400,
    days: Annotated[
        int, typer.Option(help="Nights to run (7: a week closes, its report is built).")
    ] = 7,
    start: Annotated[str, typer.Option(help="First exchange date.")] = "2025-03-10",
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic county.")] = 7,
    home: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
) -> None:
    """Generate a synthetic county and run the nightly flow over several days."""
    settings = _settings(home=home, environment="demo")
    import pandas as pd
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from datashare.synth import (
        build_county,
        redeliver,
        truncated_snapshot,
        verification_rows,
        write_delivery,
        write_night,
    )
    from flows.nightly import run_nightly

    first = date.fromisoformat(start)
    landing = Path(str(settings.landing))
    all_summaries: list[IntakeSummary] = []
    results: list[NightResult] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        job = progress.add_task("生成模拟县数据…", total=days + 1)
        county = build_county(seed, households)
        progress.advance(job)
        for offset in range(days):
            day = first + timedelta(days=offset)
            progress.update(job, description=f"第 {offset + 1}/{days} 夜 {day}：生成交付文件…")
            write_night(county, landing, day)
            published_alerts = Path(str(settings.publish_dir)) / "XC" / "alerts.parquet"
            if offset >= 1 and published_alerts.exists():
                # The bureau checks a few of the alerts it was published last night and sends
                # back what it found (XC_HECHA): those alerts are closed by the feedback.
                alerts = pd.read_parquet(published_alerts, columns=["alert_id", "status"])
                checked = verification_rows(county, alerts, day)
                if len(checked):
                    write_delivery(
                        county, landing, "XC_HECHA", day, rows=checked, messy=False, defects=False
                    )
            if offset == 1:
                # What happens in a real county: an export cut short is refused as a whole...
                truncated_snapshot(county, landing, "XC_HU", day, keep_fraction=0.3)
            progress.update(job, description=f"第 {offset + 1}/{days} 夜 {day}：接收、比对、发布…")
            result = _guarded(functools.partial(run_nightly, day, settings))
            summaries = list(result.deliveries)
            if offset == 1:
                # ...and the department re-delivers a complete file for the same date.
                redeliver(county, landing, "XC_HU", day, defects=False)
                progress.update(job, description=f"第 {offset + 1}/{days} 夜 {day}：重新报送…")
                result = _guarded(functools.partial(run_nightly, day, settings))
                summaries += [s for s in result.deliveries if s.status != "unchanged"]
                # The night's line counts both runs' deliveries: the refusal and the re-delivery.
                result = dataclasses.replace(result, deliveries=summaries)
            all_summaries.extend(summaries)
            results.append(result)
            progress.advance(job)
        progress.update(job, description="完成")
    console.print(
        summary_table(f"交换台账 {first} – {first + timedelta(days=days - 1)}", all_summaries)
    )
    console.print(alerts_table(results[-1]))
    for result in results:
        console.print(night_line(result))
    published = Path(str(settings.publish_dir))
    console.print(
        f"仓库: {settings.warehouse_url}\n湖: {settings.lake}\n发布: {published}\n"
        f"报告: {published / 'XC' / 'reports'}\nData Docs: {settings.home / 'gx'}"
    )


def night_line(result: NightResult) -> str:
    """One line per night: deliveries, alerts, freshness, publication (statuses in Chinese:
    tasks.labels)."""
    from tasks.labels import label

    statuses = "，".join(
        f"{label('ledger', k)} {v}"
        for k, v in sorted(Counter(s.status for s in result.deliveries).items())
    )
    fresh = "，".join(f"{label('freshness', k)} {v}" for k, v in sorted(result.freshness.items()))
    fresh = fresh or "—"
    reports = f"；报告 {', '.join(result.reports)}" if result.reports else ""
    reports += "".join(
        f"；报告 {f.period} 未生成（{f.error}），可用 {f.command} 重新生成"
        for f in result.report_failures
    )
    checked = f"，核查办结累计 {result.alerts.closed}" if result.alerts.closed else ""
    return (
        f"{result.exchange_date}: 交付 {statuses or '无'}；预警 未结 {result.alerts.open}"
        f"（新增 {result.alerts.new}，解除 {result.alerts.resolved}{checked}）；应报 {fresh}；"
        f"发布 {result.publication_id}{reports}"
    )


def landing_issue_counts(settings: Settings, day: date) -> dict[str, int]:
    """How many files of the night's landing area were not taken in, per department folder."""
    from warehouse.db import connect
    from warehouse.tables_ops import night_landing_issues

    engine = connect(str(settings.warehouse_url))
    try:
        with engine.connect() as conn:
            return {k: len(v) for k, v in night_landing_issues(conn, day).items()}
    finally:
        engine.dispose()


def landing_line(counts: dict[str, int]) -> str:
    """One line: the files not taken in, by department (the reasons are in the ledger)."""
    parts = "，".join(f"{dept or '部门文件夹外'} {n}" for dept, n in sorted(counts.items()))
    return (
        f"交换区另有 {sum(counts.values())} 个文件未接收（{parts}）：原因已记入交换台账并发布给部门"
    )


def alerts_table(result: NightResult) -> Table:
    """Open alerts by rule after the last night (counts only)."""
    table = Table(title="未结预警（按规则）", caption=f"截至 {result.exchange_date}")
    table.add_column("规则")
    table.add_column("未结", justify="right")
    for rule, n in sorted(result.alerts.by_rule.items()):
        table.add_row(rule, f"{n:,}")
    table.add_section()
    table.add_row("合计", f"{result.alerts.open:,}")
    return table


_REASON_STYLE = {"missing": "yellow", "failed": "red", "re-delivered": "cyan", "forced": "magenta"}


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(2, f"{option} must be YYYY-MM-DD, got {value!r}")


@app.command()
def backfill(
    date_from: Annotated[str, typer.Option("--from", help="First exchange date, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last exchange date, YYYY-MM-DD.")],
    datasets: Annotated[
        list[str] | None,
        typer.Option("--dataset", "--datasets", help="Only these datasets (repeat the option)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, help="At most this many datasets at a time."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also re-derive loaded deliveries' history from the lake."),
    ] = False,
    allow_future: AllowFuture = False,
) -> None:
    """Redo a range of exchange dates: missing, failed, re-delivered (or forced) deliveries."""
    first, last = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    if last < first:
        _fail(2, f"--to {last} is before --from {first}")
    settings = _settings()
    _preflight(settings, exchange_dates=[last], datasets=datasets, allow_future=allow_future)
    from flows.backfill import run_backfill

    def go():  # type: ignore[no-untyped-def]
        return run_backfill(
            settings,
            first,
            last,
            datasets=datasets or None,
            dry_run=dry_run,
            max_parallel=max_parallel,
            force=force,
        )

    try:
        # A dry run changes nothing and takes no lock; a real one takes it before Prefect starts.
        result = _guarded(go) if dry_run else _locked(settings, f"backfill {first}..{last}", go)
    except ValueError as exc:  # unknown dataset
        _fail(2, str(exc))
    title = f"补跑计划 {first} – {last}" + ("（试运行，未做任何更改）" if dry_run else "")
    table = Table(title=title)
    for header in ("日期", "部门", "数据集", "原因", "说明"):
        table.add_column(header, no_wrap=header != "说明", overflow="fold")
    for item in result.plan:
        style = _REASON_STYLE.get(item.reason, "")
        table.add_row(
            item.exchange_date.isoformat(),
            item.dept,
            item.dataset,
            f"[{style}]{item.reason}[/]",
            item.detail,
        )
    console.print(table)
    if not result.plan:
        console.print("nothing to redo: the warehouse already holds what the landing area has")
    elif not dry_run:
        console.print(f"backfill {result.backfill_id}: {result.nights} night(s) run")


@app.command()
def serve(
    cron: Annotated[
        str | None,
        typer.Option(help="Cron of the nightly run (default: settings schedule_cron, 0 2 * * *)."),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(hidden=True, help="Run every N seconds instead of the cron (demos, tests)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many runs at once.")] = None,
) -> None:
    """Run the nightly schedule on this machine until interrupted (no Prefect server needed)."""
    settings = _settings()
    _preflight(settings)
    from flows.serve import serve_schedule

    console.print(
        f"serving nightly ({cron or settings.schedule_cron}, "
        f"{settings.schedule_timezone}) and backfill; Ctrl+C to stop"
    )
    _guarded(lambda: serve_schedule(settings, cron=cron, interval_seconds=interval, limit=limit))


# The department portal (issue 15): `datashare portal`, `datashare users …`, `datashare tokens …`.
from portal.commands import register as _register_portal  # noqa: E402

_register_portal(app, settings=_settings, guarded=_guarded)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
