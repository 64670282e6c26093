"""Every table of the warehouse, in one place (SQLAlchemy Core metadata).

Migrations under warehouse/migrations create exactly these; `datashare db upgrade` (and every
run, on start) brings a database to the newest revision.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
})

# One row per delivery received (the exchange ledger, 交换台账). A delivery is one file (or one
# SQL view result) for one dataset and exchange date; its id is derived from its bytes, so the
# same bytes always get the same id and re-running a night adds nothing.
deliveries = Table(
    "deliveries", metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("dept", String(8), nullable=False),
    Column("dataset", String(32), nullable=False),
    Column("exchange_date", Date, nullable=False),
    Column("source_file", String(255), nullable=False),
    Column("location", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # loaded | failed | duplicate | superseded
    Column("rows_in", Integer, nullable=False),
    Column("rows_loaded", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("reason", Text),
    Column("file_format", String(8)),
    Column("encoding", String(16)),
    Column("extra_columns", Text),          # schema drift: delivered headers no contract knows
    Column("gx_success", Boolean),
    Column("lake_path", Text),              # accepted rows, Parquet, relative to the lake root
    Column("raw_path", Text),               # the delivered bytes, relative to the lake root
    UniqueConstraint("dataset", "exchange_date", "sha256"),
    Index(None, "dataset", "exchange_date"),
)

# One row per quarantined row, and one per failed delivery (source_row NULL) (问题数据).
rejects = Table(
    "rejects", metadata,
    Column("delivery_id", String(64), nullable=False),
    Column("dataset", String(32), nullable=False),
    Column("exchange_date", Date, nullable=False),
    Column("source_file", String(255), nullable=False),
    Column("source_row", Integer),
    Column("column", String(64)),
    Column("rule", String(64), nullable=False),
    Column("value_masked", Text),
    Column("message", Text, nullable=False),
    Index(None, "delivery_id"),
    Index(None, "dataset", "exchange_date"),
)
