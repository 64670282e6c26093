"""The warehouse's own tables a publication carries: the ledger (deliveries, rejects), the audit."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Connection, select

from warehouse.tables import deliveries, rejects
from warehouse.tables_publish import audit_log

# --- reading the input from the warehouse --------------------------------------------------------


def ledger_tables(conn: Connection, as_of: date | None) -> dict[str, pd.DataFrame]:
    """deliveries and rejects up to `as_of` (all when None); rejects of superseded deliveries
    no longer stand (the re-delivery replaced them). The files of the landing area that were
    not taken in (warehouse.tables_ops.landing_issues) are in the ledger as `refused` rows with
    their Chinese reason, so a department sees them in its 交换台账."""
    from warehouse.tables_ops import landing_issues_frame

    d = deliveries.c
    query = select(deliveries)
    if as_of is not None:
        query = query.where(d.exchange_date <= as_of)
    ledger = pd.read_sql(query, conn)
    issues = landing_issues_frame(conn, None, as_of)
    if len(issues):
        refused = issues.rename(columns={"first_seen_at": "received_at"}).assign(status="refused")
        ledger = pd.concat([ledger, refused.drop(columns=["kind"])], ignore_index=True)
    standing = select(d.delivery_id).where(d.status != "superseded")
    if as_of is not None:
        standing = standing.where(d.exchange_date <= as_of)
    found = pd.read_sql(select(rejects).where(rejects.c.delivery_id.in_(standing)), conn)
    for frame in (ledger, found):
        frame["exchange_date"] = pd.to_datetime(frame["exchange_date"])
    return {"deliveries": ledger, "rejects": found}


def audit_frame(conn: Connection) -> pd.DataFrame:
    """The whole audit log, in order."""
    return pd.read_sql(select(audit_log).order_by(audit_log.c.audit_id), conn)
