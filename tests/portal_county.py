"""A small generated county after real nights, with portal accounts: the portal tests' data.

Built once per backend per test session (the nights take a while) under a temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from datashare.settings import Settings
from datashare.synth import build_county, write_night
from portal.app import PortalConfig
from portal.security import hash_password
from warehouse import portal_store as store
from warehouse.db import connect, upgrade

DAY1 = date(2025, 3, 10)
NIGHTS = 3
PASSWORD = "ceshi-mima-2025"  # test accounts only
AT = datetime(2025, 3, 13, 9, 0, tzinfo=UTC)
# The departments with accounts: the bureau, and two that must never see each other's data.
ACCOUNTS = {
    "xc_admin": ("XC", "bureau", "乡村振兴局 王科长"),
    "mz_staff": ("MZ", "department", "民政局 李干事"),
    "yb_staff": ("YB", "department", "医保局 赵干事"),
    "cl_staff": ("CL", "department", "残联 孙干事"),
    "ga_staff": ("GA", "department", "公安局 周干事"),
    "zj_staff": ("ZJ", "department", "住建局 吴干事"),
}


@dataclass(frozen=True)
class PortalCounty:
    settings: Settings
    url: str
    last_day: date
    engine: Engine  # one pool for the portal and the tests; disposed by the fixture

    def config(self) -> PortalConfig:
        return PortalConfig(
            engine=self.engine,
            publish_dir=Path(str(self.settings.publish_dir)),
            secret=self.settings.person_key_secret(),
            session_secret="test-session-secret-0123456789abcdef",
            cookie_secure=False,
            gx_root=self.settings.home / "gx",
        )


def build(home: Path, url: str, households: int = 60, seed: int = 15) -> PortalCounty:
    """Generate the county, run NIGHTS real nights, add the accounts."""
    import os

    from flows.nightly import run_nightly

    env = {
        "DATASHARE_HOME": str(home),
        "DATASHARE_WAREHOUSE_URL": url,
        "DATASHARE_SECRET": "portal-test-secret-not-for-production-0123456789",
        "DATASHARE_BUILD_DOCS": "false",
        "DATASHARE_MAX_WORKERS": "2",
        "DATASHARE_ENVIRONMENT": "test",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the flow reads its settings at entry, as a deployed run does
    try:
        settings = Settings()
        county = build_county(seed, households)
        landing = Path(str(settings.landing))
        days = [DAY1 + timedelta(days=i) for i in range(NIGHTS)]
        for day in days:
            write_night(county, landing, day, defect_rate=0.05)
            run_nightly(day, settings)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    engine = connect(url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for username, (consumer, role, name) in ACCOUNTS.items():
                store.add_account(
                    conn,
                    username=username,
                    consumer=consumer,
                    role=role,
                    display_name=name,
                    password_hash=hash_password(PASSWORD),
                    at=AT,
                )
    finally:
        engine.dispose()
    return PortalCounty(settings, url, days[-1], connect(url))
