"""The portal in a real browser (Debian's Chromium driven by Playwright), on an isolated network:
every request that leaves the application's own origin is aborted and counted as a failure.

Screenshots of every page at desktop (1280x800) and phone (390x844) width go to
$PORTAL_SCREENSHOTS, else to a temporary folder (printed).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import portal_county
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from portal.app import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: None
) -> Iterator[tuple[str, portal_county.PortalCounty]]:
    """The portal over a real night of a small county, served by uvicorn on a free port."""
    import uvicorn

    if not Path(CHROMIUM).exists():
        # Like PostgreSQL: required in CI (.ci/run installs it), skipped on a machine that has
        # only Python, so that `python3 dev.py test` passes on a fresh machine.
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    county = portal_county.sqlite_copy(tmp_path_factory, "portal_browser")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(county.config()), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", county
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        county.engine.dispose()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("PORTAL_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("portal_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"portal screenshots in {folder}")
    return folder


class Isolated:
    """A browser context whose every request outside `origin` is aborted and recorded."""

    def __init__(self, browser: Any, origin: str, viewport: dict[str, int]) -> None:
        self.origin = origin
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.bad: list[str] = []
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.downloads: set[str] = set()
        self.page.on("download", lambda d: self.downloads.add(d.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))
        self.page.on(
            "response",
            lambda r: (
                self.bad.append(f"{r.status} {r.url}")
                if r.status >= 400 and "/static/" in r.url
                else None
            ),
        )
        self.page.on("console", lambda m: self.bad.append(m.text) if m.type == "error" else None)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url == self.origin:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def login(self, username: str) -> None:
        self.page.goto(f"{self.origin}/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", portal_county.PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"{self.origin}/night")

    def visit(self, path: str, shot: Path | None) -> str:
        response = self.page.goto(f"{self.origin}{path}")
        assert response is not None
        self.page.wait_for_load_state("networkidle")
        if shot is not None:
            self.page.screenshot(path=str(shot), full_page=True)
        return str(response.status)

    def search(self, id_number: str, shot: Path) -> str:
        """一人一档 by its form (a POST: the id number stays out of the URL)."""
        self.visit("/lookup", None)
        self.page.fill("input[name=id_number]", id_number)
        with self.page.expect_navigation() as navigation:
            self.page.click("form[action='/lookup'] button[type=submit]")
        response = navigation.value
        assert response is not None and id_number not in self.page.url
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=str(shot), full_page=True)
        return str(response.status)

    def check(self) -> None:
        assert self.outside == [], f"requests outside the application: {self.outside}"
        # A download is a navigation Chromium ends itself ("aborted") once the file is saved.
        failed = [f for f in self.failed if f.split(" ")[0] not in self.downloads]
        assert failed == [], f"failed requests: {failed}"
        assert self.bad == [], f"errors: {self.bad}"


def _first_link(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found, f"no link matching {pattern}"
    return found.group(1).replace("&amp;", "&")


def test_every_page_in_a_browser_on_an_isolated_network(
    served: tuple[str, portal_county.PortalCounty], shots: Path
) -> None:
    from playwright.sync_api import sync_playwright

    origin, county = served
    profile = pq.read_table(
        Path(str(county.settings.publish_dir)) / "XC" / "person_profile.parquet",
        columns=["id_number"],
    ).to_pandas()
    id_number = str(profile["id_number"].iloc[0])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for width, viewport in VIEWPORTS.items():
                # A department: its night, its data, its problems, its alerts.
                yb = Isolated(browser, origin, viewport)
                yb.visit("/login", shots / f"{width}-01-login.png")
                yb.login("yb_staff")
                pages = {"02-night": "/night", "03-data": "/data", "05-problems": "/problems"}
                pages |= {"07-alerts": "/alerts"}
                for name, path in pages.items():
                    assert yb.visit(path, shots / f"{width}-{name}.png") == "200", path
                table = _first_link(yb.page.content(), r'href="(/alerts/[^"]+)"')
                assert yb.visit(table, shots / f"{width}-08-alert.png") == "200"
                yb.visit("/data", None)
                data_link = _first_link(yb.page.content(), r'href="(/data/[A-Z_a-z]+)"')
                assert yb.visit(data_link, shots / f"{width}-04-table.png") == "200"
                yb.visit("/problems", None)
                row = _first_link(yb.page.content(), r'href="(/quality/[^"#]+)')
                assert yb.visit(row, shots / f"{width}-06-quality-row.png") == "200"
                assert yb.page.locator("tr.focus").count() == 1
                assert yb.visit("/api/docs", shots / f"{width}-14-api-docs.png") == "200"
                yb.check()
                yb.context.close()

                xc = Isolated(browser, origin, viewport)
                xc.login("xc_admin")
                bureau = {"09-bureau": "/bureau"}
                bureau |= {"11-reports": "/reports", "12-alerts-xc": "/alerts?status=open"}
                for name, path in bureau.items():
                    assert xc.visit(path, shots / f"{width}-{name}.png") == "200", path
                assert xc.search(id_number, shots / f"{width}-10-lookup.png") == "200"
                xc.visit("/night", shots / f"{width}-13-night-xc.png")
                xc.check()
                xc.context.close()
        finally:
            browser.close()


def test_the_journey_in_a_browser(
    served: tuple[str, portal_county.PortalCounty], shots: Path
) -> None:
    """A department logs in, sees its night, downloads a table, opens a rejected row; the
    bureau records a verification and the alert closes; a second department sees none of it."""
    from playwright.sync_api import sync_playwright

    origin, county = served
    engine = county.config().engine
    with engine.connect() as conn:
        alerts = pd.read_sql(text("select alert_id, status, pushed_to from alerts"), conn)
    target = alerts[(alerts["status"] == "open") & alerts["pushed_to"].str.contains("YB")]
    target = target[~target["pushed_to"].str.contains("MZ")]
    assert len(target), "the county has no open alert pushed to YB"
    alert_id = str(target["alert_id"].iloc[0])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yb = Isolated(browser, origin, VIEWPORTS["phone"])
            yb.login("yb_staff")
            assert "YB_" in yb.page.content()  # the night lists its own deliveries
            yb.page.click("nav >> text=我的数据")
            yb.page.click("h2 >> text=医保参保")
            with yb.page.expect_download() as download:
                yb.page.click("a.button >> text=XLSX")
            saved = download.value.path()
            assert saved is not None and Path(saved).stat().st_size > 1000
            yb.page.click("nav >> text=我的问题数据")
            yb.page.locator("td.file a").first.click()
            assert yb.page.locator("tr.focus").count() == 1
            quality_url = yb.page.url
            yb.page.goto(f"{origin}/alerts/{alert_id}")
            assert "待核实" in yb.page.content()
            yb.check()

            xc = Isolated(browser, origin, VIEWPORTS["desktop"])
            xc.login("xc_admin")
            xc.page.goto(f"{origin}/alerts/{alert_id}")
            xc.page.check("input[value=已纳入监测]")
            xc.page.fill("textarea[name=note]", "入户核实后纳入监测")
            xc.page.click("button >> text=记录核实结果")
            xc.page.wait_for_url("**/alerts/*?saved=verify")
            assert "核实结果已记录" in xc.page.content()
            xc.page.screenshot(path=str(shots / "journey-verified.png"), full_page=True)
            xc.check()

            yb.page.goto(f"{origin}/alerts/{alert_id}")
            assert "已纳入监测" in yb.page.content()

            mz = Isolated(browser, origin, VIEWPORTS["phone"])
            mz.login("mz_staff")
            for url in (f"{origin}/alerts/{alert_id}", quality_url, f"{origin}/data/YB_CANBAO"):
                response = mz.page.goto(url)
                assert response is not None and response.status == 404, url
                assert "未找到，或您无权查看" in mz.page.content()
            mz.page.goto(f"{origin}/alerts")
            assert alert_id not in mz.page.content()
            mz.page.screenshot(path=str(shots / "journey-other-department.png"), full_page=True)
        finally:
            browser.close()
    with engine.connect() as conn:
        status = conn.execute(
            text("select status from alerts where alert_id = :a"), {"a": alert_id}
        ).scalar()
    assert status == "confirmed"
