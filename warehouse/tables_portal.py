"""The department portal's tables (registered on warehouse.tables.metadata) and their writers.

    portal_users           accounts: one consumer (XC, MZ … GA), one role, an Argon2 hash
    portal_logins          every login attempt (success or not, with the reason), for throttling
                           and lockout and for the record
    portal_tokens          API tokens for programs: only a SHA-256 of the secret part is kept
    portal_verifications   XC's verification outcome of an alert recorded in the portal; the
                           alert lifecycle reads it exactly as it reads XC_HECHA rows
    portal_opinions        a department's verification opinion (核实意见) on an alert pushed to it

Downloads and person lookups are written to the existing append-only `audit_log`
(warehouse.tables_publish), with action download | lookup | verify.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from warehouse.tables import metadata
from warehouse.tables_alerts import alert_feedback, alerts
from warehouse.tables_publish import audit_log

ROLES = ("department", "bureau", "admin")
OUTCOMES = ("已纳入监测", "核实排除", "数据错误")

portal_users = Table(
    "portal_users",
    metadata,
    Column("username", String(64), nullable=False),
    Column("consumer", String(8), nullable=False),
    Column("role", String(16), nullable=False),  # department | bureau | admin
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),  # Argon2id (argon2-cffi)
    Column("active", Boolean, nullable=False),
    Column("failed_logins", Integer, nullable=False),  # consecutive failures
    Column("locked_until", DateTime(timezone=True)),
    Column("session_version", Integer, nullable=False),  # bumped by reset/disable: logs out
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("username"),
)

portal_logins = Table(
    "portal_logins",
    metadata,
    Column("login_id", Integer, nullable=False, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("username", String(64), nullable=False),  # as typed (cut to 64)
    Column("client", String(64)),  # remote address as the proxy gives it
    Column("success", Boolean, nullable=False),
    Column("reason", String(32), nullable=False),  # ok | bad_password | unknown | locked | ...
    PrimaryKeyConstraint("login_id"),
    Index(None, "username", "at"),
    Index(None, "client", "at"),
)

portal_tokens = Table(
    "portal_tokens",
    metadata,
    Column("token_id", String(16), nullable=False),  # public part of the token
    Column("consumer", String(8), nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("token_id"),
)

portal_verifications = Table(
    "portal_verifications",
    metadata,
    Column("verification_id", Integer, nullable=False, autoincrement=True),
    Column("alert_id", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # 已纳入监测 | 核实排除 | 数据错误
    Column("checked_date", Date, nullable=False),  # the exchange date the alert was shown for
    Column("note", Text),
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("verification_id"),
    Index(None, "alert_id"),
)

portal_opinions = Table(
    "portal_opinions",
    metadata,
    Column("opinion_id", Integer, nullable=False, autoincrement=True),
    Column("alert_id", String(32), nullable=False),
    Column("consumer", String(8), nullable=False),
    Column("opinion", Text, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("opinion_id"),
    Index(None, "alert_id"),
)


def read_portal_verifications(conn: Connection, as_of: date) -> pd.DataFrame:
    """Portal verifications known on as_of, shaped as XC_HECHA feedback rows (alert_id,
    outcome, checked_date, delivery_id = portal:<n>); the latest per alert, then by id."""
    v = portal_verifications.c
    rows = conn.execute(
        select(v.verification_id, v.alert_id, v.outcome, v.checked_date)
        .where(v.checked_date <= as_of)
        .order_by(v.alert_id, v.checked_date, v.verification_id)
    ).all()
    frame = pd.DataFrame(
        {
            "alert_id": pd.Series([r.alert_id for r in rows], dtype="string"),
            "outcome": pd.Series([r.outcome for r in rows], dtype="string"),
            "checked_date": pd.Series(
                pd.to_datetime([r.checked_date for r in rows]), dtype="datetime64[s]"
            ),
            "delivery_id": pd.Series([f"portal:{r.verification_id}" for r in rows], dtype="string"),
        }
    )
    return frame.drop_duplicates("alert_id", keep="last").reset_index(drop=True)


def record_verification(
    conn: Connection,
    *,
    alert_id: str,
    outcome: str,
    checked_date: date,
    note: str | None,
    recorded_by: str,
    at: datetime,
) -> int:
    """Store one verification outcome; returns its id (the lifecycle reads it as feedback)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    result = conn.execute(
        insert(portal_verifications).values(
            alert_id=alert_id,
            outcome=outcome,
            checked_date=checked_date,
            note=note,
            recorded_by=recorded_by,
            recorded_at=at,
        )
    )
    key = result.inserted_primary_key
    return int(key[0]) if key else 0


def apply_alert_status(
    conn: Connection,
    *,
    alert_id: str,
    status: str,
    outcome: str | None,
    feedback_date: date | None,
    delivery_id: str,
) -> None:
    """Write a re-derived status of one alert (and its feedback row) into the alerts table."""
    conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert_id)
        .values(status=status, feedback_outcome=outcome, feedback_date=feedback_date)
    )
    conn.execute(delete(alert_feedback).where(alert_feedback.c.alert_id == alert_id))
    if outcome is not None and feedback_date is not None:
        conn.execute(
            insert(alert_feedback).values(
                alert_id=alert_id,
                outcome=outcome,
                feedback_date=feedback_date,
                delivery_id=delivery_id,
            )
        )


def record_opinion(
    conn: Connection, *, alert_id: str, consumer: str, opinion: str, recorded_by: str, at: datetime
) -> None:
    """Store a department's verification opinion on an alert."""
    conn.execute(
        insert(portal_opinions).values(
            alert_id=alert_id,
            consumer=consumer,
            opinion=opinion,
            recorded_by=recorded_by,
            recorded_at=at,
        )
    )


def record_access(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    consumer: str | None,
    obj: str,
    rows: int | None,
    sha256: str | None,
    personal: str,
) -> None:
    """Append one row to the audit log (download, lookup, verify)."""
    conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor[:64],
            action=action,
            publication_id=None,
            consumer=consumer,
            object=obj,
            rows=rows,
            sha256=sha256,
            personal=personal,
        )
    )
