"""Operator mistakes refused at the door, before any work (issue 11).

    preflight(settings, exchange_dates=[D], datasets=[…], force=[…], allow_future=False)

Called at the edge: the CLI before it starts a run, and the flows' entries (a deployment reads
its settings there). Every refusal is a `ConfigurationError` with one Chinese line naming the
fix (the CLI exits 2): a landing folder that is missing, a file or unreadable; a publish, lake or
home folder that cannot be written; an unknown `--dataset`/`--force` name (the valid ones are
listed); an exchange date after today in `schedule_timezone` (Asia/Shanghai) unless the operator
says so; a production secret shorter than 32 bytes; a malformed or unsupported URL. Nothing here
writes: a folder that does not exist yet is judged by its nearest existing parent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from datashare.errors import ConfigurationError
from datashare.settings import Settings
from expectations.contract import load_contracts

WAREHOUSE_DIALECTS = ("sqlite", "postgresql", "postgres")


def today(settings: Settings) -> date:
    """Today in the schedule's time zone (Asia/Shanghai), or the pinned `settings.today`."""
    if settings.today is not None:
        return settings.today
    return datetime.now(ZoneInfo(settings.schedule_timezone)).date()


def preflight(
    settings: Settings,
    *,
    exchange_dates: Iterable[date] = (),
    datasets: Iterable[str] | None = None,
    force: Iterable[str] | None = None,
    allow_future: bool = False,
    landing: bool = True,
) -> None:
    """Refuse an operator mistake with one Chinese line (ConfigurationError); see the module."""
    check_urls(settings)
    if settings.environment == "production":
        settings.person_key_secret()  # missing or shorter than 32 bytes: refused
    check_names(datasets, "--dataset")
    check_names(force, "--force")
    if not allow_future:
        check_dates(exchange_dates, today(settings))
    if landing:
        check_landing(settings)
    check_writable(settings)


def check_urls(settings: Settings) -> None:
    """The warehouse URL (and the department database's) parse and name a supported database."""
    for variable, url, dialects in (
        ("DATASHARE_WAREHOUSE_URL", settings.warehouse_url, WAREHOUSE_DIALECTS),
        ("DATASHARE_LANDING_SQL_URL", settings.landing_sql_url, None),
    ):
        if not url:
            continue
        try:
            parsed = make_url(str(url))
        except (ArgumentError, ValueError):
            raise ConfigurationError(
                f"{variable} 不是有效的数据库地址：应形如 postgresql://用户@主机:5432/库名 或 "
                "sqlite:////绝对路径/warehouse.db"
            ) from None
        dialect = parsed.get_backend_name()
        if dialects is not None and dialect not in dialects:
            raise ConfigurationError(
                f"{variable} 的数据库类型 {dialect} 不受支持：仓库只能是 PostgreSQL "
                "（postgresql://…）或 SQLite（sqlite:///…）"
            )


def check_names(names: Iterable[str] | None, option: str) -> None:
    """Every name is a dataset; otherwise the valid ones are listed."""
    known = load_contracts()
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise ConfigurationError(
            f"{option} {'、'.join(unknown)} 不是数据集；可用的数据集：{'、'.join(sorted(known))}"
        )


def check_dates(exchange_dates: Iterable[date], now: date) -> None:
    """No exchange date after today (its files cannot have been delivered yet)."""
    future = sorted(d for d in exchange_dates if d > now)
    if future:
        raise ConfigurationError(
            f"交换日期 {future[-1]} 晚于今天（{now}，北京时间）：请检查日期；"
            "确需如此时加 --allow-future-date"
        )


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser()


def check_landing(settings: Settings) -> None:
    """A local landing folder exists, is a folder and can be listed and read."""
    if settings.landing_sql_views or not settings.landing or not _is_local(settings.landing):
        return  # a department database or a remote store: its connector reports what it finds
    path = _local_path(settings.landing)
    fix = "请检查 DATASHARE_LANDING（各部门文件夹 MZ/、XC/… 所在的目录）"
    if not path.exists():
        raise ConfigurationError(f"交换区 {path} 不存在：{fix}")
    if not path.is_dir():
        raise ConfigurationError(f"交换区 {path} 不是文件夹：{fix}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigurationError(f"交换区 {path} 无法读取（权限不足）：请让运行账户可读该目录")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(settings: Settings) -> None:
    """The publish, lake and home folders can be written (or created)."""
    folders = [
        ("DATASHARE_PUBLISH_DIR", str(settings.publish_dir)),
        ("DATASHARE_LAKE", str(settings.lake)),
        ("DATASHARE_HOME", str(settings.home)),
    ]
    for variable, url in folders:
        if not _is_local(url):
            continue  # an object store: its credentials decide, at the first write
        path = _local_path(url)
        existing = _nearest_existing(path)
        if not existing.is_dir():
            raise ConfigurationError(
                f"{variable} 指向 {path}，但 {existing} 是文件而不是文件夹：请改为一个文件夹"
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "" if existing == path.absolute() else f"（需在 {existing} 下创建）"
            raise ConfigurationError(
                f"{variable} 的目录 {path} 不可写{what}：请让运行账户可写，或改用其他目录"
            )


def checked(
    settings: Settings,
    datasets: Iterable[str] | None = None,
    force: Iterable[str] | None = None,
) -> Settings:
    """`settings`, after the checks a flow's entry makes (no date check: a scheduled run computes
    its own date, and the CLI has already checked the operator's, with --allow-future-date)."""
    preflight(settings, datasets=datasets, force=force)
    return settings
