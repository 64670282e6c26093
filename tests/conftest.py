"""Shared fixtures: real SQLite and PostgreSQL warehouses, a real Prefect API, temp folders."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Prefect reads its settings at import: keep tests quiet and off the user's Prefect home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "CRITICAL")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

POSTGRES_ENV = "DATASHARE_TEST_POSTGRES_URL"


def _pg_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return None
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def postgres_or_skip() -> str:
    """The PostgreSQL URL for tests. In CI an unreachable server fails; elsewhere it skips."""
    url = _pg_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set in CI")
        pytest.skip(f"{POSTGRES_ENV} not set")
    probe = create_engine(url)
    try:
        with probe.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable in CI: {exc.orig}")
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
    finally:
        probe.dispose()
    return url


def _backends() -> list[str]:
    return ["sqlite", "postgres"] if (_pg_url() or os.environ.get("CI")) else ["sqlite"]


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose search_path is a throwaway PostgreSQL schema, dropped afterwards."""
    base = postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=_backends())
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty warehouse: a SQLite file, or a throwaway schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with pg_schema_url() as url:
        yield url


@pytest.fixture(autouse=True)
def environment_as_found() -> Iterator[None]:
    """Each test leaves os.environ as it found it. Code under test may write it (the CLI, run
    in-process by CliRunner, sets Prefect's defaults such as PREFECT_HOME under its home);
    without this a later test's subprocess inherits a PREFECT_HOME in a deleted folder."""
    saved = os.environ.copy()
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def own_publication_prefixes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """PostgreSQL roles are cluster-wide: each test publishes under its own schema and role
    prefixes (tests run in parallel), and its roles are dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setenv("DATASHARE_PG_SCHEMA_PREFIX", f"pub_{tag}_")
    monkeypatch.setenv("DATASHARE_PG_ROLE_PREFIX", f"ds_{tag}_")
    yield
    url = _pg_url()
    if url is None:
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            roles = (
                conn.execute(
                    text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"), {"p": f"ds_{tag}_%"}
                )
                .scalars()
                .all()
            )
            schemas = (
                conn.execute(
                    text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                    {"p": f"pub_{tag}_%"},
                )
                .scalars()
                .all()
            )
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            for role in roles:
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
    except OperationalError:
        pass  # no PostgreSQL here: nothing was published into it
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real, temporary Prefect API for flow tests (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run the slow group (CI does: CI or DATASHARE_TEST_ALL=1 in the environment)",
    )


def _run_slow(config: pytest.Config) -> bool:
    """The slow group runs in CI, when asked, or when the caller chose tests themselves (a
    marker expression or a test's own node id)."""
    return bool(
        config.getoption("--run-slow")
        or os.environ.get("CI")
        or os.environ.get("DATASHARE_TEST_ALL")
        or config.getoption("markexpr")
        or any("::" in arg for arg in config.args)
    )


def _params(item: pytest.Item) -> set[str]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return set()
    return {getattr(v, "__name__", str(v)) for v in callspec.params.values()}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two markers thin out matrices, and the slow group leaves the default run.

    `@pytest.mark.postgres_sample(*values)`: a matrix whose cases differ only in pandas work
    (which dataset is missing, which day it is) runs every case on SQLite and, on PostgreSQL,
    only the cases whose parameters (or their `__name__`) include one of `values`; the rest are
    deselected everywhere, CI included (shown in the summary). The SQL each case issues is the
    same, so PostgreSQL gains nothing from the others, and they cost minutes of CI.

    `@pytest.mark.quick_sample(*values)`: the cases whose parameters include one of `values`
    stay in the default run; the others join the `slow` group, which CI runs. A backend name
    ("sqlite", "postgres") keeps one backend of an end-to-end test in the default run.

    The `slow` group is left out of the default run (the edit-test loop: under five minutes on
    a 2-core machine) unless `_run_slow` says otherwise; CI runs everything."""
    kept, dropped = [], []
    for item in items:
        params = _params(item)
        sample = item.get_closest_marker("postgres_sample")
        if sample is not None and "postgres" in params:
            callspec = getattr(item, "callspec", None)
            on_pg = callspec is not None and callspec.params.get("warehouse_url") == "postgres"
            if on_pg and not {str(v) for v in sample.args} & params:
                dropped.append(item)
                continue
        quick = item.get_closest_marker("quick_sample")
        if quick is not None and not {str(v) for v in quick.args} & params:
            item.add_marker(pytest.mark.slow)
        kept.append(item)
    if not _run_slow(config):
        slow = [item for item in kept if item.get_closest_marker("slow") is not None]
        dropped += slow
        kept = [item for item in kept if item.get_closest_marker("slow") is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    # Longest first (`--dist loadfile` hands out whole files in this order): the run does not
    # end with one worker alone on a long file. The rest keep their order.
    longest = (*_LONGEST_SLOW_FILES, *_LONGEST_FILES) if _run_slow(config) else _LONGEST_FILES
    rank = {name: i for i, name in enumerate(dict.fromkeys(longest))}
    kept.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
    items[:] = kept


# With the slow group: the files holding its long end-to-end tests come first (a demo, a
# deployment, a range backfill on two warehouses, 30 nights, the browser).
_LONGEST_SLOW_FILES = (
    "test_backfill",
    "test_deploy",
    "test_publish_incremental",
    "test_flow",
    "test_operator_view",
    "test_new_dataset",
    "test_portal_browser",
    "test_dask",
)
# The files that take longest in the default run (measured: junit times, docs/testing.md). The
# portal's county is built once and shared (portal_county.sqlite_copy), so test_labels and
# test_portal_hold follow test_portal at a distance instead of waiting for it side by side.
_LONGEST_FILES = (
    "test_portal",
    "test_intake",
    "test_reports",
    "test_flow",
    "test_reports_empty",
    "test_alerts",
    "test_labels",
    "test_quarantine_keeps_key",
    "test_night_failures",
    "test_operator",
    "test_corpus",
    "test_portal_hold",
)


def pytest_report_header(config: pytest.Config) -> str | None:
    if _run_slow(config):
        return "slow group: included"
    return (
        "slow group: left out (the deselected count includes it); "
        "python3 dev.py test --run-slow runs it, and CI always does"
    )
