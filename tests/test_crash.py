"""A merge killed midway (a real process, SIGKILL) leaves no trace; the next run completes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, inspect, select, text

import tasks.intake
from datashare.synth import build_county, write_night
from expectations.contract import load_common, load_contracts
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import FsspecLanding
from warehouse.db import connect, upgrade
from warehouse.tables import deliveries

DAY1, DAY2 = date(2025, 3, 10), date(2025, 3, 11)
SECRET = b"crash-test-secret"
ROOT = Path(__file__).resolve().parents[1]

# Run in the child: take in one delivery, but stop dead right after the history rows are written
# (inside the transaction, before the commit), tell the parent, and wait to be killed.
CHILD = """
import json, sys, time
from datetime import date
from pathlib import Path
import warehouse.history as history
from expectations.contract import load_common, load_contracts
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import FsspecLanding
from warehouse.db import connect

args = json.loads(sys.argv[1])
original = history._apply

def apply_then_hang(*a, **k):
    result = original(*a, **k)
    Path(args["marker"]).write_text("merging")
    time.sleep(600)
    return result

history._apply = apply_then_hang
contract = load_contracts()[args["dataset"]]
landing = FsspecLanding(args["landing"])
[ref] = landing.discover(date.fromisoformat(args["day"]), [contract])
options = IntakeOptions(lake_root=Path(args["lake"]), gx_root=Path(args["gx"]),
                        build_docs=False, secret=args["secret"].encode())
intake_delivery(ref, landing.fetch(ref), contract, load_common(), connect(args["url"]), options)
"""


def _state(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (received_at is a clock reading: left out)."""
    state = {}
    with engine.connect() as conn:
        for name in sorted(inspect(conn).get_table_names()):
            frame = pd.read_sql(text(f'select * from "{name}"'), conn)
            frame = frame.drop(columns=["received_at"], errors="ignore")
            state[name] = sorted(map(tuple, frame.astype(str).to_numpy().tolist()))
    return state


def _take_in(url: str, tmp: Path, landing: Path, day: date, dataset: str) -> str:
    contract = load_contracts()[dataset]
    source = FsspecLanding(str(landing))
    [ref] = source.discover(day, [contract])
    options = IntakeOptions(
        lake_root=tmp / "lake", gx_root=tmp / "gx", build_docs=False, secret=SECRET
    )
    engine = connect(url)
    try:
        return intake_delivery(
            ref, source.fetch(ref), contract, load_common(), engine, options
        ).status
    finally:
        engine.dispose()


@pytest.mark.quick_sample("XC_REN")
@pytest.mark.parametrize("dataset", ["XC_REN", "YB_JIESUAN"])
def test_a_merge_killed_midway_leaves_the_warehouse_as_before(
    warehouse_url: str, tmp_path: Path, dataset: str
) -> None:
    county = build_county(5, 60)
    landing = tmp_path / "landing"
    for day in (DAY1, DAY2):
        write_night(county, landing, day, datasets=[dataset], defects=False)
    engine = connect(warehouse_url)
    upgrade(engine)
    assert _take_in(warehouse_url, tmp_path, landing, DAY1, dataset) == "loaded"
    before = _state(engine)

    marker = tmp_path / "merging"
    args = {
        "url": warehouse_url,
        "landing": str(landing),
        "lake": str(tmp_path / "lake"),
        "gx": str(tmp_path / "gx"),
        "day": DAY2.isoformat(),
        "dataset": dataset,
        "secret": SECRET.decode(),
        "marker": str(marker),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert child.poll() is None, child.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the child never reached the merge"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    # The killed run wrote history rows inside its transaction; none of them survived.
    assert _state(engine) == before
    assert _take_in(warehouse_url, tmp_path, landing, DAY2, dataset) == "loaded"
    after = _state(engine)
    engine.dispose()

    # And the completed run equals a run that was never interrupted.
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}" if warehouse_url.startswith("sqlite") else None
    if clean_url is not None:
        clean = connect(clean_url)
        upgrade(clean)
        clean_tmp = tmp_path / "clean"
        for day in (DAY1, DAY2):
            assert _take_in(clean_url, clean_tmp, landing, day, dataset) == "loaded"
        assert _state(clean) == after
        clean.dispose()
    assert after != before


def test_a_merge_that_breaks_fails_its_delivery_and_leaves_history_as_before(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write, validate, then switch: an unexpected error after the merge wrote its history rows
    (inside the delivery's transaction) records a failed delivery and nothing else."""
    county = build_county(5, 60)
    landing = tmp_path / "landing"
    for day in (DAY1, DAY2):
        write_night(county, landing, day, datasets=["XC_REN"], defects=False)
    engine = connect(warehouse_url)
    upgrade(engine)
    assert _take_in(warehouse_url, tmp_path, landing, DAY1, "XC_REN") == "loaded"
    before = _state(engine)
    quoted = "610102199001011234"
    real_merge = tasks.intake.merge_delivery

    def merge_then_break(conn: Connection, *args: object, **kwargs: object) -> None:
        real_merge(conn, *args, **kwargs)  # type: ignore[arg-type]
        raise RecursionError(f"maximum recursion depth exceeded near {quoted}")

    monkeypatch.setattr(tasks.intake, "merge_delivery", merge_then_break)
    assert _take_in(warehouse_url, tmp_path, landing, DAY2, "XC_REN") == "failed"
    after = _state(engine)
    with engine.connect() as conn:
        d = deliveries.c
        status, reason = conn.execute(
            select(d.status, d.reason).where(d.exchange_date == DAY2)
        ).one()
    engine.dispose()

    assert {name for name in after if after[name] != before[name]} == {"deliveries", "rejects"}
    assert status == "failed"
    assert "RecursionError" in reason and "意外错误" in reason and "XC_REN" in reason
    assert quoted not in reason and "recursion depth" not in reason
