"""PostgreSQL publication: one schema and one login-less role per consumer."""

from __future__ import annotations

import io
import logging
import queue
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, func, insert, select, text

from datashare.errors import PublishError
from warehouse import published as files
from warehouse.publish.tables import _Output, table_def
from warehouse.tables_publish import audit_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqlTarget:
    """Names of what is published into PostgreSQL (prefixes differ in tests: roles are global)."""

    schema_prefix: str = "pub_"
    role_prefix: str = "ds_"
    internal_schema: str | None = None  # default: current_schema(), i.e. the engine's search_path
    enabled: bool = True

    def schema(self, consumer: str) -> str:
        return f"{self.schema_prefix}{consumer.lower()}"

    def role(self, consumer: str) -> str:
        return f"{self.role_prefix}{consumer.lower()}"

    @property
    def staging(self) -> str:
        """Where a publication's tables are loaded before they are moved into the consumers'
        schemas (no consumer is named `_staging`: consumers are department codes)."""
        return f"{self.schema_prefix}_staging"


# --- PostgreSQL: one schema and one login-less role per consumer ---------------------------------

_SQL_TYPES = {
    "text": "text",
    "id18": "text",
    "key": "text",
    "date": "date",
    "int": "bigint",
    "decimal": "numeric(14,2)",
    "ratio": "double precision",
    "bool": "boolean",
    "timestamp": "timestamptz",
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _publish_sql(
    conn: Connection,
    outputs: list[_Output],
    target: SqlTarget,
    publication_id: str,
    actor: str,
    *,
    previous: str | None = None,
    root: Path | None = None,
    staged: dict[tuple[str, str], str] | None = None,
) -> tuple[str, ...]:
    """Rebuild every consumer's schema in the caller's transaction (readers see old or new).

    A table unchanged since the `previous` publication (its files were linked) is kept as it
    is when that publication's audit says it loaded it. Otherwise it is moved in from the
    staging schema when `staged` names it there ((consumer, table) -> its staged name: see
    SqlLoader, which loaded it while the files were written), or else loaded here, from its
    data or the new version's Parquet file under `root`. The staging schema is dropped.

    The pipeline's own user owns the schemas; each role may use its schema and select its
    tables, nothing else: PUBLIC loses every right on the internal schema and its tables.
    """
    quote = conn.dialect.identifier_preparer.quote
    staged = staged or {}
    internal = target.internal_schema or conn.execute(text("SELECT current_schema()")).scalar_one()
    conn.execute(text(f"REVOKE ALL ON SCHEMA {quote(internal)} FROM PUBLIC"))
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quote(internal)} FROM PUBLIC"))
    by_consumer: dict[str, list[_Output]] = {}
    for out in outputs:
        by_consumer.setdefault(out.consumer, []).append(out)
    at = files.utc_now()
    audit_rows = []
    for consumer, outs in by_consumer.items():
        schema, role = quote(target.schema(consumer)), quote(target.role(consumer))
        conn.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object "
                f"OR unique_violation THEN NULL; END $$"
            )
        )
        conn.execute(text(f"ALTER ROLE {role} NOLOGIN"))
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(text(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        existing = _relations(conn, target.schema(consumer))
        kept = _sql_kept(conn, target, consumer, outs, previous, existing)
        for name, kind in existing:
            if name in kept:
                continue
            conn.execute(
                text(
                    f"DROP {'VIEW' if kind == 'v' else 'TABLE'} IF EXISTS "
                    f"{schema}.{quote(name)} CASCADE"
                )
            )
        for out in outs:
            table = out.table.lower()
            name = f"{schema}.{quote(table)}"
            cols = [c for c, _ in out.columns]
            moved = staged.get((consumer, out.table))
            if table in kept:
                pass  # unchanged: the table, its comments and its grant are already there
            elif out.table == "audit_log":  # live, through the view owner's rights
                conn.execute(
                    text(
                        f"CREATE VIEW {name} AS SELECT {', '.join(quote(c.name) for c in cols)} "
                        f"FROM {quote(internal)}.{quote(audit_log.name)}"
                    )
                )
                _comment(conn, name, out, view=True)
            elif moved is not None:  # loaded and commented in staging
                conn.execute(
                    text(f"ALTER TABLE {quote(target.staging)}.{quote(moved)} SET SCHEMA {schema}")
                )
                conn.execute(text(f"ALTER TABLE {schema}.{quote(moved)} RENAME TO {quote(table)}"))
            else:
                _load(conn, name, out, root)
                _comment(conn, name, out)
            if table not in kept:
                conn.execute(text(f"GRANT SELECT ON {name} TO {role}"))
            audit_rows.append(
                {
                    "at": at,
                    "actor": actor,
                    "action": "sql",
                    "publication_id": publication_id,
                    "consumer": consumer,
                    "object": f"{target.schema(consumer)}.{table}",
                    "rows": out.rows,
                    "sha256": None,
                    "personal": out.personal,
                }
            )
    if audit_rows:
        conn.execute(insert(audit_log), audit_rows)
    conn.execute(text(f"DROP SCHEMA IF EXISTS {quote(target.staging)} CASCADE"))
    return tuple(target.schema(c) for c in by_consumer)


def _relations(conn: Connection, schema: str) -> list[tuple[str, str]]:
    """(name, kind: 'r' table, 'v' view) of a schema's tables and views."""
    rows = conn.execute(
        text(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind IN ('r', 'v')"
        ),
        {"s": schema},
    ).all()
    return [(name, kind) for name, kind in rows]


def _load(conn: Connection, name: str, out: _Output, root: Path | None) -> None:
    """Create table `name` (quoted, qualified) with out's columns and copy its rows in: from
    its data, or (an unchanged table whose SQL copy cannot be trusted) from its Parquet file
    under `root`."""
    quote = conn.dialect.identifier_preparer.quote
    cols = [c for c, _ in out.columns]
    conn.execute(
        text(
            f"CREATE TABLE {name} ("
            + ", ".join(f"{quote(c.name)} {_SQL_TYPES[c.type]}" for c in cols)
            + ")"
        )
    )
    import psycopg  # only here: SQLite warehouses publish no SQL

    data = out.data
    if data is None:
        assert root is not None
        data = pq.read_table(root / out.consumer / f"{out.table}.parquet")
    try:
        _copy(conn, name, [quote(c.name) for c in cols], data)
    except psycopg.Error as exc:
        # PostgreSQL's message quotes the refused value (personal data, maybe): name the place.
        where = _COPY_CONTEXT.search(exc.diag.context or "")
        at = f"第 {where['line']} 行的列 {where['column']}" if where else "其中一行"
        raise PublishError(
            f"{out.consumer}/{out.table}：PostgreSQL 拒绝了发布表{at}（{type(exc).__name__}，"
            f"SQLSTATE {exc.sqlstate}），无法发布。请确认仓库结构已是最新版本"
            "（datashare db upgrade）；仍然出错请报告开发人员"
        ) from None


_COPY_CONTEXT = re.compile(r"COPY \S+, line (?P<line>\d+), column (?P<column>[^:]+)")


def _comment(conn: Connection, name: str, out: _Output, *, view: bool = False) -> None:
    """The table's title and its columns' Chinese labels, as comments (what a SQL client
    shows beside them)."""
    quote = conn.dialect.identifier_preparer.quote
    kind = "VIEW" if view else "TABLE"
    conn.execute(text(f"COMMENT ON {kind} {name} IS {_literal(table_def(out.table).title)}"))
    for c, _ in out.columns:
        conn.execute(text(f"COMMENT ON COLUMN {name}.{quote(c.name)} IS {_literal(c.label)}"))


class SqlLoader:
    """A publication's tables, loaded into PostgreSQL while its files are being written.

    On a city night the consumers' schemas took 45 s to load after the files, in the last
    transaction. Here threads of their own (`workers`), each on a connection of its own, create
    each table that must be loaded (written this night, or unchanged but not loaded by the
    current publication) in the staging schema (`SqlTarget.staging`, which no consumer's role
    may use), copy its rows, comment it and commit, table by table. _publish_sql then moves the
    staged tables into the consumers' schemas in the publication's last transaction, with the
    audit, so readers still see the old tables or the new ones. A table the same as one already
    staged (another consumer's same content) is copied inside PostgreSQL, once that one is in.

    Two connections by default: PostgreSQL parses a COPY in the server process of its
    connection, one core each; with one, a city night's last ten person_profile tables were
    still loading 6.4 s after the files were written (2026-12-08, docs/scaling.md).

        loader = SqlLoader(engine, target, previous, root).start()
        loader.add(out)             # as each output's files are written or linked
        staged = loader.finish()    # waits; raises the loader's first error, if any
        loader.discard()            # on failure: the staging schema is dropped
    """

    def __init__(
        self,
        engine: Engine,
        target: SqlTarget,
        previous: str | None,
        root: Path,
        *,
        workers: int = 2,
    ):
        self.engine, self.target, self.previous, self.root = engine, target, previous, root
        self._queue: queue.SimpleQueue[tuple[_Output, _Output | None] | None] = queue.SimpleQueue()
        self._staged: dict[tuple[str, str], str] = {}
        # per output added: set once it is staged, or given up (`same` waits for it)
        self._settled: dict[tuple[str, str], threading.Event] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # the first error; the staging schema made once
        self._schema_ready = False
        self._threads = [
            threading.Thread(target=self._run, name=f"sql-loader-{n}", daemon=True)
            for n in range(max(workers, 1))
        ]
        self._finished = False

    def start(self) -> SqlLoader:
        for thread in self._threads:
            thread.start()
        return self

    def add(self, out: _Output, same: _Output | None = None) -> None:
        """Load `out` (`same`: an output of the same content, added before it)."""
        self._settled[(out.consumer, out.table)] = threading.Event()
        self._queue.put((out, same))

    def finish(self) -> dict[tuple[str, str], str]:
        """Wait for every table added; (consumer, table) -> its name in the staging schema."""
        self._stop()
        if self._error is not None:
            raise self._error
        return dict(self._staged)

    def discard(self) -> None:
        """Stop and drop the staging schema (the publication failed)."""
        self._stop()
        try:
            with self.engine.begin() as conn:
                self._drop(conn)
        except Exception:  # the original error matters more; the next publication drops it
            log.exception("暂存模式 %s 未能删除；下次发布时会删除", self.target.staging)

    def _stop(self) -> None:
        if not self._finished:
            self._finished = True
            for _ in self._threads:
                self._queue.put(None)  # one end for each thread
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _drop(self, conn: Connection) -> None:
        quote = conn.dialect.identifier_preparer.quote
        conn.execute(text(f"DROP SCHEMA IF EXISTS {quote(self.target.staging)} CASCADE"))

    def _make_schema(self) -> None:
        """The staging schema, made once by whichever thread comes first."""
        with self._lock:
            if self._schema_ready:
                return
            with self.engine.begin() as conn:
                quote = conn.dialect.identifier_preparer.quote
                self._drop(conn)  # left by a publication that died
                conn.execute(text(f"CREATE SCHEMA {quote(self.target.staging)}"))
                conn.execute(text(f"REVOKE ALL ON SCHEMA {quote(self.target.staging)} FROM PUBLIC"))
            self._schema_ready = True

    def _run(self) -> None:
        try:
            self._make_schema()
            with self.engine.connect() as conn:
                while (item := self._queue.get()) is not None:
                    out, same = item
                    try:
                        if self._error is None:  # after an error, nothing more is loaded
                            self._stage(conn, out, same)
                            conn.commit()
                    finally:
                        self._settled[(out.consumer, out.table)].set()
        except BaseException as exc:  # raised by finish()
            with self._lock:
                if self._error is None:
                    self._error = exc
            while (item := self._queue.get()) is not None:
                self._settled[(item[0].consumer, item[0].table)].set()  # not loaded

    def _stage(self, conn: Connection, out: _Output, same: _Output | None) -> None:
        if out.table == "audit_log":
            return  # a view, created with the switch
        if out.reused and self._kept(conn, out):
            return  # its table in the consumer's schema stays
        quote = conn.dialect.identifier_preparer.quote
        staged = f"{out.consumer.lower()}__{out.table.lower()}"
        name = f"{quote(self.target.staging)}.{quote(staged)}"
        first = None
        if same is not None:
            self._settled[(same.consumer, same.table)].wait()  # another thread may load it
            first = self._staged.get((same.consumer, same.table))
        if first is not None:
            conn.execute(
                text(f"CREATE TABLE {name} AS TABLE {quote(self.target.staging)}.{quote(first)}")
            )
        else:
            _load(conn, name, out, self.root)
        _comment(conn, name, out)
        self._staged[(out.consumer, out.table)] = staged

    def _kept(self, conn: Connection, out: _Output) -> bool:
        existing = _relations(conn, self.target.schema(out.consumer))
        kept = _sql_kept(conn, self.target, out.consumer, [out], self.previous, existing)
        return out.table.lower() in kept


def _sql_kept(
    conn: Connection,
    target: SqlTarget,
    consumer: str,
    outs: list[_Output],
    previous: str | None,
    existing: Iterable[Any],
) -> set[str]:
    """Tables of a consumer's schema that stay as they are: unchanged outputs whose last SQL
    load, by the audit, was the previous (still current) publication's, and that exist."""
    unchanged = {o.table.lower() for o in outs if o.reused and o.table != "audit_log"}
    present = {name for name, kind in existing if kind == "r"}
    if previous is None or not unchanged & present:
        return set()
    schema = target.schema(consumer)
    objects = [f"{schema}.{t}" for t in sorted(unchanged & present)]
    a = audit_log.c
    last = (
        select(a.object, func.max(a.audit_id).label("audit_id"))
        .where(a.action == "sql", a.object.in_(objects))
        .group_by(a.object)
        .subquery()
    )
    loaded_by = conn.execute(
        select(a.object, a.publication_id).join(last, a.audit_id == last.c.audit_id)
    ).all()
    return {obj.split(".", 1)[1] for obj, pid in loaded_by if pid == previous}


def _copy(conn: Connection, name: str, columns: list[str], data: pa.Table) -> None:
    if data.num_rows == 0:
        return
    driver = conn.connection.driver_connection
    sql = f"COPY {name} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    options = pacsv.WriteOptions(include_header=False)
    with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        for batch in data.to_batches(max_chunksize=100_000):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
