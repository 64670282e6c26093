"""Bulk reads of a SQLite warehouse in reader processes, straight to Arrow (issue 13).

    read(conn, sql, schema)   the rows of a SELECT as Arrow, read by the ADBC SQLite driver in a
                              reader process; None when that cannot give what the caller's
                              connection sees (then the caller reads in-process)

Why a process: Python's sqlite3 makes a Python object of every value, and SQLite building JSON
for Arrow (warehouse.bulk) still spends most of a read formatting text. The ADBC SQLite driver
builds Arrow columns in C: a city's 0.66M-row roster history read in 0.87 s against 2.4 s. But
the driver links its own copy of SQLite, and SQLite's POSIX locks belong to the process: two
copies in one process can drop each other's locks and corrupt the database (sqlite.org, "How To
Corrupt An SQLite Database File", 2.2.1; the city's first load died of SIGBUS when the driver
ran in the night's process). In a process of its own the driver is one more SQLite client of
the file, as a second `datashare` would be; WAL lets it read beside the writers.

What the reader sees is the last committed state of the file. That is what the caller's
connection sees unless it has written in its open transaction (Python's sqlite3 begins a
transaction at the first write, so `in_transaction` says exactly that) or reads a temporary
table (the reader's statement then fails): in both cases None. A value whose type differs from
the first batch's (SQLite's columns are typed per value) fails the read too, and so does a dead
reader process: the caller reads in-process, the result is the same. The rows travel as an
Arrow IPC file beside the database (the folder that holds the personal data already, not the
system's temporary folder; owner-only, removed after the read, and one left by a killed run is
removed by the next), mapped into the caller's memory, never as Python objects; nothing of the
rows or the statement is logged (personal data).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.ipc as paipc

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

# Rows per batch of the driver; it infers a column's type from its first batch (1024, its
# default, failed a history table's valid_to that is NULL in its first rows).
_BATCH_ROWS = 2**20
_READERS = 2  # the machines have two cores; reads of the mirror and the alerts overlap

_pool: Executor | None = None
_pool_lock = threading.Lock()


def available() -> bool:
    """The ADBC SQLite driver is installed (it is a dependency; a trimmed install reads
    in-process, only slower)."""
    return importlib.util.find_spec("adbc_driver_sqlite") is not None


def database_file(conn: Connection) -> Path | None:
    """The connection's SQLite file when a reader process sees what the connection sees: a
    file database named plainly (no URI, no options, not in memory) and no uncommitted writes
    of the connection. None otherwise."""
    url = conn.engine.url
    database = url.database
    if url.query or not database or database == ":memory:" or database.startswith("file:"):
        return None
    if conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        return None
    path = Path(database).resolve()
    return path if path.is_file() else None


_PREFIX = "datashare-read-"
_swept: set[Path] = set()


def _sweep(folder: Path) -> None:
    """Remove the rows files a killed run left in `folder` (named by their process, which is
    gone); once per folder and process."""
    if folder in _swept:
        return
    _swept.add(folder)
    for left in folder.glob(f"{_PREFIX}*-*.arrow"):
        try:
            pid = int(left.name.removeprefix(_PREFIX).split("-", 1)[0])
            if pid == os.getpid():
                continue
            os.kill(pid, 0)  # alive: a reader of another process (the portal), still reading
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                left.unlink()
        except (ValueError, PermissionError):  # not ours to judge
            continue


def read(conn: Connection, sql: str, schema: pa.Schema) -> pa.Table | None:
    """The rows of `sql` typed by `schema`, read in a reader process; None when the reader
    cannot say (see the module's docstring), and the caller reads them itself."""
    database = database_file(conn)
    if database is None:
        return None
    return read_file(database, sql, schema)


def read_file(database: Path, sql: str, schema: pa.Schema) -> pa.Table | None:
    """read() of a database file whose committed state is what the caller sees (as
    database_file gives it); safe to call from several threads at once (the readers are a
    pool of processes)."""
    if any(pa.types.is_timestamp(f.type) or pa.types.is_decimal(f.type) for f in schema):
        return None
    if not available():
        return None
    pool = _readers()
    if pool is None:
        return None
    uri = f"{database.as_uri()}?mode=ro"
    # Beside the database, the folder that holds the personal data already (the system's
    # temporary folder may be shared, or small), readable by its owner only (mkstemp).
    _sweep(database.parent)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f"{_PREFIX}{os.getpid()}-", suffix=".arrow", dir=database.parent
        )
    except OSError:  # a folder this process may read but not write (a read-only portal)
        return None
    os.close(fd)
    try:
        try:
            done = pool.submit(read_into, uri, sql, schema.serialize().to_pybytes(), name).result()
        except BrokenProcessPool:
            _forget(pool)
            log.warning("SQLite 读取进程意外退出；本次在主进程内读取")
            return None
        except Exception as exc:  # a bug in the reader: the caller's own read gives the rows
            log.warning("SQLite 读取进程出错（%s）；本次在主进程内读取", type(exc).__name__)
            return None
        if not done:
            return None
        # Mapped, not copied: the columns point into the file's pages, which stay mapped
        # after the name is removed.
        return paipc.open_file(pa.memory_map(name)).read_all()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _readers() -> Executor | None:
    global _pool
    with _pool_lock:
        if _pool is None:
            from warehouse import processes

            if not processes.allowed():  # a Dask worker: the caller reads in-process
                return None
            try:
                _pool = ProcessPoolExecutor(_READERS, mp_context=processes.forkserver())
            except (OSError, ValueError):  # no fork server on this platform
                return None
        return _pool


def _forget(pool: Executor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False)


# --- in the reader process ------------------------------------------------------------------------


def read_into(uri: str, sql: str, schema_bytes: bytes, path: str) -> bool:
    """In a reader process: run `sql` on the database at `uri` (read-only) and write its rows,
    typed by the schema, to an Arrow IPC file at `path`. False when a value does not fit
    (the driver's or the cast's error is not passed on: it may quote a value)."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    schema = paipc.read_schema(pa.py_buffer(schema_bytes))
    try:
        with (
            adbc_sqlite.connect(uri, autocommit=True) as db,
            db.cursor() as cursor,
        ):
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(_BATCH_ROWS)})
            cursor.execute(sql)
            batches = cursor.fetch_record_batch()
            if len(batches.schema) != len(schema):
                return False
            with pa.OSFile(path, "wb") as sink, paipc.new_file(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(_typed(batch, schema))
    except (adbc_sqlite.Error, OSError, pa.ArrowException):  # a later batch's type: OSError
        return False
    return True


def _typed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch of the driver's inferred types as the schema's: dates from their ISO text,
    flags from 0/1, columns of NULLs whatever the driver guessed."""
    columns = []
    for field, column in zip(schema, batch.columns, strict=True):
        if column.null_count == len(column):
            columns.append(pa.nulls(len(column), field.type))
        elif pa.types.is_date(field.type) and not pa.types.is_date(column.type):
            columns.append(column.cast(pa.string()).cast(field.type))
        elif pa.types.is_boolean(field.type) and not pa.types.is_boolean(column.type):
            columns.append(column.cast(pa.int64()).cast(field.type))
        else:
            columns.append(column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
