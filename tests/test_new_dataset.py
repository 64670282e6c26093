"""A 17th dataset is one contract (docs/datasets.md), end to end.

In a copy of the expectations: one contract (MZ_TEKUN, 特困供养人员名册, keyed by id_number), one
calendar line, two access lines; then `datashare db revision` writes its migration, a fresh
SQLite is upgraded with it, the synthetic county delivers the dataset with no builder of its own,
a night runs through the real flow, and the rows are in history and published where access says.
No code of the engine names the new dataset.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.app import app
from datashare.errors import ConfigurationError
from datashare.settings import Settings
from datashare.synth import build_county, dataset_rows, write_night
from expectations.contract import EXPECTATIONS_DIR, load_contracts, use_expectations
from flows.nightly import run_nightly
from tasks.freshness import expected_deliveries, load_calendar
from warehouse.db import connect, current_revision, upgrade
from warehouse.migrate import pending_changes, use_versions
from warehouse.tables import history_tables, metadata

DAY1 = date(2025, 3, 10)  # a Monday: the county's first night, every dataset delivers

TEKUN = """\
# MZ_TEKUN — 特困供养人员名册
dataset: MZ_TEKUN
dept: MZ
title: 特困供养人员名册
format: csv
encoding: gb18030
mode: snapshot
key: [id_number]
columns:
- {name: village_code, header: 区划代码, type: text, pattern: '^\\d{12}$'}
- {name: name, header: 姓名, type: text, pii: name, required: true}
- {name: id_number, header: 身份证号, type: id18, pii: id, required: true}
- {name: support_mode, header: 供养方式, type: enum, values: [集中供养, 分散供养], required: true}
- {name: self_care, header: 生活自理能力, type: enum, values: [全自理, 半自理, 全护理]}
- {name: monthly_amount, header: 月供养金（元）, type: decimal, min: 0, max: 3000, required: true}
- {name: start_date, header: 认定日期, type: date, required: true}
- {name: in_institution, header: 是否入住供养机构, type: bool}
"""


@pytest.fixture
def expectations(tmp_path: Path) -> Path:
    """A copy of the installed expectations with MZ_TEKUN's contract (its calendar entry and
    access lines are added by the test)."""
    folder = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS_DIR / "contracts", folder / "contracts")
    for name in ("calendar.yaml", "access.yaml"):
        shutil.copy(EXPECTATIONS_DIR / name, folder / name)
    (folder / "contracts" / "MZ_TEKUN.yaml").write_text(TEKUN, encoding="utf-8")
    return folder


def _add_calendar_entry(folder: Path) -> None:
    with (folder / "calendar.yaml").open("a", encoding="utf-8") as f:
        f.write("  MZ_TEKUN: {weekdays: [mon]}\n")


def _add_access(folder: Path) -> None:
    """XC reads every dataset and MZ its own: MZ_TEKUN beside MZ_DIBAO in both entries."""
    path = folder / "access.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("    MZ_DIBAO: *own\n") == 2
    path.write_text(
        text.replace("    MZ_DIBAO: *own\n", "    MZ_DIBAO: *own\n    MZ_TEKUN: *own\n"),
        encoding="utf-8",
    )


def test_a_contract_without_its_calendar_entry_is_refused(expectations: Path) -> None:
    with use_expectations(expectations):
        with pytest.raises(ConfigurationError, match=r"缺少数据集 \['MZ_TEKUN'\] 的条目"):
            load_calendar()
        _add_calendar_entry(expectations)
        assert "MZ_TEKUN" in {ds for _, ds, _ in expected_deliveries(DAY1)}
        assert "MZ_TEKUN" not in {ds for _, ds, _ in expected_deliveries(DAY1 + timedelta(1))}
    assert "MZ_TEKUN" not in load_contracts()
    assert "h_mz_tekun" not in metadata.tables


@pytest.mark.slow
def test_a_17th_dataset_is_one_contract(
    expectations: Path, tmp_path: Path, prefect_api: None
) -> None:
    _add_calendar_entry(expectations)
    _add_access(expectations)
    versions = tmp_path / "versions"
    settings = Settings(
        home=tmp_path / "home",
        warehouse_url=f"sqlite:///{tmp_path / 'warehouse.db'}",
        secret="test-secret-not-for-production-0123456789",  # type: ignore[arg-type]
        environment="test",
        build_docs=False,
        max_workers=2,
        today=DAY1 + timedelta(days=1),
    )
    with use_expectations(expectations):
        assert len(load_contracts()) == 17
        assert "h_mz_tekun" in metadata.tables
        # The migration: generated, plain, and frozen (it imports no contract).
        result = CliRunner().invoke(
            app, ["db", "revision", "-m", "add MZ_TEKUN", "--versions", str(versions)]
        )
        assert result.exit_code == 0, result.output
        [revision] = versions.glob("*.py")
        source = revision.read_text(encoding="utf-8")
        assert 'op.create_table(\n        "h_mz_tekun"' in source
        assert "expectations" not in source and "warehouse" not in source

        with use_versions(versions):
            engine = connect(str(settings.warehouse_url))
            try:
                upgrade(engine)
                assert current_revision(engine) == revision.name[:4]
                assert pending_changes() == []

                county = build_county(21, 40)
                expected = dataset_rows(county, "MZ_TEKUN", DAY1)
                assert len(expected) > 0
                landing = Path(str(settings.landing))
                manifest = write_night(county, landing, DAY1)
                delivered = manifest.file("MZ_TEKUN")
                night = run_nightly(DAY1, settings)

                [summary] = [s for s in night.deliveries if s.dataset == "MZ_TEKUN"]
                assert summary.status == "loaded", summary.reason
                assert summary.rows_in == delivered.rows
                assert summary.rows_in == (
                    summary.rows_loaded + summary.rows_rejected + summary.duplicates
                )
                assert summary.rows_loaded > 0
                table = history_tables["MZ_TEKUN"]
                with engine.connect() as conn:
                    current = conn.execute(
                        select(func.count()).select_from(table).where(table.c.is_current)
                    ).scalar_one()
                    keys = set(conn.execute(select(table.c.id_number)).scalars())
                assert current == summary.rows_loaded
                assert keys <= set(expected["id_number"])
            finally:
                engine.dispose()

        published = Path(str(settings.publish_dir))
        for consumer in ("XC", "MZ"):
            frame = pq.read_table(published / consumer / "MZ_TEKUN.parquet").to_pandas()
            assert len(frame) == summary.rows_loaded
        for consumer in ("ZJ", "CL", "GA"):
            assert not (published / consumer / "MZ_TEKUN.parquet").exists()
    assert "h_mz_tekun" not in metadata.tables
