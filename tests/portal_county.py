"""A small generated county after real nights, with portal accounts: the portal tests' data.

`build` runs the nights; `sqlite_copy` gives each test module its own copy of one SQLite county
built once per test session (across xdist workers, under a file lock), so the modules that only
need "a county after three nights" do not each pay for the nights.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
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


@contextmanager
def _environment(home: Path, url: str) -> Iterator[None]:
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
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build(home: Path, url: str, households: int = 60, seed: int = 15) -> PortalCounty:
    """Generate the county, run NIGHTS real nights, add the accounts."""
    from flows.nightly import run_nightly

    with _environment(home, url):
        settings = Settings()
        county = build_county(seed, households)
        landing = Path(str(settings.landing))
        days = [DAY1 + timedelta(days=i) for i in range(NIGHTS)]
        for day in days:
            write_night(county, landing, day, defect_rate=0.05)
            run_nightly(day, settings)
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


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    import fcntl  # POSIX; the suite runs on Linux

    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_copy(tmp_path_factory: pytest.TempPathFactory, name: str) -> PortalCounty:
    """A private copy of the session's SQLite county: built by the first module that asks (the
    others wait on a file lock), then copied, so a module may change its copy freely. Paths in
    the copy are its own (settings, publish folder, the `current` link is relative); only the
    ledger's `location` still names the first build's landing files, which nothing here reads."""
    base = tmp_path_factory.getbasetemp()
    shared_root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    golden = shared_root / "portal_county_sqlite"
    with _exclusive(shared_root / "portal_county_sqlite.lock"):
        if not (golden / "built").exists():
            shutil.rmtree(golden, ignore_errors=True)
            first = build(golden / "home", f"sqlite:///{golden / 'warehouse.db'}")
            first.engine.dispose()
            (golden / "built").touch()
    target = tmp_path_factory.mktemp(name) / "county"
    shutil.copytree(golden, target, symlinks=True)
    url = f"sqlite:///{target / 'warehouse.db'}"
    with _environment(target / "home", url):
        settings = Settings()
    return PortalCounty(settings, url, DAY1 + timedelta(days=NIGHTS - 1), connect(url))


def login(app: Any, username: str, password: str = PASSWORD, **kw: Any) -> Any:
    """A test client logged in to the portal as `username` (the login form, its CSRF token)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note about its httpx-based test client
        from starlette.testclient import TestClient

    client = TestClient(app, **kw)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token, "the login page has no CSRF token"
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client
