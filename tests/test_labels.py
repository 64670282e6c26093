"""Chinese for people, codes for programs (issue 14, item 3): every report (HTML and XLSX),
every published XLSX of a generated county (all consumers), every portal page a department and
the bureau can see, the CLI's night lines and ledger table, and the help of every CLI command
are scanned for the English status, severity, rule and reason codes of domain/labels.py and
for code-named headers; any one found where a person reads fails the test. Parquet and CSV
keep the codes (programs read them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import portal_county
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from rich.console import Console
from sqlalchemy import Engine
from test_reports import MARCH, W12, County, county, warehouse  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from cli.app import app, night_line, summary_table
from domain.labels import CODED_COLUMNS, KINDS, codes, column_label, header_of, label, sheet_name
from expectations.contract import load_contracts
from flows.nightly import NightResult
from tasks.alerts import AlertSummary
from tasks.intake import IntakeSummary
from tasks.reports import Period, build_report
from warehouse.publish import SHARED_TABLES, default_access, table_def

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


def english_codes() -> set[str]:
    """Every code a person must never read: statuses, severities, outcomes, and the rules
    written as English words (key_conflict, id_checksum, the contracts'
    row rules …; YB-01 is the rule's number)."""
    found: set[str] = set()
    # The audit log's actions and forms are plain English words (file, export, key …) that
    # English text may hold: the XLSX scan finds them as whole cells (code_cells) instead.
    for kind in set(KINDS) - {"audit_action", "personal"}:
        found |= {c for c in codes(kind) if re.fullmatch(r"[a-z][a-z0-9_]*", c)}
    # Risk types are codes whatever their case ("DQ"; "DQ-01" is a rule's number).
    return found | set(codes("risk"))


def codes_in(text: str) -> list[str]:
    return sorted(
        c for c in english_codes() if re.search(rf"(?<![A-Za-z0-9_-]){c}(?![A-Za-z0-9_-])", text)
    )


def visible_html(html: str) -> str:
    """The text a person sees: no <style>, no tags or attributes, no <code> (names for
    programs, such as the portal's list of a table's field names)."""
    html = re.sub(r"<(style|script|code)\b[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def xlsx_text(path: Path) -> str:
    book = openpyxl.load_workbook(path)
    cells = [
        str(c.value)
        for ws in book.worksheets
        for row in ws.iter_rows()
        for c in row
        if c.value is not None
    ]
    return " ".join([*book.sheetnames, *cells])


def test_the_mapping_is_generated_from_the_declarations() -> None:
    assert label("ledger", "loaded") == "已入库"
    assert label("alert_status", "open") == "待核实"
    assert label("alert_status", "confirmed") == "纳入监测"
    assert label("severity", "high") == "高"
    assert label("rule", "key_conflict") == "同一主键有多条内容不同的记录"
    assert label("rule", "YB-01").startswith("YB-01 ")
    assert label("freshness", "late") == "迟报"
    assert column_label("XC_REN", "id_number") == "证件号码"
    # every code has a Chinese label
    for kind in KINDS:
        for code, text in codes(kind).items():
            assert re.search(r"[\u4e00-\u9fff]", text), (kind, code, text)
    # the scanner finds what it must
    assert codes_in("交付 loaded 15；应报 late 3") == ["late", "loaded"]
    assert codes_in("规则 key_conflict") == ["key_conflict"]
    assert codes_in("YB-01 已入库 3") == []
    assert codes_in("GA-01 DQ：2 条") == ["DQ"] and codes_in("DQ-01 数据质量") == []


@pytest.mark.quick_sample("sqlite")
@pytest.mark.parametrize("which", ["2025-W11", "2025-W12", "2025-03"])
def test_reports_have_no_english_codes(
    warehouse: tuple[Engine, pd.DataFrame],  # noqa: F811
    which: str,
    tmp_path: Path,
) -> None:
    engine, _ = warehouse
    period = {"2025-W12": W12, "2025-03": MARCH}.get(which) or Period.parse_week(which)
    with engine.connect() as conn:
        files = build_report(conn, period, tmp_path)
    assert codes_in(visible_html(files.html.read_text("utf-8"))) == []
    assert codes_in(xlsx_text(files.xlsx)) == []


def _summary(status: str, reason: str | None = None) -> IntakeSummary:
    return IntakeSummary(
        delivery_id=f"MZ_DIBAO_20250316_{status}",
        dept="MZ",
        dataset="MZ_DIBAO",
        exchange_date=date(2025, 3, 16),
        source_file="MZ_DIBAO_20250316.csv",
        status=status,
        rows_in=10,
        rows_loaded=10 if status == "loaded" else 0,
        rows_rejected=0 if status == "loaded" else 10,
        duplicates=0,
        reason=reason,
    )


def test_cli_lines_have_no_english_codes() -> None:
    deliveries = [_summary(s) for s in ("loaded", "failed", "duplicate", "unchanged")]
    result = NightResult(
        exchange_date=date(2025, 3, 16),
        deliveries=deliveries,
        alerts=AlertSummary(
            as_of=date(2025, 3, 16),
            findings=3,
            open=3,
            new=1,
            reopened=0,
            resolved=1,
            closed=1,
            feedback=1,
            feedback_unknown=0,
            by_rule={"YB-01": 2, "ZJ-01": 1},
        ),
        freshness={"on_time": 8, "late": 3, "missing": 1, "failed": 1},
        publication_id="20250316T000000",
        reports=["周报_2025-W11"],
    )
    line = night_line(result)
    assert "已入库 1" in line and "迟报 3" in line and "缺报 1" in line
    console = Console(width=200, record=True, color_system=None)
    console.print(summary_table("交换台账", deliveries))
    table = console.export_text()
    assert "已入库" in table and "退回" in table
    assert codes_in(line) == [] and codes_in(table) == []


def test_report_command_speaks_chinese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    for name, value in {
        "DATASHARE_HOME": tmp_path,
        "DATASHARE_ENVIRONMENT": "test",
        "DATASHARE_LANDING": tmp_path,
        "DATASHARE_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'w.db'}",
    }.items():
        monkeypatch.setenv(name, str(value))
    runner = CliRunner()
    for args in (["report"], ["report", "--quarter", "2025-Q7"], ["report", "--week", "2025-W99"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        text = result.output
        assert "错误：" in text and "error" not in text.lower(), text
        assert re.search(r"[\u4e00-\u9fff]", text) and codes_in(text) == []
    helped = runner.invoke(app, ["report", "--help"]).output
    assert "季调度" in helped and "年度总结" in helped


def _commands() -> list[list[str]]:
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "datashare")
def test_every_help_is_chinese_without_codes(command: list[str]) -> None:
    text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    assert codes_in(text) == [], text
    # Click's own help line, every command's, the portal's included (cli/app.py)
    assert "显示本帮助并退出。" in text and "Show this message" not in text, text
    own = {"", "run", "report", "publish", "demo", "backfill", "serve", "datasets", "db"}
    if command and command[0] not in own:
        return  # the portal's commands (portal/commands.py) are scanned for codes only
    # Every line that describes something (not usage or Click's own --help line) is Chinese.
    described = [
        line
        for line in text.splitlines()
        if re.search(r"[a-z]{3,} [a-z]{3,}", line)
        and "Usage:" not in line
        and not re.match(r"│ (portal|users|tokens) ", line)  # the portal's, as listed
    ]
    assert [line for line in described if not re.search(r"[\u4e00-\u9fff]", line)] == []


@pytest.mark.parametrize(
    ("args", "chinese"),
    [
        (["run"], "缺少选项 --date。"),
        (["run", "--dat", "2025-03-12"], "没有选项 --dat"),
        (["run", "--date"], "选项 '--date' 需要一个值。"),
        (["bogus"], "没有命令 'bogus'。"),
        (["report", "--week", "2025-W11", "extra"], "多余的参数：extra。"),
    ],
)
def test_click_usage_errors_are_chinese(args: list[str], chinese: str) -> None:
    """Click's own usage errors, as an operator mistypes a command (cli/app.py)."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    text = result.output
    assert result.exit_code == 2 and chinese in text, text
    english = r"Missing|No such|requires an argument|unexpected extra|Invalid value"
    assert not re.search(english, text), text


def test_an_unlisted_click_error_is_shown_as_written() -> None:
    from cli.app import _click_error_in_chinese

    assert _click_error_in_chinese("Something Click never said.") == "Something Click never said."


# --- published files and portal pages of a generated county -------------------------------------

_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[a-z]{3,}")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# Columns whose text a person typed or a program named (a user name, a file, a digest): an
# English word there is not a code to translate.
_FREE = {"操作者", "文件名", "对象", "校验值（SHA-256）", "文件校验值（SHA-256）", "预警依据"}


def code_cells(path: Path) -> list[str]:
    """What a person reads in a published XLSX that is a code: an English status, severity,
    rule or reason code anywhere, a header or sheet name without Chinese, a cell that is an
    English identifier (id_number, key_conflict, loaded …)."""
    book = openpyxl.load_workbook(path)
    found: list[str] = []
    for ws in book.worksheets:
        if not _CJK.search(ws.title) or re.search(r"[A-Za-z]", ws.title):
            found.append(f"sheet {ws.title!r}")
        rows = list(ws.iter_rows(values_only=True))
        headers = [str(h) for h in rows[0]] if rows else []
        found += [f"header {h!r}" for h in headers if not _CJK.search(h)]
        for row in rows[1:]:
            for header, value in zip(headers, row, strict=False):
                if not isinstance(value, str) or header in _FREE:
                    continue
                found += [f"{header}: {c}" for c in codes_in(value)]
                if _IDENTIFIER.fullmatch(value):
                    found.append(f"{header}: {value}")
    book.close()
    return found


def test_the_scanners_find_what_they_look_for(tmp_path: Path) -> None:
    from warehouse.published import write_xlsx

    table = pa.table({"rule": ["key_conflict"], "column": ["id_number"], "n": [1]})
    write_xlsx(
        tmp_path / "x.xlsx",
        table,
        ["规则", "column", "数"],
        sheet="户信息 (roster",
        created=date(2025, 3, 16),
    )
    found = code_cells(tmp_path / "x.xlsx")
    assert "header 'column'" in found and "规则: key_conflict" in found
    assert "column: id_number" in found and any(f.startswith("sheet") for f in found)
    html = "<p>状态 open</p><table><td><code>id_number</code></td></table>"
    assert codes_in(visible_html(html)) == ["open"] and "id_number" not in visible_html(html)


def test_every_published_column_and_title_has_a_chinese_label() -> None:
    """No silent fallback: a column without a Chinese label (contract header or domain.labels)
    fails here, as does a title that makes no clean sheet name."""
    names = [*SHARED_TABLES, *load_contracts()]
    sheets = [sheet_name(table_def(n).title) for n in names]
    for name, sheet in zip(names, sheets, strict=True):
        tdef = table_def(name)
        assert [c.name for c in tdef.columns if not _CJK.search(c.label)] == [], name
        assert len(sheet) <= 31 and _CJK.search(sheet) and not re.search(r"[A-Za-z(]", sheet)
        assert not sheet.endswith(("（", " ")), sheet
    assert len(set(sheets)) == len(sheets)
    assert (
        sheet_name("户信息 (roster households, export of the national monitoring system)")
        == "户信息"
    )
    assert sheet_name("户籍变动 (死亡、迁移、出生)") == "户籍变动（死亡、迁移、出生）"
    for table, columns in CODED_COLUMNS.items():
        assert set(columns) <= set(table_def(table).names), table
    # every row rule of every contract reads as a sentence
    for contract in load_contracts().values():
        for rule in contract.row_rules:
            assert _CJK.search(label("rule", rule.id)), rule.id


def test_town_summary_xlsx_has_numbers_marks_and_percentages(tmp_path: Path) -> None:
    """A count is a numeric cell, a suppressed one the text "<5" set apart and explained below
    the table, a rate a percentage; Parquet and CSV keep the documented "<5" text."""
    from tasks.publication import town_summary
    from warehouse.publish import to_arrow
    from warehouse.publish.people import for_people
    from warehouse.published import write_csv_bom, write_xlsx

    households = pd.DataFrame(
        {
            "household_id": [f"H{i}" for i in range(12)],
            "town": ["城关镇"] * 10 + ["龙泉镇"] * 2,
            "monitoring_category": ["边缘易致贫户"] * 9 + [None] + ["脱贫不稳定户"] * 2,
            "risk_eliminated": [True] * 6 + [False] * 6,
        }
    )
    persons = pd.DataFrame(
        {
            "household_id": [f"H{i}" for i in range(12) for _ in range(2)],
            "in_roster": True,
            "deceased": [False, True] * 12,
        }
    )
    alerts = pd.DataFrame({"town": ["城关镇"] * 6, "risk_type": ["因病"] * 6, "status": "open"})
    tdef = table_def("town_summary")
    arrow = to_arrow(
        town_summary(households, persons, alerts), [(c, "plain") for c in tdef.columns]
    )
    people = for_people("town_summary", arrow)
    labels = [c.label for c in tdef.columns]
    path = tmp_path / "town_summary.xlsx"
    write_xlsx(
        path,
        people.data,
        labels,
        sheet=people.sheet,
        created=date(2025, 3, 16),
        counts=people.counts,
        note=people.note,
    )
    ws = openpyxl.load_workbook(path).active
    rows = {
        r[0].value: {h: c for h, c in zip(labels, r, strict=True)}
        for r in ws.iter_rows(min_row=2, max_row=3)
    }
    town = rows["城关镇"]
    assert town["监测户数"].value == 9 and town["监测户数"].data_type == "n"
    assert town["未处置预警数（因病）"].value == 6 and town["未处置预警数（因病）"].data_type == "n"
    rate = town["风险消除率（户）"]
    assert (
        rate.data_type == "n" and rate.value == pytest.approx(0.6667) and "%" in rate.number_format
    )
    small = rows["龙泉镇"]["监测户数"]
    assert small.value == "<5" and small.font.i and small.number_format != "@"
    assert rows["龙泉镇"]["风险消除率（户）"].value is None
    notes = [c.value for c in ws["A"] if isinstance(c.value, str) and c.value.startswith("注")]
    assert (
        len(notes) == 1 and "<5" in notes[0] and ws.max_row == 5
    )  # 2 towns, a blank row, the note
    # no number stored as text anywhere in the sheet
    for row in ws.iter_rows(min_row=2, max_row=3):
        assert [c.value for c in row if isinstance(c.value, str) and c.value.isdigit()] == []
    # Parquet and CSV keep the documented text form
    assert arrow.column("monitored_households").to_pylist() == ["9", "<5"]
    write_csv_bom(tmp_path / "t.csv", arrow, labels)
    assert "<5" in (tmp_path / "t.csv").read_text("utf-8-sig")


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: None
) -> Iterator[portal_county.PortalCounty]:
    """Three real nights of a 60-household county (SQLite), published, with portal accounts."""
    built = portal_county.sqlite_copy(tmp_path_factory, "labels")
    yield built
    built.engine.dispose()


def test_every_published_xlsx_speaks_chinese(generated: portal_county.PortalCounty) -> None:
    """Every XLSX of every consumer: Chinese sheet name and headers, coded values as labels,
    page setup kept; the Parquet beside it keeps the codes."""
    root = Path(str(generated.settings.publish_dir))
    books = sorted(p for p in root.glob("current/*/*.xlsx"))
    consumers = {p.parent.name for p in books}
    assert consumers == set(default_access().consumers), consumers
    found = {str(p.relative_to(root / "current")): code_cells(p) for p in books}
    assert {k: v for k, v in found.items() if v} == {}
    for path in books:
        ws = openpyxl.load_workbook(path).active
        assert (
            ws.page_setup.orientation == "landscape" and ws.sheet_properties.pageSetUpPr.fitToPage
        )
        assert ws.print_title_rows == "$1:$1" and ws.freeze_panes == "A2", path
    # what the scan would have caught: the codes are there, in the Parquet
    xc = root / "current" / "XC"
    rejects = pq.read_table(xc / "rejects.parquet").to_pandas()
    alerts = pq.read_table(xc / "alerts.parquet").to_pandas()
    ledger = pq.read_table(xc / "deliveries.parquet").to_pandas()
    assert "id_number" in set(rejects["column"]) and "key_conflict" in set(rejects["rule"])
    assert "open" in set(alerts["status"]) and "loaded" in set(ledger["status"])
    sheet = openpyxl.load_workbook(xc / "rejects.xlsx").active
    shown = {(r[4], r[5]) for r in sheet.iter_rows(min_row=2, values_only=True)}
    wanted = {
        (header_of(d, c), label("rule", r))
        for d, c, r in rejects[["dataset", "column", "rule"]].itertuples(index=False)
    }
    assert shown == wanted
    assert openpyxl.load_workbook(xc / "XC_HU.xlsx").active.title == "户信息"


_SNAKE = re.compile(r"(?<![A-Za-z0-9_.:/-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![A-Za-z0-9_])")


def names_in(url: str, html: str) -> list[str]:
    """Code names (id_number, head_id_number …) in a page's visible text; the API's own page
    documents parameter names for programs and is not read for them."""
    return [] if url.startswith("/api/") else _SNAKE.findall(visible_html(html))


def _pages(web: Any, bureau: bool) -> Iterator[tuple[str, str]]:
    """Every page a logged-in person reaches from the menu, and the pages those link to (the
    tables, the data-quality pages, the alerts), with their filters' choices."""
    start = ["/night", "/data", "/problems", "/alerts", "/api/docs"]
    if bureau:
        start += ["/bureau", "/reports", "/lookup"]
    seen: set[str] = set()
    per_kind: dict[str, int] = {}
    queue = list(start)
    while queue:
        url = queue.pop(0)
        kind = url.rsplit("/", 1)[0] if url.count("/") > 1 else url
        if url in seen or per_kind.get(kind, 0) >= 8:  # a few of each kind of page
            continue
        seen.add(url)
        per_kind[kind] = per_kind.get(kind, 0) + 1
        r = web.get(url)
        assert r.status_code == 200, url
        yield url, r.text
        queue += re.findall(r'href="(/(?:data|quality|alerts)/[^"?#/]+)"', r.text)


def test_every_portal_page_speaks_chinese(
    generated: portal_county.PortalCounty, tmp_path: Path
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
    from portal.app import create_app

    app = create_app(generated.config())
    checked: dict[str, int] = {}
    for username, (_, role, _) in portal_county.ACCOUNTS.items():
        web = portal_county.login(app, username)
        pages = list(_pages(web, role == "bureau"))
        if role == "bureau":
            profile = pq.read_table(
                Path(str(generated.settings.publish_dir)) / "XC" / "person_profile.parquet"
            ).to_pandas()
            csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/lookup").text)
            assert csrf
            found = web.post(
                "/lookup", data={"id_number": profile["id_number"].iloc[0], "csrf": csrf.group(1)}
            )
            pages.append(("/lookup (POST)", found.text))
        bad = {url: [*codes_in(visible_html(html)), *names_in(url, html)] for url, html in pages}
        assert {u: c for u, c in bad.items() if c} == {}, username
        checked[username] = len(pages)
        kinds = {re.sub(r"/[^/]+$", "/*", u) for u, _ in pages}
        assert {"/quality/*", "/data/*"} <= kinds, (username, kinds)
        if role == "bureau":
            assert "/alerts/*" in kinds
    assert all(n > 5 for n in checked.values()), checked
