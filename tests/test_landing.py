"""Landing connectors against real stores: a folder, fsspec memory, a local HTTP server, and
department database views in SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import httpx
import pandas as pd
import pytest
from conftest import pg_schema_url
from sqlalchemy import create_engine, make_url, text

from datashare.errors import ConfigurationError
from datashare.synth import build_county, write_delivery
from expectations.contract import get_contract, load_common, load_contracts
from tasks.checks import id18_check_char
from tasks.landing import (
    DeliveryRef,
    FsspecLanding,
    HttpLanding,
    SqlViewLanding,
    open_landing,
    record_survey,
)
from tasks.read import read_delivery

DAY = date(2025, 3, 12)
NEXT = DAY + timedelta(days=1)
CONTRACTS = list(load_contracts().values())
COMMON = load_common()
DIBAO = get_contract("MZ_DIBAO")


def valid_id(first17: str) -> str:
    return first17 + id18_check_char(pd.Series([first17]))[0]


@pytest.fixture(scope="module")
def landing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A landing folder: three datasets (CSV, XLSX, JSON) on DAY, one of them again on NEXT."""
    root = tmp_path_factory.mktemp("landing")
    county = build_county(3, 40)
    for dataset in ("MZ_DIBAO", "XC_HU", "WJ_MANBING"):
        write_delivery(county, root, dataset, DAY, defects=False)
    write_delivery(county, root, "MZ_DIBAO", NEXT, defects=False)
    return root


def expected_names(exchange_date: date) -> dict[str, str]:
    """file name -> department of what landing_dir holds for a date."""
    if exchange_date == DAY:
        return {
            f"MZ_DIBAO_{DAY:%Y%m%d}.csv": "MZ",
            f"XC_HU_{DAY:%Y%m%d}.xlsx": "XC",
            f"WJ_MANBING_{DAY:%Y%m%d}.json": "WJ",
        }
    return {f"MZ_DIBAO_{exchange_date:%Y%m%d}.csv": "MZ"}


# --- folders and fsspec ---------------------------------------------------------------------------


def test_folder_discovers_the_date_and_fetches_the_bytes(landing_dir: Path) -> None:
    landing = FsspecLanding(str(landing_dir))
    for exchange_date in (DAY, NEXT):
        refs = landing.discover(exchange_date, CONTRACTS)
        assert {r.file_name: r.dept for r in refs} == expected_names(exchange_date)
        for ref in refs:
            assert ref.exchange_date == exchange_date
            assert ref.file_name.startswith(ref.dataset + "_")
            path = landing_dir / ref.dept / ref.file_name
            assert ref.location == f"{landing_dir}/{ref.dept}/{ref.file_name}"
            assert landing.fetch(ref) == path.read_bytes()
            assert ref.size == path.stat().st_size  # the night starts the largest first
    assert landing.discover(DAY - timedelta(days=1), CONTRACTS) == []


def test_folder_discovers_only_the_contracts_asked(landing_dir: Path) -> None:
    refs = FsspecLanding(str(landing_dir)).discover(DAY, [DIBAO, get_contract("GA_BIANDONG")])
    assert [r.file_name for r in refs] == [f"MZ_DIBAO_{DAY:%Y%m%d}.csv"]


def test_folder_matches_extensions_in_any_case_and_accounts_for_lookalikes(
    tmp_path: Path,
) -> None:
    mz = tmp_path / "MZ"
    mz.mkdir()
    for name in (
        "MZ_DIBAO_20250312.CSV",  # upper-case extension: delivered
        "MZ_LINSHI_20250312.Json",  # mixed case: delivered
        "MZ_DIBAO_20250313.csv",  # another date: that night's
        "MZ_LINSHI_20250311.xls",  # another date: that night's
    ):
        (mz / name).write_bytes(name.encode())
    (mz / "MZ_DIBAO_20250312.xlsx").mkdir()  # a folder named like a delivery is not one
    landing = FsspecLanding(str(tmp_path) + "/")
    survey = landing.survey(DAY, CONTRACTS)
    assert [(r.dataset, r.file_name) for r in survey.deliveries] == [
        ("MZ_DIBAO", "MZ_DIBAO_20250312.CSV"),
        ("MZ_LINSHI", "MZ_LINSHI_20250312.Json"),
    ]
    assert [landing.fetch(r) for r in survey.deliveries] == [
        b"MZ_DIBAO_20250312.CSV",
        b"MZ_LINSHI_20250312.Json",
    ]
    assert survey.issues == []
    assert landing.discover(DAY, CONTRACTS) == survey.deliveries


# Every landing outcome (docs/intake.md, "Landing outcomes"): file -> (kind, dept, dataset).
ODD_FILES = {
    "MZ/MZ_DIBAO_20250312.csv.bak": ("unsupported_format", "MZ", "MZ_DIBAO"),
    "MZ/MZ_LINSHI_20250312.xlsx.zip": ("unsupported_format", "MZ", "MZ_LINSHI"),
    "MZ/MZ_DIBAO_2025031.csv": ("bad_name", "MZ", "MZ_DIBAO"),
    "MZ/MZ_DIBAO_20250312_v2.csv": ("bad_name", "MZ", "MZ_DIBAO"),
    "MZ/MZ_LINSHI_20250312 (1).csv": ("bad_name", "MZ", "MZ_LINSHI"),
    "MZ/MZ_FOO_20250312.csv": ("unknown_dataset", "MZ", "MZ_FOO"),
    "MZ/XC_HU_20250312.csv": ("wrong_folder", "MZ", "XC_HU"),
    "MZ/old/MZ_DIBAO_20250312.csv": ("subfolder", "MZ", "MZ_DIBAO"),
    "MZ/.DS_Store": ("bad_name", "MZ", None),
    "mz/MZ_DIBAO_20250312.csv": ("unknown_folder", None, "MZ_DIBAO"),
    "readme.txt": ("outside_dept_folder", None, None),
    "YB/YB_CANBAO_20250312.zip": ("unsupported_format", "YB", "YB_CANBAO"),
}


def test_folder_accounts_for_every_file_of_the_night(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    for rel in [*ODD_FILES, "MZ/MZ_DIBAO_20250313 (1).csv", "XC/XC_HU_20250312.et"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    survey = FsspecLanding(str(root)).survey(DAY, CONTRACTS)
    # .xls/.ods/.et are deliveries: discovery hands them to the intake (tasks/read.py reads them).
    assert [(r.dept, r.file_name) for r in survey.deliveries] == [("XC", "XC_HU_20250312.et")]
    got = {i.file_name: (i.kind, i.dept, i.dataset) for i in survey.issues}
    assert got == ODD_FILES  # the other night's copy is that night's, not this one's
    for issue in survey.issues:
        assert issue.exchange_date == DAY
        assert issue.location == f"{root}/{issue.file_name}"
        # Chinese, with where: the department (if any) and the file.
        assert "未接收" in issue.reason and f"文件 {issue.file_name}" in issue.reason
        if issue.dept:
            assert f"部门 {issue.dept}" in issue.reason
    by_name = {i.file_name: i for i in survey.issues}
    assert not by_name["MZ/.DS_Store"].dated and not by_name["readme.txt"].dated
    assert by_name["MZ/MZ_LINSHI_20250312 (1).csv"].dated
    assert "XC/" in by_name["MZ/XC_HU_20250312.csv"].reason  # names the fix
    assert "MZ_DIBAO、MZ_LINSHI" in by_name["MZ/MZ_FOO_20250312.csv"].reason
    # The next night: its own copy, and the undated files again (recorded once: see below).
    later = FsspecLanding(str(root)).survey(NEXT, CONTRACTS)
    assert {i.file_name for i in later.issues} == {
        "MZ/.DS_Store",
        "readme.txt",
        "MZ/MZ_DIBAO_2025031.csv",
        "MZ/MZ_DIBAO_20250313 (1).csv",
    }


@pytest.mark.parametrize(
    "names",
    [
        ("MZ_DIBAO_20250312.csv", "MZ_DIBAO_20250312.CSV"),  # differ only in case
        ("MZ_DIBAO_20250312.csv", "mz_dibao_20250312.csv"),
        ("MZ_DIBAO_20250312.csv", "MZ_DIBAO_20250312.xlsx", "MZ_DIBAO_20250312.xls"),
    ],
)
def test_two_files_for_one_dataset_and_date_are_both_refused(
    tmp_path: Path, names: tuple[str, ...]
) -> None:
    (tmp_path / "MZ").mkdir()
    for name in names:
        (tmp_path / "MZ" / name).write_bytes(name.encode())
    (tmp_path / "MZ" / "MZ_LINSHI_20250312.csv").write_bytes(b"alone")
    survey = FsspecLanding(str(tmp_path)).survey(DAY, CONTRACTS)
    assert [r.file_name for r in survey.deliveries] == ["MZ_LINSHI_20250312.csv"]  # no winner
    assert sorted(i.file_name for i in survey.issues) == sorted(f"MZ/{n}" for n in names)
    for issue in survey.issues:
        assert issue.kind == "ambiguous" and issue.dataset == "MZ_DIBAO"
        assert f"有 {len(names)} 个文件" in issue.reason and "均未接收" in issue.reason
        assert all(n in issue.reason for n in names)


def test_a_symlink_leaving_the_landing_area_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "MZ").mkdir(parents=True)
    secret = tmp_path / "etc-passwd.csv"
    secret.write_bytes(b"root:x:0:0")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "MZ_LINSHI_20250312.csv").write_bytes(b"x")
    (root / "MZ" / "MZ_DIBAO_20250312.csv").symlink_to(secret)
    (root / "YB").symlink_to(outside_dir)  # a whole department folder pointing out
    inside = root / "store" / "XC_HU_20250312.csv"
    inside.parent.mkdir()
    inside.write_bytes(b"inside")
    (root / "XC").mkdir()
    (root / "XC" / "XC_HU_20250312.csv").symlink_to(inside)  # inside the area: followed
    survey = FsspecLanding(str(root)).survey(DAY, CONTRACTS)
    issues = {i.file_name: i.kind for i in survey.issues}
    assert issues["MZ/MZ_DIBAO_20250312.csv"] == "symlink_outside"
    assert issues["YB"] == "symlink_outside"
    assert [r.file_name for r in survey.deliveries] == ["XC_HU_20250312.csv"]
    assert FsspecLanding(str(root)).fetch(survey.deliveries[0]) == b"inside"
    assert all("MZ_LINSHI" not in i.file_name for i in survey.issues)  # never listed, never read


def test_a_run_for_some_datasets_leaves_the_others_files_alone(tmp_path: Path) -> None:
    (tmp_path / "MZ").mkdir()
    for name in ("MZ_DIBAO_20250312 (1).csv", "MZ_LINSHI_20250312.csv", "MZ_FOO_20250312.csv"):
        (tmp_path / "MZ" / name).write_bytes(b"x")
    survey = FsspecLanding(str(tmp_path)).survey(DAY, [get_contract("MZ_LINSHI")])
    assert [r.file_name for r in survey.deliveries] == ["MZ_LINSHI_20250312.csv"]
    # The copy of MZ_DIBAO is that dataset's run's; a dataset nobody has is everybody's.
    assert [i.file_name for i in survey.issues] == ["MZ/MZ_FOO_20250312.csv"]


def test_landing_issues_are_recorded_once_and_published_to_the_department(
    tmp_path: Path, warehouse_url: str
) -> None:
    from warehouse.db import connect, upgrade
    from warehouse.publish import ledger_tables
    from warehouse.tables_ops import landing_issues_frame, night_landing_issues

    root = tmp_path / "landing"
    for rel in ("MZ/MZ_DIBAO_20250312 (1).csv", "MZ/.DS_Store", "readme.txt", "XC/x.xlsx"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    landing = FsspecLanding(str(root))
    engine = connect(warehouse_url)
    try:
        upgrade(engine)
        for night in (DAY, DAY, NEXT):  # DAY twice: a re-run records nothing new
            record_survey(engine, landing.survey(night, CONTRACTS))
        with engine.connect() as conn:
            frame = landing_issues_frame(conn)
            per_dept = night_landing_issues(conn, DAY)
            on_next = night_landing_issues(conn, NEXT)
            ledger = ledger_tables(conn, DAY)["deliveries"]
    finally:
        engine.dispose()
    # Undated files belong to the first night that saw them; the dated copy to its date.
    assert sorted(zip(frame["exchange_date"].astype(str), frame["source_file"], strict=True)) == [
        (str(DAY), "MZ/.DS_Store"),
        (str(DAY), "MZ/MZ_DIBAO_20250312 (1).csv"),
        (str(DAY), "XC/x.xlsx"),
        (str(DAY), "readme.txt"),
    ]
    assert sorted(per_dept) == ["", "MZ", "XC"]
    assert sorted(per_dept["MZ"]["source_file"]) == ["MZ/.DS_Store", "MZ/MZ_DIBAO_20250312 (1).csv"]
    assert list(per_dept[""]["source_file"]) == ["readme.txt"]
    assert on_next == {}
    refused = ledger[ledger["status"] == "refused"]
    assert sorted(refused["source_file"]) == sorted(frame["source_file"])
    row = refused[refused["source_file"] == "MZ/MZ_DIBAO_20250312 (1).csv"].iloc[0]
    assert (
        row["dept"] == "MZ" and row["dataset"] == "MZ_DIBAO" and "文件名不符合约定" in row["reason"]
    )


@pytest.fixture
def memory_root(landing_dir: Path) -> Iterator[str]:
    """A copy of landing_dir in fsspec's in-memory filesystem (removed afterwards)."""
    fs = fsspec.filesystem("memory")
    root = f"/landing-{uuid.uuid4().hex[:8]}"
    for path in landing_dir.rglob("*.*"):
        fs.pipe(f"{root}/{path.relative_to(landing_dir).as_posix()}", path.read_bytes())
    try:
        yield root
    finally:
        fs.rm(root, recursive=True)


def test_memory_filesystem(landing_dir: Path, memory_root: str) -> None:
    landing = open_landing(f"memory://{memory_root}")
    assert isinstance(landing, FsspecLanding)
    refs = landing.discover(DAY, CONTRACTS)
    assert {r.file_name: r.dept for r in refs} == expected_names(DAY)
    for ref in refs:
        assert ref.location == f"memory://{memory_root}/{ref.dept}/{ref.file_name}"
        assert landing.fetch(ref) == (landing_dir / ref.dept / ref.file_name).read_bytes()
        assert ref.size == (landing_dir / ref.dept / ref.file_name).stat().st_size


def test_fsspec_location_has_no_credentials(memory_root: str) -> None:
    # The memory filesystem takes user:password@ as part of the path: enough to see the
    # location that goes into the ledger stripped of it.
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/user:s3cret@{memory_root[1:]}/MZ/MZ_DIBAO_20250312.csv", b"x")
    try:
        refs = FsspecLanding(f"memory://user:s3cret@{memory_root[1:]}").discover(DAY, [DIBAO])
        assert [r.location for r in refs] == [
            f"memory://{memory_root[1:]}/MZ/MZ_DIBAO_20250312.csv"
        ]
    finally:
        fs.rm(f"/user:s3cret@{memory_root[1:]}", recursive=True)


# --- HTTP -----------------------------------------------------------------------------------------


class _Quiet(SimpleHTTPRequestHandler):
    """Serves a folder (GET and HEAD), without logging every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class _BrokenYB(_Quiet):
    """An internal error for everything under /YB/ (a department's share that is down)."""

    def send_head(self):  # type: ignore[no-untyped-def]
        if self.path.startswith("/YB/"):
            self.send_error(500)
            return None
        return super().send_head()


class _NoHead(_Quiet):
    """A server that does not allow HEAD."""

    def do_HEAD(self) -> None:
        self.send_error(405)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client closing a probe early is not the test's business


@contextmanager
def serve(folder: Path, handler: type[SimpleHTTPRequestHandler] = _Quiet) -> Iterator[str]:
    """A real HTTP server on a free local port serving `folder`; yields its base URL."""
    server = _Server(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_discovers_and_fetches_byte_identical(landing_dir: Path) -> None:
    with serve(landing_dir) as url:
        landing = open_landing(url + "/")
        assert isinstance(landing, HttpLanding)
        for exchange_date in (DAY, NEXT):
            refs = landing.discover(exchange_date, CONTRACTS)  # 404 for everything else
            assert {r.file_name: r.dept for r in refs} == expected_names(exchange_date)
            for ref in refs:
                assert ref.location == f"{url}/{ref.dept}/{ref.file_name}"
                assert landing.fetch(ref) == (landing_dir / ref.dept / ref.file_name).read_bytes()
        assert landing.discover(DAY - timedelta(days=1), CONTRACTS) == []


def test_http_server_error_raises(tmp_path: Path) -> None:
    (tmp_path / "MZ").mkdir()
    (tmp_path / "MZ" / "MZ_DIBAO_20250312.csv").write_bytes(b"a")
    with serve(tmp_path, _BrokenYB) as url:
        landing = HttpLanding(url)
        assert [r.file_name for r in landing.discover(DAY, [DIBAO])] == ["MZ_DIBAO_20250312.csv"]
        with pytest.raises(httpx.HTTPStatusError) as caught:
            landing.discover(DAY, [DIBAO, get_contract("YB_JIESUAN")])
        assert caught.value.response.status_code == 500
        ref = DeliveryRef("YB", "YB_JIESUAN", DAY, "YB_JIESUAN_20250312.csv", "")
        with pytest.raises(httpx.HTTPStatusError):
            landing.fetch(ref)


def test_http_fetch_of_a_vanished_file_raises(tmp_path: Path) -> None:
    (tmp_path / "MZ").mkdir()
    path = tmp_path / "MZ" / "MZ_DIBAO_20250312.json"
    path.write_bytes(b"[]")
    with serve(tmp_path) as url:
        landing = HttpLanding(url)
        [ref] = landing.discover(DAY, [DIBAO])
        path.unlink()
        with pytest.raises(httpx.HTTPStatusError) as caught:
            landing.fetch(ref)
        assert caught.value.response.status_code == 404


def test_http_without_head_is_probed_with_get(landing_dir: Path) -> None:
    with serve(landing_dir, _NoHead) as url:
        refs = HttpLanding(url).discover(DAY, CONTRACTS)
    assert {r.file_name: r.dept for r in refs} == expected_names(DAY)


def test_http_location_has_no_credentials(landing_dir: Path) -> None:
    with serve(landing_dir) as url:
        secret_url = url.replace("http://", "http://clerk:s3cret@")
        landing = open_landing(secret_url)
        refs = landing.discover(DAY, [DIBAO])
        assert [r.location for r in refs] == [f"{url}/MZ/MZ_DIBAO_20250312.csv"]
        assert landing.fetch(refs[0]) == (landing_dir / "MZ" / "MZ_DIBAO_20250312.csv").read_bytes()


# --- department database views --------------------------------------------------------------------

ID_A = valid_id("61032719900101123")  # ends in X
ID_B = valid_id("61032719851224002")
ID_C = valid_id("61032720100615004")
HEAD = valid_id("61032719750203001")  # all digits: kept as a BIGINT by the department

# A department's export, in its own Chinese column names, with the exchange date per row.
DIBAO_ROWS = [
    (DAY, HEAD, "王𠮷", ID_A, "农村低保", "350.50", date(2024, 1, 1), None, "在保"),
    (DAY, HEAD, "李䶮", ID_B, "农村低保", "1234.05", date(2023, 6, 30), date(2025, 3, 1), "退出"),
    (DAY, ID_C, "张堃", ID_C, "农村特困", "0.10", date(2022, 2, 28), None, "在保"),
    (NEXT, HEAD, "王𠮷", ID_A, "农村低保", "360.00", date(2024, 1, 1), None, "在保"),
]
# header as the view shows it -> type in the department's table
DIBAO_COLUMNS = {
    "交换日期": "DATE",
    "户主身份证号": "BIGINT",
    "成员姓名": "VARCHAR(20)",
    "成员身份证号": "VARCHAR(18)",
    "保障类别": "VARCHAR(10)",
    "月保障金（元）": "NUMERIC(10,2)",
    "纳入日期": "DATE",
    "退出日期": "DATE",
    "状态": "VARCHAR(4)",
}


@pytest.fixture
def department_db(warehouse_url: str) -> str:
    """A department database (SQLite file, or a throwaway PostgreSQL schema) with two views.

    v_dibao shows the department's export under its Chinese headers; v_ga_events renames a
    table's columns to the contract's canonical names. Yields the URL as configured.
    """
    return make_department_db(warehouse_url)


def make_department_db(warehouse_url: str) -> str:
    """Create the department's tables and views in an empty database; its URL as configured."""
    keys = {f"c{i}": header for i, header in enumerate(DIBAO_COLUMNS)}
    table = ", ".join(f"{k} {DIBAO_COLUMNS[h]}" for k, h in keys.items())
    shown = ", ".join(f'{k} AS "{h}"' for k, h in keys.items())
    engine = create_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE dibao_export ({table})"))
        conn.execute(
            text(f"INSERT INTO dibao_export VALUES ({', '.join(':' + k for k in keys)})"),
            [dict(zip(keys, (r[0], int(r[1]), *r[2:]), strict=True)) for r in DIBAO_ROWS],
        )
        conn.execute(text(f"CREATE VIEW v_dibao AS SELECT {shown} FROM dibao_export"))
        conn.execute(
            text(
                "CREATE TABLE ga_raw (编号 VARCHAR(10), 姓名 VARCHAR(20), "
                "证件号 VARCHAR(18), 类型 VARCHAR(10), 日期 DATE)"
            )
        )
        conn.execute(
            text("INSERT INTO ga_raw VALUES (:e, :n, :i, :t, :d)"),
            [{"e": "E1", "n": "王𠮷", "i": ID_A, "t": "死亡", "d": DAY}],
        )
        conn.execute(
            text(
                "CREATE VIEW v_ga_events AS SELECT 编号 AS event_id, 姓名 AS name, "
                "证件号 AS id_number, 类型 AS change_type, 日期 AS change_date FROM ga_raw"
            )
        )
    engine.dispose()
    # as an operator configures it (the connector picks the driver); warehouse_url's fixture
    # drops the PostgreSQL schema afterwards
    return warehouse_url.replace("postgresql+psycopg://", "postgresql://", 1)


def dibao_query(order: str = "ASC") -> str:
    shown = ", ".join(f'"{c}"' for c in list(DIBAO_COLUMNS)[1:])
    return (
        f'SELECT {shown} FROM v_dibao WHERE "交换日期" = :exchange_date '
        f'ORDER BY "成员身份证号" {order}'
    )


GA_QUERY = (
    "SELECT event_id, name, id_number, change_type, change_date FROM v_ga_events "
    "WHERE change_date = :exchange_date"
)


def test_view_discovers_only_dates_with_rows(department_db: str) -> None:
    views = {"MZ_DIBAO": dibao_query(), "GA_BIANDONG": GA_QUERY}
    landing = open_landing("unused", sql_url=department_db, sql_views=views)
    assert isinstance(landing, SqlViewLanding)
    refs = landing.discover(DAY, CONTRACTS)
    assert [(r.dept, r.dataset, r.exchange_date, r.file_name) for r in refs] == [
        ("GA", "GA_BIANDONG", DAY, "GA_BIANDONG_20250312.json"),
        ("MZ", "MZ_DIBAO", DAY, "MZ_DIBAO_20250312.json"),
    ]
    # NEXT: only MZ has rows; a day with none: nothing was delivered
    assert [r.dataset for r in landing.discover(NEXT, CONTRACTS)] == ["MZ_DIBAO"]
    assert landing.discover(DAY + timedelta(days=5), CONTRACTS) == []
    assert landing.discover(DAY, [get_contract("XC_HU")]) == []  # no view configured


def test_view_fetch_is_deterministic_and_reads_back(department_db: str) -> None:
    ascending = SqlViewLanding(department_db, {"MZ_DIBAO": dibao_query()})
    [ref] = ascending.discover(DAY, [DIBAO])
    content = ascending.fetch(ref)
    assert ascending.fetch(ref) == content  # run twice
    descending = SqlViewLanding(department_db, {"MZ_DIBAO": dibao_query("DESC")})
    assert descending.fetch(ref) == content  # rows in another order, same bytes

    raw = read_delivery(content, ref.file_name, DIBAO, COMMON)
    assert raw.fmt == "json"
    assert raw.extra_columns == ()
    assert set(raw.missing_columns) == {"village_code", "head_name", "support_mode", "bank_account"}
    frame = raw.frame.sort_values("id_number").reset_index(drop=True)
    expected = sorted((r for r in DIBAO_ROWS if r[0] == DAY), key=lambda r: r[3])
    assert frame["id_number"].tolist() == [r[3] for r in expected]
    assert frame["head_id_number"].tolist() == [r[1] for r in expected]  # BIGINT: every digit
    assert frame["name"].tolist() == [r[2] for r in expected]
    # SQLite keeps NUMERIC as a float: the text may lose a trailing zero, never the value
    assert [Decimal(v) for v in frame["monthly_amount"]] == [Decimal(r[5]) for r in expected]
    if department_db.startswith("postgresql"):
        assert frame["monthly_amount"].tolist() == [r[5] for r in expected]
    assert frame["start_date"].tolist() == [r[6].isoformat() for r in expected]
    assert frame["end_date"].tolist() == [r[7].isoformat() if r[7] else pd.NA for r in expected]
    assert sorted(frame["source_row"].tolist()) == [1, 2, 3]


def test_view_with_canonical_column_names(department_db: str) -> None:
    contract = get_contract("GA_BIANDONG")
    landing = SqlViewLanding(department_db, {"GA_BIANDONG": GA_QUERY})
    [ref] = landing.discover(DAY, [contract])
    content = landing.fetch(ref)
    assert '"变动编号"' in content.decode()  # keyed by the Chinese headers, as a file would be
    raw = read_delivery(content, ref.file_name, contract, COMMON)
    assert raw.frame.drop(columns="source_row").to_dict("records") == [
        {
            "event_id": "E1",
            "name": "王𠮷",
            "id_number": ID_A,
            "change_type": "死亡",
            "change_date": DAY.isoformat(),
        }
    ]
    assert raw.missing_columns == ("reason",)


def test_view_location_has_no_password() -> None:
    # Only a server database has a password (SQLite URLs drop one): PostgreSQL, always in CI.
    with pg_schema_url() as server:
        _location_has_no_password(make_department_db(server))


def _location_has_no_password(department_db: str) -> None:
    url = make_url(department_db)
    # Trust authentication ignores a password it did not ask for: add one when the URL has none.
    password = url.password or "s3cret-for-the-test"
    with_password = url.set(password=password).render_as_string(hide_password=False)
    landing = SqlViewLanding(with_password, {"MZ_DIBAO": dibao_query()})
    [ref] = landing.discover(DAY, [DIBAO])
    assert password not in ref.location
    assert ref.location.endswith("#MZ_DIBAO")


def test_open_landing_picks_the_connector(tmp_path: Path) -> None:
    assert isinstance(open_landing("https://example.org/landing"), HttpLanding)
    assert isinstance(open_landing("http://127.0.0.1:1/landing"), HttpLanding)
    assert isinstance(open_landing(str(tmp_path)), FsspecLanding)
    assert isinstance(open_landing(f"file://{tmp_path}"), FsspecLanding)
    assert isinstance(open_landing("memory://landing"), FsspecLanding)
    views = {"MZ_DIBAO": "SELECT 1"}
    sql = open_landing(str(tmp_path), sql_url="sqlite://", sql_views=views)
    assert isinstance(sql, SqlViewLanding)
    # without views the database URL is not used
    assert isinstance(open_landing(str(tmp_path), sql_url="sqlite://"), FsspecLanding)
    with pytest.raises(ConfigurationError):
        open_landing(str(tmp_path), sql_views=views)


def test_the_night_starts_the_largest_intakes_first(landing_dir: Path) -> None:
    """A workbook weighs four times its bytes; a delivery listed without a size starts after
    the rest; the size is not part of what a delivery is (equal refs with or without it)."""
    from flows.nightly import intake_work

    refs = FsspecLanding(str(landing_dir)).discover(DAY, CONTRACTS)
    by_dataset = {r.dataset: [r] for r in refs}
    order = sorted(by_dataset, key=lambda ds: (-intake_work(by_dataset[ds]), ds))
    sizes = {r.dataset: r.size or 0 for r in refs}
    weighed = {ds: n * (4 if ds == "XC_HU" else 1) for ds, n in sizes.items()}
    assert order == sorted(weighed, key=lambda ds: -weighed[ds])

    def ref(dataset: str, name: str, size: int | None) -> DeliveryRef:
        return DeliveryRef("XC", dataset, DAY, name, f"landing/XC/{name}", size=size)

    roster = [ref("XC_REN", "XC_REN_20250312.xlsx", 10_000_000)]
    big_csv = [ref("RS_JIUYE", "RS_JIUYE_20250312.csv", 30_000_000)]
    unsized = [ref("MZ_DIBAO", "MZ_DIBAO_20250312.csv", None)]
    # a 10 MB workbook before a 30 MB CSV (40 against 30), an unlisted size after both
    assert intake_work(roster) > intake_work(big_csv) > intake_work(unsized) == 0
    assert intake_work([*roster, *big_csv]) == 70_000_000
    assert unsized[0] == DeliveryRef(
        "XC", "MZ_DIBAO", DAY, "MZ_DIBAO_20250312.csv", "landing/XC/MZ_DIBAO_20250312.csv", size=9
    )
