"""A published table as people read it in its XLSX (issue 14): the Parquet's codes as Chinese
labels, the sheet named after the Chinese title, suppressed counts marked.

    for_people(table, data) -> People    what write_xlsx is given instead of the Parquet's table

Parquet and CSV keep the stable codes and column names (programs read them; docs/publishing.md
"Files"); the mapping itself is domain.labels (CODED_COLUMNS, NAMED_COLUMNS, sheet_name).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from domain.labels import CODED_COLUMNS, NAMED_COLUMNS, labelled, sheet_name
from warehouse.publish.tables import SUPPRESSED, table_def

# town_summary's counts are text in Parquet and CSV ("<5" is the documented form, publishing.md);
# in the XLSX a count is a number and only a suppressed one is text, marked and explained.
SUPPRESSED_NOTE = f"注：{SUPPRESSED} 表示该数小于 5（含 0），为保护个人信息不公开；相应的比率留空。"


@dataclass(frozen=True)
class People:
    """What the XLSX of one table holds: labelled data, its sheet's name, and the columns whose
    text is a count or the suppression mark (with the note that explains the mark)."""

    data: pa.Table
    sheet: str
    counts: frozenset[str] = frozenset()
    note: str | None = None


def _suppressed_counts(table: str) -> frozenset[str]:
    if table != "town_summary":
        return frozenset()
    columns = table_def(table).columns
    return frozenset(c.name for c in columns if c.type == "text" and c.name != "town")


def for_people(table: str, data: pa.Table) -> People:
    """The table a person reads: coded columns labelled, column names as headers."""
    coded = {*CODED_COLUMNS.get(table, {}), *NAMED_COLUMNS.get(table, ())}
    wanted = {n: data.column(n).to_pylist() for n in data.column_names if n in coded}
    for name, values in labelled(table, wanted).items():
        i = data.column_names.index(name)
        data = data.set_column(i, data.schema.field(i), pa.array(values, type=pa.string()))
    counts = _suppressed_counts(table) & set(data.column_names)
    return People(
        data,
        sheet_name(table_def(table).title),
        frozenset(counts),
        SUPPRESSED_NOTE if counts else None,
    )
