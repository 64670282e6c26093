"""Publications and the audit log (registered on warehouse.tables.metadata).

`publications` holds one row per publication attempt (writing → published, or abandoned when the
run died before the switch). `audit_log` is append-only — every publication, and every file or
SQL table it exposed (with its rows, its sha256 and the strongest form of personal data in it),
plus any other export that carries plain ids. Migration 0004 adds triggers that refuse UPDATE,
DELETE (and on PostgreSQL TRUNCATE) on it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from warehouse.tables import metadata

publications = Table(
    "publications",
    metadata,
    Column("publication_id", String(32), nullable=False),  # <as_of:%Y%m%d>-<nn>
    Column("as_of", Date, nullable=False),  # the exchange date published
    Column("actor", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # writing | published | abandoned
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("consumers", Integer),
    Column("files", Integer),
    Column("catalog_sha256", String(64)),
    PrimaryKeyConstraint("publication_id"),
    Index(None, "as_of"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", Integer, nullable=False, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # publication | file | sql | export
    Column("publication_id", String(32)),
    Column("consumer", String(8)),
    Column("object", Text, nullable=False),  # path in publish_dir, or schema.table
    Column("rows", BigInteger),
    Column("sha256", String(64)),
    Column("personal", String(8), nullable=False),  # plain | masked | key | none
    PrimaryKeyConstraint("audit_id"),
    Index(None, "publication_id"),
)
