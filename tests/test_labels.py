"""Chinese for people, codes for programs (issue 14, item 3): every report (HTML and XLSX),
the CLI's night lines and ledger table, and the help of every CLI command are scanned for the
English status, severity and rule codes of domain/labels.py; any one found where a person
reads fails the test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
import typer
from rich.console import Console
from sqlalchemy import Engine
from test_reports import MARCH, W12, County, county, warehouse  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from cli.app import app, night_line, summary_table
from domain.labels import codes, column_label, label
from flows.nightly import NightResult
from tasks.alerts import AlertSummary
from tasks.intake import IntakeSummary
from tasks.reports import Period, build_report

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


def english_codes() -> set[str]:
    """Every code a person must never read: statuses, severities, outcomes, and the rules
    written as English words (key_conflict, id_checksum …; YB-01 is the rule's number)."""
    found: set[str] = set()
    for kind in ("ledger", "freshness", "alert_status", "severity", "outcome", "rule"):
        found |= {c for c in codes(kind) if re.fullmatch(r"[a-z][a-z0-9_]*", c)}  # type: ignore[arg-type]
    return found


def codes_in(text: str) -> list[str]:
    return sorted(
        c for c in english_codes() if re.search(rf"(?<![A-Za-z0-9_-]){c}(?![A-Za-z0-9_-])", text)
    )


def visible_html(html: str) -> str:
    """The text a person sees: no <style>, no tags or attributes."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
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
    for kind in ("ledger", "freshness", "alert_status", "severity", "outcome", "rule"):
        for code, text in codes(kind).items():  # type: ignore[arg-type]
            assert re.search(r"[\u4e00-\u9fff]", text), (kind, code, text)
    # the scanner finds what it must
    assert codes_in("交付 loaded 15；应报 late 3") == ["late", "loaded"]
    assert codes_in("规则 key_conflict") == ["key_conflict"]
    assert codes_in("YB-01 已入库 3") == []


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
    own = {"", "run", "report", "publish", "demo", "backfill", "serve", "datasets", "db"}
    if command and command[0] not in own:
        return  # the portal's commands (portal/commands.py) are scanned for codes only
    # Every line that describes something (not usage or Click's own --help line) is Chinese.
    described = [
        line
        for line in text.splitlines()
        if re.search(r"[a-z]{3,} [a-z]{3,}", line)
        and "Usage:" not in line
        and "Show this message and exit" not in line
        and not re.match(r"│ (portal|users|tokens) ", line)  # the portal's, as listed
    ]
    assert [line for line in described if not re.search(r"[\u4e00-\u9fff]", line)] == []
