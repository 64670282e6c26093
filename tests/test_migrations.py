"""Migrations: from empty to head on SQLite and PostgreSQL, idempotent, and equal to the code.

The last test is the guard against drift: a contract (or table) change in warehouse.tables
without a new revision makes alembic's autogenerate comparison find a difference.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from datashare.errors import ConfigurationError
from expectations.contract import EXPECTATIONS_DIR, use_expectations
from warehouse.db import connect, current_revision, head_revision, upgrade
from warehouse.migrate import pending_changes, use_versions, write_revision
from warehouse.tables import history_merges, history_tables, metadata, person_sources


def _engine(url: str) -> Engine:
    engine = connect(url)
    upgrade(engine)
    return engine


def test_upgrade_from_empty_creates_every_table(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        assert current_revision(engine) == head_revision()
        names = set(inspect(engine).get_table_names())
        expected = {t.name for t in history_tables.values()}
        expected |= {history_merges.name, person_sources.name, "deliveries", "rejects"}
        assert expected <= names
    finally:
        engine.dispose()


def _columns(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """Every table's columns, tables in name order (PostgreSQL lists tables in no set order:
    catalog activity of other tests can change it between two calls)."""
    inspector = inspect(engine)
    return {t: inspector.get_columns(t) for t in sorted(inspector.get_table_names())}


def test_upgrade_twice_is_a_no_op(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        before = _columns(engine)
        upgrade(engine)
        after = _columns(engine)
        assert current_revision(engine) == head_revision()
        assert repr(before) == repr(after)
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_metadata(warehouse_url: str) -> None:
    engine = _engine(warehouse_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [
                d for d in compare_metadata(context, metadata) if not _is_alembic_bookkeeping(d)
            ]
        assert diff == []
    finally:
        engine.dispose()


def _is_alembic_bookkeeping(diff: object) -> bool:
    # compare_metadata reports alembic_version as "not in the metadata"; it is Alembic's own.
    return (
        isinstance(diff, tuple)
        and len(diff) >= 2
        and diff[0] == "remove_table"
        and getattr(diff[1], "name", None) == "alembic_version"
    )


def test_the_revision_command_has_nothing_to_write_for_the_installed_contracts() -> None:
    assert pending_changes() == []
    with pytest.raises(ConfigurationError, match="无需生成新的迁移文件"):
        write_revision("nothing")


_NEW = """\
dataset: MZ_TEKUN
dept: MZ
title: 特困供养人员名册
format: csv
mode: snapshot
key: [id_number]
columns:
- {name: name, header: 姓名, type: text, pii: name}
- {name: id_number, header: 身份证号, type: id18, pii: id, required: true}
- {name: monthly_amount, header: 月供养金, type: decimal}
- {name: start_date, header: 认定日期, type: date}
- {name: in_institution, header: 是否入住供养机构, type: bool}
"""


def test_a_generated_revision_migrates_sqlite_and_postgresql(
    warehouse_url: str, tmp_path: Path
) -> None:
    expectations = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR / "contracts", expectations / "contracts")
    (expectations / "contracts" / "MZ_TEKUN.yaml").write_text(_NEW, encoding="utf-8")
    with use_expectations(expectations):
        pending = pending_changes()
        assert sorted(d[0] for d in pending) == ["add_index", "add_table"]
        assert {getattr(d[1], "table", d[1]).name for d in pending} == {"h_mz_tekun"}
        path = write_revision("add MZ_TEKUN", tmp_path / "versions")
        source = path.read_text(encoding="utf-8")
        # Frozen: plain operations, nothing read from the contracts when it runs.
        assert "import" not in source.replace("import sqlalchemy as sa", "").replace(
            "from alembic import op", ""
        )
        assert 'postgresql_where=sa.text("is_current = true")' in source
        with use_versions(tmp_path / "versions"):
            assert head_revision() == path.name[:4]
            engine = _engine(warehouse_url)
            try:
                assert current_revision(engine) == path.name[:4]
                assert "h_mz_tekun" in inspect(engine).get_table_names()
                with engine.connect() as conn:
                    context = MigrationContext.configure(conn, opts={"compare_type": True})
                    diff = [
                        d
                        for d in compare_metadata(context, metadata)
                        if not _is_alembic_bookkeeping(d)
                    ]
                assert diff == []
            finally:
                engine.dispose()
    assert "h_mz_tekun" not in metadata.tables


def test_amounts_stored_off_the_cent_are_rounded_by_revision_0010(warehouse_url: str) -> None:
    # Before 0010's merge fix, -23342.92 was stored as -23342.920000000002 (module docstring of
    # the revision); upgrading rounds what is stored and leaves every other column alone.
    engine = connect(warehouse_url)
    try:
        upgrade(engine, "0009")
        table = history_tables["YB_JIESUAN"]
        row = {c.name: None for c in table.columns} | {
            "settlement_id": "S1",
            "settle_kind": "正常",
            "row_hash": "h1",
            "valid_from": date(2025, 3, 10),
            "is_current": True,
            "cancelled": False,
            "delivery_id": "d1",
            "source_file": "f.csv",
            "source_row": 2,
        }
        off = {"total_cost": -23342.920000000002, "fund_paid": -87.07000000000001}
        with engine.begin() as conn:
            conn.execute(table.insert(), [row | off | {"self_burden": 12.5}])
        upgrade(engine)
        with engine.connect() as conn:
            # the driver's values: SQLAlchemy's Numeric would round them to the cent on reading
            got = conn.exec_driver_sql(
                f"SELECT total_cost, fund_paid, self_burden, row_hash FROM {table.name}"
            ).one()
        assert [repr(float(v)) for v in got[:3]] == ["-23342.92", "-87.07", "12.5"]
        assert got[3] == "h1"
    finally:
        engine.dispose()
