"""Landing connectors: where deliveries are picked up.

    open_landing(url, *, sql_url=None, sql_views=None) -> Landing
    landing.discover(exchange_date, contracts) -> [DeliveryRef]   what was delivered for a date
    landing.fetch(ref) -> bytes                                   the delivered bytes

A landing area holds `<DEPT>/<DATASET>_<YYYYMMDD>.<ext>` (../shared/spec/README.md): a local
folder or any fsspec URL (sftp://, s3://, memory://…), or an HTTP endpoint serving the same names
(a GET of `<base>/<DEPT>/` may list them; otherwise each expected name is probed). A department
database view is a SQL query per dataset with a `:exchange_date` parameter; its result is turned
into a JSON array keyed by the contract's Chinese headers, with stable row order and number
formatting, so the same view result always gives the same bytes (and the same sha256).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from expectations.contract import Contract
from warehouse.db import normalise_url

__all__ = [
    "EXTENSIONS",
    "DeliveryRef",
    "FsspecLanding",
    "HttpLanding",
    "Landing",
    "SqlViewLanding",
    "open_landing",
]

EXTENSIONS = ("csv", "xlsx", "json")


@dataclass(frozen=True)
class DeliveryRef:
    """One delivery waiting in the landing area (no content, only where it is)."""

    dept: str
    dataset: str
    exchange_date: date
    file_name: str
    location: str  # URL or path it was found at (no credentials), kept in the ledger


class Landing(Protocol):
    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]: ...

    def fetch(self, ref: DeliveryRef) -> bytes: ...


def file_name_pattern(contract: Contract, exchange_date: date) -> re.Pattern[str]:
    """`<DATASET>_<YYYYMMDD>.<ext>`, extension case-insensitive."""
    exts = "|".join(EXTENSIONS)
    return re.compile(
        rf"^{re.escape(contract.dataset)}_{exchange_date:%Y%m%d}\.({exts})$", re.IGNORECASE
    )


def _redact(url: str) -> str:
    """A URL without user:password (it goes into the ledger and logs)."""
    return re.sub(r"(?<=://)[^/@]*@", "", url)


class FsspecLanding:
    """A folder or any fsspec URL."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        refs: list[DeliveryRef] = []
        for contract in contracts:
            folder = f"{self.root.rstrip('/')}/{contract.dept}"
            if not self.fs.isdir(folder):
                continue
            pattern = file_name_pattern(contract, exchange_date)
            # Only files: a folder that happens to carry a delivery's name is not a delivery.
            names = sorted(
                entry["name"].rstrip("/").rsplit("/", 1)[-1]
                for entry in self.fs.ls(folder, detail=True)
                if entry.get("type") == "file"
            )
            for name in names:
                if pattern.match(name):
                    refs.append(
                        DeliveryRef(
                            contract.dept,
                            contract.dataset,
                            exchange_date,
                            name,
                            _redact(f"{self.url}/{contract.dept}/{name}"),
                        )
                    )
        return refs

    def fetch(self, ref: DeliveryRef) -> bytes:
        with self.fs.open(f"{self.root.rstrip('/')}/{ref.dept}/{ref.file_name}", "rb") as f:
            return f.read()


class HttpLanding:
    """An HTTP(S) endpoint that serves `<base>/<DEPT>/<DATASET>_<YYYYMMDD>.<ext>`.

    Discovery probes each expected name with HEAD (servers rarely list directories), or with a
    GET whose body is not read where the server does not allow HEAD; a 404 means not delivered,
    any other error status is raised (and retried by the flow as transient IO).
    """

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _client(self):  # type: ignore[no-untyped-def]
        import httpx

        return httpx.Client(timeout=self.timeout, follow_redirects=True)

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        refs: list[DeliveryRef] = []
        with self._client() as client:
            for contract in contracts:
                for ext in EXTENSIONS:
                    name = f"{contract.dataset}_{exchange_date:%Y%m%d}.{ext}"
                    url = f"{self.url}/{contract.dept}/{name}"
                    response = client.head(url)
                    if response.status_code in (405, 501):  # HEAD not allowed/implemented
                        with client.stream("GET", url) as streamed:
                            response = streamed
                    if response.status_code in (404, 410):
                        continue
                    response.raise_for_status()
                    refs.append(
                        DeliveryRef(
                            contract.dept, contract.dataset, exchange_date, name, _redact(url)
                        )
                    )
        return refs

    def fetch(self, ref: DeliveryRef) -> bytes:
        with self._client() as client:
            response = client.get(f"{self.url}/{ref.dept}/{ref.file_name}")
            response.raise_for_status()
            return response.content


def _json_value(value: object) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f") if value == value else None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class SqlViewLanding:
    """A department database: one SQL query (usually a view) per dataset.

    `views` maps a dataset to a query taking `:exchange_date`; a result with no rows means nothing
    was delivered. Column names may be the canonical names or the Chinese headers.
    """

    def __init__(self, url: str, views: Mapping[str, str]) -> None:
        self.url = url
        self.views = dict(views)

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        """The datasets whose query returns rows for the date (one row is fetched per query)."""
        from sqlalchemy import create_engine, make_url, text

        wanted = [c for c in contracts if c.dataset in self.views]
        if not wanted:
            return []
        where = make_url(self.url).render_as_string(hide_password=True)
        refs: list[DeliveryRef] = []
        engine = create_engine(normalise_url(self.url))
        try:
            with engine.connect() as conn:
                for c in wanted:
                    # A server-side cursor where the driver has one: only the first row travels.
                    result = conn.execution_options(stream_results=True).execute(
                        text(self.views[c.dataset]), {"exchange_date": exchange_date}
                    )
                    if result.first() is None:
                        continue
                    refs.append(
                        DeliveryRef(
                            c.dept,
                            c.dataset,
                            exchange_date,
                            f"{c.dataset}_{exchange_date:%Y%m%d}.json",
                            f"{where}#{c.dataset}",
                        )
                    )
        finally:
            engine.dispose()
        return refs

    def fetch(self, ref: DeliveryRef) -> bytes:
        from sqlalchemy import create_engine, text

        from expectations.contract import load_contracts

        contract = load_contracts()[ref.dataset]
        engine = create_engine(normalise_url(self.url))
        try:
            with engine.connect() as conn:
                result = conn.execute(
                    text(self.views[ref.dataset]), {"exchange_date": ref.exchange_date}
                )
                names = list(result.keys())
                rows = [tuple(r) for r in result]
        finally:
            engine.dispose()
        headers = [_header(contract, n) for n in names]
        records = [dict(zip(headers, map(_json_value, row), strict=True)) for row in rows]
        # Stable order whatever the database returns: the bytes (and sha256) depend on the data.
        records.sort(key=lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
        return json.dumps(records, ensure_ascii=False, indent=0).encode()


def _header(contract: Contract, name: str) -> str:
    """The Chinese header for a canonical column name; other names pass unchanged."""
    for column in contract.columns:
        if column.name == name:
            return column.header
    return name


def open_landing(
    url: str, *, sql_url: str | None = None, sql_views: Mapping[str, str] | None = None
) -> Landing:
    """The connector for a landing URL (or a department database when views are configured)."""
    if sql_views:
        if not sql_url:
            from datashare.errors import ConfigurationError

            raise ConfigurationError(
                "SQL views are configured but DATASHARE_LANDING_SQL_URL is not"
            )
        return SqlViewLanding(sql_url, sql_views)
    if url.startswith(("http://", "https://")):
        return HttpLanding(url)
    return FsspecLanding(url)
