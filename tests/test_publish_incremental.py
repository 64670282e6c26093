"""Incremental publication (issue 13): a night re-writes only the tables whose inputs changed,
links the rest from the current version, and gives the same files as a full publication."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from datashare.settings import Settings
from datashare.synth import build_county, write_night
from flows.nightly import run_nightly
from tasks import publication
from tasks.publication import SqlTarget, publish
from warehouse import published as files
from warehouse.db import connect
from warehouse.publish import version
from warehouse.publish.access import default_access
from warehouse.tables_publish import audit_log, publications

SECRET = "s" * 32
SKIPPED = {files.CATALOG, ".sources.json", files.HOLD}


@pytest.fixture(scope="module")
def county():  # type: ignore[no-untyped-def]
    return build_county(11, 40)


def _use(monkeypatch: pytest.MonkeyPatch, home: Path, url: str, landing: Path) -> Settings:
    for key, value in {
        "HOME": str(home),
        "WAREHOUSE_URL": url,
        "LANDING": str(landing),
        "ENVIRONMENT": "test",
        "SECRET": SECRET,
        "BUILD_DOCS": "false",
        "MAX_WORKERS": "2",
        "TODAY": "2026-01-01",
    }.items():
        monkeypatch.setenv(f"DATASHARE_{key}", value)
    return Settings()


def _files(root: Path) -> dict[str, bytes]:
    """The published files of one version (catalogs and XC's growing audit log aside)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in SKIPPED and not p.name.startswith("audit_log.")
    }


def _entries(root: Path) -> dict[tuple[str, str], dict[str, object]]:
    catalog = json.loads((root / files.CATALOG).read_text(encoding="utf-8"))
    return {(t["consumer"], t["table"]): t for t in catalog["tables"] if t["table"] != "audit_log"}


@pytest.mark.quick_sample("sqlite")
def test_incremental_night_links_unchanged_tables_and_equals_a_full_publication(
    prefect_api: None,
    county,  # type: ignore[no-untyped-def]
    warehouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing = tmp_path / "landing"
    d0, d1 = county.start, county.start + timedelta(days=1)
    write_night(county, landing, d0)
    write_night(county, landing, d1, datasets=["XC_HU", "GA_BIANDONG"])
    settings = _use(monkeypatch, tmp_path / "home", warehouse_url, landing)
    out = Path(str(settings.publish_dir))

    run_nightly(d0, settings)
    first = files.version_dir(out, str(files.current_publication(out)))
    run_nightly(d1, settings)
    second_id = str(files.current_publication(out))
    second = files.version_dir(out, second_id)
    assert second != first

    # Unchanged since night 1 (no delivery): the same inode, not a second copy.
    def inode(root: Path, rel: str) -> int:
        return os.stat(root / rel).st_ino

    for rel in ("MZ/MZ_DIBAO.parquet", "XC/MZ_DIBAO.parquet", "CL/CL_CANJI.parquet"):
        assert inode(first, rel) == inode(second, rel), rel
    # Changed that night: written again.
    for rel in ("XC/XC_HU.parquet", "XC/person_profile.parquet", "GA/GA_BIANDONG.parquet"):
        assert inode(first, rel) != inode(second, rel), rel

    # The catalog and the audit name every file of the second publication, linked or written,
    # with the sha256 of the bytes on disk.
    entries = _entries(second)
    engine = connect(warehouse_url)
    try:
        with engine.connect() as conn:
            audited = {
                (r.object, r.sha256)
                for r in conn.execute(
                    select(audit_log.c.object, audit_log.c.sha256).where(
                        audit_log.c.publication_id == second_id, audit_log.c.action == "file"
                    )
                )
            }
            for entry in entries.values():
                for f in entry["files"]:  # type: ignore[attr-defined]
                    assert files.seal(second / f["path"]) == f["sha256"]
                    assert (f["path"], f["sha256"]) in audited
            if conn.dialect.name == "postgresql":
                # The SQL copies: a kept table and a re-loaded one hold the catalog's rows.
                target = SqlTarget(settings.pg_schema_prefix, settings.pg_role_prefix)
                for consumer, table in (("MZ", "MZ_DIBAO"), ("XC", "XC_HU")):
                    rows = conn.execute(
                        text(f'SELECT count(*) FROM "{target.schema(consumer)}".{table.lower()}')
                    ).scalar_one()
                    assert rows == entries[(consumer, table)]["rows"]
                sql_rows = conn.execute(
                    select(func.count()).where(
                        audit_log.c.publication_id == second_id, audit_log.c.action == "sql"
                    )
                ).scalar_one()
                assert sql_rows == len(entries) + 1  # + XC's audit_log view

        # A full publication of the same warehouse state writes every table: same bytes.
        full = publish(
            engine,
            tmp_path / "full",
            as_of=d1,
            secret=SECRET.encode(),
            incremental=False,
            sql=SqlTarget(enabled=False),
        )
    finally:
        engine.dispose()
    assert full.tables_linked == 0
    # Consumers given the same person_profile (the same columns and forms, every row) share
    # one written file in a version.
    assert full.tables_shared > 0
    assert inode(second, "ZJ/person_profile.parquet") == inode(second, "WJ/person_profile.parquet")
    assert inode(second, "ZJ/person_profile.parquet") != inode(second, "MZ/person_profile.parquet")
    assert _files(full.path) == _files(second)
    assert _entries(full.path) == entries

    # The same night again, nothing delivered anew: the derived tables (profiles, alerts,
    # town summary), whose source is their own content, are linked too, not written again.
    run_nightly(d1, settings)
    third = files.version_dir(out, str(files.current_publication(out)))
    assert third != second
    for rel in (
        "XC/person_profile.parquet",
        "XC/household_profile.parquet",
        "XC/alerts.parquet",
        "MZ/person_profile.parquet",
        "PUBLIC/town_summary.parquet",
        "XC/XC_HU.parquet",
    ):
        assert inode(second, rel) == inode(third, rel), rel
    assert _files(third).keys() == _files(second).keys()


def _disk_bytes(root: Path) -> int:
    """Bytes on disk under a folder, each hard-linked file counted once."""
    seen: set[int] = set()
    total = 0
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


@pytest.mark.slow  # 30 nights end to end: in CI's full run, not in the quick set
def test_retention_keeps_the_publish_folder_bounded_over_30_nights(
    prefect_api: None,
    county,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing = tmp_path / "landing"
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    start = date(2025, 3, 20)
    write_night(county, landing, start)
    settings = _use(monkeypatch, tmp_path / "home", url, landing)
    run_nightly(start, settings)  # one real night: the warehouse the publications read
    out = Path(str(settings.publish_dir))
    retention = files.Retention(nights=3, month_ends=2)
    engine = connect(url)
    sizes, published = [], []
    try:
        held = None
        for n in range(1, 31):  # 2025-03-21 … 04-19: a month end (03-31) on the way
            day = start + timedelta(days=n)
            result = publish(engine, out, as_of=day, secret=SECRET.encode(), retention=retention)
            published.append(result.publication_id)
            if day == date(2025, 4, 2):
                held = files.hold(out, result.publication_id)
                held.__enter__()  # a reader reading night 04-02 for a while
            if day == date(2025, 4, 12) and held is not None:
                assert (out / files.VERSIONS / published[-11]).is_dir()  # still held
                held.__exit__(None, None, None)
            kept = sorted(p.name for p in (out / files.VERSIONS).iterdir())
            assert result.publication_id in kept
            assert len(kept) <= 3 + 2 + 1 + 1  # nights, month ends, the held one, the start
            sizes.append(_disk_bytes(out))
        with engine.connect() as conn:
            pruned = set(
                conn.execute(
                    select(audit_log.c.publication_id).where(audit_log.c.action == "prune")
                ).scalars()
            )
            recorded = set(
                conn.execute(
                    select(audit_log.c.publication_id).where(audit_log.c.action == "publication")
                ).scalars()
            )
            every = set(
                conn.execute(
                    select(publications.c.publication_id).where(
                        publications.c.status == "published"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    kept = sorted(p.name for p in (out / files.VERSIONS).iterdir())
    assert kept == ["20250331-01", *published[-3:]]  # the month end of March, the last 3 nights
    # Bounded: once the kept set is steady (the last 7 nights: no new month end, no reader),
    # the folder grows only by XC's audit log, not by a version a night.
    per_version = sizes[5] / 3
    assert (sizes[-1] - sizes[-7]) / 6 < 0.05 * per_version  # a night adds < 5% of one
    assert sizes[-1] < 5 * per_version  # 30 nights kept would be ~30 versions
    # Every version keeps its audit record; pruned ones say when they went.
    assert set(published) <= recorded
    assert pruned == every - set(kept)


@pytest.mark.quick_sample("sqlite")
def test_the_other_tables_are_written_while_the_profiles_are_computed(
    prefect_api: None,
    county,  # type: ignore[no-untyped-def]
    warehouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publication reads in two parts: the alerts, the ledger and the datasets first, whose
    files go to the writers, then the profiles (ledger not read twice), then the town summary."""
    landing = tmp_path / "landing"
    write_night(county, landing, county.start)
    settings = _use(monkeypatch, tmp_path / "home", warehouse_url, landing)
    run_nightly(county.start, settings)

    events: list[tuple[object, ...]] = []
    real_collect, real_projected = publication.collect_shared_tables, version._projected

    def collect(conn, as_of, *, datasets=None, ledger=True):  # type: ignore[no-untyped-def]
        events.append(("collect", frozenset(datasets or ()), ledger))
        return real_collect(conn, as_of, datasets=datasets, ledger=ledger)

    def projected(matrix, consumer, table, *rest):  # type: ignore[no-untyped-def]
        events.append(("project", table))
        return real_projected(matrix, consumer, table, *rest)

    monkeypatch.setattr(publication, "collect_shared_tables", collect)
    monkeypatch.setattr(version, "_projected", projected)
    engine = connect(warehouse_url)
    try:
        result = publish(
            engine,
            tmp_path / "out",
            as_of=county.start,
            secret=SECRET.encode(),
            incremental=False,
            sql=SqlTarget(enabled=False),
        )
    finally:
        engine.dispose()
    reads = [e for e in events if e[0] == "collect"]
    assert len(reads) == 2
    (_, first, first_ledger), (_, second, second_ledger) = reads
    profiles = {"person_profile", "household_profile"}
    assert not first & profiles and {"alerts", "XC_HU", "MZ_DIBAO"} <= first and first_ledger
    assert profiles <= second and not second - profiles - {"town_summary"} and not second_ledger
    between = events[events.index(reads[0]) + 1 : events.index(reads[1])]
    assert ("project", "alerts") in between and ("project", "XC_HU") in between
    after = events[events.index(reads[1]) + 1 :]
    assert ("project", "person_profile") in after and ("project", "town_summary") in after
    assert not {e for e in between if e[1] in profiles | {"town_summary"}}
    # Every consumer's catalog lists its tables in the access matrix's order.
    catalog = json.loads((result.path / "XC" / files.CATALOG).read_text(encoding="utf-8"))
    assert [t["table"] for t in catalog["tables"]] == list(default_access().consumers["XC"])
