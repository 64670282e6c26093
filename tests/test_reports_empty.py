"""Reports over a county that has not delivered everything yet (issue 16): the weekly, monthly,
quarterly and annual reports are built when each dataset they read is missing in turn, when only
one dataset has been delivered, and when datasets were delivered but match no roster person —
every figure typed and computed, and the report names the departments that have not delivered.
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from sqlalchemy import Engine
from test_reports import _accepted

from datashare.synth import build_county, dataset_rows, datasets_due
from expectations.contract import get_contract, load_common
from tasks.reports import SOURCES, TOTAL, Period, ReportFigures, ReportFiles, build_report
from warehouse import ledger
from warehouse.db import connect, upgrade
from warehouse.history import merge_delivery

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

SECRET = b"report-empty-secret"
START = date(2025, 3, 10)  # Monday of 2025-W11
NIGHTS = [START + timedelta(days=k) for k in range(7)]
WEEK = Period.parse_week("2025-W11")
MONTH = Period.parse_month("2025-03")
QUARTER = Period.parse_quarter("2025-Q1")
YEAR = Period.parse_year("2025")  # built mid-year: as of the last night that ran
PERIODS = (WEEK, MONTH, QUARTER, YEAR)
NOTE = "以下部门尚未报送"

# Columns of assurance_by_town computed from each dataset (the rest must not change without it).
ASSURANCE_OF = {
    "YB_CANBAO": ["insured", "uninsured", "insured_rate"],
    "JT_XUEJI": ["dropout", "not_enrolled", "out_of_school", "out_of_school_hh"],
    "ZJ_FANGWU": [
        "cd_hh",
        "cd_done",
        "cd_building",
        "cd_not_started",
        "cd_other",
        "renovation_rate",
    ],
    "SL_YINSHUI": ["water_unsafe_hh", "water_unsafe_persons", "water_unsurveyed_hh"],
}
# Datasets the figures read beside the roster (XC_HU, XC_REN, GA_BIANDONG feed nearly all).
SIDE = ["YB_CANBAO", "JT_XUEJI", "ZJ_FANGWU", "SL_YINSHUI", "YB_JIESUAN", "RS_JIUYE"]
Frames = dict[tuple[str, date], pd.DataFrame]


@pytest.fixture(scope="module")
def frames() -> Frames:
    synth = build_county(5, 30)
    return {
        (dataset, day): dataset_rows(synth, dataset, day)
        for day in NIGHTS
        for dataset in datasets_due(synth, day)
    }


def _load(url: str, frames: Frames, keep: Callable[[str], bool]) -> Engine:
    """A warehouse holding the kept datasets' deliveries, night by night (ledger + history)."""
    engine = connect(url)
    upgrade(engine)
    for (dataset, day), frame in sorted(frames.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if not keep(dataset):
            continue
        did = f"{dataset}_{day:%Y%m%d}_e"
        contract = get_contract(dataset)
        rec = ledger.DeliveryRecord(
            delivery_id=did,
            dept=contract.dept,
            dataset=dataset,
            exchange_date=day,
            source_file=f"{dataset}_{day:%Y%m%d}.csv",
            location="test",
            sha256=did.ljust(64, "0"),
            received_at=datetime(day.year, day.month, day.day, 14, tzinfo=UTC),
            status="loaded",
            rows_in=len(frame),
            rows_loaded=len(frame),
            rows_rejected=0,
            duplicates=0,
        )
        with ledger.writing(engine) as conn:
            ledger.record(
                conn,
                rec,
                pd.DataFrame(columns=["source_row", "column", "rule", "value_masked", "message"]),
            )
            merge_delivery(
                conn,
                contract,
                _accepted(frame, dataset, did),
                delivery_id=did,
                exchange_date=day,
                secret=SECRET,
            )
    return engine


def _reports(engine: Engine, out: Path) -> list[ReportFiles]:
    try:
        with engine.connect() as conn:
            return [build_report(conn, p, out) for p in PERIODS]
    finally:
        engine.dispose()


def _check_files(files: ReportFiles, undelivered: list[str]) -> None:
    """The files exist, are readable, and name the departments that have not delivered."""
    html = files.html.read_text("utf-8")
    book = openpyxl.load_workbook(files.xlsx)
    overview = [c for row in book["概览"].iter_rows(values_only=True) for c in row if c]
    assert files.figures.undelivered == undelivered
    if not undelivered:
        assert NOTE not in html
        return
    [note] = [n for n in files.figures.notes if n.startswith(NOTE)]
    assert note in html and note in overview
    departments = load_common().departments
    for dataset in undelivered:
        assert dataset in note
        assert departments[get_contract(dataset).dept] in note
    for dataset in set(SOURCES) - set(undelivered):
        assert dataset not in note


def _total(frame: pd.DataFrame, label: str = "town") -> pd.Series:
    [row] = frame.loc[frame[label] == TOTAL].to_dict("records")
    return pd.Series(row)


@pytest.fixture(scope="module")
def full(frames: Frames, tmp_path_factory: pytest.TempPathFactory) -> list[ReportFiles]:
    """The reports of the county with every dataset delivered (SQLite), the reference."""
    tmp = tmp_path_factory.mktemp("full")
    return _reports(_load(f"sqlite:///{tmp / 'w.db'}", frames, lambda _: True), tmp / "out")


def test_the_whole_county_names_no_one(full: list[ReportFiles]) -> None:
    for files in full:
        _check_files(files, [])
        # The reference county has data in every side section (else the tests below say little).
        t = _total(files.figures.assurance_by_town)
        assert t["roster_persons"] > 0 and t["insured"] > 0 and t["cd_hh"] > 0
        assert _total(files.figures.medical_ytd_by_town)["settlements"] > 0
        assert _total(files.figures.employment_by_town)["labour"] > 0


def _households_on(frames: Frames, on: date) -> pd.DataFrame:
    day = max(d for (ds, d) in frames if ds == "XC_HU" and d <= on)
    return frames[("XC_HU", day)]


@pytest.mark.quick_sample("XC_HU", "YB_JIESUAN")
@pytest.mark.postgres_sample("XC_HU", "ZJ_FANGWU", "YB_JIESUAN")
@pytest.mark.parametrize("missing", SOURCES)
def test_each_dataset_missing_in_turn(
    missing: str,
    frames: Frames,
    full: list[ReportFiles],
    warehouse_url: str,
    tmp_path: Path,
) -> None:
    built = _reports(_load(warehouse_url, frames, lambda d: d != missing), tmp_path)
    for files, reference in zip(built, full, strict=True):
        _check_files(files, [missing])
        f, ref = files.figures, reference.figures
        assurance = _total(f.assurance_by_town)
        if missing == "XC_HU":  # no roster: every roster figure is an empty 合计
            for table in (f.monitoring_by_town, f.assurance_by_town, f.employment_by_town):
                assert table["town"].tolist() == [TOTAL]
            assert assurance["roster_persons"] == 0
            continue
        if missing in SIDE:  # everything not computed from it is as in the full county
            pd.testing.assert_frame_equal(f.monitoring_by_town, ref.monitoring_by_town)
            others = [
                c for c in ref.assurance_by_town.columns if c not in ASSURANCE_OF.get(missing, [])
            ]
            pd.testing.assert_frame_equal(
                f.assurance_by_town[others], ref.assurance_by_town[others]
            )
            if missing != "YB_JIESUAN":
                pd.testing.assert_frame_equal(f.medical_by_town, ref.medical_by_town)
            if missing != "RS_JIUYE":
                pd.testing.assert_frame_equal(f.employment_by_town, ref.employment_by_town)
        hh = _households_on(frames, f.period.end)
        if missing == "XC_REN":
            assert assurance["roster_persons"] == 0
            assert _total(f.monitoring_by_town)["identified_hh"] == int(
                hh["monitoring_category"].notna().sum()
            )
        _check_side_without(missing, f, len(hh))


def _check_side_without(missing: str, f: ReportFigures, households: int) -> None:
    """What each side dataset's figures are when none of its rows reaches the roster."""
    t = _total(f.assurance_by_town)
    if missing == "YB_CANBAO":
        assert t["insured"] == 0 and t["uninsured"] == t["roster_persons"] > 0
        assert t["insured_rate"] == 0.0
    if missing == "JT_XUEJI":  # absent from the school roll: 无学籍 (as rule JT-01)
        assert t["dropout"] == 0 and t["not_enrolled"] == t["children"] > 0
    if missing == "ZJ_FANGWU":
        assert t[ASSURANCE_OF["ZJ_FANGWU"][:-1]].sum() == 0
        assert np.isnan(t["renovation_rate"])
    if missing == "SL_YINSHUI":
        assert t["water_unsafe_hh"] == t["water_unsafe_persons"] == 0
        assert t["water_unsurveyed_hh"] == households
    if missing == "YB_JIESUAN":
        for table in (f.medical_by_town, f.medical_ytd_by_town):
            m = _total(table)
            assert m["settlements"] == m["persons"] == m["total_cost"] == 0
            assert np.isnan(m["actual_ratio"]) and np.isnan(m["policy_ratio"])
    if missing == "RS_JIUYE":
        e = _total(f.employment_by_town)
        assert e["labour"] > 0 and e["unregistered"] == e["labour"]
        assert e["employed"] == e["unemployed"] == e["employed_hh"] == 0


@pytest.mark.quick_sample("ZJ_FANGWU")
@pytest.mark.postgres_sample("XC_HU", "ZJ_FANGWU", "YB_JIESUAN")
@pytest.mark.parametrize("only", SOURCES)
def test_only_one_dataset_delivered(
    only: str, frames: Frames, warehouse_url: str, tmp_path: Path
) -> None:
    built = _reports(_load(warehouse_url, frames, lambda d: d == only), tmp_path)
    for files in built:
        f = files.figures
        _check_files(files, [s for s in SOURCES if s != only])
        intake = f.intake.set_index("dept")
        assert intake.loc[get_contract(only).dept, "accepted"] > 0
        assert f.headline["deliveries"] == sum(
            1 for (ds, d) in frames if ds == only and f.period.start <= d <= f.period.end
        )
        if only == "XC_HU":  # households without persons: counted; every person figure is 0
            hh = _households_on(frames, f.period.end)
            mon = _total(f.monitoring_by_town)
            assert mon["identified_hh"] == int(hh["monitoring_category"].notna().sum()) > 0
            assert mon["identified_persons"] == 0
            a = _total(f.assurance_by_town)
            assert a["roster_persons"] == 0 and a["cd_hh"] == 0
            assert a["water_unsurveyed_hh"] == len(hh)
        else:  # no roster: nothing is counted, every table still has its 合计
            assert f.monitoring_by_town["town"].tolist() == [TOTAL]
            assert _total(f.medical_by_town)["settlements"] == 0


def _strangers(frames: Frames) -> Frames:
    """The side datasets delivered, but about persons who are not on the roster."""
    out = dict(frames)
    for (dataset, day), frame in frames.items():
        if dataset not in SIDE:
            continue
        column = "head_id_number" if "head_id_number" in frame else "id_number"
        # Another county's area code, the same birth date: valid-looking, on no roster.
        out[(dataset, day)] = frame.assign(
            **{column: "990101" + frame[column].astype(str).str.slice(6)}
        )
    return out


@pytest.mark.quick_sample("sqlite")
def test_datasets_matching_no_roster_person(
    frames: Frames, full: list[ReportFiles], warehouse_url: str, tmp_path: Path
) -> None:
    built = _reports(_load(warehouse_url, _strangers(frames), lambda _: True), tmp_path)
    for files, reference in zip(built, full, strict=True):
        f = files.figures
        _check_files(files, [])  # delivered, so no one is named
        pd.testing.assert_frame_equal(f.monitoring_by_town, reference.figures.monitoring_by_town)
        households = len(_households_on(frames, f.period.end))
        for dataset in SIDE:
            _check_side_without(dataset, f, households)


@pytest.mark.quick_sample("sqlite")
def test_files_left_untaken_in_the_landing_area_show_in_the_report(
    frames: Frames, warehouse_url: str, tmp_path: Path
) -> None:
    """Issue 11: a file in a department's landing folder that was not taken in is counted for
    that department in the report's intake table and explained beside its light."""
    from warehouse.tables_ops import record_landing_issues

    engine = _load(warehouse_url, frames, lambda _: True)
    at = datetime(2025, 3, 12, 18, tzinfo=UTC)
    issue = dict(kind="bad_name", reason="文件名无法识别", dated=True)
    with engine.begin() as conn:
        record_landing_issues(
            conn,
            [
                {
                    **issue,
                    "exchange_date": NIGHTS[1],
                    "location": "MZ/MZ_DIBAO(1).csv",
                    "dept": "MZ",
                    "dataset": None,
                    "source_file": "MZ_DIBAO(1).csv",
                },
                {
                    **issue,
                    "exchange_date": NIGHTS[2],
                    "location": "MZ/x.txt",
                    "dept": "MZ",
                    "dataset": None,
                    "source_file": "x.txt",
                },
                {
                    **issue,
                    "exchange_date": NIGHTS[2],
                    "location": "stray.csv",
                    "dept": None,
                    "dataset": None,
                    "source_file": "stray.csv",
                },
                # before the week: in the month and the year, not in the week
                {
                    **issue,
                    "exchange_date": date(2025, 3, 3),
                    "location": "YB/y.csv",
                    "dept": "YB",
                    "dataset": None,
                    "source_file": "y.csv",
                },
            ],
            at,
        )
    week, month, *_ = _reports(engine, tmp_path)
    w = week.figures.intake.set_index("dept")
    assert (w.loc["MZ", "landing_issues"], w.loc["XC", "landing_issues"]) == (2, 1)
    assert w.loc["YB", "landing_issues"] == 0
    assert "交换区另有 2 个文件未接收" in w.loc["MZ", "light_reason"]
    assert w.loc["MZ", "light"] != "绿"
    m = month.figures.intake.set_index("dept")
    assert m.loc["YB", "landing_issues"] == 1
    assert int(w["landing_issues"].sum()) == 3
    book = openpyxl.load_workbook(week.xlsx)
    headers = [
        c
        for sheet in book.worksheets
        for row in sheet.iter_rows(values_only=True)
        for c in row
        if c == "未接收文件"
    ]
    assert headers, "the column is labelled in Chinese in the workbook"
