"""The lake mirrors the warehouse: a warehouse restored from the lake alone publishes the same."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from datashare.synth import build_county, write_night
from expectations.contract import load_common, load_contracts
from tasks.alerts import raise_alerts
from tasks.freshness import check_freshness
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import FsspecLanding
from tasks.publication import SqlTarget, publish
from warehouse.db import connect, upgrade
from warehouse.mirror import _fetch, mirror_tables, mirror_to_lake, restore_from_lake
from warehouse.tables import person_sources

DAY1 = date(2025, 3, 10)
SECRET = b"mirror-test-secret"


def _night(url: str, tmp: Path, landing: Path, day: date) -> None:
    contracts = load_contracts()
    source = FsspecLanding(str(landing))
    options = IntakeOptions(
        lake_root=tmp / "lake", gx_root=tmp / "gx", build_docs=False, secret=SECRET
    )
    engine = connect(url)
    try:
        for ref in source.discover(day, contracts.values()):
            intake_delivery(
                ref, source.fetch(ref), contracts[ref.dataset], load_common(), engine, options
            )
        with engine.begin() as conn:
            raise_alerts(conn, day)
            check_freshness(conn, day, datetime(2026, 1, 1, tzinfo=UTC))
            mirror_to_lake(conn, tmp / "lake", mirror_tables(contracts))
    finally:
        engine.dispose()


def _published(engine_url: str, out: Path, day: date) -> dict[str, str]:
    engine = connect(engine_url)
    try:
        # files only: with the default SqlTarget a PostgreSQL run created the production
        # pub_xc … schemas and the cluster-wide ds_xc … roles, and left them behind
        publish(engine, out, as_of=day, secret=SECRET, actor="test", sql=SqlTarget(enabled=False))
    finally:
        engine.dispose()
    current = out / "current"
    return {
        str(p.relative_to(current)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(current.rglob("*.parquet"))
        if p.stem != "audit_log"
    }


@pytest.mark.quick_sample("postgres")
def test_a_warehouse_restored_from_the_lake_alone_publishes_the_same(
    warehouse_url: str, tmp_path: Path
) -> None:
    county = build_county(21, 40)
    landing = tmp_path / "landing"
    engine = connect(warehouse_url)
    upgrade(engine)
    engine.dispose()
    days = [DAY1 + timedelta(days=i) for i in range(2)]
    for day in days:
        write_night(county, landing, day)
        _night(warehouse_url, tmp_path, landing, day)

    # Another machine, another database engine: only the lake is copied over.
    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = connect(restored_url)
    upgrade(restored)
    with restored.begin() as conn:
        assert restore_from_lake(conn, tmp_path / "lake") > 1000

    original = connect(warehouse_url)
    try:
        with original.connect() as a, restored.connect() as b:
            for table in mirror_tables(load_contracts()):
                left, right = _fetch(a, table), _fetch(b, table)
                assert left.num_rows == right.num_rows, table.name
                assert left.equals(right), table.name
    finally:
        original.dispose()
        restored.dispose()

    first = _published(warehouse_url, tmp_path / "pub_original", days[-1])
    again = _published(restored_url, tmp_path / "pub_restored", days[-1])
    assert len(first) > 50
    assert first == again


def _first_night(tmp_path: Path, seed: int) -> Engine:
    """A SQLite warehouse and its lake after one night of a small county."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = connect(url)
    upgrade(engine)
    write_night(build_county(seed, 30), tmp_path / "landing", DAY1)
    _night(url, tmp_path, tmp_path / "landing", DAY1)
    return engine


def test_mirror_is_deterministic(tmp_path: Path) -> None:
    engine = _first_night(tmp_path, 22)
    mirror = tmp_path / "lake" / "mirror"
    before = {str(p.relative_to(mirror)): p.read_bytes() for p in sorted(mirror.rglob("*.parquet"))}
    with engine.begin() as conn:
        mirror_to_lake(conn, tmp_path / "lake", mirror_tables(load_contracts()))
    engine.dispose()
    after = {str(p.relative_to(mirror)): p.read_bytes() for p in sorted(mirror.rglob("*.parquet"))}
    assert before == after
    whole = {name for name in before if "/" not in name}
    assert len(whole) == 16 + 7  # the history tables and the nightly ones but the two split
    assert "alert_days/2025-03-10.parquet" in before
    assert sum(name.startswith("person_sources/") for name in before) > 5
    with pytest.raises(KeyError):
        mirror_tables(["NOT_A_DATASET"])


def test_a_night_mirrors_the_parts_it_changed_and_any_part_missing(tmp_path: Path) -> None:
    """person_sources is rewritten for the datasets merged, alert_days for the dates from the
    one given; a part missing from the lake, or the lake's layout before the split, is
    written whatever the night did (issue 13)."""
    engine = _first_night(tmp_path, 23)
    lake = tmp_path / "lake"
    mirror = lake / "mirror"

    def stamp() -> dict[str, int]:
        return {str(p.relative_to(mirror)): p.stat().st_mtime_ns for p in mirror.rglob("*.parquet")}

    first = stamp()
    (mirror / "person_sources" / "MZ_DIBAO.parquet").unlink()
    with engine.begin() as conn:
        mirror_to_lake(
            conn,
            lake,
            mirror_tables(["XC_HU"]),
            merged=["XC_HU"],
            alerts_from=DAY1 + timedelta(days=1),
        )
    second = stamp()
    assert second.keys() == first.keys()
    rewritten = {name for name in first if first[name] != second[name]}
    assert "person_sources/XC_HU.parquet" in rewritten
    assert "person_sources/MZ_DIBAO.parquet" in rewritten  # was missing
    assert "person_sources/XC_REN.parquet" not in rewritten
    assert "alert_days/2025-03-10.parquet" not in rewritten  # before alerts_from
    assert "XC_REN.parquet" not in rewritten  # history of a dataset not merged

    # The layout before the split: one file for the table; it is replaced by every part.
    with engine.connect() as conn:
        whole = _fetch(conn, person_sources)
    pq.write_table(whole, mirror / "person_sources.parquet")
    with engine.begin() as conn:
        mirror_to_lake(conn, lake, mirror_tables([]), merged=[], alerts_from=DAY1)
    engine.dispose()
    assert not (mirror / "person_sources.parquet").exists()
    third = stamp()
    assert all(third[n] != second[n] for n in third if n.startswith("person_sources/"))
