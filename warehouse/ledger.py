"""The exchange ledger: what was delivered, what became of it, and the rejects it produced."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from warehouse.tables import deliveries, rejects

# SQLite allows one writer at a time; deliveries are processed on threads, so writes from one
# process are serialised here (PostgreSQL does not need it, and it costs nothing there).
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class DeliveryRecord:
    """One ledger row (see warehouse.tables.deliveries)."""

    delivery_id: str
    dept: str
    dataset: str
    exchange_date: date
    source_file: str
    location: str
    sha256: str
    received_at: datetime
    status: str
    rows_in: int
    rows_loaded: int
    rows_rejected: int
    duplicates: int
    reason: str | None = None
    file_format: str | None = None
    sheet: str | None = None
    encoding: str | None = None
    extra_columns: str | None = None
    gx_success: bool | None = None
    lake_path: str | None = None
    raw_path: str | None = None


def delivery_id(dataset: str, exchange_date: date, sha256: str) -> str:
    """Deterministic: the same bytes for the same dataset and date always get the same id."""
    return f"{dataset}_{exchange_date:%Y%m%d}_{sha256[:12]}"


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One transaction for one delivery's whole effect: all of it becomes visible, or none."""
    with _WRITE_LOCK, engine.begin() as conn:
        yield conn


def known(engine: Engine, dataset: str, exchange_date: date, sha256: str) -> str | None:
    """The status of these exact bytes for this dataset and date, if already in the ledger."""
    with engine.connect() as conn:
        return conn.execute(
            select(deliveries.c.status).where(
                deliveries.c.dataset == dataset,
                deliveries.c.exchange_date == exchange_date,
                deliveries.c.sha256 == sha256,
            )
        ).scalar_one_or_none()


def crashed(engine: Engine, delivery_id: str) -> bool:
    """Whether this delivery failed on an unexpected error (a bug or a resource, not its bytes):
    such a failure says nothing about the file, so the next run takes the same bytes in again."""
    with engine.connect() as conn:
        found = conn.execute(
            select(rejects.c.delivery_id)
            .where(rejects.c.delivery_id == delivery_id, rejects.c.rule == "unexpected_error")
            .limit(1)
        ).first()
    return found is not None


def loaded_elsewhere(engine: Engine, dataset: str, sha256: str) -> str | None:
    """The id of a loaded delivery of the same dataset with the same bytes, if any."""
    with engine.connect() as conn:
        return conn.execute(
            select(deliveries.c.delivery_id)
            .where(
                deliveries.c.dataset == dataset,
                deliveries.c.sha256 == sha256,
                deliveries.c.status.in_(["loaded", "superseded"]),
            )
            .order_by(deliveries.c.exchange_date)
            .limit(1)
        ).scalar_one_or_none()


def previous_snapshot_rows(engine: Engine, dataset: str, exchange_date: date) -> int | None:
    """Rows loaded by the latest accepted snapshot before `exchange_date` (truncation gate)."""
    with engine.connect() as conn:
        return conn.execute(
            select(deliveries.c.rows_loaded)
            .where(
                deliveries.c.dataset == dataset,
                deliveries.c.exchange_date < exchange_date,
                deliveries.c.status == "loaded",
            )
            .order_by(deliveries.c.exchange_date.desc())
            .limit(1)
        ).scalar_one_or_none()


def record(
    conn: Connection, rec: DeliveryRecord, reject_rows: pd.DataFrame, *, replace: bool = False
) -> None:
    """Add a delivery and its rejects; a loaded re-delivery supersedes the earlier one.

    `replace`: these bytes were recorded as failed and an operator forced them again; the failed
    record and its rejects give way to this one (the ledger keeps one row per delivery).
    """
    if replace:
        failed = select(deliveries.c.delivery_id).where(
            deliveries.c.delivery_id == rec.delivery_id, deliveries.c.status == "failed"
        )
        conn.execute(delete(rejects).where(rejects.c.delivery_id.in_(failed)))
        conn.execute(delete(deliveries).where(deliveries.c.delivery_id.in_(failed)))
    if rec.status == "loaded":
        conn.execute(
            update(deliveries)
            .where(
                and_(
                    deliveries.c.dataset == rec.dataset,
                    deliveries.c.exchange_date == rec.exchange_date,
                    deliveries.c.status == "loaded",
                )
            )
            .values(status="superseded")
        )
    conn.execute(insert(deliveries).values(**asdict(rec)))
    if len(reject_rows):
        rows = reject_rows.assign(
            delivery_id=rec.delivery_id,
            dataset=rec.dataset,
            exchange_date=rec.exchange_date,
            source_file=rec.source_file,
        )
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        conn.execute(insert(rejects), records)


def ledger_frame(engine: Engine) -> pd.DataFrame:
    """The whole ledger, in a stable order."""
    with engine.connect() as conn:
        return pd.read_sql(
            select(deliveries).order_by(
                deliveries.c.exchange_date,
                deliveries.c.dataset,
                deliveries.c.received_at,
                deliveries.c.delivery_id,
            ),
            conn,
        )


def rejects_frame(engine: Engine) -> pd.DataFrame:
    """All rejects, in a stable order."""
    with engine.connect() as conn:
        return pd.read_sql(
            select(rejects).order_by(
                rejects.c.exchange_date,
                rejects.c.dataset,
                rejects.c.delivery_id,
                rejects.c.source_row,
            ),
            conn,
        )
