"""The writer lock with real concurrent processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import pg_schema_url

from datashare.errors import RunLocked
from warehouse.db import connect
from warehouse.lock import writer_lock

ROOT = Path(__file__).resolve().parents[1]

# A child process: take the lock, say so, hold it for `hold` seconds, exit. Exit 4 if refused.
_CHILD = textwrap.dedent("""
    import sys, time
    from datashare.errors import RunLocked
    from warehouse.db import connect
    from warehouse.lock import writer_lock
    url, owner, wait, hold = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    engine = connect(url)
    try:
        with writer_lock(engine, owner=owner, wait_seconds=wait):
            print("held", time.time(), flush=True)
            time.sleep(hold)
            print("released", time.time(), flush=True)
    except RunLocked as exc:
        print("refused", exc, flush=True)
        sys.exit(4)
""")


def _child(url: str, owner: str, wait: float, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, owner, str(wait), str(hold)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate(timeout=30)  # reaps it and closes its pipes


def _wait_held(proc: subprocess.Popen[str]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("held"), (line, proc.stderr.read() if proc.stderr else "")
    return float(line.split()[1])


def test_second_process_refuses_with_who_and_since(warehouse_url: str) -> None:
    first = _child(warehouse_url, "nightly 2025-03-12", 0, 30)
    try:
        _wait_held(first)
        second = _child(warehouse_url, "backfill", 0, 0)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 4, err
        assert "refused" in out and "nightly 2025-03-12" in out and "UTC 起持有" in out
        assert "pid" in out
        # In this process too, while the other holds it.
        engine = connect(warehouse_url)
        try:
            with (
                pytest.raises(RunLocked, match="仓库正被另一运行占用"),
                writer_lock(engine, owner="test"),
            ):
                pass
        finally:
            engine.dispose()
    finally:
        _stop(first)


def test_second_process_waits_then_runs_after_the_first(warehouse_url: str) -> None:
    first = _child(warehouse_url, "nightly", 0, 2)
    try:
        _wait_held(first)
        second = _child(warehouse_url, "nightly again", 60, 0)
        out_first, _ = first.communicate(timeout=60)
        released = float(out_first.split("released")[1].split()[0])
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        held = float(out.split()[1])
        assert held >= released  # never interleaved
    finally:
        _stop(first)


def test_a_killed_holder_does_not_block_the_next_run(warehouse_url: str) -> None:
    first = _child(warehouse_url, "nightly", 0, 120)
    _wait_held(first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    engine = connect(warehouse_url)
    try:
        start = time.monotonic()
        with writer_lock(engine, owner="after crash", wait_seconds=10):
            pass
        assert time.monotonic() - start < 10
    finally:
        engine.dispose()


def test_reentrant_within_a_process_and_released_after(warehouse_url: str) -> None:
    engine = connect(warehouse_url)
    try:
        with (
            writer_lock(engine, owner="backfill"),
            writer_lock(engine, owner="night inside the backfill"),
        ):
            pass
        probe = _child(warehouse_url, "probe", 0, 0)
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0, (out, err)
    finally:
        engine.dispose()


def test_losing_the_lock_stops_the_writer_before_its_next_commit() -> None:
    """PostgreSQL (a SQLite flock cannot be lost while its process lives): the lock's session is
    killed with pg_terminate_backend from another connection; the run stops at its next commit,
    that commit is not made, and a second run takes the lock meanwhile and afterwards."""
    from sqlalchemy import text

    from warehouse.lock import LockLost

    owner = f"nightly {uuid.uuid4().hex[:8]}"
    with pg_schema_url() as url:
        engine = connect(url)
        killer = connect(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("create table lock_probe (n integer)"))
            with pytest.raises(LockLost, match="写入锁已丢失"), writer_lock(engine, owner=owner):
                with engine.begin() as conn:  # holding the lock: commits go through
                    conn.execute(text("insert into lock_probe values (1)"))
                with killer.begin() as conn:
                    killed = conn.execute(
                        text(
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where application_name = :name"
                        ),
                        {"name": f"datashare: {owner}"},
                    ).all()
                assert killed == [(True,)]
                # Another run takes the lock while this one still believes it holds it.
                second = _child(url, "the second run", 10, 30)
                try:
                    _wait_held(second)
                    with engine.begin() as conn:  # the next commit is refused, rolled back
                        conn.execute(text("insert into lock_probe values (2)"))
                finally:
                    _stop(second)
            with engine.connect() as conn:
                assert conn.execute(text("select n from lock_probe")).scalars().all() == [1]
            # The next run takes the lock as usual once the second has gone.
            with writer_lock(engine, owner="after", wait_seconds=10), engine.begin() as conn:
                conn.execute(text("insert into lock_probe values (3)"))
            with engine.connect() as conn:
                assert conn.execute(text("select n from lock_probe")).scalars().all() == [1, 3]
        finally:
            engine.dispose()
            killer.dispose()


def test_a_held_lock_lets_every_commit_through(warehouse_url: str) -> None:
    """The check before each commit costs a query, and passes while the lock is held."""
    from sqlalchemy import text

    engine = connect(warehouse_url)
    try:
        with writer_lock(engine, owner="nightly held"):
            for n in range(3):
                with engine.begin() as conn:
                    conn.execute(text("create table if not exists lock_ok (n integer)"))
                    conn.execute(text("insert into lock_ok values (:n)"), {"n": n})
        with engine.begin() as conn:
            assert conn.execute(text("select count(*) from lock_ok")).scalar() == 3
            conn.execute(text("drop table lock_ok"))
    finally:
        engine.dispose()
