"""Every dataset's files through the real intake (read, validate, GX, gates, ledger, lake, history).

The oracle is the synthetic county, never the engine: a good file must load exactly the county's
canonical rows; a broken file must quarantine exactly the defects the generator says it planted,
at the row a person sees, in the column and under the rule it planted. Delivery-level gates,
re-deliveries and no-ops go through `intake_delivery` against SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, func, select

from datashare.synth import (
    County,
    Delivery,
    build_county,
    corrupt_bytes,
    dataset_rows,
    make_delivery,
    redeliver,
    source_row,
    truncated_snapshot,
)
from datashare.synth.files import canonical_arrays
from datashare.synth.names import GB18030_ONLY
from expectations.contract import Contract, load_common, load_contracts
from tasks.intake import IntakeOptions, IntakeSummary, intake_delivery
from tasks.landing import DeliveryRef
from tasks.read import read_delivery
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import current_rows
from warehouse.tables import history_merges, history_tables

CONTRACTS = load_contracts()
COMMON = load_common()
DATASETS = sorted(CONTRACTS)
SEED = 23
PERSONAL = ("id", "name", "phone")  # the kinds that are shown masked (publishing.md)
CC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ID_CHECK = "10X98765432"


# --- fixtures and helpers ------------------------------------------------------------------------


@cache
def county(households: int) -> County:
    return build_county(SEED, households)


GOOD = 60  # households of the county good files come from


@dataclass
class Warehouse:
    """A migrated warehouse, its lake and a GX project, and a way to hand it a delivery."""

    engine: Engine
    lake: Path
    gx: Path

    def options(self, **changes: Any) -> IntakeOptions:
        base = IntakeOptions(
            lake_root=self.lake, gx_root=self.gx, build_docs=False, secret=b"test-secret"
        )
        return dataclasses.replace(base, **changes)

    def take(
        self, dataset: str, day: date, content: bytes, *, ext: str | None = None, **options: Any
    ) -> IntakeSummary:
        contract = CONTRACTS[dataset]
        name = f"{dataset}_{day:%Y%m%d}.{ext or contract.format}"
        ref = DeliveryRef(contract.dept, dataset, day, name, f"landing/{contract.dept}/{name}")
        return intake_delivery(ref, content, contract, COMMON, self.engine, self.options(**options))

    def deliver(self, delivery: Delivery, **options: Any) -> IntakeSummary:
        return self.take(delivery.dataset, _day_of(delivery), delivery.content, **options)

    def ledger(self) -> pd.DataFrame:
        frame = ledger.ledger_frame(self.engine)
        return frame.assign(exchange_date=pd.to_datetime(frame["exchange_date"]).dt.date)

    def row(self, delivery_id: str) -> pd.Series:
        frame = self.ledger()
        found = frame[frame["delivery_id"] == delivery_id]
        assert len(found) == 1, found
        return found.iloc[0]

    def rejects(self, delivery_id: str | None = None) -> pd.DataFrame:
        frame = ledger.rejects_frame(self.engine)
        frame = frame.assign(exchange_date=pd.to_datetime(frame["exchange_date"]).dt.date)
        if delivery_id is not None:
            frame = frame[frame["delivery_id"] == delivery_id]
        return frame.reset_index(drop=True)

    def current(self, dataset: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return current_rows(conn, dataset)

    def versions(self, dataset: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(history_tables[dataset])).scalar_one()
            )

    def merges(self, dataset: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(
                select(history_merges)
                .where(history_merges.c.dataset == dataset)
                .order_by(history_merges.c.exchange_date),
                conn,
            )
        return frame.assign(exchange_date=pd.to_datetime(frame["exchange_date"]).dt.date)


def _day_of(delivery: Delivery) -> date:
    stamp = delivery.path.stem.rsplit("_", 1)[1]
    return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GX project for the module: opening a new one costs more than a delivery."""
    return tmp_path_factory.mktemp("gx")


@pytest.fixture
def wh(warehouse_url: str, tmp_path: Path, gx_root: Path) -> Iterator[Warehouse]:
    engine = connect(warehouse_url)
    upgrade(engine)
    try:
        yield Warehouse(engine, tmp_path / "lake", gx_root)
    finally:
        engine.dispose()


def assert_conserved(s: IntakeSummary) -> None:
    assert s.rows_in == s.rows_loaded + s.rows_rejected + s.duplicates, s


def assert_names_where(
    reason: str | None, dataset: str, *, row: int | None = None, column: str | None = None
) -> None:
    """An error names department, dataset and file (and row and column where they apply)."""
    contract = CONTRACTS[dataset]
    assert reason is not None
    assert f"部门 {contract.dept}" in reason, reason
    assert f"数据集 {dataset}" in reason, reason
    assert f"文件 {dataset}_" in reason, reason
    if row is not None:
        assert f"第 {row} 行" in reason, reason
    if column is not None:
        assert f"列 {column}" in reason, reason


def _plain(value: object) -> str:
    text = unicodedata.normalize("NFKC", str(value))
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace()).lstrip("'")


def plain_personal_values(
    dataset: str, content: bytes, file_name: str, truth: pd.DataFrame | None = None
) -> set[str]:
    """Every id, name and phone of a delivery, as delivered and as true (cleaned, not masked)."""
    contract = CONTRACTS[dataset]
    columns = [c.name for c in contract.columns if c.pii in PERSONAL]
    raw = read_delivery(content, file_name, contract, COMMON).frame
    found: set[str] = set()
    for frame in (raw, truth):
        if frame is None:
            continue
        for name in columns:
            if name in frame:
                found |= {_plain(v) for v in frame[name].dropna()}
    return {v for v in found if len(v) >= 2 and "*" not in v}


def assert_no_plain(texts: Iterable[object], plain: set[str]) -> None:
    for text in texts:
        if text is None or (isinstance(text, float) and math.isnan(text)):
            continue
        leaked = [v for v in plain if v in str(text)]
        assert not leaked, f"plain personal data {leaked} in {text!r}"


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def assert_same_values(
    got: pd.DataFrame, expected: dict[str, np.ndarray], contract: Contract
) -> None:
    """The accepted rows equal the canonical ones, column by column, in delivered order."""
    for col in contract.columns:
        g, e = got[col.name], pd.Series(expected[col.name])
        assert len(g) == len(e), col.name
        if col.type == "date":
            g = pd.to_datetime(g).astype("datetime64[s]")
            e = pd.to_datetime(e).astype("datetime64[s]")
            same = (g.to_numpy() == e.to_numpy()) | (g.isna().to_numpy() & e.isna().to_numpy())
        elif col.type in ("int", "decimal"):
            same = np.isclose(
                g.astype(float).to_numpy(),
                e.astype(float).to_numpy(),
                equal_nan=True,
                rtol=0,
                atol=0.005,
            )
        else:
            same = np.array(
                [
                    (_blank(a) and _blank(b)) or (not _blank(a) and a == b)
                    for a, b in zip(g.astype(object), e.astype(object), strict=True)
                ]
            )
        bad = np.flatnonzero(~same)
        assert not len(bad), (
            f"{contract.dataset}.{col.name}: {len(bad)} rows differ, e.g. "
            f"{[(g.iloc[i], e.iloc[i]) for i in bad[:3]]}"
        )


def broken_delivery(landing: Path, dataset: str) -> tuple[Delivery, pd.DataFrame]:
    """A messy delivery with defects, from a county big enough for several defect classes."""
    households = 150
    n = len(dataset_rows(county(households), dataset, county(households).start))
    if n < 60:
        households = min(1000, math.ceil(households * 60 / max(n, 1)))
    c = county(households)
    day = c.start
    frames = [dataset_rows(c, dataset, day)]
    while (
        CONTRACTS[dataset].mode == "events"
        and sum(map(len, frames)) < 60
        and day < c.start + timedelta(days=14)
    ):
        day += timedelta(days=1)  # a few days of events, delivered late in one file
        frames.append(dataset_rows(c, dataset, day))
    truth = pd.concat(frames, ignore_index=True)
    delivery = make_delivery(c, landing, dataset, day, rows=truth, defect_rate=0.08)
    return delivery, truth


def required_plain_column(contract: Contract) -> str:
    """A required column whose emptiness breaks nothing but `required` (no key, rule, derive)."""
    involved = {c for r in contract.row_rules for c in r.columns}
    involved |= {d.column for d in contract.derive} | {d.from_column for d in contract.derive}
    return next(c for c in contract.required_columns if c not in contract.key and c not in involved)


# --- each dataset: a good file and a broken file -------------------------------------------------


@pytest.mark.quick_sample("XC_HU", "XC_REN", "YB_JIESUAN", "ZJ_FANGWU")
@pytest.mark.parametrize("dataset", DATASETS)
def test_good_file_loads_every_row(dataset: str, wh: Warehouse, tmp_path: Path) -> None:
    contract = CONTRACTS[dataset]
    c = county(GOOD)
    truth = dataset_rows(c, dataset, c.start)
    delivery = make_delivery(
        c, tmp_path / "landing", dataset, c.start, rows=truth, messy=True, defects=False
    )
    assert delivery.file.fmt == contract.format and not delivery.defects
    assert (
        delivery.content
        != make_delivery(
            c, tmp_path, dataset, c.start, rows=truth, messy=False, defects=False
        ).content
    )

    s = wh.deliver(delivery)

    assert s.status == "loaded", s.reason
    assert s.rows_in == delivery.file.rows == len(truth) > 0
    assert (s.rows_loaded, s.rows_rejected, s.duplicates) == (len(truth), 0, 0)
    assert_conserved(s)
    assert wh.rejects(s.delivery_id).empty
    row = wh.row(s.delivery_id)
    assert row["status"] == "loaded" and bool(row["gx_success"])
    assert row["file_format"] == contract.format
    if contract.format == "csv":
        assert row["encoding"] == delivery.file.encoding
    accepted = pq.read_table(wh.lake / row["lake_path"]).to_pandas()
    assert_same_values(accepted, canonical_arrays(contract, truth), contract)
    expected_rows = [
        source_row(contract.format, delivery.file.title_rows, i) for i in range(len(truth))
    ]
    assert accepted["source_row"].tolist() == expected_rows
    assert set(accepted["delivery_id"]) == {s.delivery_id}
    assert len(wh.current(dataset)) == len(truth)


@pytest.mark.quick_sample("XC_HU", "XC_REN", "YB_JIESUAN", "ZJ_FANGWU")
@pytest.mark.parametrize("dataset", DATASETS)
def test_broken_file_quarantines_exactly_the_planted_defects(
    dataset: str, wh: Warehouse, tmp_path: Path
) -> None:
    contract = CONTRACTS[dataset]
    delivery, truth = broken_delivery(tmp_path / "landing", dataset)
    planted = {(d.source_row, d.column, d.rule) for d in delivery.defects}
    assert len(planted) >= 2, "too few defects planted for the test to mean much"

    s = wh.deliver(delivery)

    assert s.status == "loaded", s.reason
    assert s.rows_in == delivery.file.rows
    assert s.duplicates == delivery.file.duplicates
    assert s.rows_rejected == len(planted)
    assert_conserved(s)
    rejects = wh.rejects(s.delivery_id)
    got = set(
        zip(rejects["source_row"].astype(int), rejects["column"], rejects["rule"], strict=True)
    )
    assert got == planted, (sorted(planted - got), sorted(got - planted))
    day = _day_of(delivery)
    assert set(rejects["dataset"]) == {dataset}
    assert set(rejects["exchange_date"]) == {day}
    assert set(rejects["source_file"]) == {delivery.path.name}
    assert rejects["message"].notna().all()

    # Masked, never plain: personal columns show a masked form, messages too.
    pii = {c.name: c.pii for c in contract.columns}
    plain = plain_personal_values(dataset, delivery.content, delivery.path.name, truth)
    assert plain or "id" not in pii.values()
    assert_no_plain([*rejects["value_masked"], *rejects["message"]], plain)
    for column, value in zip(rejects["column"], rejects["value_masked"], strict=True):
        if pii.get(column) in PERSONAL and not _blank(value):
            assert "*" in value, (column, value)

    accepted = pq.read_table(wh.lake / wh.row(s.delivery_id)["lake_path"]).to_pandas()
    assert len(accepted) == s.rows_loaded
    assert not set(accepted["source_row"]) & {r for r, _, _ in planted}


@pytest.mark.parametrize("dataset", ["MZ_DIBAO", "YB_JIESUAN"])
def test_csv_encodings_give_the_same_accepted_rows(
    dataset: str, wh: Warehouse, tmp_path: Path
) -> None:
    c = county(150)
    truth = dataset_rows(c, dataset, c.start)
    # A name only GB18030 (not GB2312/GBK) can write: the reason it is the legacy encoding.
    truth.loc[0, "name"] = "王" + GB18030_ONLY[0]
    accepted, rejects = [], []
    for i, encoding in enumerate(("utf-8", "utf-8-sig", "gb18030")):
        delivery = make_delivery(
            c, tmp_path, dataset, c.start, rows=truth, encoding=encoding, defect_rate=0.1
        )
        assert delivery.defects
        s = wh.take(dataset, c.start + timedelta(days=i), delivery.content)
        assert s.status == "loaded", s.reason
        row = wh.row(s.delivery_id)
        assert row["encoding"] == encoding
        table = pq.read_table(wh.lake / row["lake_path"]).to_pandas()
        accepted.append(table.drop(columns=["delivery_id", "source_file"]))
        rejects.append(
            wh.rejects(s.delivery_id)[["source_row", "column", "rule", "value_masked", "message"]]
        )
    assert accepted[0]["name"].eq("王" + GB18030_ONLY[0]).any()
    for other in accepted[1:]:
        pd.testing.assert_frame_equal(accepted[0], other)
    for other in rejects[1:]:
        pd.testing.assert_frame_equal(rejects[0], other)
    quarantined = len({d.source_row for d in delivery.defects})
    assert len(accepted[0]) == delivery.file.rows - quarantined - delivery.file.duplicates


# --- delivery-level gates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "column"),
    [
        ("MZ_DIBAO", "id_number"),
        ("XC_REN", "relation"),
        ("WJ_MANBING", "disease"),
    ],
)
def test_missing_required_column_fails_the_delivery(
    dataset: str, column: str, wh: Warehouse, tmp_path: Path
) -> None:
    contract = CONTRACTS[dataset]
    c = county(GOOD)
    delivery = make_delivery(c, tmp_path, dataset, c.start, defects=False, drop_columns=[column])

    s = wh.deliver(delivery)

    assert s.status == "failed"
    assert s.rows_loaded == 0 and s.rows_in == delivery.file.rows
    assert s.rows_rejected == s.rows_in
    assert_conserved(s)
    row = wh.row(s.delivery_id)
    assert row["status"] == "failed" and row["rows_loaded"] == 0 and _blank(row["lake_path"])
    assert contract.column(column).header in row["reason"]
    assert_names_where(row["reason"], dataset, column=column)
    rejects = wh.rejects(s.delivery_id)
    assert rejects[["column", "rule"]].values.tolist() == [[column, "missing_column"]]
    assert not (wh.lake / "accepted").exists()
    assert wh.versions(dataset) == 0


def _share_delivery(
    c: County, landing: Path, broken: int, dataset: str = "XC_HU"
) -> tuple[Delivery, int]:
    """20 rows of `dataset`, `broken` of them with a required value left empty."""
    contract = CONTRACTS[dataset]
    rows = dataset_rows(c, dataset, c.start).iloc[:20].reset_index(drop=True)
    column = required_plain_column(contract)
    rows[column] = rows[column].astype(object)
    rows.loc[rows.index[::-1][:broken], column] = None
    return make_delivery(c, landing, dataset, c.start, rows=rows, defects=False), len(rows)


def test_quarantine_share_gate_at_its_boundary(wh: Warehouse, tmp_path: Path) -> None:
    c = county(GOOD)
    threshold = CONTRACTS["XC_HU"].quarantine_threshold
    at, n = _share_delivery(c, tmp_path, 4)
    over, _ = _share_delivery(c, tmp_path, 5)
    assert 4 / n == threshold < 5 / n

    s = wh.deliver(at)
    assert s.status == "loaded", s.reason
    assert (s.rows_loaded, s.rows_rejected) == (16, 4)
    assert bool(wh.row(s.delivery_id)["gx_success"])

    t = wh.deliver(over)  # a re-delivery for the same date
    assert t.status == "failed"
    assert (t.rows_loaded, t.rows_rejected) == (0, 20)
    assert_conserved(t)
    row = wh.row(t.delivery_id)
    assert not bool(row["gx_success"])  # GX reaches the same verdict on its own
    assert_names_where(row["reason"], "XC_HU")
    rejects = wh.rejects(t.delivery_id)
    assert "quarantine_share" in set(rejects["rule"])
    assert (rejects["rule"] == "required").sum() == 5
    # The failed re-delivery does not replace the accepted one.
    assert wh.row(s.delivery_id)["status"] == "loaded"
    assert set(wh.current("XC_HU")["delivery_id"]) == {s.delivery_id}


def _credit_code_delivery(c: County, landing: Path, bad: int) -> tuple[Delivery, int]:
    """RS_JIUYE where only 20 rows carry an employer credit code and `bad` of them are wrong."""
    rows = dataset_rows(c, "RS_JIUYE", c.start)
    codes = rows["employer_credit_code"].astype(object)
    keep = codes.dropna().index[:20]
    assert len(keep) == 20
    codes[~codes.index.isin(keep)] = None
    for i in keep[:bad]:
        code = codes[i]
        wrong = CC_CHARS[(CC_CHARS.index(code[-1]) + 1) % len(CC_CHARS)]
        codes[i] = code[:-1] + wrong
    rows = rows.assign(employer_credit_code=codes)
    return make_delivery(c, landing, "RS_JIUYE", c.start, rows=rows, defects=False), len(rows)


def test_gx_contract_findings_do_not_refuse_a_delivery_the_spec_accepts(
    wh: Warehouse, tmp_path: Path
) -> None:
    """GX's `mostly` counts filled values: 6 wrong codes of 20 filled are 30% for GX but 6 rows
    of ~100 for the spec (under 20%): the delivery loads, the 6 rows are quarantined, and GX's
    delivery suite (the verdict) passes."""
    c = county(GOOD)
    delivery, n = _credit_code_delivery(c, tmp_path, 6)
    assert 6 / n < CONTRACTS["RS_JIUYE"].quarantine_threshold

    s = wh.deliver(delivery)

    assert s.status == "loaded", s.reason
    assert (s.rows_loaded, s.rows_rejected) == (n - 6, 6)
    assert bool(wh.row(s.delivery_id)["gx_success"])
    rejects = wh.rejects(s.delivery_id)
    assert (rejects["rule"] == "credit_code").sum() == 6
    assert "gx_failed" not in set(rejects["rule"])


def test_truncated_snapshot_fails_unless_forced(wh: Warehouse, tmp_path: Path) -> None:
    c = county(GOOD)
    day1, day2 = c.start, c.start + timedelta(days=1)
    full = make_delivery(c, tmp_path, "XC_REN", day1, defects=False)
    first = wh.deliver(full)
    assert first.status == "loaded", first.reason
    cut = truncated_snapshot(c, tmp_path, "XC_REN", day2, keep_fraction=0.4)
    assert cut.file.rows < first.rows_loaded / 2

    s = wh.deliver(cut)
    assert s.status == "failed"
    assert_conserved(s)
    row = wh.row(s.delivery_id)
    assert not bool(row["gx_success"])
    assert str(first.rows_loaded) in row["reason"]
    assert_names_where(row["reason"], "XC_REN")
    assert set(wh.rejects(s.delivery_id)["rule"]) == {"truncated_snapshot"}
    assert len(wh.current("XC_REN")) == first.rows_loaded

    # The operator looks, agrees, and forces the same file: it is accepted this time.
    forced = wh.deliver(cut, force=True)
    assert forced.status == "loaded", forced.reason
    assert forced.rows_loaded == cut.file.rows
    ledger_rows = wh.ledger()
    assert ledger_rows["status"].tolist() == ["loaded", "loaded"]  # one row per delivery
    assert wh.rejects(forced.delivery_id).empty
    assert len(wh.current("XC_REN")) == forced.rows_loaded
    # ... and running the night again over it is a no-op.
    assert wh.deliver(cut, force=True).status == "unchanged"
    assert len(wh.ledger()) == 2


@pytest.mark.parametrize(
    ("dataset", "kind", "row"),
    [
        ("XC_HU", "garbage", None),
        ("WJ_MANBING", "truncate", None),
        ("MZ_DIBAO", "undecodable", 2),
        ("XC_REN", "truncate", None),
    ],
)
def test_unreadable_file_fails(
    dataset: str, kind: str, row: int | None, wh: Warehouse, tmp_path: Path
) -> None:
    c = county(GOOD)
    good = make_delivery(c, tmp_path, dataset, c.start, defects=False)
    content = corrupt_bytes(good.content, kind)

    s = wh.take(dataset, c.start, content)

    assert s.status == "failed"
    assert (s.rows_in, s.rows_loaded) == (0, 0)
    rejects = wh.rejects(s.delivery_id)
    assert rejects["rule"].tolist() == ["unreadable"]
    assert_names_where(wh.row(s.delivery_id)["reason"], dataset, row=row)
    assert not (wh.lake / "accepted").exists()
    # The department corrects it: the good file for the same date is accepted normally.
    fixed = wh.deliver(good)
    assert fixed.status == "loaded", fixed.reason
    assert fixed.rows_loaded == good.file.rows
    assert wh.ledger()["status"].tolist() == ["failed", "loaded"]


def test_same_bytes_again_is_a_no_op(wh: Warehouse, tmp_path: Path) -> None:
    c = county(GOOD)
    delivery, _ = broken_delivery(tmp_path, "MZ_DIBAO")
    s = wh.deliver(delivery)
    assert s.status == "loaded"
    bad = wh.take("XC_HU", c.start, b"\x00\x01 not a spreadsheet", ext="xlsx")
    assert bad.status == "failed"
    before = (wh.ledger(), wh.rejects(), wh.versions("MZ_DIBAO"))

    again, bad_again = (
        wh.deliver(delivery),
        wh.take("XC_HU", c.start, b"\x00\x01 not a spreadsheet", ext="xlsx"),
    )

    assert (again.status, bad_again.status) == ("unchanged", "unchanged")
    assert (again.delivery_id, bad_again.delivery_id) == (s.delivery_id, bad.delivery_id)
    assert again.rows_loaded == 0
    pd.testing.assert_frame_equal(wh.ledger(), before[0])
    pd.testing.assert_frame_equal(wh.rejects(), before[1])
    assert wh.versions("MZ_DIBAO") == before[2]


def _keys(frame: pd.DataFrame, contract: Contract) -> set[tuple[object, ...]]:
    return set(frame[list(contract.key)].itertuples(index=False, name=None))


@pytest.mark.parametrize("dataset", ["XC_HU", "YB_JIESUAN"])
def test_redelivery_supersedes_the_earlier_file(
    dataset: str, wh: Warehouse, tmp_path: Path
) -> None:
    contract = CONTRACTS[dataset]
    c = county(GOOD)
    truth = dataset_rows(c, dataset, c.start)
    first = make_delivery(c, tmp_path, dataset, c.start, rows=truth, defects=False)
    # The re-delivery lacks the first three rows and changes nothing else.
    fewer = truth.iloc[3:].reset_index(drop=True)
    second = make_delivery(c, tmp_path, dataset, c.start, rows=fewer, defects=False, variant=1)
    a = wh.deliver(first)
    assert a.status == "loaded"

    b = wh.deliver(second)

    assert b.status == "loaded", b.reason
    assert wh.row(a.delivery_id)["status"] == "superseded"
    assert wh.row(b.delivery_id)["status"] == "loaded"
    current = wh.current(dataset)
    assert set(current["delivery_id"]) == {b.delivery_id}
    assert _keys(current, contract) == _keys(fewer, contract)
    assert wh.versions(dataset) == len(fewer)
    assert wh.merges(dataset)["delivery_id"].tolist() == [b.delivery_id]


def test_corrected_redelivery_after_a_failed_one_is_loaded(wh: Warehouse, tmp_path: Path) -> None:
    c = county(GOOD)
    broken = make_delivery(
        c, tmp_path, "MZ_DIBAO", c.start, defects=False, drop_columns=["assistance_type"]
    )
    assert wh.deliver(broken).status == "failed"
    corrected = redeliver(c, tmp_path, "MZ_DIBAO", c.start)

    s = wh.deliver(corrected)

    assert s.status == "loaded", s.reason
    assert s.rows_loaded == corrected.file.rows
    assert wh.ledger()["status"].tolist() == ["failed", "loaded"]
    assert set(wh.current("MZ_DIBAO")["delivery_id"]) == {s.delivery_id}


def test_events_same_bytes_for_another_date_is_a_duplicate(wh: Warehouse, tmp_path: Path) -> None:
    c = county(GOOD)
    delivery = make_delivery(c, tmp_path, "YB_JIESUAN", c.start)
    first = wh.deliver(delivery)
    assert first.status == "loaded"
    versions = wh.versions("YB_JIESUAN")

    s = wh.take("YB_JIESUAN", c.start + timedelta(days=1), delivery.content)

    assert s.status == "duplicate"
    assert (s.rows_loaded, s.rows_rejected, s.duplicates) == (0, 0, s.rows_in)
    assert s.rows_in == delivery.file.rows
    assert_conserved(s)
    assert first.delivery_id in (s.reason or "")
    assert wh.row(s.delivery_id)["status"] == "duplicate"
    assert wh.versions("YB_JIESUAN") == versions
    assert wh.merges("YB_JIESUAN")["delivery_id"].tolist() == [first.delivery_id]


def test_snapshot_same_bytes_on_the_next_date_is_loaded_unchanged(
    wh: Warehouse, tmp_path: Path
) -> None:
    c = county(GOOD)
    delivery = make_delivery(c, tmp_path, "XC_HU", c.start)
    first = wh.deliver(delivery)
    assert first.status == "loaded"
    before = wh.current("XC_HU")

    s = wh.take("XC_HU", c.start + timedelta(days=1), delivery.content)

    assert s.status == "loaded", s.reason
    assert (s.rows_loaded, s.rows_rejected) == (first.rows_loaded, first.rows_rejected)
    pd.testing.assert_frame_equal(wh.current("XC_HU"), before)
    assert wh.versions("XC_HU") == len(before)
    merges = wh.merges("XC_HU")
    assert merges["delivery_id"].tolist() == [first.delivery_id, s.delivery_id]
    last = merges.iloc[-1]
    assert (last["unchanged"], last["inserted"], last["changed"], last["closed"]) == (
        s.rows_loaded,
        0,
        0,
        0,
    )


# --- Data Docs and errors hold no personal data --------------------------------------------------


@pytest.mark.parametrize("dataset", ["XC_HU"])  # ids, names and phones
def test_data_docs_hold_no_plain_personal_data(dataset: str, wh: Warehouse, tmp_path: Path) -> None:
    delivery, truth = broken_delivery(tmp_path / "landing", dataset)
    assert {d.column for d in delivery.defects} & {
        c.name for c in CONTRACTS[dataset].columns if c.pii in PERSONAL
    }
    gx = tmp_path / "gx"

    s = wh.deliver(delivery, gx_root=gx, build_docs=True)

    assert s.status == "loaded", s.reason
    pages = list(gx.rglob("*.html"))
    assert any(p.name == "index.html" for p in pages)
    texts = {p: p.read_text(encoding="utf-8") for p in [*pages, *gx.rglob("*.json")]}
    assert any(s.delivery_id in t for p, t in texts.items() if p.suffix == ".html"), (
        "the docs do not show this delivery's run"
    )
    plain = plain_personal_values(dataset, delivery.content, delivery.path.name, truth)
    assert plain
    for path, text in texts.items():
        leaked = [v for v in plain if v in text]
        assert not leaked, f"{path.relative_to(gx)} shows {leaked[:3]}"


def _spoilt(c: County, landing: Path, dataset: str, column: str, count: int) -> Delivery:
    """20 rows of `dataset` where `count` filled values of a personal column are invalid."""
    rows = dataset_rows(c, dataset, c.start).iloc[:20].reset_index(drop=True)
    values = rows[column].astype(object)
    for i in values.dropna().index[:count]:
        v = values[i]
        if CONTRACTS[dataset].column(column).type == "id18":  # another check character
            values[i] = v[:17] + ID_CHECK[(ID_CHECK.index(v[17]) + 1) % len(ID_CHECK)]
        else:
            values[i] = v + "9"  # one digit too many
    return make_delivery(
        c, landing, dataset, c.start, rows=rows.assign(**{column: values}), defects=False
    )


def test_failure_messages_hold_no_plain_personal_data(wh: Warehouse, tmp_path: Path) -> None:
    """Every reason and reject message of failed deliveries, where the values at fault are
    personal (ids, phones) and where the failure is about the file."""
    c = county(GOOD)
    deliveries = [
        _spoilt(c, tmp_path, "MZ_DIBAO", "head_id_number", 6),
        _spoilt(c, tmp_path, "XC_HU", "phone", 6),
        make_delivery(c, tmp_path, "XC_REN", c.start, drop_columns=["relation"]),
    ]
    plain: set[str] = set()
    for delivery in deliveries:
        assert wh.deliver(delivery).status == "failed"
        plain |= plain_personal_values(delivery.dataset, delivery.content, delivery.path.name)
    ledger_rows = wh.ledger()
    rejects = wh.rejects()
    assert {"id_checksum", "pattern", "missing_column"} <= set(rejects["rule"])
    for reason in ledger_rows["reason"]:
        assert_names_where(reason, reason.split("数据集 ")[1].split("，")[0])
    assert_no_plain([*ledger_rows["reason"], *rejects["message"], *rejects["value_masked"]], plain)
    spoilt = rejects[rejects["rule"].isin(["id_checksum", "pattern"])]
    assert len(spoilt) == 12 and spoilt["value_masked"].str.contains("*", regex=False).all()


def _pool_after_intake_import(env: dict[str, str]) -> str:
    """The Arrow pool a fresh process uses once the intake has chosen it."""
    script = "from tasks.intake import use_arrow_pool; print(use_arrow_pool())"
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=clean | env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return out.stdout.strip()


def test_intake_allocates_from_jemalloc_unless_the_environment_chooses() -> None:
    try:
        pa.jemalloc_memory_pool()
        expected = "jemalloc"
    except NotImplementedError:  # a pyarrow built without it keeps its default
        expected = pa.default_memory_pool().backend_name
    assert _pool_after_intake_import({}) == expected
    assert _pool_after_intake_import({"ARROW_DEFAULT_MEMORY_POOL": "system"}) == "system"
