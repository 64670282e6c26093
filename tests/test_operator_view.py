"""The operator's view (issue 14, item 5): what a person sees of the runs in Prefect and in the
CLI. Real runs through the `datashare` command (in process) under a real Prefect API, on a
synthetic county; the Prefect API is then read back as the UI reads it (run names, final state
messages, tags, logs, artifacts), and the GX Data Docs are parsed for remote assets.
Dates are fixed exchange dates of 2025; "today" is pinned with DATASHARE_TODAY.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from rich.console import Console
from test_labels import codes_in
from typer.testing import CliRunner

from cli.app import app, datasets_table, demo_home
from datashare.settings import Settings
from datashare.synth import build_county, write_night
from domain.labels import table_title
from expectations.contract import load_contracts
from flows.nightly import NightResult, RunMarks, night_marks
from tasks.alerts import AlertSummary
from tasks.freshness import load_calendar
from tasks.gx_offline import offline_page
from tasks.intake import IntakeSummary
from warehouse.db import connect
from warehouse.tables_ops import night_landing_issues

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

NIGHT = date(2025, 3, 19)  # a Wednesday: MZ_DIBAO and RS_JIUYE are due, besides XC's daily files
LATER = date(2025, 3, 20)  # a Thursday, taken in by a backfill
ID_OR_PHONE = re.compile(r"(?<!\d)(\d{17}[\dXx]|1\d{10})(?!\d)")


# --- pure parts -----------------------------------------------------------------------------------


def _summary(status: str, dept: str = "MZ") -> IntakeSummary:
    return IntakeSummary("id", dept, f"{dept}_X", NIGHT, "f.csv", status, 10, 10, 0, 0, None, None)


def _result(
    freshness: dict[str, int], statuses: list[str], issues: int, depts: tuple[str, ...]
) -> NightResult:
    alerts = AlertSummary(NIGHT, 0, 0, 0, 0, 0, 0, 0, 0, {})
    return NightResult(
        NIGHT,
        [_summary(s) for s in statuses],
        alerts,
        freshness,
        "p",
        [],
        [],
        issues,
        depts,
    )


@pytest.mark.parametrize(
    ("freshness", "statuses", "issues", "depts", "message", "tags"),
    [
        ({"on_time": 4}, ["loaded", "loaded"], 0, (), "已完成：全部正常，2 个交付入库", ()),
        (
            {"on_time": 2, "missing": 3},
            ["loaded", "failed"],
            1,
            ("MZ", "RS"),
            "已完成：2 个部门未报送（3 个数据集缺报），2 个文件被拒收",
            ("missing-delivery", "refused-delivery"),
        ),
        (
            {"late": 1},
            ["loaded"],
            0,
            (),
            "已完成：1 个数据集迟报",
            ("late-delivery",),
        ),
    ],
)
def test_night_marks_say_it_in_counts(
    freshness: dict[str, int],
    statuses: list[str],
    issues: int,
    depts: tuple[str, ...],
    message: str,
    tags: tuple[str, ...],
) -> None:
    marks = night_marks([_result(freshness, statuses, issues, depts)])
    assert marks == RunMarks(message, tags)


def test_backfill_marks_add_up_the_nights() -> None:
    one = _result({"missing": 1}, ["loaded"], 0, ("RS",))
    two = _result({"missing": 2}, ["failed"], 0, ("RS", "MZ"))
    marks = night_marks([one, two], lead="已完成补跑 2 夜")
    assert marks.message == "已完成补跑 2 夜：2 个部门未报送（3 个数据集缺报），1 个文件被拒收"


def test_offline_page_drops_remote_assets_and_loads_local_ones() -> None:
    page = (
        "<html><head><title>x</title>\n"
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/b.css"/>\n'
        '<script src="https://code.jquery.com/jquery.js" integrity="x"></script>\n'
        "<style>a{}</style></head><body><script>$(document).ready(function(){})</script>"
        '<a href="https://greatexpectations.io">GX</a>'
        '<img class="x" src="https://assets.example/logo-long.png?d=1&dataContextId=9"/>'
        '<link rel="icon" href="../static/images/favicon.ico">'
        "</body></html>"
    )
    rewritten = offline_page(page, "../..")
    assert remote_assets(rewritten) == []
    assert '<script src="../../static/scripts/datashare_offline.js"' in rewritten
    assert 'src="../../static/images/logo-long.png"' in rewritten
    assert "dataContextId" not in rewritten
    assert 'href="../../static/images/favicon.ico"' in rewritten  # GX's depth, corrected
    assert rewritten.index("datashare_offline.js") < rewritten.index("$(document)")
    assert offline_page(rewritten, "../..") == rewritten  # once only
    assert "https://greatexpectations.io" in rewritten  # a link, not an asset


class _Assets(HTMLParser):
    """Every asset reference of a page: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.refs.append(value)


def asset_refs(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.refs


def remote_assets(html: str) -> list[str]:
    return [r for r in asset_refs(html) if re.match(r"(https?:)?//", r, re.I)]


# --- the CLI --------------------------------------------------------------------------------------


def test_datasets_lists_every_contract_with_its_calendar() -> None:
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "数据集约定（16 个）" in result.output
    contracts = load_contracts()
    # The rows, at a width where nothing wraps (the CLI's console takes the terminal's width).
    wide = Console(width=250, file=io.StringIO())
    wide.print(datasets_table(contracts, load_calendar()))
    lines = wide.file.getvalue().splitlines()
    for name, contract in contracts.items():
        [line] = [line for line in lines if re.search(rf"\b{name}\b", line)]
        assert table_title(contract.title) in line and contract.dept in line
        assert contract.format.upper() in line
    calendar = load_calendar()
    table = datasets_table(contracts, calendar)
    due = dict(zip(table.columns[0]._cells, table.columns[4]._cells, strict=True))
    assert due["XC_HU"] == "每天" and due["MZ_DIBAO"] == "每周三"
    assert due["YB_CANBAO"] == "每周一" and due["YB_JIESUAN"] == "按需报送"
    assert codes_in(result.output) == []


def test_demo_home_follows_datashare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATASHARE_HOME", raising=False)
    assert demo_home(None) == {"home": Path("var/demo")}
    assert demo_home(tmp_path / "given") == {"home": tmp_path / "given"}
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "env-home"))
    assert demo_home(None) == {}
    assert Settings(**demo_home(None), environment="demo").home == tmp_path / "env-home"


# --- real runs ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: None) -> Iterator[Path]:
    """A DATASHARE_HOME for runs through the CLI in this process (Prefect's own variables, which
    the CLI sets if unset, are set here so that they are restored afterwards)."""
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "DATASHARE_HOME": str(home),
        "DATASHARE_ENVIRONMENT": "test",
        "DATASHARE_SECRET": "test-secret-not-for-production-0123456789",
        "DATASHARE_TODAY": "2025-03-25",
        "DATASHARE_BUILD_DOCS": "true",
        "DATASHARE_MAX_WORKERS": "2",
        "DATASHARE_WAREHOUSE_URL": f"sqlite:///{home / 'warehouse.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "PREFECT_HOME",
        "PREFECT_SERVER_ANALYTICS_ENABLED",
        "PREFECT_LOGGING_LEVEL",
        "PREFECT_LOGGING_SERVER_LEVEL",
        "PREFECT_SERVER_LOGGING_LEVEL",
        "PREFECT_LOGGING_LOG_PRINTS",
        "PREFECT_CLI_PROMPT",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL",
        "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    ):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # recorded as unset: removed again afterwards
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
    yield home


def _flow_run(name: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert runs, f"no flow run named {name!r}"
    return runs[0]


def _logs(flow_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send what is queued, and wait for it
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )

    def readable(data: Any) -> str:  # a table artifact's data is JSON with \\u escapes
        try:
            return json.dumps(json.loads(data), ensure_ascii=False)
        except (TypeError, ValueError):
            return str(data)

    return {a.key: readable(a.data) for a in found if a.key}


@pytest.mark.slow  # ~2 min on a loaded 2-core machine: a night with Data Docs, then a backfill
def test_a_night_and_a_backfill_as_the_operator_sees_them(home: Path) -> None:
    from sqlalchemy import text

    county = build_county(5, 24)
    landing = home / "landing"
    write_night(county, landing, NIGHT, defects=False)
    [rs_file] = landing.rglob(f"RS_JIUYE_{NIGHT:%Y%m%d}*")
    rs_file.unlink()  # RS does not deliver: missing
    (landing / "MZ" / f"MZ_DIBAO_{NIGHT:%Y%m%d} (1).csv").write_bytes(b"x")  # refused

    run = CliRunner().invoke(app, ["run", "--date", NIGHT.isoformat()], env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    # progress lines, as `demo` shows them, before the night's table
    for stage in (
        "发现交付",
        "接收 MZ MZ_DIBAO",
        "合并入历史",
        "预警：",
        "应报交付",
        "发布 ",
        "报告：",
    ):
        assert stage in run.output, (stage, run.output)
    assert run.output.index("接收 MZ MZ_DIBAO") < run.output.index("交换台账")
    assert codes_in(run.output) == [], run.output

    # the run: named by kind and date, its message in counts, its tags
    engine = connect(os.environ["DATASHARE_WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            judged = conn.execute(
                text("select dept, state from freshness where exchange_date = :d"), {"d": NIGHT}
            ).all()
            refused = sum(len(v) for v in night_landing_issues(conn, NIGHT).values())
            refused += conn.execute(
                text(
                    "select count(*) from deliveries where exchange_date = :d and status = 'failed'"
                ),
                {"d": NIGHT},
            ).scalar_one()
    finally:
        engine.dispose()
    # judged against the real clock, a 2025 night is over: what came in is late, RS is missing
    assert [d for d, state in judged if state == "missing"] == ["RS"] and refused == 1
    late = sum(state == "late" for _, state in judged)
    flow_run = _flow_run(f"nightly {NIGHT}")
    assert flow_run.state.is_completed()
    assert flow_run.state.message == (
        f"已完成：1 个部门未报送（1 个数据集缺报），1 个文件被拒收，{late} 个数据集迟报"
    )
    assert {"missing-delivery", "refused-delivery", "late-delivery"} <= set(flow_run.tags)
    assert "report-failed" not in flow_run.tags

    # one progress line per stage in the run's log, and no personal data in any line
    logs = _logs(flow_run.id)
    for stage in ("发现交付", "接收 XC XC_HU", "接收 MZ MZ_DIBAO", "合并入历史", "预警：", "发布 "):
        assert sum(line.startswith(stage) or stage in line[:20] for line in logs) >= 1, logs
    assert [line for line in logs if ID_OR_PHONE.search(line)] == []

    # artifacts: Chinese for people, and every link resolves
    artifacts = _artifacts(flow_run.id)
    day = f"{NIGHT:%Y%m%d}"
    for key in (f"deliveries-{day}", f"freshness-{day}", f"alerts-{day}"):
        assert codes_in(artifacts[key]) == [], artifacts[key]
    assert "缺报" in artifacts[f"freshness-{day}"]
    links = re.findall(r"\]\((file://[^)]+)\)", artifacts[f"links-{day}"])
    assert len(links) >= 2, artifacts[f"links-{day}"]
    paths = [Path(url2pathname(urlparse(u).path)) for u in links]
    assert all(p.is_absolute() and p.exists() for p in paths), links
    [docs_index] = [p for p in paths if p.name == "index.html"]

    # GX Data Docs: no asset from the internet, every local asset there
    pages = sorted(docs_index.parent.rglob("*.html"))
    assert len(pages) > 2
    for page in pages:
        html = page.read_text("utf-8")
        assert remote_assets(html) == [], (page, remote_assets(html))
        for ref in asset_refs(html):
            if not ref.startswith("data:"):
                assert (page.parent / ref.split("?")[0]).resolve().exists(), (page, ref)
        assert "datashare_offline.js" in html, page
        assert ID_OR_PHONE.search(re.sub(r"<[^>]+>", " ", html)) is None, page

    # a backfill of the next night: progress, and its run named and marked
    write_night(county, landing, LATER, defects=False)
    backfill = CliRunner().invoke(
        app,
        ["backfill", "--from", LATER.isoformat(), "--to", LATER.isoformat()],
        env={"COLUMNS": "200"},
    )
    assert backfill.exit_code == 0, backfill.output
    assert "补跑第 1/1 夜" in backfill.output and "接收 XC XC_HU" in backfill.output
    assert "未接收" in backfill.output and codes_in(backfill.output) == []
    backfill_run = _flow_run(f"backfill {LATER}..{LATER}")
    assert backfill_run.state.is_completed()
    assert backfill_run.state.message.startswith("已完成补跑 1 夜：")
    plan = json.dumps(_artifacts(backfill_run.id), ensure_ascii=False)
    assert "未接收" in plan and codes_in(plan) == []
