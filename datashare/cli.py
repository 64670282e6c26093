"""The `datashare` command: the edge where settings are read and runs are started.

Exit codes: 0 the run completed (deliveries may have failed their gates: that is a recorded
business outcome); 2 bad configuration; 3 warehouse unreachable; 4 another run holds the lock;
1 anything unexpected.
"""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from datashare.errors import ConfigurationError, RunLocked, WarehouseUnavailable
from datashare.settings import Settings

if TYPE_CHECKING:
    from flows.nightly import RunConfig
    from tasks.intake import IntakeSummary

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="datashare — county data exchange for 防返贫动态监测.")
db_app = typer.Typer(help="Warehouse schema.")
app.add_typer(db_app, name="db")
console = Console(stderr=False)
err_console = Console(stderr=True)

_STATUS_STYLE = {"loaded": "green", "failed": "red", "duplicate": "yellow",
                 "unchanged": "dim", "superseded": "dim"}


def quiet_prefect(settings: Settings) -> None:
    """Keep Prefect's own chatter (ephemeral API start-up, telemetry) away from users."""
    home = settings.home.resolve()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def run_config(settings: Settings, **overrides: object) -> RunConfig:
    from flows.nightly import RunConfig

    return RunConfig(
        landing=str(settings.landing), warehouse_url=str(settings.warehouse_url),
        lake=str(settings.lake), publish_dir=str(settings.publish_dir),
        gx_root=str(settings.home / "gx"), gx_max_rows=settings.gx_max_rows,
        max_workers=settings.max_workers, sql_url=settings.landing_sql_url,
        **overrides,  # type: ignore[arg-type]
    )


def summary_table(title: str, summaries: list[IntakeSummary]) -> Table:
    table = Table(title=title, show_lines=False)
    for header in ("部门", "数据集", "文件", "状态", "行数", "入库", "问题", "重复", "原因"):
        table.add_column(header, justify="right" if header in {"行数", "入库", "问题", "重复"}
                         else "left", overflow="fold")
    for s in summaries:
        style = _STATUS_STYLE.get(s.status, "")
        table.add_row(s.dept, s.dataset, s.source_file, f"[{style}]{s.status}[/]",
                      f"{s.rows_in:,}", f"{s.rows_loaded:,}", f"{s.rows_rejected:,}",
                      f"{s.duplicates:,}", (s.reason or "")[:80])
    return table


def _fail(code: int, message: str) -> None:
    err_console.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _guarded(fn):  # type: ignore[no-untyped-def]
    """Turn the run-level failures into a one-line reason and an exit code."""
    try:
        return fn()
    except ConfigurationError as exc:
        _fail(2, str(exc))
    except WarehouseUnavailable as exc:
        _fail(3, str(exc))
    except RunLocked as exc:
        _fail(4, str(exc))


def _settings(**env: object) -> Settings:
    try:
        settings = Settings(**env)  # type: ignore[arg-type]
        settings.person_key_secret()
    except ConfigurationError as exc:
        _fail(2, str(exc))
    except ValueError as exc:
        _fail(2, f"bad configuration: {exc}")
    quiet_prefect(settings)
    return settings


@app.command()
def run(
    exchange_date: Annotated[str, typer.Option("--date", help="Exchange date, YYYY-MM-DD.")],
    datasets: Annotated[list[str] | None, typer.Option("--dataset", help="Only these.")] = None,
    force: Annotated[list[str] | None, typer.Option(
        "--force", help="Accept a snapshot of this dataset below half of the previous one.")] = None,
) -> None:
    """Take in every delivery for one exchange date (the nightly run)."""
    try:
        day = date.fromisoformat(exchange_date)
    except ValueError:
        _fail(2, f"--date must be YYYY-MM-DD, got {exchange_date!r}")
    settings = _settings()
    from flows.nightly import run_nightly

    config = run_config(settings, datasets=datasets or None, force=force or [])
    summaries = _guarded(lambda: run_nightly(day, config))
    console.print(summary_table(f"交换台账 {day}", summaries))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the warehouse schema to the newest revision."""
    settings = _settings()
    from warehouse.db import connect, current_revision, upgrade

    def go() -> None:
        engine = connect(str(settings.warehouse_url))
        upgrade(engine)
        console.print(f"warehouse at revision {current_revision(engine)}")

    _guarded(go)


@app.command()
def demo(
    households: Annotated[int, typer.Option(help="Size of the synthetic county.")] = 400,
    days: Annotated[int, typer.Option(help="Nights to run.")] = 4,
    start: Annotated[str, typer.Option(help="First exchange date.")] = "2025-03-10",
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic county.")] = 7,
    home: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
) -> None:
    """Generate a synthetic county and run the nightly flow over several days."""
    settings = _settings(home=home, environment="demo")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from datashare.synth import build_county, write_night
    from flows.nightly import run_nightly

    first = date.fromisoformat(start)
    landing = Path(str(settings.landing))
    config = run_config(settings)
    all_summaries: list[IntakeSummary] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        job = progress.add_task("生成模拟县数据…", total=days + 1)
        county = build_county(seed, households)
        progress.advance(job)
        for offset in range(days):
            day = first + timedelta(days=offset)
            progress.update(job, description=f"第 {offset + 1}/{days} 夜 {day}：生成交付文件…")
            write_night(county, landing, day)
            progress.update(job, description=f"第 {offset + 1}/{days} 夜 {day}：接收与校验…")
            summaries = _guarded(lambda day=day: run_nightly(day, config))
            all_summaries.extend(summaries)
            progress.advance(job)
        progress.update(job, description="完成")
    console.print(summary_table(f"交换台账 {first} – {first + timedelta(days=days - 1)}",
                                all_summaries))
    console.print(f"仓库: {settings.warehouse_url}\n湖: {settings.lake}\n"
                  f"发布: {settings.publish_dir}\nData Docs: {settings.home / 'gx'}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
