"""Publish the shared dataset to every consumer: access matrix, forms of personal data, files,
PostgreSQL schemas and roles, and the audit trail (spec: publishing.md).

    SharedTables   plain frames: person_profile, household_profile, alerts, deliveries, rejects,
                   audit_log and the current rows of every dataset (collect_shared_tables)
      └─ prepare        the declared columns, typed; never-form columns dropped; person keys
                        recomputed from the ids with the secret; a stable row order
         └─ apply_access(consumer, table)   rows, columns and forms (expectations/access.yaml)
              ├─ files   .versions/<id>/<CONSUMER>/<table>.parquet | .xlsx | .csv, catalog.json
              ├─ SQL     pub_<consumer>.<table>, readable by role ds_<consumer> only (PostgreSQL)
              └─ audit   audit_log: the publication, every file and SQL table, rows and sha256
         switch          `current` -> the new version, in one rename (warehouse.published)

One function (`apply_access`) decides what a consumer gets, for files and SQL alike. A
publication is atomic for file consumers (written aside, then switched) and for SQL consumers
(one transaction); the audit rows are committed before the switch, so the log may list a
publication that a crash kept from being switched in (its status says so), never the reverse.

The package, by concern (this module re-exports the names other modules and tests use); the
folders themselves (version folders, the switch, pruning, file writers) are warehouse.published,
and what a publication is computed from (collect_shared_tables, town_summary, `publish` itself
with those providers) is tasks.publication, in the steps layer:

    tables       what is published: ColumnDef, TableDef, SHARED_TABLES, table_def
    access       the access matrix (expectations/access.yaml): load, check, resolve columns
    forms        prepare (declared columns, types, keys) and apply_access (rows, columns, forms)
    inputs       the ledger and audit tables as of a date
    version      write_publication: a version folder, its catalog, the audit rows, the switch
    incremental  what a table is built from: plan, reuse of unchanged files
    sql          PostgreSQL: one schema and one login-less role per consumer
"""

from datashare.errors import PublishError  # its old path
from warehouse.publish.access import (
    AccessMatrix,
    InTable,
    RowCondition,
    TableAccess,
    check_access,
    default_access,
    load_access,
    resolve_columns,
)
from warehouse.publish.forms import apply_access, prepare
from warehouse.publish.incremental import DERIVED, dataset_sources
from warehouse.publish.inputs import audit_frame, ledger_tables
from warehouse.publish.sql import SqlTarget
from warehouse.publish.tables import (
    ACCESS_FILE,
    MASKABLE,
    NEVER_COLUMNS,
    PUBLIC,
    RISK_COLUMNS,
    SHARED_TABLES,
    SUPPRESSED,
    XLSX_BULK_MAX_ROWS,
    XLSX_MAX_ROWS,
    ColumnDef,
    Form,
    SharedTables,
    TableDef,
    table_def,
)
from warehouse.publish.version import (
    Collector,
    Publication,
    Summariser,
    record_export,
    to_arrow,
    write_publication,
)
from warehouse.published import Retention

__all__ = [
    "ACCESS_FILE",
    "DERIVED",
    "MASKABLE",
    "NEVER_COLUMNS",
    "PUBLIC",
    "RISK_COLUMNS",
    "SHARED_TABLES",
    "SUPPRESSED",
    "XLSX_BULK_MAX_ROWS",
    "XLSX_MAX_ROWS",
    "AccessMatrix",
    "Collector",
    "ColumnDef",
    "Form",
    "InTable",
    "Publication",
    "PublishError",
    "Retention",
    "RowCondition",
    "SharedTables",
    "SqlTarget",
    "Summariser",
    "TableAccess",
    "TableDef",
    "apply_access",
    "audit_frame",
    "check_access",
    "dataset_sources",
    "default_access",
    "ledger_tables",
    "load_access",
    "prepare",
    "record_export",
    "resolve_columns",
    "table_def",
    "to_arrow",
    "write_publication",
]
