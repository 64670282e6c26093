"""Full history of every dataset: merge one accepted delivery, rebuild from a date, read as of.

Over 600 lines on purpose: merge, rebuild and the as-of reads share one row-version scheme
(row_hash, valid_from/valid_to); kept together so that a change to it is made in one place.

    accepted rows (Arrow) ── row_hash + diff against the current keys (DuckDB)
        ├─ close      changed keys, keys missing from a snapshot, newly cancelled settlements
        ├─ insert     new versions (COPY on PostgreSQL, one executemany on SQLite)
        ├─ person_sources   ids first seen in this dataset
        └─ history_merges   which delivery gave this dataset's state on this exchange date

Semantics (spec "Modes and history"):
  snapshot  a new key opens a version; a changed row (row_hash differs) closes the current
            version (valid_to = D, is_current false) and opens a new one; an unchanged key is
            untouched; a key missing from the snapshot is closed; a key that comes back opens a
            new version (counted as reopened). A key whose row the delivery carried but
            quarantined is *held*, not missing: its current version stays open, untouched
            (counted as held: not re-confirmed by this delivery) until a later delivery
            confirms, changes or omits it. A typo never closes a key. The held keys travel
            with the accepted rows (the Parquet's schema metadata, `attach_held_keys`), so a
            rebuild from the lake holds the same keys as the night did.
  events    rows are appended; a key delivered again is a correction: the latest delivery wins.
  cancel_reversals (YB_JIESUAN)  a 冲销 row cancels the 正常 row with the same settlement_id:
            both are kept, the 正常 row gets a new version with cancelled = true and
            cancelled_by = the delivery that carried the 冲销 (so as-of queries before the
            reversal still see the settlement as it was).

A merge of exchange date D only opens versions with valid_from = D and closes versions with
valid_to = D. Undoing everything from D on is therefore exact: delete versions with
valid_from >= D, reopen versions closed at or after D. `rebuild_from` does that and replays the
ledger, which gives the same rows as merging night by night (tests/test_history.py).

Nothing here reads a clock: the same deliveries give byte-identical table contents.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeEngine

from datashare.errors import HistoryError, MergeOrderError  # re-exported: old import path
from domain.definitions import SETTLEMENT_NORMAL, SETTLEMENT_REVERSAL
from expectations.contract import Contract, get_contract
from warehouse.bulk import fetch_arrow, load_arrow, prepare_bulk, staging
from warehouse.identity import person_keys
from warehouse.tables import (
    deliveries,
    history_merges,
    history_tables,
    id_columns,
    person_key_column,
    person_sources,
    valid_on,
)

log = logging.getLogger(__name__)

# Arrow types of the accepted rows (the lake's Parquet schema: accepted_schema).
_ARROW_TYPES: dict[str, pa.DataType] = {
    "date": pa.date32(),
    "int": pa.int64(),
    "decimal": pa.float64(),
    "bool": pa.bool_(),
}
_LINEAGE = (("delivery_id", pa.string()), ("source_file", pa.string()), ("source_row", pa.int64()))
_SYSTEM_TYPES: dict[str, pa.DataType] = {
    "row_hash": pa.string(),
    "valid_from": pa.date32(),
    "valid_to": pa.date32(),
    "is_current": pa.bool_(),
    "cancelled": pa.bool_(),
    "cancelled_by": pa.string(),
}
_NEW_KEY = "_new_key"  # flag on insert rows: the key had no current version
# Schema metadata of an accepted table: the keys of the delivery's quarantined rows (held keys),
# as a base64 Arrow IPC stream (typed like the key columns).
HELD_KEYS_METADATA = b"datashare.held_keys"
# The one dataset-specific merge rule; the contract names it (merge_hook: cancel_reversals).
_REVERSAL = {
    "id": "settlement_id",
    "kind": "settle_kind",
    "normal": SETTLEMENT_NORMAL,
    "reversal": SETTLEMENT_REVERSAL,
}


@dataclass(frozen=True)
class MergeStats:
    """What one merge did, counted in keys."""

    dataset: str
    exchange_date: date
    delivery_id: str
    inserted: int = 0  # keys never seen before
    changed: int = 0  # keys whose row changed (events: corrections)
    closed: int = 0  # snapshot keys that disappeared
    unchanged: int = 0  # keys delivered again with the same row
    reopened: int = 0  # snapshot keys that came back after being closed
    cancelled: int = 0  # 正常 settlements cancelled by a 冲销 (cancel_reversals only)
    held: int = 0  # snapshot keys kept open: delivered, but quarantined (not re-confirmed)
    skipped: bool = False  # this delivery was already merged for this date: nothing done


# --- schemas and hashing ----------------------------------------------------------------------


def accepted_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema merge_delivery expects: canonical typed columns plus lineage."""
    fields = [pa.field(c.name, _ARROW_TYPES.get(c.type, pa.string())) for c in contract.columns]
    return pa.schema(fields + [pa.field(n, t) for n, t in _LINEAGE])


def history_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a history table's rows, in table column order."""
    table = history_tables[contract.dataset]
    canonical = {f.name: f.type for f in accepted_schema(contract)}
    return pa.schema(
        [
            pa.field(c.name, canonical.get(c.name) or _SYSTEM_TYPES.get(c.name, pa.string()))
            for c in table.columns
        ]
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_text(name: str, kind: str) -> str:
    """DuckDB expression: the canonical text of one value (what the row hash is made of)."""
    col = _q(name)
    if kind == "decimal":
        return f"CAST(CAST({col} AS DECIMAL(18, 2)) AS VARCHAR)"
    if kind == "int":
        return f"CAST({col} AS VARCHAR)"
    if kind == "date":
        return f"strftime({col}, '%Y-%m-%d')"
    if kind == "bool":
        return f"CASE WHEN {col} THEN 'true' ELSE 'false' END"
    return col


def row_hash_sql(contract: Contract) -> str:
    """DuckDB expression for row_hash: md5 over the row's non-null canonical values.

    The row is encoded as name=text for each non-null column, in name order, joined by U+001F
    (a U+001F inside a value is doubled; a field never starts with one, so the encoding is
    unambiguous). Column order does not matter, a column added later (NULL in old rows) leaves
    old hashes as they were, and lineage never enters the hash.
    """
    parts = []
    for column in sorted(contract.columns, key=lambda c: c.name):
        text = _as_text(column.name, column.type)
        if column.type == "text":  # the other types are validated to forms without U+001F
            text = f"replace({text}, chr(31), chr(31) || chr(31))"
        parts.append(f"'{column.name}=' || {text}")  # NULL || text is NULL: skipped by concat_ws
    return f"md5(concat_ws(chr(31), {', '.join(parts)}))"


def _canonical(accepted: pa.Table, contract: Contract, delivery_id: str) -> pa.Table:
    schema = accepted_schema(contract)
    missing = [n for n in schema.names if n not in accepted.column_names and n != "delivery_id"]
    if missing:
        raise HistoryError(
            f"{contract.dataset}：通过校验的数据缺少列 {missing}，无法并入历史；"
            "这是程序缺陷，请报告开发人员"
        )
    columns = [
        pa.repeat(pa.scalar(delivery_id), accepted.num_rows)
        if field.name == "delivery_id"
        else accepted[field.name].cast(field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _key_schema(contract: Contract) -> pa.Schema:
    schema = accepted_schema(contract)
    return pa.schema([schema.field(k) for k in contract.key])


def attach_held_keys(accepted: pa.Table, contract: Contract, quarantined: pd.DataFrame) -> pa.Table:
    """`accepted` carrying the keys of the delivery's quarantined rows (its held keys).

    `quarantined`: the quarantined rows (at least the key columns, typed as validated). A key
    column that could not be read is null. The first key column names whom the row is about
    (the id or household id, first in every contract's key): a row without it names no key and
    is left out; with it, the unreadable rest matches anything, so an id typed into
    MZ_DIBAO's 保障类别 keeps that person's current rows open. Only
    snapshots use held keys (an events delivery closes nothing); the keys are kept distinct and
    sorted, so the same delivery always gives the same bytes.
    """
    if contract.mode != "snapshot":
        return accepted
    schema = _key_schema(contract)
    keys = quarantined[list(contract.key)].dropna(subset=[contract.key[0]])
    table = pa.Table.from_arrays(
        [pa.array(keys[k], type=schema.field(k).type, from_pandas=True) for k in contract.key],
        schema=schema,
    )
    table = table.group_by(list(contract.key)).aggregate([])
    table = table.sort_by([(k, "ascending") for k in contract.key]).select(list(contract.key))
    # group_by and sort_by keep nulls together and last: deterministic
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    metadata = dict(accepted.schema.metadata or {})
    metadata[HELD_KEYS_METADATA] = base64.b64encode(sink.getvalue().to_pybytes())
    return accepted.replace_schema_metadata(metadata)


def held_keys(accepted: pa.Table, contract: Contract) -> pa.Table:
    """The held keys an accepted table carries (`attach_held_keys`; none if it carries none)."""
    schema = _key_schema(contract)
    encoded = (accepted.schema.metadata or {}).get(HELD_KEYS_METADATA)
    if encoded is None or contract.mode != "snapshot":
        return schema.empty_table()
    with pa.ipc.open_stream(base64.b64decode(encoded)) as reader:
        table = reader.read_all()
    if table.schema.names != schema.names:
        raise HistoryError(
            f"{contract.dataset}：报送所附被隔离行的主键列 {table.schema.names} 与数据集约定的"
            "主键不符；请检查约定是否改过主键"
        )
    return table.cast(schema)


# --- reading the current state ----------------------------------------------------------------


def _key_types(table: Table, names: Sequence[str]) -> list[tuple[str, TypeEngine[Any]]]:
    return [(n, table.c[n].type) for n in names]


def _matches(table: Table, other: Any, names: Sequence[str]) -> Any:
    return and_(*(table.c[n] == other.c[n] for n in names))


def _current_state(
    conn: Connection, contract: Contract, duck: duckdb.DuckDBPyConnection | None
) -> pa.Table:
    """The current versions the incoming rows are compared with (keys, row_hash, flags).

    Snapshots read every current version; events only those of the keys in `n` (in `duck`).
    """
    table = history_tables[contract.dataset]
    hooked = contract.merge_hook == "cancel_reversals"
    names = [*contract.key, "row_hash"]
    names += ["cancelled", "delivery_id"] if hooked else []
    schema = pa.schema([(n, history_schema(contract).field(n).type) for n in names])
    columns = [table.c[n] for n in names]
    if contract.mode == "snapshot":
        # The whole current list: every key missing from the snapshot must be found.
        return fetch_arrow(conn, select(*columns).where(table.c.is_current == true()), schema)
    # Events: only the keys this delivery touches (for reversals: its settlement ids).
    assert duck is not None
    lookup = [_REVERSAL["id"]] if hooked else list(contract.key)
    wanted = duck.sql(f"SELECT DISTINCT {', '.join(map(_q, lookup))} FROM n").to_arrow_table()
    if wanted.num_rows == 0:
        return schema.empty_table()
    with staging(conn, "_stg_lookup", _key_types(table, lookup), wanted, primary_key=lookup) as stg:
        return fetch_arrow(
            conn,
            select(*columns)
            .select_from(table.join(stg, _matches(table, stg, lookup)))
            .where(table.c.is_current == true()),
            schema,
        )


# --- the diff ---------------------------------------------------------------------------------


@dataclass
class _Diff:
    inserts: pa.Table  # new versions, table columns except person keys
    closes: pa.Table  # keys whose current version closes at D
    cancels: pa.Table  # keys (+ cancelled_by) whose current version is copied as cancelled
    new_keys: pa.Table  # keys not current before (inserted or reopened)
    changed: int
    closed: int
    unchanged: int
    cancelled: int
    held: int  # current keys kept open: their row was quarantined


def _diff(
    duck: duckdb.DuckDBPyConnection, contract: Contract, exchange_date: date, delivery_id: str
) -> _Diff:
    """Classify the incoming rows against the current versions, all in DuckDB.

    `n` holds each incoming row's key, row_hash and position (_ord) in `incoming`; the wide
    columns are only read back for the rows that become new versions.
    """
    key = list(contract.key)
    keys = ", ".join(_q(k) for k in key)
    on = " AND ".join(f"n.{_q(k)} = c.{_q(k)}" for k in key)
    hooked = contract.merge_hook == "cancel_reversals"
    duck.execute(f"""
        CREATE TABLE cls AS
        SELECT n.*, CASE WHEN c.row_hash IS NULL THEN 'new'
                         WHEN c.row_hash = n.row_hash THEN 'same' ELSE 'changed' END AS change
               {", coalesce(c.cancelled, FALSE) AS was_cancelled" if hooked else ""}
        FROM n LEFT JOIN cur c ON {on}
    """)
    if contract.mode == "snapshot":
        # Missing: neither delivered and accepted (n) nor delivered and quarantined (held;
        # a null in a held key is a key column that could not be read: it matches any value).
        on_held = _held_match(key)
        duck.execute(
            f"CREATE TABLE gone AS SELECT {keys} FROM cur c "
            f"WHERE NOT EXISTS (SELECT 1 FROM n WHERE {on}) "
            f"AND NOT EXISTS (SELECT 1 FROM held h WHERE {on_held})"
        )
        duck.execute(
            f"CREATE TABLE kept AS SELECT {keys} FROM cur c "
            f"WHERE NOT EXISTS (SELECT 1 FROM n WHERE {on}) "
            f"AND EXISTS (SELECT 1 FROM held h WHERE {on_held})"
        )
    else:
        duck.execute(f"CREATE TABLE gone AS SELECT {keys} FROM cur WHERE FALSE")
        duck.execute(f"CREATE TABLE kept AS SELECT {keys} FROM cur WHERE FALSE")
    flags_select, flags_join = "", ""
    if hooked:
        _cancel_reversals(duck, key, delivery_id)
        flags_select = ", coalesce(f.cancelled, FALSE) AS cancelled, f.cancelled_by"
        flags_join = "LEFT JOIN flags f ON " + " AND ".join(f"f.{_q(k)} = cls.{_q(k)}" for k in key)
    else:
        duck.execute(
            f"CREATE TABLE cancel AS SELECT {keys}, NULL::VARCHAR AS cancelled_by "
            f"FROM cur WHERE FALSE"
        )

    # Amounts to the cent, then to DOUBLE in DuckDB: its division gives the double nearest the
    # decimal (-23342.92). Arrow's decimal128 -> float64 cast multiplies by a reciprocal and gave
    # -23342.920000000002, which SQLite kept and the published CSV showed (migration 0010 mends).
    values = [
        f"CAST(CAST(i.{_q(c.name)} AS DECIMAL(14, 2)) AS DOUBLE) AS {_q(c.name)}"
        if c.type == "decimal"
        else f"i.{_q(c.name)}"
        for c in contract.columns
    ]
    inserts = duck.sql(f"""
        SELECT {", ".join(values)}, i.delivery_id, i.source_file, i.source_row,
               cls.row_hash, DATE '{exchange_date.isoformat()}' AS valid_from,
               CAST(NULL AS DATE) AS valid_to, TRUE AS is_current {flags_select},
               cls.change = 'new' AS {_NEW_KEY}
        FROM cls JOIN incoming i ON i._ord = cls._ord {flags_join}
        WHERE cls.change IN ('new', 'changed')
        ORDER BY {", ".join(f"cls.{_q(k)}" for k in key)}
    """).to_arrow_table()
    closes = duck.sql(f"""
        SELECT {keys} FROM cls WHERE change = 'changed'
        UNION ALL SELECT {keys} FROM gone
        UNION ALL SELECT {keys} FROM cancel
        ORDER BY {keys}
    """).to_arrow_table()
    cancels = duck.sql(f"SELECT * FROM cancel ORDER BY {keys}").to_arrow_table()
    new_keys = duck.sql(
        f"SELECT {keys} FROM cls WHERE change = 'new' ORDER BY {keys}"
    ).to_arrow_table()
    counts = duck.execute(f"""
        SELECT (SELECT count(*) FROM cls WHERE change = 'changed'),
               (SELECT count(*) FROM gone),
               (SELECT count(*) FROM cls WHERE change = 'same'
                  AND NOT EXISTS (SELECT 1 FROM cancel x WHERE
                      {" AND ".join(f"x.{_q(k)} = cls.{_q(k)}" for k in key)})),
               (SELECT count(*) FROM cancel)
               {
        "+ (SELECT count(*) FROM flags WHERE cancelled AND NOT was_cancelled)" if hooked else ""
    },
               (SELECT count(*) FROM kept)
    """).fetchall()[0]
    changed, closed, unchanged, cancelled, held = (int(v) for v in counts)
    return _Diff(inserts, closes, cancels, new_keys, changed, closed, unchanged, cancelled, held)


def _held_match(key: Sequence[str]) -> str:
    """DuckDB condition: held key `h` names current key `c` (a null part matches anything)."""
    return " AND ".join(f"(h.{_q(k)} IS NULL OR h.{_q(k)} = c.{_q(k)})" for k in key)


def _cancel_reversals(duck: duckdb.DuckDBPyConnection, key: list[str], delivery_id: str) -> None:
    """merge_hook cancel_reversals: a 冲销 row cancels the 正常 row of the same settlement.

    Builds `flags` (cancelled, cancelled_by for each inserted row) and `cancel` (current 正常
    versions, untouched by this delivery, that a 冲销 now cancels).
    """
    sid, kind = _q(_REVERSAL["id"]), _q(_REVERSAL["kind"])
    normal, reversal = f"'{_REVERSAL['normal']}'", f"'{_REVERSAL['reversal']}'"
    # Reversals standing after this merge: the delivery's own win over the current ones.
    duck.execute(
        f"""
        CREATE TABLE rev AS
        SELECT {sid}, CAST($delivery AS VARCHAR) AS cancelled_by FROM n
        WHERE {kind} = {reversal}
        UNION ALL
        SELECT c.{sid}, c.delivery_id FROM cur c
        WHERE c.{kind} = {reversal}
          AND NOT EXISTS (SELECT 1 FROM n WHERE n.{sid} = c.{sid} AND n.{kind} = {reversal})
    """,
        {"delivery": delivery_id},
    )
    duck.execute(f"""
        CREATE TABLE flags AS
        SELECT {", ".join(f"cls.{_q(k)}" for k in key)},
               (cls.{kind} = {normal} AND r.{sid} IS NOT NULL) AS cancelled,
               CASE WHEN cls.{kind} = {normal} THEN r.cancelled_by END AS cancelled_by,
               cls.was_cancelled
        FROM cls LEFT JOIN rev r ON r.{sid} = cls.{sid}
        WHERE cls.change IN ('new', 'changed')
    """)
    on_cls = " AND ".join(f"cls.{_q(k)} = c.{_q(k)}" for k in key)
    duck.execute(f"""
        CREATE TABLE cancel AS
        SELECT {", ".join(f"c.{_q(k)}" for k in key)}, r.cancelled_by
        FROM cur c JOIN rev r ON r.{sid} = c.{sid}
        WHERE c.{kind} = {normal} AND NOT c.cancelled
          AND NOT EXISTS (SELECT 1 FROM cls WHERE {on_cls} AND cls.change = 'changed')
    """)


# --- writing ----------------------------------------------------------------------------------


def _with_person_keys(inserts: pa.Table, contract: Contract, secret: bytes) -> pa.Table:
    """The insert rows in table column order, a person_key beside every id18 column."""
    table = history_tables[contract.dataset]
    ids = id_columns(contract)
    extra: dict[str, pa.Array] = {}
    if ids and inserts.num_rows:
        # One HMAC per distinct id over all id columns (heads repeat across members).
        distinct = pc.unique(pa.chunked_array([inserts[c].combine_chunks() for c in ids]))
        keys = person_keys(distinct, secret)
        extra = {
            person_key_column(c): pc.take(keys, pc.index_in(inserts[c], distinct)) for c in ids
        }
    else:
        extra = {person_key_column(c): pa.nulls(inserts.num_rows, pa.string()) for c in ids}
    return pa.table(
        {c.name: extra[c.name] if c.name in extra else inserts[c.name] for c in table.columns}
    )


def _record_persons(
    conn: Connection,
    contract: Contract,
    rows: pa.Table,
    new_key: pa.Array,
    exchange_date: date,
    first_merge: bool,
) -> None:
    """Add the (person, dataset, id column) pairs first seen in this merge to person_sources.

    Candidates: the ids of every new version, except key ids of a changed row (its current
    version carried the same id, so the pair is known); one set-based insert skips the rest
    of the known pairs.
    """
    parts = [
        pa.table(
            {
                "person_key": rows[person_key_column(c)],
                "id_number": rows[c],
                "id_column": pa.repeat(pa.scalar(c), rows.num_rows),
            }
        ).filter(pc.and_(rows[c].is_valid(), new_key) if c in contract.key else rows[c].is_valid())
        for c in id_columns(contract)
    ]
    if not parts or sum(p.num_rows for p in parts) == 0:
        return
    pairs = (
        pa.concat_tables(parts)
        .group_by(["person_key", "id_column", "id_number"])
        .aggregate([])
        .sort_by([("person_key", "ascending"), ("id_column", "ascending")])
    )
    pairs = pairs.append_column("dataset", pa.repeat(pa.scalar(contract.dataset), pairs.num_rows))
    pairs = pairs.append_column("dept", pa.repeat(pa.scalar(contract.dept), pairs.num_rows))
    pairs = pairs.append_column(
        "first_seen", pa.repeat(pa.scalar(exchange_date, pa.date32()), pairs.num_rows)
    )
    if first_merge:
        load_arrow(conn, person_sources, pairs.select([c.name for c in person_sources.columns]))
        return
    ps = person_sources.c
    columns = [
        ("person_key", ps.person_key.type),
        ("id_column", ps.id_column.type),
        ("id_number", ps.id_number.type),
    ]
    with staging(
        conn, "_stg_persons", columns, pairs, primary_key=["person_key", "id_column"]
    ) as stg:
        seen = exists().where(
            ps.person_key == stg.c.person_key,
            ps.dataset == contract.dataset,
            ps.id_column == stg.c.id_column,
        )
        conn.execute(
            insert(person_sources).from_select(
                ["person_key", "dataset", "id_column", "dept", "id_number", "first_seen"],
                select(
                    stg.c.person_key,
                    literal(contract.dataset),
                    stg.c.id_column,
                    literal(contract.dept),
                    stg.c.id_number,
                    literal(exchange_date, Date),
                ).where(~seen),
            )
        )


def _count_reopened(conn: Connection, contract: Contract, new_keys: pa.Table) -> int:
    """How many of the keys about to open a version had one before (closed since)."""
    table = history_tables[contract.dataset]
    key = list(contract.key)
    with staging(conn, "_stg_new", _key_types(table, key), new_keys, primary_key=key) as stg:
        had = exists().where(_matches(table, stg, key))
        return int(conn.execute(select(func.count()).select_from(stg).where(had)).scalar_one())


def _apply(
    conn: Connection,
    contract: Contract,
    diff: _Diff,
    rows: pa.Table,
    exchange_date: date,
    history_before: bool,
) -> int:
    """Write one merge's effect; returns the number of reopened keys."""
    table = history_tables[contract.dataset]
    key = list(contract.key)
    if diff.closes.num_rows:
        with staging(
            conn, "_stg_close", _key_types(table, key), diff.closes, primary_key=key
        ) as stg:
            conn.execute(
                update(table)
                .where(_matches(table, stg, key), table.c.is_current == true())
                .values(valid_to=exchange_date, is_current=False)
            )
    if diff.cancels.num_rows:
        copied = [
            c
            for c in table.columns
            if c.name not in {"valid_from", "valid_to", "is_current", "cancelled", "cancelled_by"}
        ]
        with staging(
            conn,
            "_stg_cancel",
            [*_key_types(table, key), ("cancelled_by", table.c.cancelled_by.type)],
            diff.cancels,
            primary_key=key,
        ) as stg:
            conn.execute(
                insert(table).from_select(
                    [c.name for c in copied]
                    + ["valid_from", "valid_to", "is_current", "cancelled", "cancelled_by"],
                    select(
                        *copied,
                        literal(exchange_date, Date),
                        null(),
                        true(),
                        true(),
                        stg.c.cancelled_by,
                    ).where(_matches(table, stg, key), table.c.valid_to == exchange_date),
                )
            )
    reopened = 0
    if history_before and diff.new_keys.num_rows:
        reopened = _count_reopened(conn, contract, diff.new_keys)
    load_arrow(conn, table, rows)
    return reopened


def _undo(conn: Connection, contract: Contract, from_date: date) -> None:
    """Remove the effect of every merge of this dataset on or after `from_date`."""
    table = history_tables[contract.dataset]
    conn.execute(delete(table).where(table.c.valid_from >= from_date))
    conn.execute(
        update(table).where(table.c.valid_to >= from_date).values(valid_to=None, is_current=True)
    )
    conn.execute(
        delete(person_sources).where(
            person_sources.c.dataset == contract.dataset, person_sources.c.first_seen >= from_date
        )
    )
    conn.execute(
        delete(history_merges).where(
            history_merges.c.dataset == contract.dataset,
            history_merges.c.exchange_date >= from_date,
        )
    )


# --- public API -------------------------------------------------------------------------------


def merge_delivery(
    conn: Connection,
    contract: Contract,
    accepted: pa.Table,
    *,
    delivery_id: str,
    exchange_date: date,
    secret: bytes,
) -> MergeStats:
    """Apply one accepted delivery to its dataset's history, in the caller's transaction.

    Merging the same delivery for the same date again does nothing (stats.skipped). Another
    delivery for the latest merged date (a re-delivery) first undoes that date. A delivery for
    an earlier date raises MergeOrderError: record it in the ledger, then call rebuild_from.
    """
    try:
        return _merge(conn, contract, accepted, delivery_id, exchange_date, secret)
    except (DBAPIError, psycopg.Error, sqlite3.Error) as exc:
        # Database messages can quote the offending values (ids, names): keep only where.
        raise HistoryError(
            f"{contract.dataset}：仓库拒绝并入报送 {delivery_id}（{_where(exc)}）；"
            "请检查仓库的历史表是否被手工改动过，必要时用 rebuild_from 从该日期重建"
        ) from None


def _where(exc: Exception) -> str:
    """What a database error says about where it happened, never the values involved."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):  # SQLite names columns and constraints, not values
        return f"{type(orig).__name__}: {orig}"
    diag = getattr(orig, "diag", None)
    parts = [type(orig).__name__, f"SQLSTATE {getattr(orig, 'sqlstate', None)}"]
    parts += [
        f"{k} {v}"
        for k in ("table_name", "column_name", "constraint_name")
        if (v := getattr(diag, k, None))
    ]
    return ", ".join(parts)


def _merge(
    conn: Connection,
    contract: Contract,
    accepted: pa.Table,
    delivery_id: str,
    exchange_date: date,
    secret: bytes,
) -> MergeStats:
    dataset = contract.dataset
    prepare_bulk(conn)
    hm = history_merges.c
    merged: dict[date, str] = {
        d: did
        for d, did in conn.execute(
            select(hm.exchange_date, hm.delivery_id).where(hm.dataset == dataset)
        )
    }
    if merged.get(exchange_date) == delivery_id:
        return MergeStats(dataset, exchange_date, delivery_id, skipped=True)
    later = [d for d in merged if d > exchange_date]
    if later:
        raise MergeOrderError(
            f"{dataset}：报送 {delivery_id} 的交换日期 {exchange_date} 早于已并入的最后交换日期 "
            f"{max(later)}；请用 rebuild_from({exchange_date}) 按日期顺序重放"
        )
    if exchange_date in merged:
        _undo(conn, contract, exchange_date)
        del merged[exchange_date]
    history_before = bool(
        conn.execute(
            select(func.count())
            .select_from(history_merges)
            .where(hm.dataset == dataset, (hm.changed + hm.closed + hm.cancelled) > 0)
        ).scalar_one()
    )

    held = held_keys(accepted, contract)
    incoming = _canonical(accepted, contract, delivery_id)
    incoming = incoming.append_column("_ord", pa.array(np.arange(incoming.num_rows)))
    keys = ", ".join(_q(k) for k in contract.key)
    with duckdb.connect() as duck, ThreadPoolExecutor(1) as worker:
        duck.register("incoming", incoming)

        def hash_rows() -> None:
            duck.execute(
                f"CREATE TABLE n AS SELECT {keys}, {row_hash_sql(contract)} "
                f"AS row_hash, _ord FROM incoming"
            )
            _check_keys(duck, contract)

        if contract.mode == "snapshot":
            # DuckDB hashes (without the GIL) while the current state is read from the
            # warehouse; nothing else touches `duck` until the hashing is done.
            hashing = worker.submit(hash_rows)
            current = _current_state(conn, contract, None)
            hashing.result()
        else:  # events read only the keys they touch: hash first
            hash_rows()
            current = _current_state(conn, contract, duck)
        duck.register("cur", current)
        duck.register("held", held)
        diff = _diff(duck, contract, exchange_date, delivery_id)

    rows = _with_person_keys(diff.inserts, contract, secret)
    reopened = _apply(conn, contract, diff, rows, exchange_date, history_before)
    _record_persons(
        conn, contract, rows, diff.inserts[_NEW_KEY], exchange_date, first_merge=not merged
    )
    stats = MergeStats(
        dataset,
        exchange_date,
        delivery_id,
        inserted=diff.new_keys.num_rows - reopened,
        changed=diff.changed,
        closed=diff.closed,
        unchanged=diff.unchanged,
        reopened=reopened,
        cancelled=diff.cancelled,
        held=diff.held,
    )
    # history_merges has no column for held keys: they are in the delivery's lake file.
    record = {k: v for k, v in asdict(stats).items() if k not in ("skipped", "held")}
    conn.execute(insert(history_merges).values(**record))
    log.info(
        "merged %s %s: %s",
        dataset,
        delivery_id,
        {k: v for k, v in asdict(stats).items() if type(v) is int},
    )
    return stats


def _check_keys(duck: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    keys = ", ".join(_q(k) for k in contract.key)
    nulls = " OR ".join(f"{_q(k)} IS NULL" for k in contract.key)
    row = duck.execute(f"""
        SELECT (SELECT count(*) FROM n WHERE {nulls}),
               (SELECT count(*) FROM (SELECT {keys} FROM n GROUP BY {keys} HAVING count(*) > 1))
    """).fetchall()[0]
    if row[0] or row[1]:
        raise HistoryError(
            f"{contract.dataset}：通过校验的数据中有 {row[0]} 行主键为空、{row[1]} 个主键重复，"
            "本应在校验时隔离；这是程序缺陷，请报告开发人员"
        )


def rebuild_from(
    engine_or_conn: Engine | Connection,
    contract: Contract,
    from_date: date,
    *,
    lake_root: Path,
    secret: bytes,
) -> list[MergeStats]:
    """Rewrite a dataset's history from `from_date` on by replaying the ledger from the lake.

    Undoes every merge on or after from_date, then merges the dataset's deliveries with status
    'loaded' and exchange_date >= from_date in date order, from their accepted Parquet
    (deliveries.lake_path, relative to lake_root). The result equals merging night by night.
    With an Engine it runs in one transaction of its own; with a Connection, in the caller's.
    """
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return _rebuild(conn, contract, from_date, lake_root, secret)
    return _rebuild(engine_or_conn, contract, from_date, lake_root, secret)


def _rebuild(
    conn: Connection, contract: Contract, from_date: date, lake_root: Path, secret: bytes
) -> list[MergeStats]:
    d = deliveries.c
    replay = conn.execute(
        select(d.delivery_id, d.exchange_date, d.lake_path)
        .where(d.dataset == contract.dataset, d.status == "loaded", d.exchange_date >= from_date)
        .order_by(d.exchange_date, d.received_at, d.delivery_id)
    ).all()
    missing = [did for did, _, rel in replay if not rel or not (Path(lake_root) / rel).is_file()]
    if missing:
        raise HistoryError(
            f"{contract.dataset}：湖中缺少这些报送通过校验的 Parquet 文件：{missing}；"
            "请从备份恢复湖目录（DATASHARE_LAKE）后重试"
        )
    _undo(conn, contract, from_date)
    return [
        merge_delivery(
            conn,
            contract,
            pq.read_table(Path(lake_root) / rel),
            delivery_id=did,
            exchange_date=day,
            secret=secret,
        )
        for did, day, rel in replay
    ]


def unconfirmed_keys(conn: Connection, dataset: str, lake_root: Path) -> pa.Table:
    """The current keys of a snapshot dataset that its latest merged delivery did not
    re-confirm: delivered, but quarantined (held); their versions are the earlier ones.

    Read from that delivery's accepted Parquet in the lake (its held keys), sorted by key.
    """
    contract = get_contract(dataset)
    empty = _key_schema(contract).empty_table()
    if contract.mode != "snapshot":
        return empty
    hm, d = history_merges.c, deliveries.c
    latest = conn.execute(
        select(d.lake_path)
        .select_from(history_merges.join(deliveries, hm.delivery_id == d.delivery_id))
        .where(hm.dataset == dataset)
        .order_by(hm.exchange_date.desc())
        .limit(1)
    ).scalar_one_or_none()
    if not latest:
        return empty
    held = held_keys(pq.read_schema(Path(lake_root) / latest).empty_table(), contract)
    if held.num_rows == 0:
        return empty
    table = history_tables[dataset]
    key = list(contract.key)
    current = fetch_arrow(
        conn, select(*(table.c[k] for k in key)).where(table.c.is_current == true()), empty.schema
    )
    keys = ", ".join(f"c.{_q(k)}" for k in key)
    with duckdb.connect() as duck:
        duck.register("cur", current)
        duck.register("held", held)
        return (
            duck.sql(
                f"SELECT {keys} FROM cur c WHERE EXISTS (SELECT 1 FROM held h WHERE "
                f"{_held_match(key)}) ORDER BY {keys}"
            )
            .to_arrow_table()
            .cast(empty.schema)
        )


def history_rows(conn: Connection, dataset: str) -> pa.Table:
    """Every version of a dataset (the whole history table), ordered by key and valid_from."""
    contract = get_contract(dataset)
    table = history_tables[dataset]
    return fetch_arrow(
        conn,
        select(table).order_by(*(table.c[k] for k in contract.key), table.c.valid_from),
        history_schema(contract),
    )


def current_rows(conn: Connection, dataset: str, as_of: date | None = None) -> pd.DataFrame:
    """The rows of a dataset that were true on `as_of` (default: the current rows).

    True on a date: valid_from <= as_of and (valid_to is null or valid_to > as_of). Columns:
    the canonical ones, person keys, lineage, valid_from and valid_to (plus cancelled flags
    where the dataset has them); ordered by key. Dates come back as datetime64, decimals as
    float64, ints and bools as nullable pandas types.
    """
    contract = get_contract(dataset)
    table = history_tables[dataset]
    shown = [c for c in table.columns if c.name not in {"row_hash", "is_current"}]
    where = table.c.is_current == true() if as_of is None else valid_on(table, as_of)
    full = history_schema(contract)
    schema = pa.schema([full.field(c.name) for c in shown])
    rows = fetch_arrow(
        conn, select(*shown).where(where).order_by(*(table.c[k] for k in contract.key)), schema
    )
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    return rows.to_pandas(types_mapper=mapping.get, date_as_object=False)


def rows_as_of(
    conn: Connection, dataset: str, as_of: date, columns: Sequence[str], where: Any = None
) -> pa.Table:
    """Some columns of the rows of a dataset true on `as_of`, as Arrow, in no particular order.

    The fast form of current_rows for bulk reads: the same as-of semantics, only the columns
    asked for (typed as history_schema), no ORDER BY (the database's sort is most of a narrow
    read's time on SQLite). `where`: an extra condition on the history table.
    """
    return fetch_arrow(conn, *as_of_read(dataset, as_of, columns, where))


def as_of_read(
    dataset: str, as_of: date, columns: Sequence[str], where: Any = None
) -> tuple[Select[Any], pa.Schema]:
    """rows_as_of's statement and schema (for warehouse.bulk.fetch_arrow_all)."""
    table = history_tables[dataset]
    names = list(dict.fromkeys(columns))
    full = history_schema(get_contract(dataset))
    query = select(*(table.c[n] for n in names)).where(valid_on(table, as_of))
    if where is not None:
        query = query.where(where)
    return query, pa.schema([full.field(n) for n in names])
