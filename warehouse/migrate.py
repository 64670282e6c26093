"""Alembic revisions from the contracts: `datashare db revision -m "…"` (docs/datasets.md).

    alembic_config()                       the Alembic configuration every migration uses
    use_versions(directory)                revisions of a second folder join the chain (tests)
    pending_changes()                      what the metadata has that the newest revision lacks
    write_revision(message, versions=…)    autogenerate the next revision file, for review

warehouse.tables builds each history table from its contract at run time; a revision freezes
it. `write_revision` upgrades a scratch SQLite database to the newest revision, compares it with
the metadata the contracts give (Alembic autogenerate) and writes the difference as plain
`op.create_table` / `op.add_column` calls: the revision imports no contract, so it stays what it
was when it was reviewed, whatever the contracts say later.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ClauseElement, TextClause, create_engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from datashare.errors import ConfigurationError

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"
# Folders of revisions that join the installed chain (process-wide; see `use_versions`).
_extra_versions: list[Path] = []


def alembic_config() -> Config:
    """The Alembic configuration: warehouse/migrations, plus any folder `use_versions` added."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    folders = [VERSIONS, *_extra_versions]
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(f) for f in folders))
    return cfg


@contextlib.contextmanager
def use_versions(directory: Path) -> Iterator[Path]:
    """Within the block, the revisions in `directory` continue the installed chain (a test that
    writes a revision for a new dataset without touching warehouse/migrations/versions)."""
    directory = Path(directory).resolve()
    _extra_versions.append(directory)
    try:
        yield directory
    finally:
        _extra_versions.remove(directory)


def _next_id(cfg: Config) -> str:
    """The next revision id: revisions are numbered 0001, 0002, …"""
    numbers = [
        int(s.revision)
        for s in ScriptDirectory.from_config(cfg).walk_revisions()
        if re.fullmatch(r"\d+", s.revision)
    ]
    return f"{max(numbers, default=0) + 1:04d}"


@contextlib.contextmanager
def _scratch_at_head(cfg: Config) -> Iterator[Any]:
    """A connection to an empty SQLite database brought to the newest revision."""
    with tempfile.TemporaryDirectory(prefix="datashare-revision-") as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
                yield connection
        finally:
            engine.dispose()


def pending_changes() -> list[Any]:
    """What the metadata (built from the contracts in use) has that the revisions do not
    create: empty when the migrations are current. Alembic's diff tuples."""
    from warehouse.tables import history_tables, metadata

    len(history_tables)  # the tables of the contracts in use are on the metadata
    cfg = alembic_config()
    with _scratch_at_head(cfg) as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata) if not _alembic_own(d)]


def _alembic_own(diff: Any) -> bool:
    # compare_metadata reports alembic_version as "not in the metadata"; it is Alembic's own.
    return (
        isinstance(diff, tuple)
        and len(diff) >= 2
        and diff[0] == "remove_table"
        and getattr(diff[1], "name", None) == "alembic_version"
    )


_WHERE_DIALECTS: dict[str, Dialect] = {
    "sqlite_where": sqlite.dialect(),
    "postgresql_where": postgresql.dialect(),
}


def _ops(container: ops.OpContainer) -> Iterable[ops.MigrateOperation]:
    for item in container.ops:
        if isinstance(item, ops.OpContainer):
            yield from _ops(item)
        else:
            yield item


def _portable(_context: Any, _revision: Any, directives: list[Any]) -> None:
    """Write each partial index's condition in the SQL of its own dialect: autogenerate renders
    both in the scratch database's (SQLite's `is_current = 1`, which PostgreSQL refuses)."""
    for script in directives:
        for container in (*script.upgrade_ops_list, *script.downgrade_ops_list):
            for item in _ops(container):
                if isinstance(item, ops.DropIndexOp):
                    for name in _WHERE_DIALECTS:
                        item.kw.pop(name, None)
                if not isinstance(item, ops.CreateIndexOp):
                    continue
                for name, dialect in _WHERE_DIALECTS.items():
                    where = item.kw.get(name)
                    if isinstance(where, ClauseElement) and not isinstance(where, TextClause):
                        compiled = where.compile(
                            dialect=dialect,
                            compile_kwargs={"include_table": False, "literal_binds": True},
                        )
                        item.kw[name] = text(str(compiled))


def _tidy(path: Path) -> None:
    """Format the file as the project's code is (ruff, where it is installed: a development
    machine); a machine without it keeps Alembic's layout."""
    if importlib.util.find_spec("ruff") is None:
        return
    for args in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *args, str(path)], check=False)


def write_revision(message: str, versions: Path | None = None) -> Path:
    """Autogenerate the next revision from the contracts in use and return its file.

    The file goes to `versions` (default warehouse/migrations/versions) and is meant to be read
    and committed like code. ConfigurationError when the migrations already match the
    contracts (nothing to write)."""
    from warehouse.tables import history_tables

    if not message.strip():
        raise ConfigurationError(
            "迁移文件需要一句说明（-m），例如它新增的数据集：datashare db revision -m add_mz_tekun"
        )
    if not pending_changes():
        raise ConfigurationError("迁移已与数据集约定一致，无需生成新的迁移文件")
    len(history_tables)
    target = Path(versions).resolve() if versions is not None else VERSIONS
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if target != VERSIONS.resolve() and target not in _extra_versions:
            stack.enter_context(use_versions(target))
        cfg = alembic_config()
        cfg.attributes["process_revision_directives"] = _portable
        with _scratch_at_head(cfg):
            script = command.revision(
                cfg,
                message=message,
                autogenerate=True,
                rev_id=_next_id(cfg),
                version_path=str(target),
            )
    if script is None or isinstance(script, list):
        raise ConfigurationError(
            "Alembic 没有生成唯一的一个迁移文件：请检查迁移目录中是否有分叉的版本"
        )
    path = Path(script.path)
    _tidy(path)
    return path
