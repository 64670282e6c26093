"""PostgreSQL publication: one schema and one login-less role per consumer."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, func, insert, select, text

from warehouse import published as files
from warehouse.publish.tables import _Output, table_def
from warehouse.tables_publish import audit_log


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
) -> tuple[str, ...]:
    """Rebuild every consumer's schema in the caller's transaction (readers see old or new).

    A table unchanged since the `previous` publication (its files were linked) is kept as it
    is when that publication's audit says it loaded it; otherwise it is loaded again from the
    new version's Parquet file under `root`.

    The pipeline's own user owns the schemas; each role may use its schema and select its
    tables, nothing else: PUBLIC loses every right on the internal schema and its tables.
    """
    quote = conn.dialect.identifier_preparer.quote
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
        existing = conn.execute(
            text(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind IN ('r', 'v')"
            ),
            {"s": target.schema(consumer)},
        ).all()
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
            name = f"{schema}.{quote(out.table.lower())}"
            cols = [c for c, _ in out.columns]
            if out.table.lower() in kept:
                pass  # unchanged: the table, its comments and its grant are already there
            elif out.table == "audit_log":  # live, through the view owner's rights
                conn.execute(
                    text(
                        f"CREATE VIEW {name} AS SELECT {', '.join(quote(c.name) for c in cols)} "
                        f"FROM {quote(internal)}.{quote(audit_log.name)}"
                    )
                )
            else:
                conn.execute(
                    text(
                        f"CREATE TABLE {name} ("
                        + ", ".join(f"{quote(c.name)} {_SQL_TYPES[c.type]}" for c in cols)
                        + ")"
                    )
                )
                data = out.data
                if data is None:  # unchanged table whose SQL copy cannot be trusted
                    assert root is not None
                    data = pq.read_table(root / out.consumer / f"{out.table}.parquet")
                _copy(conn, name, [quote(c.name) for c in cols], data)
            if out.table.lower() not in kept:
                conn.execute(
                    text(
                        f"COMMENT ON {'VIEW' if out.table == 'audit_log' else 'TABLE'} "
                        f"{name} IS {_literal(table_def(out.table).title)}"
                    )
                )
                for c in cols:
                    conn.execute(
                        text(f"COMMENT ON COLUMN {name}.{quote(c.name)} IS {_literal(c.label)}")
                    )
                conn.execute(text(f"GRANT SELECT ON {name} TO {role}"))
            audit_rows.append(
                {
                    "at": at,
                    "actor": actor,
                    "action": "sql",
                    "publication_id": publication_id,
                    "consumer": consumer,
                    "object": f"{target.schema(consumer)}.{out.table.lower()}",
                    "rows": out.rows,
                    "sha256": None,
                    "personal": out.personal,
                }
            )
    if audit_rows:
        conn.execute(insert(audit_log), audit_rows)
    return tuple(target.schema(c) for c in by_consumer)


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
