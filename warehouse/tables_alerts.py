"""Alerts (预警) and their lifecycle; registered on warehouse.tables.metadata.

`alerts` holds one row per alert identity (rule_id, subject) with its current lifecycle state.
`alert_days` records, per exchange date, which alerts held that night: the lifecycle of any date is
derived from it, so re-running a date or backfilling a range rewrites those days and gives the
same alerts with the same dates. `alert_feedback` keeps XC_HECHA verification results.
`alert_runs` lists the exchange dates evaluated (the sequence that defines episodes: an alert
absent on a run date has resolved) with the parameters used and the night's counts.

Added for the lifecycle (issue 4): alerts.opened_on (first run date of the alert's latest
episode: first_raised until it re-opens; feedback governs only when given on or after it), and
in alert_days every descriptive column of the finding, so the alerts table of any date is
derived from alert_days alone (tasks/alerts.py).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from warehouse.tables import metadata

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(32), nullable=False),  # stable, human-quotable
    Column("rule_id", String(16), nullable=False),
    Column("risk_type", String(32), nullable=False),
    Column("subject_type", String(16), nullable=False),  # household | person
    Column("subject", String(64), nullable=False),  # household_id, or person_key
    Column("household_id", String(32)),
    Column("person_key", String(32)),
    Column("id_number", String(18)),
    Column("name", Text),
    Column("town", Text),
    Column("village", Text),
    Column("severity", String(16), nullable=False),  # high | medium | low
    Column("status", String(16), nullable=False),  # open|resolved|confirmed|dismissed|
    #                                                      data_error
    Column("first_raised", Date, nullable=False),
    Column("last_seen", Date, nullable=False),
    Column("resolved_on", Date),
    Column("evidence", Text, nullable=False),  # Chinese; nothing of the "never" form
    Column("pushed_to", String(64), nullable=False),  # department codes, comma-separated
    Column("feedback_outcome", String(16)),  # 已纳入监测 | 核实排除 | 数据错误
    Column("feedback_date", Date),
    Column("as_of", Date, nullable=False),  # exchange date of the last evaluation
    Column("opened_on", Date, nullable=False),  # first run date of the latest episode
    PrimaryKeyConstraint("alert_id"),
    Index(None, "rule_id", "subject", unique=True),
    Index(None, "status"),
)

alert_days = Table(
    "alert_days",
    metadata,
    Column("exchange_date", Date, nullable=False),
    Column("alert_id", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("rule_id", String(16), nullable=False),
    Column("risk_type", String(32), nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("household_id", String(32)),
    Column("person_key", String(32)),
    Column("id_number", String(18)),
    Column("name", Text),
    Column("town", Text),
    Column("village", Text),
    Column("pushed_to", String(64), nullable=False),
    PrimaryKeyConstraint("exchange_date", "alert_id"),
    Index(None, "alert_id"),
)

alert_feedback = Table(
    "alert_feedback",
    metadata,
    Column("alert_id", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("feedback_date", Date, nullable=False),
    Column("delivery_id", String(64), nullable=False),
    PrimaryKeyConstraint("alert_id", "feedback_date"),
)

alert_runs = Table(
    "alert_runs",
    metadata,
    Column("exchange_date", Date, nullable=False),
    Column("province", String(8), nullable=False),
    Column("income_threshold", Numeric(14, 2), nullable=False),
    Column("medical_burden_household_12m", Numeric(14, 2), nullable=False),
    Column("findings", Integer, nullable=False),
    Column("open", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("reopened", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
    Column("closed", Integer, nullable=False),
    # What the findings were computed from (tasks.alerts.evaluate.findings_inputs): equal on
    # a re-run, the findings are those of alert_days, not evaluated again.
    Column("inputs_sha256", String(64)),
    PrimaryKeyConstraint("exchange_date"),
)
