"""Connecting to the warehouse and keeping its schema current (Alembic, run programmatically)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from datashare.errors import WarehouseUnavailable
from warehouse.migrate import alembic_config

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """A URL as SQLAlchemy needs it: the plain libpq form gets the psycopg 3 driver."""
    # psycopg 3 is the driver we ship; accept the plain libpq form of a URL.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def connect(url: str) -> Engine:
    """An engine for the warehouse; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise WarehouseUnavailable(
            f"无法连接仓库 {engine.url.render_as_string(hide_password=True)}"
            f"（{exc.orig.__class__.__name__}）：请检查数据库是否在运行、地址和账户是否正确"
        ) from None
    return engine


def _config() -> Config:
    return alembic_config()  # warehouse/migrations, plus revisions warehouse.migrate adds


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the warehouse schema to the newest revision (idempotent; tests name an older one)."""
    cfg = _config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
