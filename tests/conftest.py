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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.postgres_sample(*values)`: a matrix whose cases differ only in pandas work
    (which dataset is missing, which day it is) runs every case on SQLite and, on PostgreSQL,
    only the cases whose parameters (or their `__name__`) include one of `values`; the rest are
    deselected (shown in the summary). The SQL each case issues is the same, so PostgreSQL gains
    nothing from the others, and they cost minutes of CI."""
    kept, dropped = [], []
    for item in items:
        sample = item.get_closest_marker("postgres_sample")
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("warehouse_url") == "postgres"
        if sample is not None and on_pg:
            wanted = {str(v) for v in sample.args}
            if not wanted & {getattr(v, "__name__", str(v)) for v in callspec.params.values()}:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
