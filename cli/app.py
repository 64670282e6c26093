"""The `datashare` command: the edge where settings are read and runs are started.

Over 600 lines on purpose: the one list of commands, each a short function over a flow or a
step, with the option help (in Chinese) that makes up most of its length.

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

import atexit
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

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
    from expectations.contract import Contract
    from flows.nightly import NightResult
    from tasks.freshness import Calendar
    from tasks.intake import IntakeSummary

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="datashare：县级防返贫动态监测数据交换（接收、比对、预警、发布、报告）。",
)
db_app = typer.Typer(help="仓库结构（数据库表）。")


def _typer_words_in_chinese() -> None:
    """Typer's own words on help screens, in Chinese (module constants it reads per call).
    Click's own `--help` line: _help_in_chinese below; its usage errors: _click_error_in_chinese."""
    from typer import rich_utils

    rich_utils.REQUIRED_LONG_STRING = "[必填]"
    rich_utils.DEFAULT_STRING = "[默认：{}]"
    rich_utils.ENVVAR_STRING = "[环境变量：{}]"
    rich_utils.ARGUMENTS_PANEL_TITLE = "参数"
    rich_utils.OPTIONS_PANEL_TITLE = "选项"
    rich_utils.COMMANDS_PANEL_TITLE = "命令"
    rich_utils.ERRORS_PANEL_TITLE = "错误"
    rich_utils.ABORTED_TEXT = "已中止。"
    rich_utils.RICH_HELP = "用 [blue]'{command_path} {help_option}'[/] 查看帮助。"
    show = rich_utils.rich_format_error  # typer looks it up on the module at each error

    def show_in_chinese(error: Any) -> None:  # typer's own copy of Click's ClickException
        text = _click_error_in_chinese(error.format_message())
        error.format_message = lambda: text
        show(error)

    rich_utils.rich_format_error = show_in_chinese  # type: ignore[assignment]


# Click's usage errors (its own English), as an operator reads them. Option and command names
# stay as typed; a message not listed here is shown as Click wrote it.
_CLICK_ERRORS = (
    (re.compile(r"Missing option '(.+)'\.?"), r"缺少选项 \1。"),
    (re.compile(r"Missing argument '(.+)'\.?"), r"缺少参数 \1。"),
    (re.compile(r"No such option: (\S+) \(Possible options: (.+)\)"), r"没有选项 \1（可用：\2）。"),
    (re.compile(r"No such option: (\S+)\s+Did you mean (\S+)\?"), r"没有选项 \1，是否要用 \2？"),
    (re.compile(r"No such option: (\S+)"), r"没有选项 \1。"),
    (re.compile(r"No such command '(.+)'\."), r"没有命令 '\1'。"),
    (re.compile(r"Option '(.+)' requires an argument\."), r"选项 '\1' 需要一个值。"),
    (re.compile(r"Got unexpected extra argument(?:s|\(s\))? \((.+)\)"), r"多余的参数：\1。"),
    (re.compile(r"Invalid value for '(.+)': (.+)", re.S), r"选项 '\1' 的值无效：\2"),
)


def _click_error_in_chinese(message: str) -> str:
    for pattern, chinese in _CLICK_ERRORS:
        if pattern.fullmatch(message.strip()):
            return pattern.sub(chinese, message.strip())
    return message


_typer_words_in_chinese()
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
        # A run's own log lines (progress, per stage) reach the Prefect API at INFO, while the
        # console shows only warnings: the CLI shows the progress lines itself.
        "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
        "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PREFECT_CLI_PROMPT": "false",
        # A loaded 2-core machine was seen to need over 60 s to start the embedded API.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    # Prefect's embedded API does not create its home: with the folder missing (a new
    # DATASHARE_HOME beside a PostgreSQL warehouse, nothing else writing there first) it
    # retried until the start-up timeout, minutes, then failed with "Timed out while
    # attempting to connect to ephemeral Prefect API server".
    prefect_home = Path(os.environ["PREFECT_HOME"]).expanduser()
    try:
        prefect_home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(
            2,
            f"无法创建 Prefect 的目录 PREFECT_HOME={prefect_home}（{exc.strerror}）："
            "请检查路径和权限",
        )


def summary_table(title: str, summaries: list[IntakeSummary]) -> Table:
    """One row per delivery: counts and outcome (file names are in the published ledger)."""
    from domain.labels import label

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


def _start_embedded_api() -> None:
    """Start Prefect's embedded API (when no PREFECT_API_URL is set), as the flow would.

    Its uvicorn process is started first, with the command SubprocessASGIServer runs, and
    only then is Prefect's server module imported (3.4 s of imports on a slow machine) to
    register the process as the embedded server that the flow's client and Prefect's workers
    find running (a singleton): the process boots on the other core meanwhile, instead of
    after the import. If it does not answer, it is stopped and SubprocessASGIServer starts
    its own, as before.
    """
    try:
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        )

        if PREFECT_API_URL.value():
            return
        loaded = sys.modules.get("prefect.server.api.server")
        if loaded is not None and loaded.SubprocessASGIServer().running:
            return  # started already (a second run in one process, a test harness)
        early = _uvicorn_early()
        try:
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()
            if early is not None:
                port, process = early
                timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
                if not server.running and _answers(port, process, timeout):
                    server.port, server.server_process, server.running = port, process, True
                    atexit.register(server.stop)
                    early = None  # the singleton's now: its stop ends it
                    return
        finally:
            if early is not None:  # not registered (or an error on the way): never left behind
                early[1].kill()
                early[1].wait()
        server.start()  # a singleton: the flow's client finds it running
    except Exception:  # the flow starts it again and reports what fails
        return


def uvicorn_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment SubprocessASGIServer (prefect.server.api.server, Prefect
    3.8) runs its embedded API with; tests/test_operator.py holds the two equal."""
    import prefect
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    return args, env


def _uvicorn_early() -> tuple[int, subprocess.Popen[bytes]] | None:
    """The embedded API's process on a free port (as SubprocessASGIServer picks one), or None."""
    for _ in range(10):
        port = random.choice(range(8000, 9000))
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        args, env = uvicorn_command(port)
        return port, subprocess.Popen(args, env=env)
    return None


def _answers(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the API on `port` answers /health before `timeout` s (False if its process
    ended: exit 3 is a port taken meanwhile)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def embedded_api_starting() -> Iterator[None]:
    """Start Prefect's embedded API in a thread while the block imports the run's modules.

    The API is a uvicorn process that takes seconds to start (half of an unchanged night's
    fixed cost on a small county); started here it boots on the other core while this one
    imports pandas, Prefect and the steps. The block waits for it at its end, before the flow
    asks for a client (the thread runs in this context: a test harness's API URL is seen)."""
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(_start_embedded_api,), name="prefect-api-start", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        thread.join()


AllowFuture = Annotated[
    bool,
    typer.Option(
        "--allow-future-date",
        help="接受晚于今天（北京时间）的交换日期；默认拒绝。",
    ),
]


class _ProgressLines(logging.Handler):
    """Hands the progress lines of a run's log (flows.nightly.progress) to `show`."""

    def __init__(self, key: str, show: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.key = key
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, self.key, False):
            self.show(record.getMessage())


@contextlib.contextmanager
def progress_shown(description: str) -> Iterator[None]:
    """Show a run's progress lines as they come (a spinner with the stage, and one line per
    stage kept on screen), as `demo` does; the run happens inside the block."""
    from prefect.logging.configuration import ensure_logging_setup
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flows.nightly import PROGRESS

    ensure_logging_setup()  # Prefect's own set-up would drop a handler added before it
    logger = logging.getLogger("prefect.flow_runs")
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        job = bar.add_task(description, total=None)

        def show(line: str) -> None:
            bar.console.print(f"  {line}", highlight=False)
            bar.update(job, description=line)

        handler = _ProgressLines(PROGRESS, show)
        level = logger.level
        logger.addHandler(handler)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


@app.command()
def run(
    exchange_date: Annotated[str, typer.Option("--date", help="交换日期，YYYY-MM-DD。")],
    datasets: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="只处理这些数据集（可重复，如 --dataset MZ_DIBAO）。"),
    ] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force", help="接受该数据集不足上次一半行数的快照（确认不是截断的导出时使用）。"
        ),
    ] = None,
    allow_future: AllowFuture = False,
) -> None:
    """接收一个交换日期的全部交付：比对、预警、发布（即每晚的运行）。"""
    day = _parse_date(exchange_date, "--date")
    settings = _settings()
    _preflight(
        settings,
        exchange_dates=[day],
        datasets=datasets,
        force=force,
        allow_future=allow_future,
    )
    with embedded_api_starting():
        from flows.nightly import run_nightly

    with progress_shown(f"{day}：接收、比对、发布…"):
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
    """把仓库结构升级到最新版本。"""
    settings = _settings()
    _preflight(settings, landing=False)
    from warehouse.db import connect, current_revision, upgrade

    def go() -> None:
        engine = connect(str(settings.warehouse_url))
        upgrade(engine)
        console.print(f"仓库结构已是最新版本：{current_revision(engine)}")

    _guarded(go)


@db_app.command("revision")
def db_revision(
    message: Annotated[
        str, typer.Option("-m", "--message", help="这次迁移做什么（写入迁移文件名）。")
    ],
    versions: Annotated[
        Path | None, typer.Option("--versions", help="写入的文件夹（默认：仓库自带的迁移目录）。")
    ] = None,
) -> None:
    """由数据集约定生成下一个迁移文件（Alembic 自动生成），供审阅。"""
    from warehouse.migrate import write_revision

    path = _guarded(lambda: write_revision(message, versions))
    console.print(f"已写入 {path}：请审阅后与约定一起提交")


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
    exchange_date: Annotated[str, typer.Option("--date", help="截至该交换日期，YYYY-MM-DD。")],
    allow_future: AllowFuture = False,
) -> None:
    """不重新接收，为每个使用方重新发布共享数据。"""
    day = _parse_date(exchange_date, "--date")
    settings = _settings()
    _preflight(settings, exchange_dates=[day], allow_future=allow_future, landing=False)
    from flows.nightly import publish_all

    publication = _guarded(lambda: publish_all(settings, day))
    console.print(
        f"发布 {publication.publication_id}：{publication.files} 个文件，"
        f"{len(publication.consumers)} 个使用方 → {settings.publish_dir}"
    )


@app.command()
def demo(
    households: Annotated[int, typer.Option(help="模拟县的户数。")] = 400,
    days: Annotated[int, typer.Option(help="运行的夜数（7：满一周，生成周报）。")] = 7,
    start: Annotated[str, typer.Option(help="第一个交换日期，YYYY-MM-DD。")] = "2025-03-10",
    seed: Annotated[int, typer.Option(help="模拟县的随机种子。")] = 7,
    home: Annotated[
        Path | None,
        typer.Option(help="演示文件存放位置（默认：DATASHARE_HOME，未设置时为 var/demo）。"),
    ] = None,
) -> None:
    """生成一个模拟县，并连续运行若干夜的接收流程（演示）。"""
    settings = _settings(**demo_home(home), environment="demo")
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
    from tasks.gx_offline import docs_index_path

    first = _parse_date(start, "--start")
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
        f"报告: {published / 'XC' / 'reports'}\n"
        f"Data Docs: {docs_index_path(settings.home / 'gx')}"
    )


def demo_home(home: Path | None) -> dict[str, Path]:
    """The demo's home: --home, else DATASHARE_HOME (environment or .env), else var/demo."""
    if home is not None:
        return {"home": home}
    try:
        configured = "home" in Settings(environment="demo").model_fields_set
    except Exception:  # invalid settings: _settings reports them in one line
        configured = False
    return {} if configured else {"home": Path("var/demo")}


def night_line(result: NightResult) -> str:
    """One line per night: deliveries, alerts, freshness, publication (statuses in Chinese:
    domain.labels)."""
    from domain.labels import label

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
        _fail(2, f"{option} 应为 YYYY-MM-DD 格式的日期，收到 {value!r}")


@app.command()
def backfill(
    date_from: Annotated[str, typer.Option("--from", help="第一个交换日期，YYYY-MM-DD。")],
    date_to: Annotated[str, typer.Option("--to", help="最后一个交换日期，YYYY-MM-DD。")],
    datasets: Annotated[
        list[str] | None,
        typer.Option("--dataset", "--datasets", help="只补跑这些数据集（可重复）。"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只列出计划，不做任何更改。")] = False,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, help="同时处理的数据集数上限。"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="已入库的交付也由湖中保存的文件重新推导历史。"),
    ] = False,
    allow_future: AllowFuture = False,
) -> None:
    """按日期范围补跑：漏跑、此前失败、重新报送（或强制重推）的交付，从早到晚。"""
    first, last = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    if last < first:
        _fail(2, f"--to {last} 早于 --from {first}")
    settings = _settings()
    _preflight(settings, exchange_dates=[last], datasets=datasets, allow_future=allow_future)
    with embedded_api_starting():
        from flows.backfill import REASON_LABELS, run_backfill

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
        with progress_shown(f"补跑 {first} – {last}…"):
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
            f"[{style}]{REASON_LABELS.get(item.reason, item.reason)}[/]",
            item.detail,
        )
    console.print(table)
    if not result.plan:
        console.print("无需补跑：仓库已包含交换区的全部交付")
    elif not dry_run:
        console.print(f"补跑 {result.backfill_id}：已运行 {result.nights} 夜")


@app.command()
def serve(
    cron: Annotated[
        str | None,
        typer.Option(help="每晚运行的 cron 表达式（默认：设置 schedule_cron，0 2 * * *）。"),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(hidden=True, help="每 N 秒运行一次，代替 cron（演示、测试用）。"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="同时运行的次数上限。")] = None,
) -> None:
    """在本机按计划每晚运行，直到中断（无需另装 Prefect 服务）。"""
    settings = _settings()
    _preflight(settings)
    from flows.serve import serve_schedule

    console.print(
        f"已启动每晚运行（{cron or settings.schedule_cron}，{settings.schedule_timezone}）"
        "和补跑部署；按 Ctrl+C 停止"
    )
    _guarded(lambda: serve_schedule(settings, cron=cron, interval_seconds=interval, limit=limit))


@app.command()
def datasets() -> None:
    """列出各部门的数据集约定：代码、名称、部门、方式、应报日、文件格式。"""
    from expectations.contract import load_contracts
    from tasks.freshness import load_calendar

    _guarded(lambda: console.print(datasets_table(load_contracts(), load_calendar())))


_MODES = {"snapshot": "全量快照", "events": "增量事件"}
_WEEKDAYS_ZH = ("一", "二", "三", "四", "五", "六", "日")


def datasets_table(contracts: dict[str, Contract], calendar: Calendar) -> Table:
    """One row per dataset contract (expectations/contracts), with its delivery calendar."""
    from domain.labels import table_title

    table = Table(title=f"数据集约定（{len(contracts)} 个）")
    for header in ("代码", "名称", "部门", "方式", "应报日", "格式"):
        table.add_column(header, no_wrap=header != "名称", overflow="fold")
    entries = calendar.datasets
    for name, contract in sorted(contracts.items(), key=lambda kv: (kv[1].dept, kv[0])):
        entry = entries.get(name)
        if entry is None or not entry.weekdays:
            due = "按需报送"
        elif len(entry.weekdays) == 7:
            due = "每天"
        else:
            due = "每周" + "、".join(_WEEKDAYS_ZH[d] for d in entry.weekdays)
        table.add_row(
            name,
            table_title(contract.title),  # people's form: the English aside dropped
            contract.dept,
            _MODES.get(contract.mode, contract.mode),
            due,
            contract.format.upper(),
        )
    return table


# The department portal (issue 15): `datashare portal`, `datashare users …`, `datashare tokens …`.
from portal.commands import register as _register_portal  # noqa: E402

_register_portal(app, settings=_settings, guarded=_guarded)


HELP_OPTION_HELP = "显示本帮助并退出。"


def _chinese_help(option: TyperOption | None) -> TyperOption | None:
    """Click's own `--help` line ("Show this message and exit.") in Chinese."""
    if option is not None:
        option.help = HELP_OPTION_HELP
    return option


class _ChineseHelpGroup(TyperGroup):
    def get_help_option(self, ctx: Any) -> TyperOption | None:  # Click's (typer's own copy)
        return _chinese_help(super().get_help_option(ctx))


class _ChineseHelpCommand(TyperCommand):
    def get_help_option(self, ctx: Any) -> TyperOption | None:  # Click's (typer's own copy)
        return _chinese_help(super().get_help_option(ctx))


def _help_in_chinese(group: typer.Typer) -> None:
    """Every group and command of the tree, the portal's included, built with the Chinese
    `--help` line (a command given a class of its own keeps it)."""
    if group.info.cls is None or isinstance(group.info.cls, DefaultPlaceholder):
        group.info.cls = _ChineseHelpGroup
    for command in group.registered_commands:
        if command.cls in (None, TyperCommand):  # typer fills in its own class
            command.cls = _ChineseHelpCommand
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _help_in_chinese(sub.typer_instance)


_help_in_chinese(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
