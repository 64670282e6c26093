"""PostgreSQL reads straight to Arrow, by the ADBC PostgreSQL driver on connections of its own.

    read(uri, sql, schema) -> pa.Table | None    the rows of one SELECT, typed by `schema`
                                                 (names in select order); None when the driver
                                                 cannot connect or run it (the caller reads
                                                 on its own connection instead)
    uri_of(conn)                                 the libpq URI of a SQLAlchemy connection's
                                                 database (search_path and other options kept)

Why: warehouse.bulk read PostgreSQL by COPY … TO STDOUT as CSV, one Python call per row from
psycopg and a CSV parse by Arrow. The driver asks for binary COPY and builds Arrow arrays in
C, and the server no longer formats CSV: 3M narrow rows take 1.0-1.2 s of client CPU instead of
4.0-4.4 s (`python -m bench.bench_pg_reads`, 2026-12-07; docs/scaling.md, session 13).

Its own connection sees only what is committed, so the caller decides when that is what its
own connection would see (warehouse.bulk: while the caller's transaction has written nothing).
Connections are autocommit (a read holds no lock after it), a few kept for the next read (the
oldest closed beyond four), and never used by a forked child (it gets a fresh pool; the
parent's stay the parent's).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection

log = logging.getLogger(__name__)


_IDLE = 4  # connections kept idle per process, over every URI (a night reads 3 at a time)


class _Pool:
    """Idle driver connections, newest last; at most _IDLE, the oldest closed first (a test
    run reads a new schema's URI per test: unbounded, they exhausted max_connections)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.idle: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def take(self, uri: str) -> Any:
        with self.lock:
            for i in range(len(self.idle) - 1, -1, -1):
                if self.idle[i][0] == uri:
                    return self.idle.pop(i)[1]
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)

    def give(self, uri: str, connection: Any) -> None:
        with self.lock:
            self.idle.append((uri, connection))
            surplus = self.idle[:-_IDLE] if len(self.idle) > _IDLE else []
            del self.idle[: len(surplus)]
        _close([c for _, c in surplus])

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child: the connections are the parent's
        with self.lock:
            connections = [c for _, c in self.idle]
            self.idle.clear()
        _close(connections)


def _close(connections: list[Any]) -> None:
    for connection in connections:
        with contextlib.suppress(Exception):  # closing what is no longer needed
            connection.close()


_pool = _Pool()
_forsaken: list[_Pool] = []  # a forked child keeps the parent's pool alive, unused, unclosed


def _after_fork() -> None:
    global _pool
    _forsaken.append(_pool)
    _pool = _Pool()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(lambda: _pool.close())


def uri_of(conn: Connection) -> str:
    """The libpq URI of the connection's database, with its query options (search_path …)."""
    return conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def read(uri: str, sql: str, schema: pa.Schema) -> pa.Table | None:
    """The rows of `sql` typed by `schema` (positional names), or None when the driver failed
    (never its message: it may quote the statement, and the caller's own read reports)."""
    pool = _pool
    try:
        connection = pool.take(uri)
    except Exception as exc:
        log.debug("ADBC PostgreSQL connection refused (%s): reading by COPY", type(exc).__name__)
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            rows = cursor.fetch_arrow_table()
    except Exception as exc:
        log.debug("ADBC PostgreSQL read failed (%s): reading by COPY", type(exc).__name__)
        with contextlib.suppress(Exception):  # already broken
            connection.close()
        return None
    pool.give(uri, connection)
    if rows.num_columns != len(schema):
        return None
    try:
        return pa.Table.from_arrays(
            [rows.column(i).cast(f.type) for i, f in enumerate(schema)], schema=schema
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # a type the driver maps
        log.debug("ADBC PostgreSQL column not castable (%s): reading by COPY", type(exc).__name__)
        return None
