"""Quarantine never closes a key (spec "Modes and history"): a snapshot key whose row was
quarantined keeps its current version; only a key absent from the delivery is closed. On SQLite
and PostgreSQL, through merge_delivery and through the real intake, night by night and as a
rebuild (backfill) from the lake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select

from datashare.synth import build_county, dataset_rows
from datashare.synth.files import render_delivery
from expectations.contract import get_contract, load_common
from tasks.intake import IntakeOptions, intake_delivery
from tasks.landing import DeliveryRef
from warehouse.db import connect, upgrade
from warehouse.history import (
    attach_held_keys,
    current_rows,
    held_keys,
    history_rows,
    merge_delivery,
    rebuild_from,
    unconfirmed_keys,
)
from warehouse.tables import deliveries, history_merges

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

from tests.test_history import (  # noqa: E402
    D1,
    D2,
    D3,
    P1,
    P2,
    P3,
    SECRET,
    delivery,
    did_of,
    ren,
    state,
)


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = connect(warehouse_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def _merge(engine: Engine, day: date, table: pa.Table) -> tuple[int, int, int]:
    with engine.begin() as conn:
        stats = merge_delivery(
            conn,
            get_contract("XC_REN"),
            table,
            delivery_id=did_of(table),
            exchange_date=day,
            secret=SECRET,
        )
    return stats.closed, stats.held, stats.unchanged


def _current(engine: Engine) -> dict[str, date]:
    with engine.connect() as conn:
        rows = current_rows(conn, "XC_REN")
    return dict(zip(rows["id_number"], rows["valid_from"].dt.date, strict=True))


def _quarantined(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"id_number": pd.array(list(ids), dtype="string")})


FAMILY = [ren(P1, "张三华"), ren(P2, "李四", relation="配偶"), ren(P3, "张小明", relation="之子")]


def test_a_quarantined_key_stays_open_and_an_absent_key_closes(engine: Engine) -> None:
    contract = get_contract("XC_REN")
    assert _merge(engine, D1, delivery("XC_REN", D1, FAMILY)) == (0, 0, 0)
    # D2: P2's row was delivered but quarantined; P3's row was not delivered at all.
    d2 = attach_held_keys(delivery("XC_REN", D2, FAMILY[:1]), contract, _quarantined(P2))
    assert _merge(engine, D2, d2) == (1, 1, 1)
    assert _current(engine) == {P1: D1, P2: D1}  # P2 kept as it was, P3 closed
    # D3: P2 delivered again and accepted: confirmed, its version untouched.
    assert _merge(engine, D3, delivery("XC_REN", D3, FAMILY[:2])) == (0, 0, 2)
    assert _current(engine) == {P1: D1, P2: D1}
    p2 = [v for v in _versions(engine) if v["id_number"] == P2]
    assert [(v["valid_from"], v["valid_to"]) for v in p2] == [(D1, None)]


def test_a_held_key_is_closed_once_a_later_delivery_omits_it(engine: Engine) -> None:
    contract = get_contract("XC_REN")
    _merge(engine, D1, delivery("XC_REN", D1, FAMILY))
    _merge(
        engine, D2, attach_held_keys(delivery("XC_REN", D2, FAMILY[:2]), contract, _quarantined(P3))
    )
    assert _merge(engine, D3, delivery("XC_REN", D3, FAMILY[:2])) == (1, 0, 2)
    assert _current(engine) == {P1: D1, P2: D1}
    p3 = [v for v in _versions(engine) if v["id_number"] == P3]
    assert [(v["valid_from"], v["valid_to"]) for v in p3] == [(D1, D3)]


def test_a_held_key_that_is_not_current_opens_nothing(engine: Engine) -> None:
    contract = get_contract("XC_REN")
    _merge(engine, D1, delivery("XC_REN", D1, FAMILY[:2]))
    d2 = attach_held_keys(delivery("XC_REN", D2, FAMILY[:2]), contract, _quarantined(P3))
    assert _merge(engine, D2, d2) == (0, 0, 2)  # P3 never accepted: nothing to keep
    assert set(_current(engine)) == {P1, P2}


def test_the_readable_part_of_a_composite_key_holds_its_current_rows(engine: Engine) -> None:
    """MZ_DIBAO's key is (id_number, assistance_type): a valid id typed into 保障类别 leaves only
    the id readable; that person's current rows are held. A row without a readable id holds
    nothing."""
    contract = get_contract("MZ_DIBAO")

    def dibao(pid: str, kind: str) -> dict[str, object]:
        return {"id_number": pid, "assistance_type": kind, "name": "张三华", "status": "在保"}

    first = [
        dibao(P1, "农村低保"),
        dibao(P1, "农村特困"),
        dibao(P2, "农村低保"),
        dibao(P3, "城市低保"),
    ]
    quarantined = pd.DataFrame(
        {
            "id_number": pd.array([P1, None], dtype="string"),
            "assistance_type": pd.array([None, "农村低保"], dtype="string"),
        }
    )
    second = attach_held_keys(delivery("MZ_DIBAO", D2, first[3:]), contract, quarantined)
    with engine.begin() as conn:
        for day, table in ((D1, delivery("MZ_DIBAO", D1, first)), (D2, second)):
            stats = merge_delivery(
                conn, contract, table, delivery_id=did_of(table), exchange_date=day, secret=SECRET
            )
    # P1's two rows held; a row whose id could not be read names nobody: P2's row closes.
    assert (stats.closed, stats.held, stats.unchanged) == (1, 2, 1)
    with engine.connect() as conn:
        rows = current_rows(conn, "MZ_DIBAO")
        kept = unconfirmed_keys(conn, "MZ_DIBAO", Path("/nonexistent"))  # no ledger: none
    assert sorted(zip(rows["id_number"], rows["assistance_type"], strict=True)) == sorted(
        [(P1, "农村低保"), (P1, "农村特困"), (P3, "城市低保")]
    )
    assert kept.num_rows == 0


def test_held_keys_survive_the_lake_and_are_distinct_and_sorted(tmp_path: Path) -> None:
    contract = get_contract("XC_REN")
    table = attach_held_keys(
        delivery("XC_REN", D1, FAMILY[:1]), contract, _quarantined(P3, P2, P3, None)
    )
    path = tmp_path / "accepted.parquet"
    pq.write_table(table, path)
    assert held_keys(pq.read_table(path), contract).column("id_number").to_pylist() == [P2, P3]
    assert held_keys(delivery("XC_REN", D1, FAMILY), contract).num_rows == 0
    # events datasets close nothing: nothing is attached
    events = get_contract("MZ_LINSHI")
    plain = delivery("MZ_LINSHI", D1, [])
    frame = pd.DataFrame({k: pd.array(["x"], dtype="string") for k in events.key})
    assert attach_held_keys(plain, events, frame).schema.metadata == plain.schema.metadata


def _versions(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return history_rows(conn, "XC_REN").to_pylist()


# --- through the real intake: a typo and a conflict in XC_HU ------------------------------------

COMMON = load_common()
HU = get_contract("XC_HU")


def _night_rows() -> pd.DataFrame:
    rows = dataset_rows(build_county(23, 40), "XC_HU", D1)
    return rows.sort_values("household_id", ignore_index=True)


def _take(engine: Engine, lake: Path, gx: Path, day: date, rows: pd.DataFrame) -> str:
    content = render_delivery(HU, rows, fmt="csv", encoding="utf-8")
    name = f"XC_HU_{day:%Y%m%d}.csv"
    ref = DeliveryRef("XC", "XC_HU", day, name, f"landing/XC/{name}")
    options = IntakeOptions(lake_root=lake, gx_root=gx, build_docs=False, secret=SECRET)
    summary = intake_delivery(ref, content, HU, COMMON, engine, options)
    assert summary.status == "loaded", summary.reason
    return summary.delivery_id


def _hu_current(engine: Engine) -> dict[str, date]:
    with engine.connect() as conn:
        rows = current_rows(conn, "XC_HU")
    return dict(zip(rows["household_id"], rows["valid_from"].dt.date, strict=True))


def _closed(engine: Engine) -> list[int]:
    hm = history_merges.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(hm.closed).where(hm.dataset == "XC_HU").order_by(hm.exchange_date)
            ).scalars()
        )


@pytest.mark.quick_sample("sqlite")
def test_a_typo_or_a_conflict_never_removes_a_household(
    engine: Engine, tmp_path: Path, warehouse_url: str
) -> None:
    rows = _night_rows()
    typo, conflict, gone = rows["household_id"].iloc[[1, 2, 3]].tolist()
    lake, gx = tmp_path / "lake", tmp_path / "gx"
    nights: list[tuple[date, pd.DataFrame]] = []

    nights.append((D1, rows))
    # D2: a mistyped optional phone; the same household twice with different content.
    d2 = rows.copy()
    d2.loc[d2["household_id"] == typo, "phone"] = "1390017037"  # ten digits
    twin = d2[d2["household_id"] == conflict].assign(household_size=99)
    nights.append((D2, pd.concat([d2, twin], ignore_index=True)))
    # D3: clean again, but one household is no longer delivered.
    nights.append((D3, rows[rows["household_id"] != gone].reset_index(drop=True)))

    for day, night in nights[:2]:
        _take(engine, lake, gx, day, night)
    current = _hu_current(engine)
    assert len(current) == len(rows)
    assert current[typo] == D1 and current[conflict] == D1  # kept, not re-opened
    assert _closed(engine) == [0, 0]
    with engine.connect() as conn:
        loaded = conn.execute(
            select(deliveries.c.rows_rejected).where(deliveries.c.exchange_date == D2)
        ).scalar_one()
    assert loaded == 3  # the typo and both conflicting rows are in the rejects
    with engine.connect() as conn:  # flagged: not re-confirmed by the delivery of D2
        held = unconfirmed_keys(conn, "XC_HU", lake).column("household_id").to_pylist()
    assert held == sorted([typo, conflict])

    _take(engine, lake, gx, D3, nights[2][1])
    current = _hu_current(engine)
    assert gone not in current and typo in current and conflict in current
    assert _closed(engine) == [0, 0, 1]
    with engine.connect() as conn:  # D3 confirmed them
        assert unconfirmed_keys(conn, "XC_HU", lake).num_rows == 0

    # A backfill (rebuild from the lake) gives the same history as the nights did ...
    before = state(engine, "XC_HU")
    rebuild_from(engine, HU, D1, lake_root=lake, secret=SECRET)
    assert_same(state(engine, "XC_HU"), before)

    # ... and so does a fresh SQLite warehouse that takes the same nights one by one (across
    # backends, versions are compared by key, validity and row hash: the content's identity).
    fresh = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade(fresh)
    for day, night in nights:
        _take(fresh, tmp_path / "lake2", gx, day, night)
    assert _identity(state(fresh, "XC_HU")) == _identity(before)

    # A corrected re-delivery of the past night D2 (after D3): the intake replays D2 and D3
    # from the lake. The typo is still there, so its household is still held, never closed;
    # the conflict is fixed, so that household is confirmed. The same as a fresh warehouse
    # that takes D1, the corrected D2 and D3 one by one.
    fixed = nights[1][1][lambda f: f.index < len(rows)]  # without the conflicting twin
    _take(engine, lake, gx, D2, fixed)
    current = _hu_current(engine)
    assert gone not in current and typo in current and conflict in current
    assert current[typo] == D1 and current[conflict] == D1
    assert _closed(engine) == [0, 0, 1]
    redone = connect(f"sqlite:///{tmp_path / 'redone.db'}")
    upgrade(redone)
    for day, night in (nights[0], (D2, fixed), nights[2]):
        _take(redone, tmp_path / "lake3", gx, day, night)
    assert _identity(state(redone, "XC_HU")) == _identity(state(engine, "XC_HU"))
    assert _identity(state(redone, "XC_HU")) != _identity(before)  # D2's delivery differs
    fresh.dispose()
    redone.dispose()


def _identity(found: dict[str, pa.Table]) -> tuple[list[dict[str, object]], ...]:
    names = ["household_id", "row_hash", "valid_from", "valid_to", "delivery_id"]
    return found["history"].select(names).to_pylist(), found["merges"].to_pylist()


def assert_same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    for name in a:
        left, right = a[name], b[name]
        if "delivery_id" in left.column_names:  # the same files give the same delivery ids
            assert left.column("delivery_id").to_pylist() == right.column("delivery_id").to_pylist()
        assert left.to_pylist() == right.to_pylist(), name
