"""One writer at a time: the warehouse's writer lock.

    with writer_lock(engine, owner="nightly 2025-03-12", wait_seconds=600):
        ...  # the only run writing to this warehouse

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a dedicated
connection that is held open for the whole run. The key is derived from the database and the
schema, so two warehouses on one server (or two test schemas) do not block each other. The
server releases it when that connection ends, so a crashed run never leaves it behind. Who holds
it is read from `pg_stat_activity`: the holder sets its `application_name` to
`datashare: <owner>`, and its `backend_start` is the time it took the lock.

SQLite: an OS file lock (`flock`) on `<database>.lock` beside the database file. Chosen over a
lock row because the kernel releases it when the holding process dies (kill -9, power loss of
the process), so there is no stale-lock detection to get wrong (pid reuse, clock skew, a row
written by a process on another host), and because it does not need the schema to exist: the lock
is taken before the run upgrades the schema. SQLite is a single-host database, so a host-local
lock is exactly its scope (do not put a SQLite warehouse on NFS). The file holds the holder's
owner, host, pid and start time as JSON, for the message a waiting run shows; it is rewritten by
each holder and never deleted (deleting it would let two processes lock two different inodes).

Losing the lock stops the writer (issue 11). A PostgreSQL session lock lives with its
connection: if that backend dies (pg_terminate_backend, a network cut, an idle timeout), the lock
is gone and a second run may take it. So while this process holds the lock, every commit on an
engine of the same warehouse first checks, on the lock's own connection, that the advisory lock
is still granted to it (one round trip; a SQLAlchemy `commit` event on every Engine), and raises
`LockLost` (a `RunLocked`: exit 4) instead of committing. The check runs in the process that holds
the lock: with the Dask task runner, commits made in worker processes are not checked, the flow
stops at its own next commit. SQLite's flock cannot be lost while the process lives.

A second run waits up to `wait_seconds` (0: refuse at once), then raises `RunLocked` with who
holds the lock and since when. The lock is reentrant within one process (a backfill holds it
across the nights it runs, and each night takes it again at no cost); two processes never hold
it at once. `owner` must not contain personal data: it goes into messages and PostgreSQL's
activity view.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError

from datashare.errors import LockLost, RunLocked  # LockLost re-exported: old import path

POLL_SECONDS = 0.2

# Process-wide holders, by lock key: reentrancy within a process (see the module docstring).
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


@dataclass
class _Guard:
    """A held PostgreSQL lock: the connection it lives on, and what a commit must check."""

    url: str  # the warehouse, as rendered with its password (only compared, never shown)
    conn: Connection
    lock_id: int
    owner: str
    mutex: threading.Lock
    lost: bool = False

    def verify(self) -> None:
        """Raise LockLost unless the lock's connection still holds the advisory lock."""
        with self.mutex:
            if not self.lost:
                try:
                    held = self.conn.execute(
                        text("""
                        select count(*) from pg_locks
                        where locktype = 'advisory' and granted and objsubid = 1
                          and pid = pg_backend_pid()
                          and classid::bigint = :hi and objid::bigint = :lo
                    """),
                        _split(self.lock_id),
                    ).scalar()
                    self.conn.commit()
                except DBAPIError:
                    held = 0
                self.lost = not held
            if self.lost:
                raise LockLost(
                    f"仓库写入锁已丢失（持有者 {self.owner}，其数据库会话已结束）：已在继续写入前"
                    "停止；另一运行可能正在使用仓库，请待其结束后重新运行"
                )


_GUARDS: dict[int, _Guard] = {}  # id(guard) -> guard, while held


def _url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@event.listens_for(Engine, "commit")
def _verify_before_commit(conn: Connection) -> None:
    """Every commit on the warehouse while this process holds its lock checks the lock first."""
    if not _GUARDS:
        return
    url = _url_of(conn.engine)
    for guard in list(_GUARDS.values()):
        if guard.url == url and conn is not guard.conn:
            guard.verify()


def _split(lock_id: int) -> dict[str, int]:
    # A bigint advisory lock shows as classid = high 32 bits, objid = low 32 bits, objsubid 1.
    unsigned = lock_id & 0xFFFFFFFFFFFFFFFF
    return {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}


@dataclass(frozen=True)
class Holder:
    """Who holds the lock (for the message a refused run shows)."""

    owner: str
    host: str | None
    pid: int | None
    since: datetime | None

    def describe(self) -> str:
        where = ", ".join(
            p
            for p in (
                f"主机 {self.host}" if self.host else "",
                f"pid {self.pid}" if self.pid else "",
            )
            if p
        )
        since = (
            f"，自 {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC 起持有" if self.since else ""
        )
        return f"{self.owner!r}" + (f"（{where}）" if where else "") + since


def _signed64(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big", signed=True)


def _sqlite_path(engine: Engine) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).resolve()


def _lock_key(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        path = _sqlite_path(engine)
        return f"sqlite:{path}" if path else f"sqlite-memory:{id(engine)}"
    with engine.connect() as conn:
        db, schema = conn.execute(text("select current_database(), current_schema()")).one()
    return f"{engine.dialect.name}:{db}.{schema}"


@contextlib.contextmanager
def writer_lock(engine: Engine, *, owner: str, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the warehouse's writer lock for the block; see the module docstring."""
    key = _lock_key(engine)
    with _HELD_GUARD:
        if _HELD.get(key):
            _HELD[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    if engine.dialect.name == "sqlite":
        acquire = _sqlite_lock(engine, owner, wait_seconds)
    elif engine.dialect.name == "postgresql":
        acquire = _pg_lock(engine, key, owner, wait_seconds)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported warehouses
        raise NotImplementedError(
            f"{engine.dialect.name} 仓库没有写入锁：仓库只能是 PostgreSQL 或 SQLite"
        )
    with acquire:
        with _HELD_GUARD:
            _HELD[key] = 1
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)


def _refuse(holder: Holder, wait_seconds: float) -> RunLocked:
    waited = f"等待 {wait_seconds:g} 秒后仍" if wait_seconds > 0 else ""
    return RunLocked(
        f"仓库正被另一运行占用：{holder.describe()}；本次运行{waited}未开始（两个运行不会同时写入"
        "仓库）。请待其结束后重新运行，或设置 DATASHARE_LOCK_WAIT_SECONDS 让后来的运行等待"
    )


def _deadline_loop(wait_seconds: float) -> Iterator[None]:
    """Yield once, then again every POLL_SECONDS until wait_seconds have passed."""
    deadline = time.monotonic() + max(wait_seconds, 0)
    while True:
        yield
        if time.monotonic() >= deadline:
            return
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))


@contextlib.contextmanager
def _sqlite_lock(engine: Engine, owner: str, wait_seconds: float) -> Iterator[None]:
    path = _sqlite_path(engine)
    if path is None:  # an in-memory database belongs to this process alone
        yield
        return
    lock_file = path.with_name(path.name + ".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for _ in _deadline_loop(wait_seconds):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                continue
        else:
            raise _refuse(_read_holder(lock_file), wait_seconds)
        info = {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(lock_file: Path) -> Holder:
    try:
        info: dict[str, Any] = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    since = info.get("since")
    return Holder(
        owner=str(info.get("owner", "未知")),
        host=info.get("host"),
        pid=info.get("pid"),
        since=datetime.fromisoformat(since) if since else None,
    )


@contextlib.contextmanager
def _pg_lock(engine: Engine, key: str, owner: str, wait_seconds: float) -> Iterator[None]:
    lock_id = _signed64(hashlib.sha256(f"datashare-writer:{key}".encode()).digest())
    # A dedicated connection, outside the pool, held for the run: the lock lives with it.
    conn = engine.connect()
    try:
        conn.execute(
            text("select set_config('application_name', :name, false)"),
            {"name": f"datashare: {owner}"[:63]},
        )
        conn.commit()
        for _ in _deadline_loop(wait_seconds):
            got = conn.execute(text("select pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar()
            conn.commit()
            if got:
                break
        else:
            raise _refuse(_pg_holder(conn, lock_id), wait_seconds)
        guard = _Guard(_url_of(engine), conn, lock_id, owner, threading.Lock())
        _GUARDS[id(guard)] = guard
        try:
            yield
            guard.verify()  # a run that lost the lock on its last step does not end as a success
        finally:
            _GUARDS.pop(id(guard), None)
            if not guard.lost:
                with contextlib.suppress(DBAPIError):
                    conn.execute(text("select pg_advisory_unlock(:id)"), {"id": lock_id})
                    conn.commit()
    finally:
        conn.invalidate()  # never hand a connection that held the lock back to the pool
        conn.close()


def _pg_holder(conn: Any, lock_id: int) -> Holder:
    row = conn.execute(
        text("""
        select a.application_name, host(a.client_addr), a.pid, a.backend_start
        from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.objsubid = 1
          and l.classid::bigint = :hi and l.objid::bigint = :lo
    """),
        _split(lock_id),
    ).first()
    conn.commit()
    if row is None:
        return Holder(owner="未知", host=None, pid=None, since=None)
    name, addr, pid, started = row
    owner = (name or "未知").removeprefix("datashare: ")
    return Holder(owner=owner, host=addr or "本机套接字", pid=pid, since=started)
