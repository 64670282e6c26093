"""Writing a publication: a version folder, its catalog, the audit rows, then the switch."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection, Engine, func, insert, select, update

from expectations.contract import load_contracts
from warehouse import processes
from warehouse import published as files
from warehouse.publish.access import AccessMatrix, RowCondition, default_access, resolve_columns
from warehouse.publish.forms import _Context, column_values, prepare, selected_rows
from warehouse.publish.incremental import (
    _SOURCES,
    DERIVED,
    _created,
    _dataset_inputs,
    _needed,
    _plan,
    _Previous,
    _previous_version,
    _referenced,
    _reusable,
    content_source,
    derived_source,
    linkable,
)
from warehouse.publish.inputs import audit_frame
from warehouse.publish.people import for_people
from warehouse.publish.sql import SqlLoader, SqlTarget, _publish_sql
from warehouse.publish.tables import (
    XLSX_BULK_MAX_ROWS,
    XLSX_MAX_ROWS,
    ColumnDef,
    Form,
    SharedTables,
    _Output,
    table_def,
    xlsx_wanted,
)
from warehouse.published import Retention
from warehouse.tables_publish import audit_log, publications

log = logging.getLogger(__name__)


# --- publishing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """What one publication did (small: ids and counts)."""

    publication_id: str
    as_of: date
    path: Path  # the version folder
    consumers: tuple[str, ...]
    files: int
    rows: int
    catalog_sha256: str
    sql_schemas: tuple[str, ...] = ()
    tables_written: int = 0  # (consumer, table) outputs written in this publication
    tables_linked: int = 0  # unchanged since the previous publication: files hard-linked
    tables_shared: int = 0  # the same content as another consumer's in this one: files linked
    bytes_written: int = 0  # bytes of the files written (linked ones not counted)
    pruned: tuple[str, ...] = ()  # versions removed by the retention after the switch


_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "id18": pa.string(),
    "key": pa.string(),
    "date": pa.date32(),
    "int": pa.int64(),
    "decimal": pa.float64(),
    "ratio": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _arrow_column(values: pd.Series, column: ColumnDef) -> pa.Array:
    kind = _ARROW[column.type]
    if column.type == "date":
        return pa.Array.from_pandas(values).cast(pa.date32())
    if column.type == "timestamp":
        return pa.Array.from_pandas(values).cast(kind, safe=False)
    return pa.Array.from_pandas(values, type=kind)


def _arrow_field(column: ColumnDef, form: Form) -> pa.Field:
    return pa.field(
        column.name,
        _ARROW[column.type],
        metadata={"label": column.label, "type": column.type, "form": form},
    )


def to_arrow(frame: pd.DataFrame, columns: list[tuple[ColumnDef, Form]]) -> pa.Table:
    """The published Arrow table: types fixed by the definition, labels in field metadata."""
    arrays = [_arrow_column(frame[column.name], column) for column, _ in columns]
    schema = pa.schema([_arrow_field(column, form) for column, form in columns])
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass
class _Shared:
    """One publication's work shared by the consumers whose grants agree (issue 13): the rows
    a grant's conditions select, per (table, conditions); each published column in its form,
    as Arrow with its digest, per (table, conditions, column, form). Twelve consumers given
    the same person_profile id column masked mask it once, not twelve times."""

    rows: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    columns: dict[tuple[str, str, str, str], tuple[pa.Array, bytes]] = field(default_factory=dict)
    # (table, column, form) -> the column in its form over every prepared row, once a second
    # grant (or one taking at least half the rows) asks for it: masking, ages and look-alike
    # masking go value by value, so the rows a grant selects are then taken from it.
    whole: dict[tuple[str, str, str], pd.Series] = field(default_factory=dict)
    asked: set[tuple[str, str, str]] = field(default_factory=set)
    # what grants' row conditions compute once per table and column (forms._holds)
    conditions: dict[tuple[object, ...], object] = field(default_factory=dict)


def _in_form(
    prepared: pd.DataFrame,
    rows: pd.DataFrame,
    table: str,
    column: ColumnDef,
    form: Form,
    ctx: _Context,
    shared: _Shared,
) -> pd.Series:
    """column_values of the selected rows; a column whose form is computed value by value
    (masked, an age, free text) is computed over the whole table once when several grants, or
    one taking at least half the rows, ask for it, and the rows are taken from it."""
    if not (form == "masked" or column.derived == "age" or column.free_text):
        return column_values(rows, column, form, ctx)
    key = (table, column.name, form)
    whole = shared.whole.get(key)
    if whole is None:
        if key not in shared.asked and len(rows) * 2 < len(prepared):
            shared.asked.add(key)
            return column_values(rows, column, form, ctx)
        whole = shared.whole[key] = column_values(prepared, column, form, ctx)
    if rows is prepared:
        return whole
    return whole.loc[rows.index]


def _rows_key(rows: Iterable[RowCondition], consumer: str) -> str:
    """A grant's row conditions as they read for this consumer ({consumer} filled in)."""
    spec = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in rows]
    return json.dumps(spec, sort_keys=True, ensure_ascii=False).replace("{consumer}", consumer)


def _column_digest(array: pa.Array) -> bytes:
    sink = pa.BufferOutputStream()
    one = pa.table({"c": array})
    with pa.ipc.new_stream(sink, one.schema) as writer:
        writer.write_table(one)
    return hashlib.sha256(memoryview(sink.getvalue())).digest()


def _projected(
    matrix: AccessMatrix,
    consumer: str,
    table: str,
    prepared: pd.DataFrame,
    ctx: _Context,
    shared: _Shared,
) -> tuple[pa.Table, list[tuple[ColumnDef, Form]], list[bytes]] | None:
    """What `consumer` gets of a prepared table, as the published Arrow table (rows, columns
    and forms as apply_access decides them), with each column's digest; the work is shared
    with the consumers whose grant reads the same (`_Shared`)."""
    entry = matrix.entry(consumer, table)
    if entry is None:
        return None
    columns = resolve_columns(matrix, table_def(table), entry)
    rows_key = _rows_key(entry.rows, consumer)
    rows = shared.rows.get((table, rows_key))
    if rows is None:
        rows = selected_rows(prepared, entry.rows, ctx)
        shared.rows[(table, rows_key)] = rows
    arrays, digests = [], []
    for column, form in columns:
        key = (table, rows_key, column.name, form)
        found = shared.columns.get(key)
        if found is None:
            values = _in_form(prepared, rows, table, column, form, ctx, shared)
            array = _arrow_column(values.reset_index(drop=True), column)
            found = shared.columns[key] = (array, _column_digest(array))
        arrays.append(found[0])
        digests.append(found[1])
    schema = pa.schema([_arrow_field(column, form) for column, form in columns])
    return pa.Table.from_arrays(arrays, schema=schema), columns, digests


def _catalog_entry(out: _Output, title: str) -> dict[str, Any]:
    return {
        "consumer": out.consumer,
        "table": out.table,
        "title": title,
        "rows": out.rows,
        "personal": out.personal,
        "columns": [
            {"name": c.name, "label": c.label, "type": c.type, "form": form}
            for c, form in out.columns
        ],
        "files": out.files,
    }


class Collector(Protocol):
    """Reads the plain shared tables as of a date (tasks.publication.collect_shared_tables)."""

    def __call__(
        self,
        conn: Connection,
        as_of: date,
        *,
        datasets: Iterable[str] | None = None,
        ledger: bool = True,
    ) -> dict[str, pd.DataFrame]: ...


# town_summary from the prepared household_profile, person_profile and alerts.
Summariser = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame], pd.DataFrame]


def write_publication(
    engine: Engine,
    publish_dir: Path,
    *,
    collect: Collector,
    summarise: Summariser,
    as_of: date,
    secret: bytes,
    tables: SharedTables | None = None,
    keep_days: int = 30,
    actor: str = "nightly",
    access: AccessMatrix | None = None,
    sql: SqlTarget | None = None,
    xlsx_max_rows: int = XLSX_MAX_ROWS,
    xlsx_bulk_max_rows: int = XLSX_BULK_MAX_ROWS,
    on_consumer: Callable[[str], None] | None = None,
    retention: Retention | None = None,
    incremental: bool = True,
    workers: int | None = None,
) -> Publication:
    """Publish the shared dataset to every consumer, atomically, with an audit trail (called
    through tasks.publication.publish, which gives it the providers).

    collect reads the plain shared tables, summarise computes town_summary from the prepared
    profiles and alerts: both are steps (tasks.publication), passed in so that the warehouse
    writes every byte without importing the layer above it.

    tables: the plain shared tables (default: `collect` as of `as_of`); the audit
    log is added from the warehouse. Files go to a version folder, then `current` is switched;
    on PostgreSQL the pub_<consumer> schemas are rebuilt in one transaction. `on_consumer` is
    called after each consumer's files are written (progress, tests).

    Incremental (when the tables are read from the warehouse): a consumer's table whose inputs
    (`dataset_sources`: the deliveries it is built from, the definition, the secret, the
    exchange date where an age is computed) are those of the current publication is not read
    nor written again: its files are hard-linked from the current version, its catalog entry
    and audit rows repeat the same hash. A derived table (profiles, alerts, ledger, town
    summary) is prepared every night and linked when its content is the current one's.
    `incremental=False` writes everything (same bytes).
    Changed tables are written `workers` at a time. After the switch, versions the retention
    (default: the last `keep_days` exchange dates and 12 month ends) does not keep are pruned.
    """
    matrix = access or default_access()
    target = sql or SqlTarget()
    publish_dir = Path(publish_dir)
    retention = retention or Retention(nights=keep_days)
    with files.publish_lock(publish_dir):
        files.remove_incomplete(publish_dir)
        previous = _previous_version(publish_dir) if incremental and tables is None else None
        reuse: dict[tuple[str, str], dict[str, Any]] = {}
        planned: dict[tuple[str, str], str | None] = {}
        created: dict[tuple[str, str], date] = {}
        with engine.begin() as conn:
            # Left 'writing' by a run that died: switched in (only the bookkeeping failed)
            # or not.
            current = files.current_publication(publish_dir)
            writing = publications.c.status == "writing"
            conn.execute(
                update(publications)
                .where(writing, publications.c.publication_id == current)
                .values(status="published")
            )
            conn.execute(update(publications).where(writing).values(status="abandoned"))
        # Read in a transaction of its own that writes nothing: the bookkeeping above is
        # committed, and no write lock is held while the tables are computed and written (on
        # SQLite it would hold off every other writer, the portal's feedback among them).
        with engine.connect() as conn:
            needed: set[str] | None = None
            if tables is None:
                every, changed_on = _dataset_inputs(conn, as_of)
                # A dataset never delivered has no date of its own: its (empty) files carry
                # the exchange date, so they are written every night.
                sources = {t: s for t, s in every.items() if t in changed_on}
                derived = derived_source(conn, as_of, every)
                if derived is not None:
                    sources |= dict.fromkeys(DERIVED, derived)
                planned = _plan(matrix, as_of, secret, (xlsx_max_rows, xlsx_bulk_max_rows), sources)
                created = _created(matrix, changed_on)
                if previous is not None:
                    reuse = _reusable(previous, planned)
                needed = _needed(matrix, reuse)
            started = files.utc_now()
            with engine.begin() as bookkeeping:
                publication_id = _start(bookkeeping, as_of, actor, started)
            loader = None
            if engine.dialect.name == "postgresql" and target.enabled:
                root = files.version_dir(publish_dir, publication_id)
                loader = SqlLoader(engine, target, current, root).start()
            try:
                outputs = _write_version(
                    publish_dir,
                    publication_id,
                    as_of,
                    started,
                    _prepared_parts(
                        conn, collect, summarise, as_of, secret, matrix, tables, needed
                    ),
                    matrix,
                    (xlsx_max_rows, xlsx_bulk_max_rows),
                    on_consumer,
                    planned=planned,
                    created=created,
                    reuse=reuse,
                    previous=previous,
                    workers=workers or _default_workers(),
                    on_output=None if loader is None else loader.add,
                )
            except BaseException:
                if loader is not None:
                    loader.discard()
                _abandon(engine, publish_dir, publication_id)
                raise
        try:
            catalog = files.version_dir(publish_dir, publication_id) / files.CATALOG
            catalog_sha = files.seal(catalog)
            consumers = tuple(dict.fromkeys(o.consumer for o in outputs))
            schemas: tuple[str, ...] = ()
            staged = None if loader is None else loader.finish()
            with engine.begin() as conn:
                _audit(conn, publication_id, actor, outputs, catalog_sha)
                if loader is not None:
                    schemas = _publish_sql(
                        conn,
                        outputs,
                        target,
                        publication_id,
                        actor,
                        previous=current,
                        root=files.version_dir(publish_dir, publication_id),
                        staged=staged,
                    )
            files.switch(
                publish_dir, publication_id, consumers, links=files.symlinks_supported(publish_dir)
            )
        except BaseException:
            if loader is not None:
                loader.discard()
            _abandon(engine, publish_dir, publication_id)
            raise
        finished = files.utc_now()
        with engine.begin() as conn:
            conn.execute(
                update(publications)
                .where(publications.c.publication_id == publication_id)
                .values(
                    status="published",
                    finished_at=finished,
                    consumers=len(consumers),
                    files=sum(len(o.files) for o in outputs),
                    catalog_sha256=catalog_sha,
                )
            )
        removed = files.prune(publish_dir, retention, finished)
        if removed:
            with engine.begin() as conn:
                _audit_pruned(conn, actor, removed)
    result = Publication(
        publication_id=publication_id,
        as_of=as_of,
        path=files.version_dir(publish_dir, publication_id),
        consumers=consumers,
        files=sum(len(o.files) for o in outputs),
        rows=sum(o.rows for o in outputs),
        catalog_sha256=catalog_sha,
        sql_schemas=schemas,
        tables_written=sum(not (o.reused or o.copied) for o in outputs),
        tables_linked=sum(o.reused for o in outputs),
        tables_shared=sum(o.copied for o in outputs),
        bytes_written=sum(
            f["bytes"] for o in outputs if not (o.reused or o.copied) for f in o.files
        ),
        pruned=tuple(removed),
    )
    log.info(
        "publication %s (%s): %d consumers, %d files, %d rows; %d tables written, %d linked "
        "unchanged, %d shared by consumers; %d old versions removed",
        publication_id,
        as_of,
        len(consumers),
        result.files,
        result.rows,
        result.tables_written,
        result.tables_linked,
        result.tables_shared,
        len(removed),
    )
    return result


# Computed after the other tables: their files are being written meanwhile (below).
_PROFILES = frozenset({"person_profile", "household_profile", "town_summary"})


def _prepared_parts(
    conn: Connection,
    collect: Collector,
    summarise: Summariser,
    as_of: date,
    secret: bytes,
    matrix: AccessMatrix,
    tables: SharedTables | None,
    needed: set[str] | None,
) -> Iterator[dict[str, pd.DataFrame]]:
    """The prepared shared tables in two parts: first the alerts, the ledger, the audit log and
    the datasets (those `needed`; None: all), then the profiles and the town summary. The
    files of the first part are written (Parquet and CSV in threads, the alert workbooks in
    processes) while the second is computed: on a city's ordinary night the profiles were 20 s
    of one core with the other idle. Given `tables`, one part."""

    def prepared(read: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        return {name: prepare(name, frame, secret, matrix) for name, frame in read.items()}

    if tables is not None:
        read = dict(tables)
        if "audit_log" not in read:
            read["audit_log"] = audit_frame(conn)
        first, later = prepared(read), {}
    else:
        every = {*load_contracts(), *DERIVED}
        wanted = (every if needed is None else needed) - _PROFILES
        read = collect(conn, as_of, datasets=wanted)
        read["audit_log"] = audit_frame(conn)
        first = prepared(read)
        yield first
        rest = (every if needed is None else needed) & _PROFILES
        # the two profiles only: the alerts town_summary also reads came with the first part
        profiles = {"person_profile", "household_profile"}
        later = prepared(collect(conn, as_of, datasets=profiles, ledger=False)) if rest else {}
    both = {**first, **later}
    if {"household_profile", "person_profile", "alerts"} <= both.keys() and (
        "town_summary" not in both
    ):
        later["town_summary"] = prepare(
            "town_summary",
            summarise(both["household_profile"], both["person_profile"], both["alerts"]),
            secret,
            matrix,
        )
    if tables is not None:
        yield {**first, **later}
    elif later:
        yield later


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _audit_pruned(conn: Connection, actor: str, removed: Iterable[str]) -> None:
    """The files of pruned versions are gone; their audit rows stay, and this says when."""
    at = files.utc_now()
    conn.execute(
        insert(audit_log),
        [
            {
                "at": at,
                "actor": actor,
                "action": "prune",
                "publication_id": publication_id,
                "consumer": None,
                "object": f"{files.VERSIONS}/{publication_id}",
                "rows": None,
                "sha256": None,
                "personal": "none",
            }
            for publication_id in removed
        ],
    )


def _start(conn: Connection, as_of: date, actor: str, started: datetime) -> str:
    done = conn.execute(
        select(func.count()).select_from(publications).where(publications.c.as_of == as_of)
    ).scalar_one()
    publication_id = f"{as_of:%Y%m%d}-{done + 1:02d}"
    conn.execute(
        insert(publications).values(
            publication_id=publication_id,
            as_of=as_of,
            actor=actor,
            status="writing",
            started_at=started,
        )
    )
    return publication_id


def _abandon(engine: Engine, publish_dir: Path, publication_id: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                update(publications)
                .where(publications.c.publication_id == publication_id)
                .values(status="abandoned")
            )
        files.remove_version(publish_dir, publication_id)
    except Exception:  # the original error matters more; the next run cleans up
        log.exception("publication %s could not be cleaned up", publication_id)


def _write_version(
    publish_dir: Path,
    publication_id: str,
    as_of: date,
    started: datetime,
    parts: Iterable[dict[str, pd.DataFrame]],
    matrix: AccessMatrix,
    xlsx_max_rows: tuple[int, int],
    on_consumer: Callable[[str], None] | None,
    *,
    planned: Mapping[tuple[str, str], str | None] | None = None,
    created: Mapping[tuple[str, str], date] | None = None,
    reuse: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    previous: _Previous | None = None,
    workers: int = 1,
    on_output: Callable[[_Output, _Output | None], None] | None = None,
) -> list[_Output]:
    """Write one version folder from the prepared tables, which come in `parts`: an output is
    written as soon as its table and the tables its rows read have come (the writers work while
    the next part is computed). Catalogs list each consumer's tables in the access matrix's
    order whatever the order of writing. `on_output(out, same)` is called with each output as
    its data is known or its files are linked (same: the output of the same content it will
    share files with, or None)."""
    root = files.version_dir(publish_dir, publication_id)
    root.mkdir(parents=True)
    planned, reuse = planned or {}, reuse or {}
    shared = _Shared()
    done: dict[tuple[str, str], _Output | None] = {}  # (consumer, table) -> output (None: none)
    first_of: dict[tuple[str, str], _Output] = {}  # (table, content) -> the output written
    copies: list[tuple[_Output, _Output]] = []  # (output, the same content written for another)
    jobs: list[Future[None]] = []
    prepared: dict[str, pd.DataFrame] = {}
    with ExitStack() as stack:
        # Threads write Parquet and CSV (Arrow releases the GIL); a large workbook is written in
        # a process of its own (xlsxwriter is Python cell by cell and holds the GIL: a city's
        # alert workbooks were a quarter of a night). The processes start only when needed.
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(workers, 1) * 2))
        books = _LazyProcesses(stack, max(workers, 1))
        for part in _then_none(iter(parts)):
            last = part is None
            prepared |= part or {}
            for consumer, entries in matrix.consumers.items():
                ctx = _Context(consumer, as_of, prepared.get, shared.conditions)
                for table in entries:
                    if (consumer, table) in done:
                        continue
                    before = reuse.get((consumer, table))
                    reads = {table} | _referenced(entries[table].rows)
                    if before is None and not last and not reads <= prepared.keys():
                        continue  # its table (or one its rows read) comes in a later part
                    done[(consumer, table)] = None
                    source = planned.get((consumer, table))
                    if before is None and table in prepared:
                        projected = _projected(
                            matrix, consumer, table, prepared[table], ctx, shared
                        )
                        if projected is None:
                            continue
                        data, columns, digests = projected
                        created_on = (created or {}).get((consumer, table))
                        content = content_source(
                            digests, data.num_rows, columns, created_on or as_of, xlsx_max_rows
                        )
                        # a table not known from its inputs: its content is its source (not the
                        # audit log, which holds the previous publication and so changes each
                        # time)
                        if source is None and table != "audit_log":
                            source = content
                            if previous is not None:
                                before = linkable(previous, consumer, table, source)
                        if before is None:
                            out = _Output(
                                consumer, table, columns, data, source=source, created=created_on
                            )
                            done[(consumer, table)] = out
                            same = first_of.get((table, content))
                            if same is not None:
                                copies.append((out, same))  # written once, linked here
                            else:
                                first_of[(table, content)] = out
                                jobs.append(
                                    pool.submit(
                                        _write_files, root, out, as_of, xlsx_max_rows, books
                                    )
                                )
                            if on_output is not None:
                                on_output(out, same)
                            continue
                    if before is not None and previous is not None:
                        out = _Output(
                            consumer,
                            table,
                            resolve_columns(matrix, table_def(table), entries[table]),
                            None,
                            files=[dict(f) for f in before["files"]],
                            rows=int(before["rows"]),
                            source=source,
                            reused=True,
                        )
                        for f in out.files:
                            files.link_unchanged(previous.root / f["path"], root / f["path"])
                        done[(consumer, table)] = out
                        if on_output is not None:
                            on_output(out, None)
        for job in jobs:
            job.result()
    by_consumer: dict[str, list[_Output]] = {
        consumer: [o for t in entries if (o := done.get((consumer, t))) is not None]
        for consumer, entries in matrix.consumers.items()
    }
    for out, same in copies:
        for f in same.files:
            path = f"{out.consumer}/{f['path'].split('/', 1)[1]}"
            files.link_unchanged(root / f["path"], root / path)
            out.files.append({**f, "path": path})
        out.copied = True
    outputs: list[_Output] = []
    for consumer, mine in by_consumer.items():
        if mine:
            catalog = _catalog(publication_id, as_of, started, mine)
            files.write_json(root / consumer / files.CATALOG, catalog)
            files.seal(root / consumer / files.CATALOG)
        outputs += mine
        if on_consumer is not None:
            on_consumer(consumer)
    files.write_json(
        root / _SOURCES,
        {
            f"{o.consumer}/{o.table}": {
                "source": o.source,
                "entry": _catalog_entry(o, table_def(o.table).title),
            }
            for o in outputs
            if o.source is not None
        },
    )
    files.write_json(root / files.CATALOG, _catalog(publication_id, as_of, started, outputs))
    return outputs


def _then_none(
    parts: Iterator[dict[str, pd.DataFrame]],
) -> Iterator[dict[str, pd.DataFrame] | None]:
    yield from parts
    yield None  # the end: what still waits is written with what came


def _catalog(
    publication_id: str, as_of: date, started: datetime, outputs: list[_Output]
) -> dict[str, Any]:
    return {
        "publication_id": publication_id,
        "exchange_date": as_of.isoformat(),
        "published_at": started.isoformat(),
        "tables": [_catalog_entry(o, table_def(o.table).title) for o in outputs],
    }


class _LazyProcesses:
    """A process pool started on first use (most publications write no large workbook)."""

    def __init__(self, stack: ExitStack, workers: int) -> None:
        self._stack, self._workers = stack, workers
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def get(self) -> Executor:
        with self._lock:
            if self._pool is None:
                # A daemonic process (a Dask worker) may not start processes: threads there.
                self._pool = self._stack.enter_context(
                    ProcessPoolExecutor(self._workers, mp_context=processes.forkserver())
                    if processes.allowed()
                    else ThreadPoolExecutor(self._workers)
                )
            return self._pool


# A workbook of more cells than this is written in a process of its own. xlsxwriter is Python
# cell by cell: in a thread it holds the GIL that the publication's main thread needs for the
# profiles and the consumers' columns (a city night's ~40 alert and reject workbooks of
# 20k-400k cells, written in threads, slowed that thread several times over). The pool costs
# about a second to start, once; a workbook below this is written in a few milliseconds.
XLSX_PROCESS_CELLS = 20_000


def _write_files(
    root: Path,
    out: _Output,
    as_of: date,
    xlsx_max_rows: tuple[int, int],
    books: _LazyProcesses | None = None,
) -> None:
    assert out.data is not None  # linked outputs are not written
    folder = root / out.consumer
    labels = [c.label for c, _ in out.columns]
    parquet = folder / f"{out.table}.parquet"
    files.write_parquet(parquet, out.data)
    written = [(parquet, "parquet")]
    if xlsx_wanted(out.table, out.data.num_rows, *xlsx_max_rows):
        sheet = folder / f"{out.table}.xlsx"
        created = out.created or as_of
        people = for_people(out.table, out.data)
        book = functools.partial(
            files.write_xlsx,
            sheet,
            people.data,
            labels,
            sheet=people.sheet,
            created=created,
            counts=people.counts,
            note=people.note,
        )
        if books is not None and out.data.num_rows * out.data.num_columns > XLSX_PROCESS_CELLS:
            books.get().submit(book).result()
        else:
            book()
        written.append((sheet, "xlsx"))
    else:
        sheet = folder / f"{out.table}.csv"
        files.write_csv_bom(sheet, out.data, labels)
        written.append((sheet, "csv"))
    for path, kind in written:
        out.files.append(
            {
                "path": f"{out.consumer}/{path.name}",
                "format": kind,
                "sha256": files.seal(path),
                "bytes": path.stat().st_size,
            }
        )


def _audit(
    conn: Connection, publication_id: str, actor: str, outputs: list[_Output], catalog_sha: str
) -> None:
    at = files.utc_now()
    strongest = next(
        (f for f in ("plain", "masked", "key") if any(o.personal == f for o in outputs)), "none"
    )
    rows = [
        {
            "at": at,
            "actor": actor,
            "action": "publication",
            "publication_id": publication_id,
            "consumer": None,
            "object": files.CATALOG,
            "rows": sum(o.rows for o in outputs),
            "sha256": catalog_sha,
            "personal": strongest,
        }
    ]
    rows += [
        {
            "at": at,
            "actor": actor,
            "action": "file",
            "publication_id": publication_id,
            "consumer": o.consumer,
            "object": f["path"],
            "rows": o.rows,
            "sha256": f["sha256"],
            "personal": o.personal,
        }
        for o in outputs
        for f in o.files
    ]
    conn.execute(insert(audit_log), rows)


def record_export(
    conn: Connection,
    *,
    actor: str,
    consumer: str | None,
    obj: str,
    rows: int,
    sha256: str | None,
    personal: str,
) -> None:
    """Record an export made outside a publication (e.g. an ad-hoc file with plain ids)."""
    conn.execute(
        insert(audit_log).values(
            at=files.utc_now(),
            actor=actor,
            action="export",
            publication_id=None,
            consumer=consumer,
            object=obj,
            rows=rows,
            sha256=sha256,
            personal=personal,
        )
    )
