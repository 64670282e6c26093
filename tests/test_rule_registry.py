"""The alert rule registry (domain/alert_rules.py): one declaration per rule, read by
evaluation, parameters, reports and town_summary; and a 13th rule added as docs/alerts.md
walks through it (one declaration + one function), end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine
from test_alerts import PARAMS, D, born, ga_death, home, load, monitored, pid, roster

from datashare.errors import ConfigurationError
from domain import alert_rules
from domain.alert_rules import Param, Rule, declared_rules, extra_rule, function_of
from tasks.alerts import (
    RuleInput,
    alerts_frame,
    evaluate_rules,
    household_findings,
    load_rule_params,
    raise_alerts,
    sources,
)
from warehouse.db import connect, upgrade

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseConnection.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

ROOT = Path(__file__).resolve().parent.parent

# --- the walk-through rule (docs/alerts.md, "Adding a rule") -------------------------------------

NO_LABOUR = Rule(
    "LD-01",
    "缺劳动力",
    "household",
    ("XC", "RS"),
    ("medium",),
    "在册户有多名在世成员但无劳动力",
    (Param("no_labour_min_members", 2, "LD-01: households with at least this many members"),),
    summary_column="labour",
    summary_position=10,
)


def no_labour(inp: RuleInput) -> pd.DataFrame:
    """LD-01: a roster household with at least `no_labour_min_members` active members and no
    labour member, not already monitored for 缺劳动力."""
    facts = inp.facts
    active = facts.members.loc[facts.members["active"]]
    g = active.groupby("household_id")
    per = pd.DataFrame({"members": g.size(), "labour": g["labour"].sum()}).reset_index()
    hit = per.loc[
        (per["members"] >= inp.params.value("no_labour_min_members"))
        & (per["labour"] == 0)
        & ~facts.monitored_for(per["household_id"], inp.rule.risk_type)
    ]
    evidence = (
        "户内在册在世成员"
        + hit["members"].astype(str)
        + "人，无劳动力；"
        + hit["household_id"].map(sources(active, "household_id"))
    )
    found = hit.assign(severity="medium", evidence=evidence)
    return household_findings(facts, found[["household_id", "severity", "evidence"]], inp.rule)


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    eng = connect(warehouse_url)
    upgrade(eng)
    yield eng
    eng.dispose()


# --- the registry ------------------------------------------------------------------------------


def test_every_declared_rule_has_its_function_and_the_twelve_of_rules_md_are_declared() -> None:
    ids = [r.rule_id for r in declared_rules()]
    assert ids == [
        "YB-01",
        "ZJ-01",
        "JT-01",
        "CL-01",
        "RS-01",
        "SL-01",
        "NY-01",
        "INC-01",
        "MZ-01",
        "GA-01",
        "GA-02",
        "DQ-01",
    ]
    for declared in declared_rules():
        assert callable(function_of(declared.rule_id))
        assert declared.pushed_to[0] == "XC"
        assert set(declared.severities) <= {"high", "medium", "low"}


def test_reports_and_town_summary_read_the_declarations() -> None:
    from tasks.reports import RULES
    from warehouse.publish import RISK_COLUMNS, table_def

    assert {r.rule_id: (r.risk_type, r.unit) for r in declared_rules()} == RULES
    assert RULES["YB-01"] == ("因病", "户") and RULES["JT-01"] == ("因学", "人")
    risks = [r for r in declared_rules() if r.is_risk]
    assert set(RISK_COLUMNS) == {r.risk_type for r in risks}
    # publishing.md's column order (town_summary), not rules.md's
    assert [c.name for c in table_def("town_summary").columns][7:] == [
        "open_alerts_illness",
        "open_alerts_education",
        "open_alerts_disability",
        "open_alerts_housing",
        "open_alerts_water",
        "open_alerts_employment",
        "open_alerts_industry",
        "open_alerts_income",
        "open_alerts_assistance",
    ]


def test_findings_carry_what_their_rule_declares(engine: Engine) -> None:
    dead = pid(born(50))
    data = roster(home("H1", members=[(dead, "配偶")]), home("H2", income_per_capita=10.0))
    load(engine, D, {**data, "GA_BIANDONG": [ga_death(dead, D - timedelta(days=5))]})
    with engine.connect() as conn:
        found = evaluate_rules(conn, D, PARAMS)
    # a household rule, a person rule, and one that adds departments (GA's other name)
    assert set(found["rule_id"]) == {"INC-01", "GA-02", "DQ-01"}
    for rule_id, rows in found.groupby("rule_id"):
        declared = alert_rules.rule(str(rule_id))
        assert set(rows["risk_type"]) == {declared.risk_type}
        assert set(rows["subject_type"]) == {declared.subject}
        assert set(rows["severity"]) <= set(declared.severities)
        pushed = {tuple(p.split(",")) for p in rows["pushed_to"]}
        if declared.pushed_to_varies:
            assert all(p[: len(declared.pushed_to)] == declared.pushed_to for p in pushed)
        else:
            assert pushed == {declared.pushed_to}
    assert found.loc[found["rule_id"] == "DQ-01", "pushed_to"].tolist() == ["XC,GA"]


def test_a_declared_rule_without_a_function_stops_the_evaluation(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = Rule("XX-01", "因灾", "household", ("XC",), ("low",), "没有函数的规则")
    monkeypatch.setattr(alert_rules, "_declared", [*declared_rules(), orphan])
    load(engine, D, roster(home("H1")))
    with engine.connect() as conn, pytest.raises(LookupError, match="XX-01"):
        evaluate_rules(conn, D, PARAMS)


def test_findings_outside_the_declaration_stop_the_evaluation(engine: Engine) -> None:
    loud = replace(NO_LABOUR, rule_id="XX-02", severities=("low",))  # gives medium
    load(engine, D, roster(home("H1", head=pid(born(70)), members=[(pid(born(72)), "配偶")])))
    with (
        extra_rule(loud, no_labour),
        engine.connect() as conn,
        pytest.raises(RuntimeError, match=r"XX-02.*severity"),
    ):
        evaluate_rules(conn, D, load_rule_params("61", D.year))


def test_an_implementation_for_an_undeclared_rule_is_refused_at_import() -> None:
    with pytest.raises(KeyError, match="ZZ-99"):
        alert_rules.implements("ZZ-99")


def test_a_rule_has_one_function() -> None:
    def another(inp: RuleInput) -> pd.DataFrame:
        return no_labour(inp)

    with extra_rule(NO_LABOUR, no_labour), pytest.raises(ValueError, match="有两个实现函数"):
        alert_rules.implements("LD-01")(another)
    assert alert_rules.implements("YB-01")(function_of("YB-01")) is function_of("YB-01")


def test_parameters_take_the_declared_default_and_the_reference_data_wins(
    tmp_path: Path,
) -> None:
    reference = tmp_path / "rule_params.yaml"
    reference.write_text(
        "provinces:\n"
        '  "61":\n'
        "    years:\n"
        "      2025: {income_threshold: 7500}\n"
        '  "62":\n'
        "    defaults: {medical_burden_household_12m: 8000}\n"
        "    years:\n"
        "      2025: {income_threshold: 6000, medical_burden_household_12m: 9000}\n",
        encoding="utf-8",
    )
    # medical_burden_household_12m is not in province 61's data: its declared default applies
    assert load_rule_params("61", 2025, path=reference).medical_burden_household_12m == 10000.0
    assert load_rule_params("62", 2025, path=reference).value("medical_burden_household_12m") == (
        9000.0
    )
    with extra_rule(NO_LABOUR, no_labour):
        params = load_rule_params("61", 2025, path=reference)
        assert params.value("no_labour_min_members") == 2.0
    # Once the rule is gone, so is its parameter: asking for it is a configuration error.
    with pytest.raises(ConfigurationError, match="no_labour_min_members"):
        load_rule_params("61", 2025).value("no_labour_min_members")


# --- a 13th rule, end to end ----------------------------------------------------------------------


def test_a_thirteenth_rule_is_one_declaration_and_one_function(engine: Engine) -> None:
    old, old2 = pid(born(70)), pid(born(72))
    worker = pid(born(30))
    data = roster(
        home("H1", head=old, members=[(old2, "配偶")]),  # two members, no labour: alerts
        home("H2", head=pid(born(71)), members=[(worker, "子女")], head_skill=None),
        home("H3", head=pid(born(75))),  # one member: below the parameter
        home("H4", head=pid(born(73)), members=[(pid(born(74)), "配偶")], **monitored("缺劳动力")),
    )
    for person in data["XC_REN"]:
        if person["id_number"] == worker:
            person["labour_skill"] = "普通劳动力"
    load(engine, D, data)
    with extra_rule(NO_LABOUR, no_labour):
        params = load_rule_params("61", D.year)
        with engine.begin() as conn:
            summary = raise_alerts(conn, D)
        with engine.connect() as conn:
            found = evaluate_rules(conn, D, params)
            published = alerts_frame(conn, D)
        hit = found.loc[found["rule_id"] == "LD-01"]
        assert list(hit["subject"]) == ["H1"]
        row = hit.iloc[0]
        assert (row["risk_type"], row["severity"], row["pushed_to"]) == (
            "缺劳动力",
            "medium",
            "XC,RS",
        )
        assert row["alert_id"].startswith("LD01-")
        assert "户内在册在世成员2人，无劳动力" in row["evidence"]
        assert summary.by_rule.get("LD-01") == 1
        shown = published.loc[published["rule_id"] == "LD-01"]
        assert list(shown["household_id"]) == ["H1"] and list(shown["status"]) == ["open"]

        # The next night H1 has a labour member: the alert resolves, like any other rule's.
        day2 = D + timedelta(days=1)
        data2 = roster(
            home("H1", head=old, members=[(old2, "配偶"), (pid(born(35)), "子女")]),
        )
        data2["XC_REN"][-1]["labour_skill"] = "技能劳动力"
        load(engine, day2, data2)
        with engine.begin() as conn:
            raise_alerts(conn, day2)
        with engine.connect() as conn:
            later = alerts_frame(conn, day2)
        ld = later.loc[later["rule_id"] == "LD-01"]
        assert list(ld["status"]) == ["resolved"] and list(ld["resolved_on"]) == [
            pd.Timestamp(day2)
        ]
    # Outside the block the registry is the shipped one again.
    assert "LD-01" not in {r.rule_id for r in declared_rules()}


def test_a_thirteenth_rule_reaches_the_report_and_town_summary(tmp_path: Path) -> None:
    """Reports and town_summary derive their rule lists when imported: a rule declared before
    that (as a shipped rule is, in domain/alert_rules.py) is in both; run in a fresh process."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import pandas as pd
        from domain.alert_rules import extra_rule
        from test_alerts import D, born, home, load, pid, roster
        from test_rule_registry import NO_LABOUR, no_labour
        from warehouse.db import connect, upgrade
        assert "warehouse.publish" not in sys.modules and "tasks.reports" not in sys.modules
        with extra_rule(NO_LABOUR, no_labour):
            from tasks import reports
            from tasks.alerts import raise_alerts
            from tasks.publication import town_summary
            from warehouse.publish import RISK_COLUMNS, table_def
            engine = connect({"sqlite:///" + str(tmp_path / "warehouse.db")!r})
            upgrade(engine)
            load(engine, D, roster(home("H1", head=pid(born(70)),
                                        members=[(pid(born(72)), "配偶")])))
            with engine.begin() as conn:
                raise_alerts(conn, D)
            with engine.connect() as conn:
                state = reports.alert_state(conn, D)
            period = reports.Period.parse_week("2025-W11")
            by_rule = reports.alert_figures(state, period, ["城关镇"])[0]
            row = by_rule.set_index("rule_id").loc["LD-01"]
            hp = pd.DataFrame({{"household_id": ["H1"], "town": ["城关镇"],
                               "monitoring_category": [None], "risk_eliminated": [None]}})
            pp = pd.DataFrame({{"household_id": ["H1"], "in_roster": [True],
                               "deceased": [False]}})
            alerts = pd.DataFrame({{"town": ["城关镇"] * 6, "risk_type": ["缺劳动力"] * 6,
                                   "status": ["open"] * 6}})
            print(json.dumps({{
                "rules": reports.RULES["LD-01"],
                "by_rule": [row["risk_type"], row["unit"], int(row["new"]), int(row["open"])],
                "risk": RISK_COLUMNS.get("缺劳动力"),
                "last_column": [c.name for c in table_def("town_summary").columns][-1],
                "count": town_summary(hp, pp, alerts).iloc[0]["open_alerts_labour"],
            }}, ensure_ascii=False))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rules"] == ["缺劳动力", "户"]
    assert result["risk"] == "labour"
    assert result["last_column"] == "open_alerts_labour"
    assert result["count"] == "6"
    assert result["by_rule"] == ["缺劳动力", "户", 1, 1]
