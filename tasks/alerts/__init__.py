"""Cross-department comparison (数据比对) and early-warning alerts (风险预警), as rules.md says.

    load_rule_params(province, year)     RuleParams from expectations/reference/rule_params.yaml
    load_facts(conn, as_of)              the frames the rules read, each pulled once (narrow,
                                         as-of selects on the history tables)
    evaluate_rules(conn, as_of, params)  one row per finding (rule_id, subject): set-based pandas;
                                         runs every rule declared in domain/alert_rules.py
                                         through its @implements function (one per rule)
    raise_alerts(conn, as_of)            alert_days of as_of, XC_HECHA feedback, the alerts table
    rebuild_alerts(conn, from, to)       re-run the evaluated nights of a range, in date order
    alerts_frame(conn, as_of)            the published `alerts` columns (plain) plus pushed_to

Lifecycle. `alert_days` holds, per evaluated exchange date (`alert_runs`), every finding that
held that night, with all its descriptive columns. The `alerts` table is a pure function of the
alert_days and alert_runs up to D and of XC_HECHA as of D:

    first_raised   the first run date on which the alert held
    last_seen      the latest run date on which it held
    opened_on      the first run date of its latest *episode* (an unbroken series of run dates on
                   which it held); equals first_raised until the alert re-opens
    resolved_on    the run date after last_seen, when it no longer holds (else empty)
    status         feedback (已纳入监测 confirmed, 核实排除 dismissed, 数据错误 data_error)
                   with checked_date <= D governs when it was given during or after the latest
                   episode (opened_on <= checked_date): the same evidence does not re-open it.
                   Otherwise open when it held on D, else resolved.

Nightly, the state of the previous run date is the alerts table itself (advanced by one run);
when the table is not at the previous run date (a re-run or backfill of a past date), that state
is derived from alert_days first. Either way, re-running D, then every later run date in order,
gives the same table as the nights did (tests/test_alerts.py).

Dates in returned frames are datetime64[s] (midnight; NaT when empty).

The package, by concern (this module re-exports the names other modules and tests use):

    params      RuleParams and load_rule_params (expectations/reference/rule_params.yaml)
    facts       the as-of reads and the Facts every rule reads (load_facts)
    findings    shaping a rule's hits into findings (household_findings, person_findings)
    rules       one function per declared rule (@implements), except DQ-01
    names       id/name matching across departments and DQ-01
    reading     what a night reads once (facts_read_once, read_once)
    evaluate    evaluate_rules: every declared rule, checked against its declaration
    lifecycle   alert_days, alert_runs, feedback and the alerts table (raise_alerts)
"""

from tasks.alerts.evaluate import (
    alert_ids,
    department_facts,
    evaluate_rules,
    load_department_facts,
)
from tasks.alerts.facts import (
    CLOSED,
    DEPT_ORDER,
    FEEDBACK_STATUS,
    FINDING_COLUMNS,
    PUBLISHED_COLUMNS,
    Facts,
    divisions,
    household_burden,
    load_facts,
    read_current,
)
from tasks.alerts.findings import (
    _arrow_text,
    household_findings,
    join_groups,
    person_findings,
    sources,
)
from tasks.alerts.lifecycle import (
    AlertSummary,
    advance,
    alerts_frame,
    evaluated_dates,
    raise_alerts,
    read_feedback,
    rebuild_alerts,
    with_status,
)
from tasks.alerts.names import id_names, name_keys, normalise_names
from tasks.alerts.params import DIVISIONS, RULE_PARAMS, RuleParams, load_rule_params
from tasks.alerts.reading import facts_read_once, read_once
from tasks.alerts.rules import RuleInput

__all__ = [
    "CLOSED",
    "DEPT_ORDER",
    "DIVISIONS",
    "FEEDBACK_STATUS",
    "FINDING_COLUMNS",
    "PUBLISHED_COLUMNS",
    "RULE_PARAMS",
    "AlertSummary",
    "Facts",
    "RuleInput",
    "RuleParams",
    "_arrow_text",
    "advance",
    "alert_ids",
    "alerts_frame",
    "department_facts",
    "divisions",
    "evaluate_rules",
    "evaluated_dates",
    "facts_read_once",
    "household_burden",
    "household_findings",
    "id_names",
    "join_groups",
    "load_department_facts",
    "load_facts",
    "load_rule_params",
    "name_keys",
    "normalise_names",
    "person_findings",
    "raise_alerts",
    "read_current",
    "read_feedback",
    "read_once",
    "rebuild_alerts",
    "sources",
    "with_status",
]
