"""Evaluation: every declared rule run through its function, checked against its declaration."""

from __future__ import annotations

import hashlib
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection

from domain.alert_rules import Rule, declared_rules, function_of
from expectations.release import release_digest
from tasks.alerts import names, rules  # noqa: F401  (their @implements bind the rule functions)
from tasks.alerts.facts import (
    FINDING_COLUMNS,
    CurrentRead,
    Facts,
    load_facts,
    read_current_all,
)
from tasks.alerts.params import RuleParams
from tasks.alerts.reading import read_once, warehouse_state
from tasks.alerts.rules import RuleInput, _latest_assessment, _on_dibao

# --- evaluate -------------------------------------------------------------------------------------

_CROCKFORD = np.array(list("0123456789ABCDEFGHJKMNPQRSTVWXYZ"))


def alert_ids(rule_ids: pd.Series, subjects: pd.Series) -> pd.Series:
    """Stable, quotable ids: `YB01-7K3F9Q2M8X` = rule without dash + 50 bits of
    sha256(rule_id U+001F subject) in Crockford base32. Independent of run order and data."""
    if len(rule_ids) == 0:
        return pd.Series([], dtype="string")
    frame = pa.table(
        {"r": pa.array(rule_ids.astype(str).tolist()), "s": pa.array(subjects.astype(str).tolist())}
    )
    with duckdb.connect() as duck:
        duck.register("f", frame)
        bits = (
            duck.sql(
                "SELECT ('0x' || left(sha256(r || chr(31) || s), 13))::UBIGINT >> 2 AS v FROM f"
            )
            .fetchnumpy()["v"]
            .astype(np.uint64)
        )
    text = np.full(len(bits), "", dtype=object)
    for i in range(10):  # ten 5-bit digits, most significant first
        digit = (bits >> np.uint64(5 * (9 - i))) & np.uint64(31)
        text = text + _CROCKFORD[digit.astype(np.int64)].astype(object)
    prefix = rule_ids.astype(str).str.replace("-", "", regex=False).to_numpy(dtype=object)
    return pd.Series(prefix + "-" + text, index=rule_ids.index, dtype="string")


def load_department_facts(conn: Connection, facts: Facts) -> Facts:
    """Facts with the departments' latest data the rules read (facts.extra, by dataset)."""
    as_of = facts.as_of
    reads: list[CurrentRead] = [
        ("JT_XUEJI", ["person_key", "stage", "enrolment_status", "status_date"], None),
        (
            "CL_CANJI",
            [
                "person_key",
                "id_number",
                "name",
                "category",
                "level",
                "cert_status",
                "living_subsidy",
                "care_subsidy",
            ],
            None,
        ),
        ("RS_JIUYE", ["person_key", "employment_status", "monthly_income"], None),
        (
            "SL_YINSHUI",
            [
                "head_person_key",
                "survey_date",
                "water_safe",
                "quantity_ok",
                "quality_ok",
                "convenience_ok",
                "reliability_ok",
            ],
            None,
        ),
        (
            "NY_CHANYE",
            ["project_id", "head_person_key", "industry", "year", "project_status"],
            None,
        ),
        (
            "MZ_DIBAO",
            ["person_key", "id_number", "name", "village_code", "assistance_type", "status"],
            None,
        ),
    ]
    extra = {
        "ZJ_FANGWU": _latest_assessment(conn, facts),
        **dict(zip((r[0] for r in reads), read_current_all(conn, as_of, reads), strict=True)),
    }
    extra["CL_CANJI"] = extra["CL_CANJI"].loc[extra["CL_CANJI"]["person_key"].notna()]
    facts = Facts(
        facts.as_of, facts.households, facts.members, facts.deaths, facts.settlements, extra
    )
    extra["on_dibao"] = _on_dibao(facts)
    return facts


def findings_inputs(conn: Connection, as_of: date, params: RuleParams) -> str:
    """What the findings of a date are computed from: the ledger up to the date (history as
    of it), the rule parameters and the release (the software, contracts and reference data).
    Equal on a re-run, the findings are those already kept."""
    payload = "|".join(
        [as_of.isoformat(), warehouse_state(conn, as_of), repr(params), release_digest()]
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def department_facts(conn: Connection, as_of: date) -> Facts:
    """load_facts with the departments' data (load_department_facts): what the rules and the
    profiles read; read once per state of the warehouse within `facts_read_once`."""
    return read_once(
        "facts", conn, as_of, lambda: load_department_facts(conn, load_facts(conn, as_of))
    )


def evaluate_rules(conn: Connection, as_of: date, params: RuleParams) -> pd.DataFrame:
    """Every rule of rules.md on the state as of a date: one row per finding.

    Columns: alert_id, rule_id, risk_type, subject_type (household | person), subject
    (household_id, or person_key), household_id, person_key, id_number, name (for households:
    the head's), town, village, severity (high | medium | low), evidence (Chinese: the facts and
    the deliveries behind them; never bank account, diagnosis, disease or address), pushed_to
    (department codes, comma-separated). Ordered by rule_id, subject. Reads only; set-based.
    """
    facts = department_facts(conn, as_of)
    found = []
    for declared in declared_rules():
        function = function_of(declared.rule_id)
        found.append(_checked(declared, function(RuleInput(declared, facts, params, conn))))
    frame = (
        pd.concat([f for f in found if len(f)], ignore_index=True)
        if any(len(f) for f in found)
        else pd.DataFrame(columns=FINDING_COLUMNS[1:])
    )
    frame = frame.astype({c: "string" for c in FINDING_COLUMNS[1:]})
    frame = frame.sort_values(["rule_id", "subject"]).reset_index(drop=True)
    frame.insert(0, "alert_id", alert_ids(frame["rule_id"], frame["subject"]))
    dupes = frame.duplicated("alert_id")
    if dupes.any():  # a rule produced one subject twice, or (improbably) two ids collide
        rules = sorted(frame.loc[dupes, "rule_id"].unique())
        raise RuntimeError(
            f"同一次评估中出现重复的预警编号（规则 {rules}）；这是程序缺陷，请报告开发人员"
        )
    return frame[FINDING_COLUMNS]


def _checked(declared: Rule, found: pd.DataFrame) -> pd.DataFrame:
    """A rule's findings, held to its declaration: its id and risk type, its subject, its
    severities, and departments that include the declared ones."""
    if not len(found):
        return found
    problems = []
    if set(found["rule_id"]) != {declared.rule_id} or set(found["risk_type"]) != {
        declared.risk_type
    }:
        problems.append("rule_id/risk_type")
    if set(found["subject_type"]) != {declared.subject}:
        problems.append("subject_type")
    if not set(found["severity"]) <= set(declared.severities):
        problems.append(f"severity 超出声明的 {declared.severities}")
    pushed = found["pushed_to"].astype("string").str.split(",")
    fixed = set(declared.pushed_to)
    if not pushed.map(lambda depts: fixed <= set(depts)).all() or (
        not declared.pushed_to_varies and not pushed.map(lambda d: set(d) == fixed).all()
    ):
        problems.append(f"pushed_to 不是声明的 {','.join(declared.pushed_to)}")
    if problems:
        raise RuntimeError(
            f"预警规则 {declared.rule_id} 给出的结果不符合其声明（domain/alert_rules.py）："
            + "；".join(problems)
        )
    return found
