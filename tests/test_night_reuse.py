"""A night reads the facts the alerts and the profiles share once, the profiles once and ahead
of its publication, and a re-run with nothing new does not evaluate the rules again (issue 13)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prefect.context import TaskRunContext
from sqlalchemy import Connection, Engine, Table, insert, select

from datashare.settings import Settings
from datashare.synth import build_county, write_night
from expectations.contract import load_common, load_contracts
from flows.nightly import run_nightly
from tasks import profiles
from tasks.alerts import (
    department_facts,
    facts_read_once,
    lifecycle,
    name_keys,
    raise_alerts,
    read_once,
)
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import FsspecLanding
from warehouse.db import connect, upgrade
from warehouse.tables import history_merges
from warehouse.tables_alerts import alert_days, alerts

AS_OF = date(2025, 3, 11)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _merge(engine: Engine, day: date) -> None:
    counts = dict(inserted=1, changed=0, closed=0, unchanged=0, reopened=0, cancelled=0)
    with engine.begin() as conn:
        conn.execute(
            insert(history_merges).values(
                dataset="XC_HU", exchange_date=day, delivery_id=f"XC_HU-{day}", **counts
            )
        )


def test_within_a_night_the_facts_are_read_once_per_state_of_the_warehouse(
    engine: Engine,
) -> None:
    with engine.connect() as conn:
        outside = department_facts(conn, AS_OF)
        assert department_facts(conn, AS_OF) is not outside  # no scope: read every time
    with facts_read_once():
        with engine.connect() as conn:
            first = department_facts(conn, AS_OF)
            assert department_facts(conn, AS_OF) is first
        _merge(engine, AS_OF)  # history written: another state of the warehouse
        with engine.connect() as conn:
            changed = department_facts(conn, AS_OF)
            assert changed is not first
            assert department_facts(conn, AS_OF) is changed
            assert department_facts(conn, date(2025, 3, 12)) is not changed  # another date
    with engine.connect() as conn:  # the scope is over: nothing kept
        assert department_facts(conn, AS_OF) is not changed


def test_a_rerun_with_nothing_new_keeps_the_findings_and_the_same_alerts(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    county = build_county(24, 30)
    landing = tmp_path / "landing"
    write_night(county, landing, AS_OF)
    contracts = load_contracts()
    source = FsspecLanding(str(landing))
    options = IntakeOptions(
        lake_root=tmp_path / "lake", gx_root=tmp_path / "gx", build_docs=False, secret=b"s"
    )
    for ref in source.discover(AS_OF, contracts.values()):
        intake_delivery(
            ref, source.fetch(ref), contracts[ref.dataset], load_common(), engine, options
        )
    with engine.begin() as conn:
        first = raise_alerts(conn, AS_OF)
        days = _rows(conn, alert_days)
        table = _rows(conn, alerts)
    assert first.findings > 0

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rules were evaluated again")

    monkeypatch.setattr(lifecycle, "evaluate_rules", not_again)
    with engine.begin() as conn:
        again = raise_alerts(conn, AS_OF)
        assert _rows(conn, alert_days) == days
        assert _rows(conn, alerts) == table
    assert again == first

    _merge(engine, AS_OF - timedelta(days=1))  # something new in history: evaluated again
    with engine.begin() as conn, pytest.raises(AssertionError, match="evaluated again"):
        raise_alerts(conn, AS_OF)


def _rows(conn: Connection, table: Table) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]


def test_within_a_night_the_name_pairs_are_read_once_beside_the_facts(engine: Engine) -> None:
    # DQ-01 (the alerts) and person_profile (the publication) both go through name_keys.
    with engine.connect() as conn:
        assert name_keys(conn, AS_OF) is not name_keys(conn, AS_OF)  # no scope
    with facts_read_once():
        with engine.connect() as conn:
            pairs = name_keys(conn, AS_OF)
            facts = department_facts(conn, AS_OF)
            assert name_keys(conn, AS_OF) is pairs  # the facts did not push the pairs out
            assert department_facts(conn, AS_OF) is facts
        _merge(engine, AS_OF)
        with engine.connect() as conn:
            assert name_keys(conn, AS_OF) is not pairs


def test_a_reading_under_way_is_waited_for_not_read_again(engine: Engine) -> None:
    # The night reads person_profile ahead while the alerts run: a second thread asking for a
    # reading the first is still loading waits for it instead of loading it again.
    started, release = threading.Event(), threading.Event()
    loads: list[str] = []
    got: dict[str, object] = {}

    def load() -> object:
        loads.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return object()

    def ask(name: str) -> None:
        with engine.connect() as conn:
            got[name] = read_once("slow", conn, AS_OF, load)

    with facts_read_once():
        first = threading.Thread(target=ask, args=("first",), name="first")
        first.start()
        assert started.wait(10)
        second = threading.Thread(target=ask, args=("second",), name="second")
        second.start()
        second.join(0.5)
        assert second.is_alive(), "the second asker waits while the first loads"
        release.set()
        first.join(10)
        second.join(10)
    assert loads == ["first"]
    assert got["first"] is got["second"]


@pytest.fixture
def night_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: None
) -> Iterator[Settings]:
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASHARE_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'night.db'}")
    monkeypatch.setenv("DATASHARE_SECRET", "test-secret-not-for-production-0123456789")
    monkeypatch.setenv("DATASHARE_BUILD_DOCS", "false")
    monkeypatch.setenv("DATASHARE_MAX_WORKERS", "2")
    settings = Settings()
    write_night(build_county(31, 30), Path(str(settings.landing)), AS_OF)
    yield settings


def _published_profile(settings: Settings, table: str = "person_profile") -> pd.DataFrame:
    return pd.read_parquet(Path(str(settings.publish_dir)) / "XC" / f"{table}.parquet")


def test_a_night_reads_its_profiles_once_ahead_of_the_publication(
    night_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_by: list[tuple[str, str]] = []
    persons, households = profiles._person_profile, profiles._household_facts

    def counted(what: str, compute: Callable[[Connection, date], pd.DataFrame]) -> object:
        def read(conn: Connection, as_of: date) -> pd.DataFrame:
            context = TaskRunContext.get()
            read_by.append((what, context.task.name if context is not None else ""))
            return compute(conn, as_of)

        return read

    monkeypatch.setattr(profiles, "_person_profile", counted("persons", persons))
    monkeypatch.setattr(profiles, "_household_facts", counted("households", households))
    run_nightly(AS_OF, night_env)
    # not again by the publication
    assert read_by == [("persons", "profiles_ahead"), ("households", "profiles_ahead")]
    read_by.clear()
    run_nightly(AS_OF, night_env)  # unchanged: nothing read ahead, nothing read to publish
    assert read_by == []
    engine = connect(str(night_env.warehouse_url))
    try:
        with engine.connect() as conn:
            fresh = persons(conn, AS_OF)
            fresh_households = profiles.household_profile(conn, AS_OF)
    finally:
        engine.dispose()
    published = _published_profile(night_env)
    assert len(published) == len(fresh) > 0
    assert sorted(published["person_key"]) == sorted(fresh["person_key"])
    # the open alerts counted at the publication, after the alerts were raised
    hp = _published_profile(night_env, "household_profile").sort_values("household_id")
    assert hp["household_id"].tolist() == fresh_households["household_id"].tolist()
    assert hp["open_alerts"].tolist() == fresh_households["open_alerts"].tolist()
    assert fresh_households["open_alerts"].sum() > 0


def test_a_failed_reading_ahead_is_read_again_by_the_publication(
    night_env: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    read_by: list[str] = []
    computed = profiles._person_profile

    def fails_ahead(conn: Connection, as_of: date) -> pd.DataFrame:
        context = TaskRunContext.get()
        read_by.append(name := context.task.name if context is not None else "")
        if name == "profiles_ahead":
            raise OSError("disk hiccup")
        return computed(conn, as_of)

    monkeypatch.setattr(profiles, "_person_profile", fails_ahead)
    with caplog.at_level(logging.WARNING):
        result = run_nightly(AS_OF, night_env)
    assert read_by == ["profiles_ahead", "publish"]
    assert result.publication_id
    assert len(_published_profile(night_env)) > 0
    warned = [r.getMessage() for r in caplog.records if "画像" in r.getMessage()]
    assert warned == ["提前读取画像未成功（OSError），发布时将重新读取"]
