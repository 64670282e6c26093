"""Operator mistakes refused at the door (issue 11): the real `datashare` command in a
subprocess, exit 2 and one Chinese line before any work; lock conflicts exit 4 in one line.
"today" is pinned with DATASHARE_TODAY (never the real clock)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from datashare.errors import ConfigurationError
from datashare.settings import Settings
from flows.preflight import check_dates, preflight, today

ROOT = Path(__file__).resolve().parents[1]
SECRET = "k" * 32
DAY = "2025-03-12"


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATASHARE_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env={**clean, "COLUMNS": "200", **env},
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    """A production configuration that passes every check (the landing folder exists)."""
    (tmp_path / "landing" / "MZ").mkdir(parents=True)
    return {
        "DATASHARE_HOME": str(tmp_path),
        "DATASHARE_SECRET": SECRET,
        "DATASHARE_TODAY": "2025-03-13",
        "DATASHARE_BUILD_DOCS": "false",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }


def _refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])


def _nothing_done(home: Path) -> None:
    assert not (home / "warehouse.db").exists()
    assert not (home / "published").exists()


def test_a_missing_or_wrong_landing_is_refused(base: dict[str, str], tmp_path: Path) -> None:
    missing = _cli("run", "--date", DAY, env={**base, "DATASHARE_LANDING": str(tmp_path / "no")})
    _refused(missing, 2, "交换区", "不存在", "DATASHARE_LANDING")
    (tmp_path / "a-file").write_text("x")
    a_file = _cli("run", "--date", DAY, env={**base, "DATASHARE_LANDING": str(tmp_path / "a-file")})
    _refused(a_file, 2, "不是文件夹")
    _nothing_done(tmp_path)


def test_unknown_dataset_and_force_names_list_the_valid_ones(
    base: dict[str, str], tmp_path: Path
) -> None:
    for option in ("--dataset", "--force"):
        result = _cli("run", "--date", DAY, option, "NOPE", env=base)
        _refused(result, 2, f"{option} NOPE 不是数据集", "MZ_DIBAO", "XC_HU")
    backfill = _cli("backfill", "--from", DAY, "--to", DAY, "--dataset", "NOPE", env=base)
    _refused(backfill, 2, "--dataset NOPE 不是数据集")
    _nothing_done(tmp_path)


def test_a_date_after_today_in_shanghai_is_refused(base: dict[str, str], tmp_path: Path) -> None:
    future = _cli("run", "--date", "2025-03-14", env=base)  # today is pinned to 2025-03-13
    _refused(future, 2, "2025-03-14 晚于今天", "2025-03-13", "--allow-future-date")
    publish = _cli("publish", "--date", "2025-03-14", env=base)
    _refused(publish, 2, "晚于今天")
    backfill = _cli("backfill", "--from", DAY, "--to", "2025-03-20", "--dry-run", env=base)
    _refused(backfill, 2, "2025-03-20 晚于今天")
    _nothing_done(tmp_path)


def test_today_is_the_pinned_day_or_the_shanghai_clock(tmp_path: Path) -> None:
    pinned = Settings(home=tmp_path, today=date(2025, 3, 13))
    assert today(pinned) == date(2025, 3, 13)
    check_dates([date(2025, 3, 13)], today(pinned))  # today itself is fine
    with pytest.raises(ConfigurationError, match="晚于今天"):
        check_dates([date(2025, 3, 12), date(2025, 3, 14)], today(pinned))
    preflight(
        Settings(home=tmp_path, today=date(2025, 3, 13), environment="test"),
        exchange_dates=[date(2025, 3, 20)],
        allow_future=True,
        landing=False,
    )


def test_short_secret_bad_urls_and_invalid_settings(base: dict[str, str], tmp_path: Path) -> None:
    short = _cli("run", "--date", DAY, env={**base, "DATASHARE_SECRET": "s"})
    _refused(short, 2, "DATASHARE_SECRET 太短", "32")
    assert "s" * 2 not in short.stderr.replace("secrets", "")  # the value is not echoed
    for url in ("not a url", "postgresql://u@host:notaport/db"):
        bad = _cli("run", "--date", DAY, env={**base, "DATASHARE_WAREHOUSE_URL": url})
        _refused(bad, 2, "DATASHARE_WAREHOUSE_URL 不是有效的数据库地址")
    mysql = _cli("db", "upgrade", env={**base, "DATASHARE_WAREHOUSE_URL": "mysql://u@h/db"})
    _refused(mysql, 2, "mysql 不受支持")
    invalid = _cli(
        "run", "--date", DAY, env={**base, "DATASHARE_MAX_WORKERS": "0", "DATASHARE_TODAY": "x"}
    )
    _refused(invalid, 2, "设置无效", "DATASHARE_MAX_WORKERS", "DATASHARE_TODAY")
    _nothing_done(tmp_path)


def test_unwritable_publish_or_lake_folders(base: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    publish = _cli(
        "run", "--date", DAY, env={**base, "DATASHARE_PUBLISH_DIR": str(tmp_path / "a-file/p")}
    )
    _refused(publish, 2, "DATASHARE_PUBLISH_DIR", "是文件而不是文件夹")
    # /proc/1 cannot be written even by root (the tests may run as root).
    lake = _cli("run", "--date", DAY, env={**base, "DATASHARE_LAKE": "/proc/1/lake"})
    _refused(lake, 2, "DATASHARE_LAKE", "不可写", "/proc/1")
    _nothing_done(tmp_path)


# Holds the writer lock of a warehouse until killed.
_HOLDER = textwrap.dedent("""
    import sys, time
    from warehouse.db import connect
    from warehouse.lock import writer_lock
    with writer_lock(connect(sys.argv[1]), owner="nightly 2025-03-12"):
        print("held", flush=True)
        time.sleep(3600)  # until the fixture kills it (two minutes were too few when loaded)
""")


@pytest.fixture
def held(base: dict[str, str], tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("held")
        yield url
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_lock_conflicts_exit_4_in_one_line_without_prefect(base: dict[str, str], held: str) -> None:
    env = {**base, "DATASHARE_WAREHOUSE_URL": held}
    for args in (
        ("run", "--date", DAY),
        ("publish", "--date", DAY),
        ("backfill", "--from", DAY, "--to", DAY),
    ):
        result = _cli(*args, env=env)
        _refused(result, 4, "仓库正被另一运行占用", "nightly 2025-03-12")
        assert "prefect" not in (result.stdout + result.stderr).lower()


@pytest.mark.slow  # a whole night through the CLI in a subprocess: in CI's full run
def test_a_good_night_records_its_odd_files(base: dict[str, str], tmp_path: Path) -> None:
    """A real run through the CLI: exit 0, and the stray files are in landing_issues and in the
    department's published ledger."""
    import pandas as pd

    from warehouse.db import connect
    from warehouse.tables_ops import night_landing_issues

    mz = tmp_path / "landing" / "MZ"
    (mz / "MZ_DIBAO_20250312 (1).csv").write_bytes(b"x")
    (mz / "MZ_DIBAO_20250312.ods.zip").write_bytes(b"x")
    result = _cli("run", "--date", DAY, env=base, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    engine = connect(f"sqlite:///{tmp_path / 'warehouse.db'}")
    try:
        with engine.connect() as conn:
            issues = night_landing_issues(conn, date(2025, 3, 12))
    finally:
        engine.dispose()
    assert list(issues) == ["MZ"]
    assert sorted(issues["MZ"]["kind"]) == ["bad_name", "unsupported_format"]
    ledger = pd.read_parquet(tmp_path / "published" / "MZ" / "deliveries.parquet")
    refused = ledger[ledger["status"] == "refused"].sort_values("source_file")
    assert list(refused["source_file"]) == [
        "MZ/MZ_DIBAO_20250312 (1).csv",
        "MZ/MZ_DIBAO_20250312.ods.zip",
    ]
    assert refused["reason"].str.contains("未接收").all()
    assert "交付 无" in result.stdout  # nothing was taken in, and the night says so
    assert "交换区另有 2 个文件未接收（MZ 2）" in result.stdout


def test_a_new_home_for_prefect_is_created(base: dict[str, str], tmp_path: Path) -> None:
    """Prefect's embedded API does not create its own home; a PREFECT_HOME whose folders do not
    exist yet (a new DATASHARE_HOME beside a warehouse elsewhere) used to hang the start until
    its timeout, then fail in a traceback. The CLI creates it; one it cannot create is one line
    and exit 2."""
    warehouse = tmp_path / "elsewhere"
    warehouse.mkdir()
    env = {
        **base,
        "DATASHARE_HOME": str(tmp_path / "new" / "home"),
        "DATASHARE_LANDING": str(tmp_path / "landing"),
        "DATASHARE_WAREHOUSE_URL": f"sqlite:///{warehouse / 'warehouse.db'}",
        "PREFECT_HOME": str(tmp_path / "new" / "home" / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "30",
    }
    result = _cli("run", "--date", DAY, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "new" / "home" / "prefect").is_dir()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    refused = _cli("run", "--date", DAY, env={**env, "PREFECT_HOME": str(blocker / "prefect")})
    _refused(refused, 2, "PREFECT_HOME", "无法创建")


def test_the_early_api_start_sees_the_api_the_run_will_use(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`datashare run` starts Prefect's embedded API in a thread while it imports; under a
    configured API (here the test harness's, set in this context) it starts nothing."""
    from prefect.server.api.server import SubprocessASGIServer

    app = importlib.import_module("cli.app")  # the module (cli.app is also its Typer app)

    started: list[object] = []
    monkeypatch.setattr(SubprocessASGIServer, "start", lambda self, *a: started.append(self))
    monkeypatch.setattr(app, "_uvicorn_early", lambda: started.append("early"))
    with app.embedded_api_starting():
        pass
    assert started == []


def test_the_early_api_process_is_the_embedded_server_prefect_uses(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no API configured and none running, the CLI starts the API's uvicorn process
    before it imports Prefect's server module, then registers it as the embedded server
    (SubprocessASGIServer's singleton), which Prefect's client then finds running: a real
    process, answering /health, stopped by the singleton's own stop."""
    import httpx
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    app = importlib.import_module("cli.app")  # the module (cli.app is also its Typer app)

    monkeypatch.setattr(PREFECT_API_URL, "value", lambda: None)
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})  # not the harness's server
    started: list[object] = []
    monkeypatch.setattr(SubprocessASGIServer, "start", lambda self, *a: started.append(self))
    app._start_embedded_api()
    server = SubprocessASGIServer()
    try:
        assert started == []  # Prefect's own start was not needed
        assert server.running and server.server_process is not None
        assert httpx.get(f"{server.api_url}/health").status_code == 200
    finally:
        server.stop()
    assert server.server_process is None


def test_the_early_api_command_is_prefects(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.app.uvicorn_command runs what SubprocessASGIServer runs (Prefect's own command,
    copied so that the process starts before Prefect's server module is imported): an
    upgrade of Prefect that changes it fails here."""
    from prefect.server.api import server as server_module

    app = importlib.import_module("cli.app")  # the module (cli.app is also its Typer app)

    seen: list[tuple[list[str], dict[str, str]]] = []

    class Recorded:
        def __init__(self, args: list[str], env: dict[str, str], **_: object) -> None:
            seen.append((args, env))

    popen = server_module.subprocess.Popen
    monkeypatch.setattr(server_module.subprocess, "Popen", Recorded)
    server_module.SubprocessASGIServer(port=8765)._run_uvicorn_command()
    monkeypatch.setattr(server_module.subprocess, "Popen", popen)
    assert len(seen) == 1
    assert app.uvicorn_command(8765) == seen[0]
