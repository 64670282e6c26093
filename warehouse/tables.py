"""Every table of the warehouse, in one place (SQLAlchemy Core metadata).

Migrations under warehouse/migrations create exactly these; `datashare db upgrade` (and every
run, on start) brings a database to the newest revision.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
    true,
)
from sqlalchemy.types import TypeEngine

from expectations.contract import Contract, load_contracts, on_contracts_changed

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per delivery received (the exchange ledger, 交换台账). A delivery is one file (or one
# SQL view result) for one dataset and exchange date; its id is derived from its bytes, so the
# same bytes always get the same id and re-running a night adds nothing.
deliveries = Table(
    "deliveries",
    metadata,
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
    Column("sheet", String(64)),  # the worksheet read (workbooks): the one visible sheet with data
    Column("encoding", String(16)),
    Column("extra_columns", Text),  # schema drift: delivered headers no contract knows
    Column("gx_success", Boolean),
    Column("lake_path", Text),  # accepted rows, Parquet, relative to the lake root
    Column("raw_path", Text),  # the delivered bytes, relative to the lake root
    UniqueConstraint("dataset", "exchange_date", "sha256"),
    Index(None, "dataset", "exchange_date"),
)

# One row per quarantined row, and one per failed delivery (source_row NULL) (问题数据).
rejects = Table(
    "rejects",
    metadata,
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


# ---------------------------------------------------------------------------------------------
# History: one table per dataset, built from its contract (names and types decided here only).
#
#   <canonical columns> <person_key per id18 column> delivery_id source_file source_row
#   row_hash valid_from valid_to is_current [cancelled cancelled_by]
#
# A version is valid on day d when valid_from <= d and (valid_to is null or valid_to > d);
# at most one version per key is open (valid_to null, is_current true): none once it is closed.
# The primary key (key..., valid_from) holds because a dataset gets one merge per exchange date.

SQL_TYPES: dict[str, TypeEngine[Any]] = {
    "text": Text(),
    "enum": Text(),
    "enum_multi": Text(),
    "month": String(7),
    "id18": String(18),
    "credit_code": String(18),
    "date": Date(),
    "decimal": Numeric(14, 2),
    "int": BigInteger(),
    "bool": Boolean(),
}
LINEAGE_COLUMNS = ("delivery_id", "source_file", "source_row")
VALIDITY_COLUMNS = ("row_hash", "valid_from", "valid_to", "is_current")
CANCEL_COLUMNS = ("cancelled", "cancelled_by")


def history_table_name(dataset: str) -> str:
    """The history table of a dataset: MZ_DIBAO -> h_mz_dibao."""
    return f"h_{dataset.lower()}"


def person_key_column(id_column: str) -> str:
    """The person_key column paired with an id18 column: head_id_number -> head_person_key."""
    if id_column.endswith("id_number"):
        return id_column.removesuffix("id_number") + "person_key"
    return f"{id_column}_person_key"


def id_columns(contract: Contract) -> tuple[str, ...]:
    """The contract's id18 columns (each gets a person_key column in history)."""
    return tuple(c.name for c in contract.columns if c.type == "id18")


def _history_table(contract: Contract) -> Table:
    name = history_table_name(contract.dataset)
    system = [person_key_column(c) for c in id_columns(contract)]
    system += [*LINEAGE_COLUMNS, *VALIDITY_COLUMNS]
    if contract.merge_hook == "cancel_reversals":
        system += list(CANCEL_COLUMNS)
    clash = set(system) & set(contract.column_names)
    if clash:
        raise ValueError(
            f"{contract.dataset}：列名 {sorted(clash)} 是历史表的保留列，"
            "请在数据集约定中改用其他列名"
        )
    columns: list[Column[Any]] = [
        Column(c.name, SQL_TYPES[c.type], nullable=c.name not in contract.key)
        for c in contract.columns
    ]
    columns += [Column(person_key_column(c), String(32)) for c in id_columns(contract)]
    columns += [
        Column("delivery_id", String(64), nullable=False),
        Column("source_file", String(255), nullable=False),
        Column("source_row", BigInteger),
        Column("row_hash", String(32), nullable=False),
        Column("valid_from", Date, nullable=False),
        Column("valid_to", Date),
        Column("is_current", Boolean, nullable=False),
    ]
    if contract.merge_hook == "cancel_reversals":
        columns += [
            Column("cancelled", Boolean, nullable=False),
            Column("cancelled_by", String(64)),
        ]
    table = Table(name, metadata, *columns, PrimaryKeyConstraint(*contract.key, "valid_from"))
    # The open versions by key, partial on is_current: closing a version only drops its entry
    # (a full (key, is_current) index rewrites one per close: +30% WAL on PostgreSQL), and
    # row_hash makes it covering for the nightly read of every current (key, row_hash).
    current = table.c.is_current == true()
    # is_current is constant inside it, but without it SQLite does not see the index as covering.
    Index(
        f"ix_{name}_current",
        *(table.c[k] for k in contract.key),
        table.c.row_hash,
        table.c.is_current,
        sqlite_where=current,
        postgresql_where=current,
    )
    return table


class HistoryTables(Mapping[str, Table]):
    """Dataset name -> its history table, for every contract in use.

    Built from the contracts, and kept in step with them: a contract added by
    `expectations.contract.use_expectations` (a tool or test trying a new dataset) gets its
    table on `metadata`, and loses it when the block ends. A table whose contract is unchanged
    stays the same object, so a module may hold one."""

    def __init__(self) -> None:
        self._seen: dict[str, Contract] | None = None
        self._built: dict[str, tuple[Contract, Table]] = {}

    def _tables(self) -> dict[str, tuple[Contract, Table]]:
        contracts = load_contracts()
        if contracts is not self._seen:
            for dataset, (contract, table) in list(self._built.items()):
                if contracts.get(dataset) != contract:
                    metadata.remove(table)
                    del self._built[dataset]
            for dataset, contract in contracts.items():
                if dataset not in self._built:
                    self._built[dataset] = (contract, _history_table(contract))
            self._built = {d: self._built[d] for d in contracts}  # the contracts' order
            self._seen = contracts
        return self._built

    def __getitem__(self, dataset: str) -> Table:
        return self._tables()[dataset][1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables())

    def __len__(self) -> int:
        return len(self._tables())


history_tables = HistoryTables()
len(history_tables)  # the tables of the contracts in use are on `metadata` from import on
on_contracts_changed(history_tables.__len__)  # ... and stay there when they change

# One row per merged delivery: which delivery gave each dataset's state on each exchange date.
# It makes a merge safe to repeat and tells a re-delivery for a past date from a new night.
history_merges = Table(
    "history_merges",
    metadata,
    Column("dataset", String(32), nullable=False),
    Column("exchange_date", Date, nullable=False),
    Column("delivery_id", String(64), nullable=False),
    Column("inserted", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("closed", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("reopened", Integer, nullable=False),
    Column("cancelled", Integer, nullable=False),
    PrimaryKeyConstraint("dataset", "exchange_date"),
)

# Identity: one row per (person, dataset, id column) ever seen in history, with the first
# exchange date it appeared. `warehouse.identity.persons` folds it to one row per person.
person_sources = Table(
    "person_sources",
    metadata,
    Column("person_key", String(32), nullable=False),
    Column("dataset", String(32), nullable=False),
    Column("id_column", String(32), nullable=False),
    Column("dept", String(8), nullable=False),
    Column("id_number", String(18), nullable=False),
    Column("first_seen", Date, nullable=False),
    PrimaryKeyConstraint("person_key", "dataset", "id_column"),
    Index(None, "dataset", "first_seen"),
)


def valid_on(table: Table, as_of: object) -> ColumnElement[bool]:
    """The rows of a history table that were true on `as_of` (a date)."""
    return and_(
        table.c.valid_from <= as_of, or_(table.c.valid_to.is_(None), table.c.valid_to > as_of)
    )


# The tables of later parts register themselves on the same metadata (import at the end: they
# import `metadata` from here).
from warehouse import tables_alerts, tables_ops, tables_portal, tables_publish  # noqa: E402, F401
