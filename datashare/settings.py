"""The one settings object. Built at the edge (CLI, flow entry) and passed down as plain values.

An entry point that already holds Settings (the CLI, a test) runs a flow inside
`use_settings(settings)`; the flow's entry reads `current_settings()`, which is those settings,
or, for a run Prefect started (a deployment, `serve`, a worker), Settings read from the
environment. Nothing below flows/ reads the environment: steps get plain values.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datashare.errors import ConfigurationError

MIN_SECRET_BYTES = 32  # an HMAC key shorter than this can be guessed: refused in production
# Defaults that code below the settings also needs (a step's keyword default, a benchmark):
# written once, here.
DEFAULT_PROVINCE = "61"  # whose rule parameters and thresholds apply (reference data)
DEFAULT_GX_MAX_ROWS = 200_000  # above this the GX contract suite runs on a sample


def settings_error(exc: ValidationError) -> str:
    """Pydantic's validation block as one Chinese line, naming the variables, never the values
    (a value may be a password or the secret)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = "_".join(str(p) for p in error["loc"] if isinstance(p, str)) or "?"
        parts.append(f"DATASHARE_{field.upper()}：{error['msg']}")
    return "设置无效：" + "；".join(parts) + "（请改正 .env 或环境变量后重试）"


class Settings(BaseSettings):
    """Configuration, read from `DATASHARE_*` environment variables (and a `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="DATASHARE_", env_file=".env", extra="ignore")

    home: Path = Path("./var")
    landing: str | None = None  # a folder, any fsspec URL, or http(s)://…
    warehouse_url: str | None = None  # SQLAlchemy URL; default SQLite under HOME
    lake: str | None = None  # folder for Parquet; default HOME/lake
    publish_dir: Path | None = None  # default HOME/published
    secret: SecretStr | None = None  # HMAC key for person_key
    environment: Literal["production", "demo", "test"] = "production"
    landing_sql_url: str | None = None  # department database for SQL-view deliveries
    gx_max_rows: int = Field(default=DEFAULT_GX_MAX_ROWS, ge=1000)  # GX samples above this
    landing_sql_views: dict[str, str] = {}  # dataset -> query with :exchange_date (JSON)
    max_workers: int = Field(default=4, ge=1)
    build_docs: bool = True  # GX Data Docs per delivery (off for big backfills)
    province: str = DEFAULT_PROVINCE  # rule parameters and thresholds (reference data)
    # Publication retention (issue 13, docs/publishing.md): after a switch, versions are kept
    # for the last `publish_keep_days` exchange dates (each date's last publication), for the
    # last `publish_keep_month_ends` month ends, for `publish_reader_grace_seconds` after they
    # were replaced, and while a reader holds one; the current one always.
    publish_keep_days: int = Field(default=30, ge=1)  # exchange dates (nights) kept
    publish_keep_month_ends: int = Field(default=12, ge=0)
    publish_reader_grace_seconds: float = Field(default=600, ge=0)
    publish_workers: int = Field(default=2, ge=1)  # changed tables written at once
    # PostgreSQL publication: schema pub_<consumer>, role ds_<consumer> (roles are cluster-wide:
    # a second installation in the same cluster, or a test, uses other prefixes).
    pg_schema_prefix: str = Field(default="pub_", pattern=r"^[a-z][a-z0-9_]*$")
    pg_role_prefix: str = Field(default="ds_", pattern=r"^[a-z][a-z0-9_]*$")
    # Operations (issue 6): notifications, task runner, schedule, catch-up, writer lock.
    notify_urls: list[str] = []  # Apprise URLs (JSON list); may hold tokens: never logged
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None  # tcp://scheduler:8786; None: a local process cluster
    schedule_cron: str = "0 2 * * *"  # the nightly run, in schedule_timezone
    schedule_timezone: str = "Asia/Shanghai"
    catch_up: Literal["all", "latest", "skip"] = "all"  # missed nights after downtime
    lock_wait_seconds: float = Field(default=0, ge=0)  # a second run waits this long, then exits 4
    # What "today" is for the refusal of future exchange dates (issue 11); None: the clock in
    # schedule_timezone. Tests pin it; an operator replaying a past situation may too.
    today: date | None = None
    # What a reader may consume (issue 11): refusals are UnreadableDelivery with a Chinese reason.
    read_max_columns: int = Field(default=16_384, ge=16)  # Excel's own limit (XFD)
    read_max_cells: int = Field(default=20_000_000, ge=1000)  # a sheet's rows x columns
    read_max_field_chars: int = Field(default=32_767, ge=256)  # Excel's limit for one cell
    read_max_json_depth: int = Field(default=64, ge=3)
    read_max_unzipped_mb: int = Field(default=1024, ge=1)  # a workbook's parts, unpacked
    read_worker_memory_mb: int = Field(default=4096, ge=256)  # the isolated spreadsheet reader
    read_worker_timeout_seconds: float = Field(default=900, gt=0)
    # The department portal (issue 15): `datashare portal`. The session secret signs login
    # cookies: required in production (the demo and tests keep one under HOME); cookies are
    # Secure unless set otherwise (production sits behind a TLS reverse proxy).
    portal_host: str = "127.0.0.1"
    portal_port: int = Field(default=8080, ge=1, le=65535)
    portal_session_secret: SecretStr | None = None
    portal_cookie_secure: bool | None = None  # None: True in production, False in demo/test

    @model_validator(mode="after")
    def _defaults_under_home(self) -> Settings:
        home = self.home
        if self.landing is None:
            self.landing = str(home / "landing")
        if self.warehouse_url is None:
            self.warehouse_url = f"sqlite:///{(home / 'warehouse.db').resolve()}"
        if self.lake is None:
            self.lake = str(home / "lake")
        if self.publish_dir is None:
            self.publish_dir = home / "published"
        return self

    def person_key_secret(self) -> bytes:
        """The HMAC key. Production fails without one, or with one shorter than 32 bytes; the
        demo keeps its own under HOME."""
        if self.secret is not None and self.secret.get_secret_value():
            key = self.secret.get_secret_value().encode()
            if self.environment == "production" and len(key) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"DATASHARE_SECRET 太短（{len(key)} 字节，生产环境至少 {MIN_SECRET_BYTES} "
                    "字节）：请换成足够长的随机值，例如 python3 -c 'import secrets; "
                    "print(secrets.token_hex(32))' 的输出，每晚保持不变"
                )
            return key
        if self.environment == "production":
            raise ConfigurationError(
                "未设置 DATASHARE_SECRET：无法计算 person_key。请设置一个足够长的随机值（保存在"
                "仓库之外，每晚不变），例如 python3 -c 'import secrets; "
                "print(secrets.token_hex(32))' 的输出"
            )
        key_file = self.home / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()


_CURRENT: ContextVar[Settings | None] = ContextVar("datashare_settings", default=None)


@contextlib.contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Within the block, flow entries in this context use `settings` (the CLI's way of passing
    its options down: as an argument, never through os.environ)."""
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)


def current_settings() -> Settings:
    """The settings a flow's entry uses: those of `use_settings`, or else read from the
    environment and .env (a run that Prefect started: a deployment, `serve`, a worker)."""
    return _CURRENT.get() or Settings()
