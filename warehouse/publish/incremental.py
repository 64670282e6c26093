"""Incremental publication: what a table is built from, and which files a version can reuse."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Connection, func, select, text

from expectations.contract import load_contracts
from expectations.release import release_digest
from warehouse import published as files
from warehouse.bulk import fetch_arrow
from warehouse.publish.access import AccessMatrix, RowCondition, resolve_columns
from warehouse.publish.tables import ColumnDef, _dataset_def, table_def
from warehouse.tables import deliveries
from warehouse.tables_alerts import alert_runs, alerts

# --- incremental publication: what a table is built from -----------------------------------------

# Bump when the same input gives other published bytes (a writer or a masking rule changed):
# every table is then written again once.
# 2: XLSX for people (labels, sheet names, counts; issue 14); 3: XLSX column widths, wrapped
# text and row heights that print (issue 14)
_SOURCE_FORMAT = "3"
_SOURCES = ".sources.json"  # in a version folder: (consumer/table) -> source digest, entry


def _schema_revision(conn: Connection) -> str:
    try:
        with conn.begin_nested():  # a failed statement must not abort the caller's transaction
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # no migrations table (tests build the schema directly)
        return ""
    return ",".join(sorted(found))


def dataset_sources(conn: Connection, as_of: date) -> dict[str, str]:
    """Per dataset, a digest of what its rows as of `as_of` are built from.

    The dataset's ledger up to that date (a new, re-delivered, superseded or forced delivery
    changes it), the warehouse schema's revision and the published definition. History is
    written only by deliveries, so equal digests mean equal current rows; it is read from the
    small ledger, not by reading the tables.
    """
    return _dataset_inputs(conn, as_of)[0]


def _dataset_inputs(conn: Connection, as_of: date) -> tuple[dict[str, str], dict[str, date]]:
    """dataset_sources, and per dataset the exchange date of its latest delivery up to as_of
    (the date its published content last changed: the XLSX creation date, so a file linked
    from an earlier night and one written tonight are the same bytes)."""
    d = deliveries.c
    revision = _schema_revision(conn)
    found = conn.execute(
        select(d.dataset, d.delivery_id, d.exchange_date, d.sha256, d.status)
        .where(d.exchange_date <= as_of)
        .order_by(d.dataset, d.delivery_id)
    ).all()
    ledger: dict[str, list[str]] = {}
    latest: dict[str, date] = {}
    for dataset, delivery_id, day, sha, status in found:
        ledger.setdefault(dataset, []).append(f"{delivery_id}|{day}|{sha}|{status}")
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        latest[dataset] = max(latest.get(dataset, day), day)
    out: dict[str, str] = {}
    for dataset in load_contracts():
        digest = hashlib.sha256(f"{_SOURCE_FORMAT}|{revision}|{_dataset_def(dataset)!r}".encode())
        for item in ledger.get(dataset, ()):
            digest.update(b"\n" + item.encode())
        out[dataset] = digest.hexdigest()
    return out, latest


# The shared tables built from every delivery and from the alerts (tasks.profiles,
# tasks.alerts): one source for the four, what they are built from as a whole.
DERIVED = frozenset({"person_profile", "household_profile", "alerts", "town_summary"})


def _alerts_digest(conn: Connection, as_of: date) -> str | None:
    """The alerts as of `as_of`, when the alerts table holds them (it is at the latest run date
    on or before `as_of`, as after every night): the digest of its rows, every column. None
    when the state would have to be derived from alert_days (an older date): not planned."""
    run = conn.execute(
        select(func.max(alert_runs.c.exchange_date)).where(alert_runs.c.exchange_date <= as_of)
    ).scalar()
    if run is None:
        return "no-runs"
    at = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if at is None or str(at)[:10] != str(run)[:10]:
        return None
    schema = pa.schema(
        [(c.name, pa.date32() if c.name in _ALERT_DATES else pa.string()) for c in alerts.columns]
    )
    rows = fetch_arrow(conn, select(alerts).order_by(alerts.c.alert_id), schema)
    # Of the values, not of Arrow's buffers: what lies under a null (a date column's slots of
    # the rows without one) is undefined, and differed from read to read of the same rows.
    # Every value quoted, a null not: "" and NULL stay apart.
    sink = pa.BufferOutputStream()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(quoting_style="all_valid"))
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


_ALERT_DATES = frozenset(
    {"first_raised", "last_seen", "resolved_on", "feedback_date", "as_of", "opened_on"}
)


def derived_source(conn: Connection, as_of: date, datasets: Mapping[str, str]) -> str | None:
    """What the profiles, alerts and town summary as of `as_of` are built from: every
    dataset's source (`dataset_sources`: its deliveries up to the date), the alerts as of the
    date (their rows: the feedback given in the portal is in them), the date itself (ages,
    as_of) and the release (`release_digest`: the software, contracts and reference data).
    None when the alerts cannot be read as they are (then the tables are prepared and
    compared by content, `content_source`)."""
    found = _alerts_digest(conn, as_of)
    if found is None:
        return None
    payload = {
        "format": _SOURCE_FORMAT,
        "as_of": as_of.isoformat(),
        "datasets": dict(sorted(datasets.items())),
        "alerts": found,
        "release": release_digest(),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return "derived:" + hashlib.sha256(blob).hexdigest()


def _created(matrix: AccessMatrix, changed_on: Mapping[str, date]) -> dict[tuple[str, str], date]:
    """(consumer, dataset table) -> the latest delivery date of what it is built from."""
    created: dict[tuple[str, str], date] = {}
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            days = [changed_on[t] for t in {table} | _referenced(entry.rows) if t in changed_on]
            if table in load_contracts() and days:
                created[(consumer, table)] = max(days)
    return created


def _referenced(rows: Iterable[RowCondition]) -> set[str]:
    """Tables a row condition reads (in_table), transitively."""
    found: set[str] = set()
    for cond in rows:
        if cond.in_table is not None:
            found |= {cond.in_table.table} | _referenced(cond.in_table.rows)
    return found


def _dated(rows: Iterable[RowCondition]) -> bool:
    return any(
        cond.age is not None or (cond.in_table is not None and _dated(cond.in_table.rows))
        for cond in rows
    )


def _plan(
    matrix: AccessMatrix,
    as_of: date,
    secret: bytes,
    xlsx_max_rows: tuple[int, int],
    sources: Mapping[str, str],
) -> dict[tuple[str, str], str | None]:
    """(consumer, table) -> digest of everything its files are made from (None: not known
    from its inputs: the ledger and the audit log, and the derived tables when
    `derived_source` could not say; they are prepared, and their content is their source,
    `content_source`)."""
    base = hashlib.sha256(b"datashare-publication-source|" + secret).hexdigest()
    plan: dict[tuple[str, str], str | None] = {}
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            inputs = {table} | _referenced(entry.rows)
            if any(t not in sources for t in inputs):
                plan[(consumer, table)] = None
                continue
            columns = resolve_columns(matrix, table_def(table), entry)
            dated = _dated(entry.rows) or any(c.derived for c, _ in columns)
            payload = {
                "format": _SOURCE_FORMAT,
                "base": base,
                "xlsx_max_rows": xlsx_max_rows,
                "consumer": consumer,
                "table": table,
                "entry": entry.model_dump(mode="json", by_alias=True),
                "never": sorted(matrix.never_columns),
                "inputs": {t: sources[t] for t in sorted(inputs)},
                "as_of": as_of.isoformat() if dated else None,  # ages move with the date
            }
            blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
            plan[(consumer, table)] = hashlib.sha256(blob).hexdigest()
    return plan


@dataclass(frozen=True)
class _Previous:
    root: Path
    sources: dict[str, dict[str, Any]]  # "CONSUMER/table" -> {"source": digest, "entry": …}


def _previous_version(publish_dir: Path) -> _Previous | None:
    current = files.current_publication(publish_dir)
    if current is None:
        return None
    root = files.version_dir(publish_dir, current)
    try:
        content = json.loads((root / _SOURCES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _Previous(root, content if isinstance(content, dict) else {})


def _reusable(
    previous: _Previous, planned: Mapping[tuple[str, str], str | None]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Outputs whose source is that of the current publication and whose files are there."""
    reuse = {}
    for (consumer, table), source in planned.items():
        entry = linkable(previous, consumer, table, source) if source is not None else None
        if entry is not None:
            reuse[(consumer, table)] = entry
    return reuse


def content_source(
    digests: Sequence[bytes],
    rows: int,
    columns: Sequence[tuple[ColumnDef, str]],
    created: date,
    xlsx_max_rows: tuple[int, int],
) -> str:
    """The source of a table nothing upstream describes (the profiles, alerts, the ledger, the
    audit log: built from every delivery and the alert history): the digest of the prepared
    table itself (its columns' digests, each of the column's Arrow IPC stream), with what else
    its files depend on (columns and forms, the XLSX creation date and row limits, the writers'
    format). Computing it costs the preparation, not the writing: a table equal to the current
    publication's is linked, as a dataset is; two consumers given the same table in one
    publication share its files."""
    digest = hashlib.sha256()
    header = {
        "format": _SOURCE_FORMAT,
        "xlsx_max_rows": list(xlsx_max_rows),
        "created": created.isoformat(),
        "rows": rows,
        "columns": [[c.name, c.label, c.type, form] for c, form in columns],
    }
    digest.update(json.dumps(header, sort_keys=True, ensure_ascii=False).encode())
    for column in digests:
        digest.update(column)
    return "content:" + digest.hexdigest()


def linkable(previous: _Previous, consumer: str, table: str, source: str) -> dict[str, Any] | None:
    """The current publication's catalog entry of this output if it has the same source and
    its files are there (then they are linked, not written)."""
    before = previous.sources.get(f"{consumer}/{table}")
    if before is None or before.get("source") != source:
        return None
    entry = before.get("entry") or {}
    paths = [previous.root / f["path"] for f in entry.get("files", ())]
    return entry if paths and all(p.is_file() for p in paths) else None


def _needed(matrix: AccessMatrix, reuse: Mapping[tuple[str, str], Any]) -> set[str]:
    """Datasets and derived tables some output that is written again reads (itself or through
    a grant's rows)."""
    datasets = set(load_contracts()) | DERIVED
    needed: set[str] = set()
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            if (consumer, table) not in reuse:
                needed |= ({table} | _referenced(entry.rows)) & datasets
    return needed
