"""Publishing into PostgreSQL: one schema and one login-less role per consumer, read through
each role with SET ROLE — its own schema readable and leak-free, everything else denied.

Roles are cluster-wide, so every test uses its own role and schema prefixes and drops them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import postgres_or_skip
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError
from test_publish import (
    AS_OF,
    CONSUMERS,
    IDS,
    SECRET,
    assert_no_leaks,
    published_cells,
    shared_tables,
)

from datashare.errors import PublishError
from expectations.contract import load_contracts
from tasks.publication import publish
from warehouse.db import connect, upgrade
from warehouse.identity import person_key
from warehouse.publish import (
    SHARED_TABLES,
    SqlTarget,
    default_access,
    resolve_columns,
    table_def,
)
from warehouse.publish.sql import SqlLoader
from warehouse.publish.tables import ColumnDef, _Output

pytestmark = pytest.mark.postgres


@dataclass
class Warehouse:
    engine: Engine
    schema: str
    target: SqlTarget


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Warehouse]:
    base = postgres_or_skip()
    tag = uuid.uuid4().hex[:8]
    schema = f"t_{tag}"
    target = SqlTarget(schema_prefix=f"pub_{tag}_", role_prefix=f"ds_{tag}_")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    engine = connect(f"{base}{sep}options=-csearch_path%3D{schema}")
    upgrade(engine)
    try:
        yield Warehouse(engine, schema, target)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            for consumer in CONSUMERS:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{target.schema(consumer)}" CASCADE'))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            for consumer in CONSUMERS:
                role = target.role(consumer)
                exists = conn.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
                ).first()
                if exists:
                    conn.execute(text(f'DROP OWNED BY "{role}"'))
                    conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _as_role(engine: Engine, role: str, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        conn.execute(text(f'SET ROLE "{role}"'))
        try:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
        finally:
            conn.rollback()


def _denied(engine: Engine, role: str, sql: str) -> bool:
    try:
        _as_role(engine, role, sql)
    except ProgrammingError as exc:
        return "permission denied" in str(exc.orig)
    return False


def _sql_cells(engine: Engine, role: str, schema: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, text) of every cell of every table the role can see in its schema."""
    tables = _as_role(
        engine,
        role,
        f"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON "
        f"n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
        f"AND c.relkind IN ('r', 'v') ORDER BY 1",
    )
    for (table,) in tables:
        with engine.connect() as conn:
            conn.execute(text(f'SET ROLE "{role}"'))
            result = conn.execute(text(f'SELECT * FROM "{schema}"."{table}"'))
            columns = list(result.keys())
            rows = result.all()
            conn.rollback()
        name = {t.lower(): t for t in (*SHARED_TABLES, *load_contracts())}.get(table, table)
        for column in columns:
            yield name, column, column
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    yield name, column, str(value)


def test_each_role_reads_its_own_schema_and_nothing_else(pg: Warehouse, tmp_path: Path) -> None:
    publication = publish(
        pg.engine,
        tmp_path / "pub",
        as_of=AS_OF,
        secret=SECRET,
        tables=shared_tables(),
        sql=pg.target,
        xlsx_max_rows=0,
    )
    assert publication.sql_schemas == tuple(pg.target.schema(c) for c in CONSUMERS)
    matrix = default_access()
    for consumer in CONSUMERS:
        role, schema = pg.target.role(consumer), pg.target.schema(consumer)
        # Exactly the matrix: the same tables and columns as the files.
        for table, entry in matrix.consumers[consumer].items():
            expected = [c.name for c, _ in resolve_columns(matrix, table_def(table), entry)]
            got = [
                r[0]
                for r in _as_role(
                    pg.engine,
                    role,
                    (
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                        f"'{schema}' AND table_name = '{table.lower()}' ORDER BY ordinal_position"
                    ),
                )
            ]
            assert got == expected, f"{consumer}.{table}"
        assert assert_no_leaks(consumer, _sql_cells(pg.engine, role, schema)) > 0
        other = pg.target.schema("MZ" if consumer != "MZ" else "XC")
        assert _denied(pg.engine, role, f'SELECT * FROM "{other}".person_profile')
        assert _denied(pg.engine, role, f'SELECT * FROM "{pg.schema}".deliveries')
        assert _denied(pg.engine, role, f'SELECT * FROM "{pg.schema}".h_mz_dibao')
        assert _denied(pg.engine, role, f'SELECT * FROM "{pg.schema}".audit_log')
        assert _denied(pg.engine, role, f'CREATE TABLE "{schema}".mine (x int)')
    # Files from the same publication are leak-free too.
    for consumer in CONSUMERS:
        assert_no_leaks(consumer, published_cells(tmp_path / "pub" / consumer))
    xc = pg.target.role("XC")
    rows = _as_role(
        pg.engine,
        xc,
        f'SELECT id_number, person_key FROM "{pg.target.schema("XC")}".mz_dibao ORDER BY 1',
    )
    assert rows == sorted((i, person_key(i, SECRET)) for i in IDS if i in {r[0] for r in rows})
    assert len(rows) == 2
    # XC reads the audit log live, through a view.
    log = _as_role(
        pg.engine,
        xc,
        f'SELECT action, count(*) FROM "{pg.target.schema("XC")}".audit_log GROUP BY 1 ORDER BY 1',
    )
    assert dict(log)["publication"] == 1 and dict(log)["sql"] > 0
    with pg.engine.connect() as conn:
        comments = dict(
            conn.execute(
                text(
                    "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
                    "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0"
                ),
                {"t": f'"{pg.target.schema("MZ")}".person_profile'},
            ).all()
        )
    assert comments["id_number"] == "身份证号" and comments["person_key"] == "人员标识"


def test_publishing_again_is_idempotent_and_the_audit_log_append_only(
    pg: Warehouse, tmp_path: Path
) -> None:
    out = tmp_path / "pub"
    publish(
        pg.engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=shared_tables(),
        sql=pg.target,
        xlsx_max_rows=0,
    )
    fewer = {k: v for k, v in shared_tables().items() if k != "MZ_LINSHI"}
    publish(
        pg.engine, out, as_of=AS_OF, secret=SECRET, tables=fewer, sql=pg.target, xlsx_max_rows=0
    )
    mz = pg.target.schema("MZ")
    tables = [
        r[0]
        for r in _as_role(
            pg.engine,
            pg.target.role("MZ"),
            (
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{mz}' "
                "ORDER BY 1"
            ),
        )
    ]
    assert "mz_linshi" not in tables and "mz_dibao" in tables
    count = _as_role(pg.engine, pg.target.role("MZ"), f'SELECT count(*) FROM "{mz}".mz_dibao')
    assert count == [(2,)]
    for statement in (
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pg.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(statement))


def _publish(pg: Warehouse, out: Path, tables: dict[str, Any] | None = None, **kw: Any) -> Any:
    """One publication of the shared tables (or `tables`) into the files and pg's schemas."""
    return publish(
        pg.engine,
        out,
        as_of=AS_OF,
        secret=SECRET,
        tables=shared_tables() if tables is None else tables,
        sql=pg.target,
        xlsx_max_rows=0,
        **kw,
    )


def _schemas(engine: Engine, prefix: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": prefix + "%"}
            ).scalars()
        )


def test_tables_load_beside_the_files_and_readers_see_the_old_ones_until_the_switch(
    pg: Warehouse, tmp_path: Path
) -> None:
    """The second publication's tables are loaded (SqlLoader) while its files are written; a
    consumer's role reads the first publication's rows until the last transaction moves the
    new ones in; afterwards the staging schema is gone."""
    out = tmp_path / "pub"
    _publish(pg, out)
    mz, role = pg.target.schema("MZ"), pg.target.role("MZ")
    fewer = shared_tables()
    fewer["MZ_DIBAO"] = fewer["MZ_DIBAO"].iloc[:1]
    seen: list[list[tuple[object, ...]]] = []

    def meanwhile(consumer: str) -> None:
        if consumer == "MZ":
            seen.append(_as_role(pg.engine, role, f'SELECT count(*) FROM "{mz}".mz_dibao'))

    second = _publish(pg, out, fewer, on_consumer=meanwhile)
    assert seen == [[(2,)]]  # the files were written; the old table still served
    assert _as_role(pg.engine, role, f'SELECT count(*) FROM "{mz}".mz_dibao') == [(1,)]
    assert pg.target.staging not in _schemas(pg.engine, pg.target.schema_prefix)
    # Comments and grants came with the tables moved in from staging.
    with pg.engine.connect() as conn:
        title = conn.execute(
            text("SELECT obj_description(CAST(:t AS regclass), 'pg_class')"),
            {"t": f'"{mz}".mz_dibao'},
        ).scalar_one()
    assert title == table_def("MZ_DIBAO").title
    assert second.sql_schemas == tuple(pg.target.schema(c) for c in CONSUMERS)
    # Every consumer's moved tables (some copied inside PostgreSQL from another consumer's
    # staged table of the same content) are readable by its role and leak-free.
    for consumer in CONSUMERS:
        assert (
            assert_no_leaks(
                consumer,
                _sql_cells(pg.engine, pg.target.role(consumer), pg.target.schema(consumer)),
            )
            > 0
        )


def test_a_failed_publication_leaves_the_old_tables_and_no_staging(
    pg: Warehouse, tmp_path: Path
) -> None:
    out = tmp_path / "pub"
    _publish(pg, out)
    # A staging schema left by a publication that died is dropped by the next one.
    with pg.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{pg.target.staging}"'))
        conn.execute(text(f'CREATE TABLE "{pg.target.staging}".mz__mz_dibao (x int)'))
    fewer = shared_tables()
    fewer["MZ_DIBAO"] = fewer["MZ_DIBAO"].iloc[:1]

    def fail(consumer: str) -> None:
        if consumer == "XC":
            raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError, match="the disk is full"):
        _publish(pg, out, fewer, on_consumer=fail)
    mz, role = pg.target.schema("MZ"), pg.target.role("MZ")
    assert _as_role(pg.engine, role, f'SELECT count(*) FROM "{mz}".mz_dibao') == [(2,)]
    assert pg.target.staging not in _schemas(pg.engine, pg.target.schema_prefix)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_table_postgresql_refuses_fails_the_loader_and_is_named(
    pg: Warehouse, workers: int
) -> None:
    """The loader's own error (here a value its column's type refuses) is raised by finish();
    with one connection the tables added after it are not loaded, with two at most the one the
    other connection was loading meanwhile; and discard() drops the staging schema."""
    count = ColumnDef("households", "户数", "int")
    bad = _Output("MZ", "town_summary", [(count, "plain")], pa.table({"households": ["十二"]}))
    good = _Output("XC", "town_summary", [(count, "plain")], pa.table({"households": ["12"]}))
    later = [
        _Output(c, "town_summary", [(count, "plain")], pa.table({"households": ["7"]}))
        for c in (f"C{n:02}" for n in range(30))
    ]
    loader = SqlLoader(pg.engine, pg.target, None, Path("unused"), workers=workers).start()
    loader.add(bad)
    loader.add(good)
    with pytest.raises(PublishError, match=r"MZ/town_summary：.*第 1 行的列 households") as e:
        for out in later:
            loader.add(out)
        loader.finish()
    assert "十二" not in str(e.value) and e.value.__suppress_context__
    with pg.engine.connect() as conn:
        staged = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                {"s": pg.target.staging},
            ).scalars()
        )
    if workers == 1:
        assert staged == set()  # neither the refused table nor any added after it
    else:
        assert "mz__town_summary" not in staged
        assert len(staged) < 1 + len(later)  # it stopped: not every table after it came in
    loader.discard()
    assert pg.target.staging not in _schemas(pg.engine, pg.target.schema_prefix)
