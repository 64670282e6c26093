"""The one settings object. Built at the edge (CLI, flow entry) and passed down as plain values."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datashare.errors import ConfigurationError


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
    gx_max_rows: int = Field(default=200_000, ge=1000)  # contract suite runs on a sample above
    landing_sql_views: dict[str, str] = {}  # dataset -> query with :exchange_date (JSON)
    max_workers: int = Field(default=4, ge=1)
    build_docs: bool = True  # GX Data Docs per delivery (off for big backfills)
    province: str = "61"  # rule parameters and thresholds (reference data)
    publish_keep_days: int = Field(default=30, ge=1)  # dated publications kept
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
        """The HMAC key. Production fails without one; the demo keeps its own under HOME."""
        if self.secret is not None and self.secret.get_secret_value():
            return self.secret.get_secret_value().encode()
        if self.environment == "production":
            raise ConfigurationError(
                "DATASHARE_SECRET is not set: person_key cannot be computed. Set it to a long "
                "random value kept outside the repository (the same value every night)."
            )
        key_file = self.home / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()
