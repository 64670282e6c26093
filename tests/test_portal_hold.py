"""A department's download holds the publication it reads: the retention's pruning after the
next switch leaves that version on disk until the last byte is sent, and prunes it after.

The download is a real request through the portal's ASGI application, paused after its first
chunk of bytes (the client reading slowly) while a new publication is switched in and the
retention prunes. The hold is a lock on the publish folder, whatever the warehouse: SQLite only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import portal_county
import pytest
from sqlalchemy import select

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note about its httpx-based test client
    from starlette.testclient import TestClient

from portal.app import HeldFileResponse, create_app
from portal.security import SESSION_COOKIE
from tasks.publication import publish
from warehouse import published as files
from warehouse.tables_publish import audit_log

ONLY_THE_LAST = files.Retention(nights=1, month_ends=0)  # every other version may go
NOW = datetime(2025, 3, 13, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def county(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: None
) -> Iterator[portal_county.PortalCounty]:
    built = portal_county.sqlite_copy(tmp_path_factory, "portal_hold")
    yield built
    built.engine.dispose()


class PausedDownload:
    """GET `path` through the ASGI app in a thread; the client stops reading after the first
    body chunk until `resume()`."""

    def __init__(self, app: Any, path: str, cookie: str) -> None:
        self.app, self.path, self.cookie = app, path, cookie
        self.status = 0
        self.body = bytearray()
        self.first_chunk = threading.Event()
        self._resume = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PausedDownload:
        self.thread.start()
        assert self.first_chunk.wait(60), "the download sent no bytes"
        return self

    def resume(self) -> None:
        self._resume.set()
        assert self.done.wait(60), "the download did not finish"
        self.thread.join(10)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            anyio.run(self._request)
        except BaseException as exc:  # reported in resume()
            self.error = exc
        finally:
            self.first_chunk.set()
            self.done.set()

    async def _request(self) -> None:
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"cookie", f"{SESSION_COOKIE}={self.cookie}".encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()  # the client stays connected
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")
                if not self.first_chunk.is_set():
                    self.first_chunk.set()
                    await anyio.to_thread.run_sync(self._resume.wait)

        await self.app(scope, receive, send)


_login = portal_county.login


def _pruned(county: portal_county.PortalCounty) -> set[str]:
    with county.engine.connect() as conn:
        return set(
            conn.execute(
                select(audit_log.c.publication_id).where(audit_log.c.action == "prune")
            ).scalars()
        )


def test_a_download_in_flight_keeps_its_version_through_pruning(
    county: portal_county.PortalCounty, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_dir = Path(str(county.settings.publish_dir))
    secret = county.settings.person_key_secret()
    app = create_app(county.config())
    mz = _login(app, "mz_staff")
    read = files.current_publication(publish_dir)
    assert read is not None
    table = _a_table(mz)
    folder = files.version_dir(publish_dir, read)
    published = folder / "MZ" / f"{table}.parquet"
    # The county is small: a chunk smaller than the file, as a city table is many chunks,
    # so that the response is still reading the file when the client pauses.
    monkeypatch.setattr(HeldFileResponse, "chunk_size", max(published.stat().st_size // 8, 64))

    download = PausedDownload(
        app, f"/data/{table}/download?format=parquet", mz.cookies[SESSION_COOKIE]
    ).start()
    assert download.status == 200
    # The next night's publication is switched in; its retention keeps only itself.
    after = publish(
        county.engine,
        publish_dir,
        as_of=county.last_day,
        secret=secret,
        retention=ONLY_THE_LAST,
        incremental=False,
    )
    assert files.current_publication(publish_dir) == after.publication_id != read
    assert read not in files.kept_versions(publish_dir, ONLY_THE_LAST, NOW)
    assert files.prune(publish_dir, ONLY_THE_LAST, NOW) == []
    assert (folder / files.CATALOG).is_file() and read not in _pruned(county)

    download.resume()
    expected = hashlib.sha256(published.read_bytes()).hexdigest()
    assert hashlib.sha256(bytes(download.body)).hexdigest() == expected

    assert files.prune(publish_dir, ONLY_THE_LAST, NOW) == [read]  # released: it goes
    assert not folder.exists()
    # A page of that version now answers as one that does not exist.
    assert mz.get(f"/data/{table}", params={"version": read}).status_code == 404
    assert mz.get(f"/data/{table}/download", params={"version": read}).status_code == 404


def _a_table(client: TestClient) -> str:
    page = client.get("/data").text
    found = re.search(r'href="/data/(MZ_[A-Z_]+)"', page)
    assert found, "MZ has no table of its own in the current publication"
    return found.group(1)
