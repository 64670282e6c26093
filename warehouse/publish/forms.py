"""Preparing the input (declared columns, types, person keys, order) and applying the matrix."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import pandas as pd
import pyarrow as pa

from datashare.errors import ConfigurationError, PublishError  # PublishError: old path
from domain import definitions as dd
from domain.masking import mask_lookalikes, mask_series
from expectations.contract import load_contracts
from warehouse.identity import person_key, person_keys
from warehouse.publish.access import AccessMatrix, RowCondition, default_access, resolve_columns
from warehouse.publish.tables import _SMALL, ColumnDef, Form, SharedTables, table_def

T = TypeVar("T")

# --- preparing the input: declared columns, types, keys, order -----------------------------------


def _coerce(values: pd.Series, kind: str) -> pd.Series:
    if kind in ("text", "id18", "key"):
        return values.astype("string")
    iso = None if pd.api.types.is_datetime64_any_dtype(values) else "ISO8601"
    if kind == "date":
        return pd.to_datetime(values, format=iso).dt.normalize()
    if kind == "timestamp":
        return pd.to_datetime(values, utc=True, format=iso)
    if kind == "int":
        return pd.to_numeric(values).astype("Int64")
    if kind in ("decimal", "ratio"):
        return pd.to_numeric(values).astype("Float64")
    if kind == "bool":
        return values.astype("boolean")
    raise ValueError(f"未知的列类型 {kind}")


def _keys(ids: pd.Series, secret: bytes) -> pd.Series:
    if not len(ids):
        return pd.Series([], dtype="string", index=ids.index)
    if len(ids) <= _SMALL:  # DuckDB's start-up costs more than a few HMACs in Python
        return ids.map(lambda i: person_key(i, secret), na_action="ignore").astype("string")
    keys = person_keys(pa.array(ids.astype(object).where(ids.notna(), None), pa.string()), secret)
    return pd.Series(keys.to_pandas(), index=ids.index).astype("string")


def prepare(
    table: str, frame: pd.DataFrame, secret: bytes, matrix: AccessMatrix | None = None
) -> pd.DataFrame:
    """A plain input frame in published shape: declared columns typed, never-form columns
    dropped, person keys computed from the ids with `secret`, rows in a stable order."""
    matrix = matrix or default_access()
    tdef = table_def(table)
    kept = [c for c in tdef.columns if not matrix.never(c)]
    missing = [c.name for c in kept if not c.optional and c.name not in frame.columns]
    if missing:
        raise PublishError(
            f"{table}：发布的输入缺少列 {missing}，无法发布。请确认仓库结构已是最新版本"
            "（datashare db upgrade）；仍然出错请报告开发人员"
        )
    out: dict[str, pd.Series] = {}
    for column in kept:
        if column.type == "key":
            continue
        values = (
            frame[column.name]
            if column.name in frame.columns
            else pd.Series(pd.NA, index=frame.index, dtype=object)
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a warning would quote the values
                out[column.name] = _coerce(values, column.type)
        except (ValueError, TypeError, Warning):
            raise PublishError(
                f"{table}：列 {column.name} 的值不是 {column.type} 类型，无法发布。请确认仓库"
                "结构已是最新版本（datashare db upgrade）；仍然出错请报告开发人员"
            ) from None
    for column in kept:
        if column.type != "key":
            continue
        if not secret:
            raise ConfigurationError(
                "未设置 DATASHARE_SECRET：发布时无法计算 person_key。请设置一个足够长的随机值"
                "（保存在仓库之外，每晚不变）"
            )
        keys = _keys(out[column.source or ""], secret)
        if column.name in frame.columns:  # no id to compute from: keep the given key
            keys = keys.fillna(frame[column.name].astype("string"))
        out[column.name] = keys
    prepared = pd.DataFrame(out, index=frame.index)[[c.name for c in kept]]
    if table == "rejects":
        prepared = _remask_rejects(prepared)
    order = [*tdef.sort, *(c.name for c in kept if c.name not in tdef.sort)]
    sort = [c for c in tdef.sort if c in prepared.columns]
    if sort and not prepared.duplicated(sort).any():
        # Unique on its sort columns (a dataset's key; person_profile's id and key): the
        # others never break a tie, and sorting by them all was 5.6 s of a city night.
        order = sort
    return prepared.sort_values(order, kind="mergesort", na_position="last", ignore_index=True)


def _remask_rejects(frame: pd.DataFrame) -> pd.DataFrame:
    """value_masked again, from the contract's mark of the column: never more than the masked
    form, and nothing at all of a never-form column (masking a masked value changes nothing);
    an id, phone or bank account typed into any other column, or quoted in the message, is
    masked too (rejects recorded before that rule included)."""
    value = mask_lookalikes(frame["value_masked"])
    for (dataset, column), rows in frame.groupby(["dataset", "column"], dropna=True).groups.items():
        contract = load_contracts().get(str(dataset))
        pii = None
        if contract is not None and column in contract.column_names:
            pii = contract.column(str(column)).pii
        if pii is not None:
            value.loc[rows] = mask_series(frame["value_masked"].loc[rows], pii)
    return frame.assign(
        value_masked=value.astype("string"), message=mask_lookalikes(frame["message"])
    )


# --- applying the matrix -------------------------------------------------------------------------


@dataclass
class _Context:
    consumer: str
    as_of: date | None
    lookup: Callable[[str], pd.DataFrame | None]
    # Shared by the consumers of one publication: what a condition computes from a table's
    # column whoever the consumer is (the ages, the normalised lists), keyed by the frame's
    # id and kept with the frame so that the id cannot be reused.
    memo: dict[tuple[object, ...], object] = field(default_factory=dict)

    def once(self, frame: pd.DataFrame, what: str, column: str, compute: Callable[[], T]) -> T:
        """compute(), remembered for this frame's column."""
        key = (id(frame), what, column)
        found = self.memo.get(key)
        if found is not None and found[0] is frame:  # type: ignore[index]
            return found[1]  # type: ignore[index, no-any-return]
        value = compute()
        self.memo[key] = (frame, value)
        return value


def _subst(value: str, consumer: str) -> str:
    return value.replace("{consumer}", consumer)


def _holds(frame: pd.DataFrame, cond: RowCondition, ctx: _Context) -> pd.Series:
    text_values = ctx.once(frame, "text", cond.column, lambda: frame[cond.column].astype("string"))
    if cond.in_ is not None:
        result = text_values.isin([_subst(v, ctx.consumer) for v in cond.in_])
    elif cond.present is not None:
        present = text_values.notna() & (text_values.str.strip() != "")
        result = present if cond.present else ~present
    elif cond.contains is not None:
        items = ctx.once(
            frame,
            "items",
            cond.column,
            lambda: "," + text_values.str.replace(r"\s+", "", regex=True) + ",",
        )
        result = items.str.contains(f",{_subst(cond.contains, ctx.consumer)},", regex=False)
    elif cond.age is not None:
        if ctx.as_of is None:
            raise PublishError(
                f"{cond.column} 上的年龄条件需要交换日期，发布时未给出；"
                "这是程序缺陷，请报告开发人员"
            )
        as_of = ctx.as_of
        age = ctx.once(frame, f"age {as_of}", cond.column, lambda: _ages(text_values, as_of))
        result = (age >= cond.age[0]) & (age <= cond.age[1])
    elif cond.dataset_of is not None:
        dept = _subst(cond.dataset_of, ctx.consumer)
        result = text_values.isin([n for n, c in load_contracts().items() if c.dept == dept])
    else:
        assert cond.in_table is not None
        other = ctx.lookup(cond.in_table.table)
        if other is None:
            result = pd.Series(False, index=frame.index)
        else:
            other = other[_row_mask(other, cond.in_table.rows, ctx)]
            wanted = other[cond.in_table.column].dropna().astype("string").unique()
            result = text_values.isin(wanted)
    return pd.Series(result, index=frame.index).fillna(False).astype(bool)


def _row_mask(frame: pd.DataFrame, conditions: Iterable[RowCondition], ctx: _Context) -> pd.Series:
    keep = pd.Series(True, index=frame.index)
    for cond in conditions:
        keep &= _holds(frame, cond, ctx)
    return keep


def _project(
    matrix: AccessMatrix, consumer: str, table: str, prepared: pd.DataFrame, ctx: _Context
) -> tuple[pd.DataFrame, list[tuple[ColumnDef, Form]]] | None:
    entry = matrix.entry(consumer, table)
    if entry is None:
        return None
    columns = resolve_columns(matrix, table_def(table), entry)
    rows = selected_rows(prepared, entry.rows, ctx)
    out = {column.name: column_values(rows, column, form, ctx) for column, form in columns}
    return pd.DataFrame(out, index=rows.index).reset_index(drop=True), columns


def selected_rows(
    prepared: pd.DataFrame, conditions: tuple[RowCondition, ...], ctx: _Context
) -> pd.DataFrame:
    """The rows of a prepared table a grant's conditions keep (all of them without any)."""
    return prepared[_row_mask(prepared, conditions, ctx)] if conditions else prepared


def column_values(rows: pd.DataFrame, column: ColumnDef, form: Form, ctx: _Context) -> pd.Series:
    """One published column of the selected rows, in its form: an age computed from its id,
    a masked value masked, ids and phones typed into free text masked."""
    values = rows[column.name]
    if column.derived == "age":
        values = _ages(rows[column.source or ""], ctx.as_of)
    if form == "masked":
        values = mask_series(values, column.pii)
    elif column.free_text:
        values = mask_lookalikes(values)
    return values


def _ages(ids: pd.Series, as_of: date | None) -> pd.Series:
    """Whole years on `as_of` from the birth date inside each id (NA without a date)."""
    if as_of is None or not len(ids):
        return pd.Series(pd.NA, index=ids.index, dtype="Int64")
    return dd.ages_on(ids.astype("string"), as_of)


def apply_access(
    consumer: str,
    table_name: str,
    frame: pd.DataFrame,
    secret: bytes,
    *,
    as_of: date | None = None,
    tables: SharedTables | None = None,
    access: AccessMatrix | None = None,
) -> pd.DataFrame | None:
    """What `consumer` may see of one table (None: nothing): rows, columns and forms.

    `frame` is the plain table; `tables` supplies the tables a grant's rows refer to (e.g. CL
    gets the MZ_DIBAO rows of persons in CL_CANJI); `as_of` is needed by age conditions.
    """
    matrix = access or default_access()
    if matrix.entry(consumer, table_name) is None:
        return None
    cache_: dict[str, pd.DataFrame | None] = {}

    def lookup(name: str) -> pd.DataFrame | None:
        if name not in cache_:
            raw = (tables or {}).get(name)
            cache_[name] = None if raw is None else prepare(name, raw, secret, matrix)
        return cache_[name]

    prepared = prepare(table_name, frame, secret, matrix)
    result = _project(matrix, consumer, table_name, prepared, _Context(consumer, as_of, lookup))
    return None if result is None else result[0]
