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
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Connection, Engine, func, insert, select, text, update

from datashare.errors import ConfigurationError, PublishError  # PublishError: old path
from domain import definitions as dd
from domain.alert_rules import risk_columns
from domain.masking import mask_lookalikes, mask_series
from expectations.contract import (
    CONTRACTS_DIR,
    NEVER_PUBLISHED,
    get_contract,
    load_common,
    load_contracts,
)
from expectations.divisions import town_order
from warehouse import published as files
from warehouse.identity import person_key, person_keys
from warehouse.published import Retention
from warehouse.tables import deliveries, person_key_column, rejects
from warehouse.tables_publish import audit_log, publications

log = logging.getLogger(__name__)

ACCESS_FILE = CONTRACTS_DIR.parent / "access.yaml"
PUBLIC = "PUBLIC"
XLSX_MAX_ROWS = 200_000
_SMALL = 2_000
# publishing.md, "Forms of personal data": never published in any form, whatever access.yaml says.
NEVER_COLUMNS = frozenset({"bank_account", "diagnosis", "disease", "address"})
MASKABLE = frozenset({"id", "name", "phone"})

Form = Literal["plain", "masked", "key", "never"]
SharedTables = Mapping[str, pd.DataFrame]
"""Canonical table name -> plain frame (the publishing.md columns; datasets: current_rows)."""


# --- what is published: tables, columns, labels, types ------------------------------------------


@dataclass(frozen=True)
class ColumnDef:
    """One published column. type: text id18 key date int decimal ratio bool timestamp."""

    name: str
    label: str
    type: str = "text"
    pii: str | None = None  # id name phone bank health address (the contracts' marks)
    source: str | None = None  # key and derived columns: the id column they are computed from
    optional: bool = False  # may be missing from the input (filled with nulls)
    derived: str | None = None  # "age": whole years on the exchange date, from `source`
    free_text: bool = False  # typed by people: ids, phones, bank accounts in it are masked
    reveals: str | None = None  # the id column whose hidden (masked) digits this one carries

    @property
    def never(self) -> bool:
        return self.pii in NEVER_PUBLISHED or self.name in NEVER_COLUMNS


@dataclass(frozen=True)
class TableDef:
    """One published table: canonical name, Chinese title, columns, row order."""

    name: str
    title: str
    columns: tuple[ColumnDef, ...]
    sort: tuple[str, ...]
    dept: str | None = None  # datasets: the department that delivers it

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnDef:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(
    name: str, label: str, type_: str = "text", pii: str | None = None, source: str | None = None
) -> ColumnDef:
    return ColumnDef(name, label, type_, pii, source, optional=type_ == "key")


# town_summary: open alerts per risk type (rules.md); the DQ rules are not risks and stay out.
RISK_COLUMNS: dict[str, str] = risk_columns()  # risk type -> slug (domain/alert_rules.py)
SUPPRESSED = "<5"

SHARED_TABLES: dict[str, TableDef] = {
    t.name: t
    for t in (
        TableDef(
            "person_profile",
            "一人一档",
            (
                _c("person_key", "人员标识", "key", source="id_number"),
                _c("id_number", "身份证号", "id18", "id"),
                _c("name", "姓名", pii="name"),
                _c("household_id", "户编号"),
                _c("gender", "性别"),
                ColumnDef("birth_date", "出生日期", "date", reveals="id_number"),
                _c("age", "年龄", "int"),
                _c("village_code", "行政区划代码"),
                _c("town", "乡镇"),
                _c("in_roster", "是否在册", "bool"),
                _c("household_type", "户类型"),
                _c("monitoring_category", "监测对象类别"),
                _c("deceased", "是否已故", "bool"),
                _c("death_date", "死亡日期", "date"),
                _c("dibao_status", "低保特困状态"),
                _c("assistance_type", "保障类别"),
                _c("disability_category", "残疾类别"),
                _c("disability_level", "残疾等级"),
                _c("school_stage", "学段"),
                _c("enrolment_status", "学籍状态"),
                _c("insured_status", "参保状态"),
                _c("self_burden_12m", "近12个月医疗个人负担", "decimal"),
                _c("employment_status", "就业状态"),
                _c("monthly_income", "月收入", "decimal"),
                _c("sources", "数据来源部门"),
                _c("as_of", "数据日期", "date"),
            ),
            ("id_number", "person_key"),
        ),
        TableDef(
            "household_profile",
            "一户一档",
            (
                _c("household_id", "户编号"),
                _c("village_code", "行政区划代码"),
                _c("town", "乡镇"),
                _c("village", "行政村"),
                _c("head_person_key", "户主人员标识", "key", source="head_id_number"),
                _c("head_id_number", "户主身份证号", "id18", "id"),
                _c("head_name", "户主姓名", pii="name"),
                _c("household_size", "家庭人口数", "int"),
                _c("active_members", "现有人口数", "int"),
                _c("household_type", "户类型"),
                _c("monitoring_category", "监测对象类别"),
                _c("risk_types", "致贫返贫风险"),
                _c("risk_eliminated", "风险是否已消除", "bool"),
                _c("income_per_capita", "人均纯收入（元）", "decimal"),
                _c("house_grade", "住房鉴定等级"),
                _c("renovation_status", "改造状态"),
                _c("water_safe", "是否饮水安全", "bool"),
                _c("members_on_dibao", "低保特困人数", "int"),
                _c("members_severely_disabled", "重度残疾人数", "int"),
                _c("labour_members", "劳动力人数", "int"),
                _c("labour_members_employed", "务工就业劳动力人数", "int"),
                _c("self_burden_12m", "近12个月医疗个人负担", "decimal"),
                _c("open_alerts", "未处置预警数", "int"),
                _c("as_of", "数据日期", "date"),
            ),
            ("household_id",),
        ),
        TableDef(
            "alerts",
            "预警名单",
            (
                _c("alert_id", "预警编号"),
                _c("rule_id", "规则编号"),
                _c("risk_type", "风险类型"),
                _c("household_id", "户编号"),
                _c("person_key", "人员标识", "key", source="id_number"),
                _c("id_number", "身份证号", "id18", "id"),
                _c("name", "姓名", pii="name"),
                _c("town", "乡镇"),
                _c("village", "行政村"),
                _c("severity", "严重程度"),
                _c("status", "状态"),
                _c("first_raised", "首次预警日期", "date"),
                _c("last_seen", "最近预警日期", "date"),
                _c("resolved_on", "解除日期", "date"),
                _c("evidence", "预警依据"),
                _c("pushed_to", "推送部门"),
            ),
            ("alert_id",),
        ),
        TableDef(
            "deliveries",
            "交换台账",
            (
                _c("dept", "部门"),
                _c("dataset", "数据集"),
                _c("exchange_date", "交换日期", "date"),
                _c("source_file", "文件名"),
                _c("sha256", "文件校验值（SHA-256）"),
                _c("received_at", "接收时间", "timestamp"),
                _c("status", "状态"),
                _c("rows_in", "行数", "int"),
                _c("rows_loaded", "入库行数", "int"),
                _c("rows_rejected", "问题行数", "int"),
                _c("duplicates", "重复行数", "int"),
                _c("reason", "原因"),
            ),
            ("exchange_date", "dataset", "source_file", "sha256", "received_at"),
        ),
        TableDef(
            "rejects",
            "问题数据",
            (
                _c("dataset", "数据集"),
                _c("exchange_date", "交换日期", "date"),
                _c("source_file", "文件名"),
                _c("source_row", "行号", "int"),
                _c("column", "列名"),
                _c("rule", "规则"),
                _c("value_masked", "问题值（脱敏）"),
                _c("message", "说明"),
            ),
            ("exchange_date", "dataset", "source_file", "source_row", "column", "rule"),
        ),
        TableDef(
            "audit_log",
            "审计日志",
            (
                _c("audit_id", "序号", "int"),
                _c("at", "时间", "timestamp"),
                _c("actor", "操作者"),
                _c("action", "操作"),
                _c("publication_id", "发布编号"),
                _c("consumer", "接收方"),
                _c("object", "对象"),
                _c("rows", "行数", "int"),
                _c("sha256", "校验值（SHA-256）"),
                _c("personal", "个人信息形式"),
            ),
            ("audit_id",),
        ),
        TableDef(
            "town_summary",
            "乡镇汇总（公开）",
            (
                _c("town", "乡镇"),
                _c("monitored_households", "监测户数"),
                _c("monitored_persons", "监测人数"),
                _c("eliminated_households", "风险消除户数"),
                _c("eliminated_persons", "风险消除人数"),
                _c("elimination_rate_households", "风险消除率（户）", "ratio"),
                _c("elimination_rate_persons", "风险消除率（人）", "ratio"),
                *(
                    _c(f"open_alerts_{slug}", f"未处置预警数（{risk}）")
                    for risk, slug in RISK_COLUMNS.items()
                ),
            ),
            ("town",),
        ),
    )
}

_CONTRACT_TYPES = {
    "id18": "id18",
    "date": "date",
    "int": "int",
    "decimal": "decimal",
    "bool": "bool",
}


def _key_label(id_header: str) -> str:
    for word in ("身份证号码", "身份证号", "证件号码"):
        if word in id_header:
            return id_header.replace(word, "人员标识")
    return f"{id_header}（人员标识）"


def _birth_date_of(contract: Any) -> dict[str, str]:
    """Date columns that carry an id's birth date (the digits a masked id hides) -> that id.

    A date column is one if it is named birth_date or a row rule ties it to an id column."""
    ids = [c.name for c in contract.columns if c.type == "id18"]
    if not ids:
        return {}
    dates = {c.name for c in contract.columns if c.type == "date"}
    found = {"birth_date": ids[0]} if "birth_date" in dates else {}
    for rule in contract.row_rules:
        tied = [i for i in ids if i in rule.columns]
        found |= dict.fromkeys((c for c in rule.columns if c in dates), tied[0]) if tied else {}
    return found


_IDENTIFIER_SUFFIXES = ("_no", "_id", "_code")


@cache
def _identifier_columns() -> frozenset[str]:
    """Columns that are some dataset's key: identifiers, never free text."""
    return frozenset(k for contract in load_contracts().values() for k in contract.key)


@cache
def _dataset_def(dataset: str) -> TableDef:
    contract = get_contract(dataset)
    births = _birth_date_of(contract)
    columns: list[ColumnDef] = []
    for c in contract.columns:
        free = (
            c.type == "text"
            and c.pii is None
            and not c.pattern
            and c.name not in _identifier_columns()
            and not c.name.endswith(_IDENTIFIER_SUFFIXES)  # 全国学籍号 is G + the id: a code
        )
        kind = _CONTRACT_TYPES.get(c.type, "text")
        columns.append(
            ColumnDef(c.name, c.header, kind, c.pii, free_text=free, reveals=births.get(c.name))
        )
        if c.name in births and c.name == "birth_date":
            # What a consumer gets instead of the birth date where the id is masked.
            columns.append(
                ColumnDef("age", "年龄", "int", source=births[c.name], optional=True, derived="age")
            )
        if c.type == "id18":
            columns.append(
                ColumnDef(
                    person_key_column(c.name),
                    _key_label(c.header),
                    "key",
                    source=c.name,
                    optional=True,
                )
            )
    if contract.merge_hook == "cancel_reversals":
        columns.append(ColumnDef("cancelled", "已冲销", "bool", optional=True))
    never = {c.name for c in columns if c.never}
    sort = tuple(k for k in contract.key if k not in never)
    return TableDef(dataset, contract.title, tuple(columns), sort, contract.dept)


def table_def(name: str) -> TableDef:
    """The definition of a published table (shared table or dataset)."""
    if name in SHARED_TABLES:
        return SHARED_TABLES[name]
    if name in load_contracts():
        return _dataset_def(name)
    raise KeyError(f"no published table {name!r}")


# --- the access matrix (expectations/access.yaml) ------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InTable(_Model):
    table: str
    column: str
    rows: tuple[RowCondition, ...] = ()


class RowCondition(_Model):
    """One condition on a row; a table entry keeps the rows for which all hold."""

    column: str
    in_: tuple[str, ...] | None = Field(default=None, alias="in")
    present: bool | None = None
    contains: str | None = None
    age: tuple[int, int] | None = None
    dataset_of: str | None = None
    in_table: InTable | None = None

    @model_validator(mode="after")
    def _one_test(self) -> RowCondition:
        tests = [self.in_, self.present, self.contains, self.age, self.dataset_of, self.in_table]
        if sum(t is not None for t in tests) != 1:
            raise ValueError(f"condition on {self.column} must have exactly one test")
        return self


InTable.model_rebuild()


class TableAccess(_Model):
    """What one consumer gets of one table."""

    grant: str | None = None
    rows: tuple[RowCondition, ...] = ()
    columns: dict[str, Form]


class AccessMatrix(_Model):
    """consumer -> table -> (rows, column -> form)."""

    version: int
    never_columns: tuple[str, ...]
    templates: dict[str, Any] = Field(default_factory=dict)
    consumers: dict[str, dict[str, TableAccess]]

    def entry(self, consumer: str, table: str) -> TableAccess | None:
        return self.consumers.get(consumer, {}).get(table)

    def never(self, column: ColumnDef) -> bool:
        return column.never or column.name in self.never_columns


def load_access(path: Path = ACCESS_FILE) -> AccessMatrix:
    """Read and check the access matrix; a matrix that breaks a publishing.md rule is refused."""
    try:
        with path.open(encoding="utf-8") as f:
            matrix = AccessMatrix.model_validate(yaml.safe_load(f))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigurationError(f"{path.name}: {exc}") from None
    problems = check_access(matrix)
    if problems:
        raise ConfigurationError(f"{path.name}: " + "; ".join(problems))
    return matrix


@cache
def default_access() -> AccessMatrix:
    return load_access()


def check_access(matrix: AccessMatrix) -> list[str]:
    """Rule violations in a matrix (empty: fine). The rules are publishing.md's, not the file's."""
    problems: list[str] = []
    departments = set(load_common().departments)
    missing_never = NEVER_COLUMNS - set(matrix.never_columns)
    if missing_never:
        problems.append(f"never_columns lacks {sorted(missing_never)}")
    for consumer, entries in matrix.consumers.items():
        if consumer not in departments and consumer != PUBLIC:
            problems.append(f"unknown consumer {consumer}")
        for name, entry in entries.items():
            where = f"{consumer}.{name}"
            try:
                tdef = table_def(name)
            except KeyError:
                problems.append(f"{where}: unknown table")
                continue
            if consumer == PUBLIC and name != "town_summary":
                problems.append(f"{where}: PUBLIC gets town_summary only")
            problems += _check_columns(matrix, where, tdef, entry)
            problems += _check_rows(where, tdef, entry.rows)
            foreign = tdef.dept is not None and tdef.dept != consumer and consumer != "XC"
            if foreign and not entry.grant:
                problems.append(f"{where}: another department's dataset needs a grant")
            problems += _check_hidden_digits(matrix, where, tdef, entry)
            if consumer not in ("XC", PUBLIC) and name != "alerts" and (foreign or not tdef.dept):
                plain = [
                    c.name
                    for c, form in resolve_columns(matrix, tdef, entry)
                    if form == "plain" and c.pii in MASKABLE
                ]
                if plain:
                    problems.append(f"{where}: {plain} may not be plain for {consumer}")
    return problems


def _check_hidden_digits(
    matrix: AccessMatrix, where: str, tdef: TableDef, entry: TableAccess
) -> list[str]:
    """publishing.md "Forms": where an id is masked, no column of the row may carry its hidden
    digits (the birth date): publish age in whole years instead."""
    resolved = resolve_columns(matrix, tdef, entry)
    masked = {c.name for c, form in resolved if c.pii == "id" and form == "masked"}
    return [
        f"{where}: {c.name} rebuilds the hidden digits of masked {c.reveals} (publish age)"
        for c, form in resolved
        if c.reveals in masked and form != "never"
    ]


def _check_columns(
    matrix: AccessMatrix, where: str, tdef: TableDef, entry: TableAccess
) -> list[str]:
    problems = []
    for name, form in entry.columns.items():
        if name == "*":
            if form not in ("plain", "masked"):
                problems.append(f"{where}: '*' must be plain or masked")
            continue
        if name not in tdef.names:
            problems.append(f"{where}: unknown column {name}")
            continue
        column = tdef.column(name)
        if matrix.never(column) and form != "never":
            problems.append(f"{where}: {name} is never published")
        elif form == "masked" and column.pii not in MASKABLE:
            problems.append(f"{where}: {name} has no masked form")
        elif (form == "key") != (column.type == "key") and form != "never":
            problems.append(f"{where}: {name} cannot be {form}")
    return problems


def _check_rows(where: str, tdef: TableDef, rows: Iterable[RowCondition]) -> list[str]:
    problems = []
    for cond in rows:
        if cond.column not in tdef.names or tdef.column(cond.column).never:
            problems.append(f"{where}: rows on unknown column {cond.column}")
        if cond.in_table is not None:
            try:
                other = table_def(cond.in_table.table)
            except KeyError:
                problems.append(f"{where}: rows refer to unknown table {cond.in_table.table}")
                continue
            if cond.in_table.column not in other.names:
                problems.append(f"{where}: rows refer to unknown column {cond.in_table.column}")
            problems += _check_rows(where, other, cond.in_table.rows)
    return problems


def resolve_columns(
    matrix: AccessMatrix, tdef: TableDef, entry: TableAccess
) -> list[tuple[ColumnDef, Form]]:
    """The published columns of a table for one entry, in table order, with their forms."""
    star = entry.columns.get("*")
    out: list[tuple[ColumnDef, Form]] = []
    for column in tdef.columns:
        if matrix.never(column):
            continue
        form = entry.columns.get(column.name)
        if form is None:
            if star is None:
                continue
            form = "key" if column.type == "key" else (star if column.pii in MASKABLE else "plain")
        if form != "never":
            out.append((column, form))
    return out


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
    raise ValueError(kind)


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
        raise PublishError(f"{table}: the input lacks columns {missing}")
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
                f"{table}: column {column.name} is not of type {column.type}"
            ) from None
    for column in kept:
        if column.type != "key":
            continue
        if not secret:
            raise ConfigurationError("publishing person_key needs the secret (DATASHARE_SECRET)")
        keys = _keys(out[column.source or ""], secret)
        if column.name in frame.columns:  # no id to compute from: keep the given key
            keys = keys.fillna(frame[column.name].astype("string"))
        out[column.name] = keys
    prepared = pd.DataFrame(out, index=frame.index)[[c.name for c in kept]]
    if table == "rejects":
        prepared = _remask_rejects(prepared)
    order = [*tdef.sort, *(c.name for c in kept if c.name not in tdef.sort)]
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


def _subst(value: str, consumer: str) -> str:
    return value.replace("{consumer}", consumer)


def _holds(frame: pd.DataFrame, cond: RowCondition, ctx: _Context) -> pd.Series:
    values = frame[cond.column]
    text_values = values.astype("string")
    if cond.in_ is not None:
        result = text_values.isin([_subst(v, ctx.consumer) for v in cond.in_])
    elif cond.present is not None:
        present = text_values.notna() & (text_values.str.strip() != "")
        result = present if cond.present else ~present
    elif cond.contains is not None:
        items = "," + text_values.str.replace(r"\s+", "", regex=True) + ","
        result = items.str.contains(f",{_subst(cond.contains, ctx.consumer)},", regex=False)
    elif cond.age is not None:
        if ctx.as_of is None:
            raise PublishError(f"an age condition on {cond.column} needs the exchange date")
        age = _ages(text_values, ctx.as_of)
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
    rows = prepared[_row_mask(prepared, entry.rows, ctx)] if entry.rows else prepared
    out = {}
    for column, form in columns:
        values = rows[column.name]
        if column.derived == "age":
            values = _ages(rows[column.source or ""], ctx.as_of)
        if form == "masked":
            values = mask_series(values, column.pii)
        elif column.free_text:
            values = mask_lookalikes(values)
        out[column.name] = values
    return pd.DataFrame(out, index=rows.index).reset_index(drop=True), columns


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


# --- town_summary (PUBLIC) ------------------------------------------------------------------------


def _count(n: int) -> str:
    return SUPPRESSED if n < 5 else str(n)


def town_summary(
    household_profile: pd.DataFrame, person_profile: pd.DataFrame, alerts: pd.DataFrame
) -> pd.DataFrame:
    """One row per town, from prepared (plain) frames; every count below 5 is "<5".

    Monitored: the household has a monitoring category; eliminated: and its risk is eliminated.
    Persons: living roster persons of those households. A rate is left empty when either of
    its counts is suppressed. No county total: it would give away suppressed town figures.
    """
    hp = household_profile
    monitored = dd.identified(hp["monitoring_category"])
    eliminated = dd.eliminated(hp["monitoring_category"], hp["risk_eliminated"])
    households = pd.DataFrame(
        {
            "household_id": hp["household_id"],
            "town": hp["town"],
            "monitored": monitored,
            "eliminated": eliminated,
        }
    )
    pp = person_profile
    living = pp["in_roster"].fillna(False).astype(bool) & ~pp["deceased"].fillna(False).astype(bool)
    persons = pp.loc[living, ["household_id"]].merge(households, on="household_id", how="inner")
    open_alerts = alerts[alerts["status"] == "open"]
    rows = []
    for town in town_order(hp["town"].dropna().unique()):  # division order (issue 14)
        h = households[households["town"] == town]
        p = persons[persons["town"] == town]
        counts = {
            "monitored_households": int(h["monitored"].sum()),
            "eliminated_households": int(h["eliminated"].sum()),
            "monitored_persons": int(p["monitored"].sum()),
            "eliminated_persons": int(p["eliminated"].sum()),
        }
        row: dict[str, Any] = {"town": town}
        row |= {k: _count(v) for k, v in counts.items()}
        for unit in ("households", "persons"):
            num, den = counts[f"eliminated_{unit}"], counts[f"monitored_{unit}"]
            row[f"elimination_rate_{unit}"] = round(num / den, 4) if min(num, den) >= 5 else None
        in_town = open_alerts[open_alerts["town"] == town]
        for risk, slug in RISK_COLUMNS.items():
            row[f"open_alerts_{slug}"] = _count(int((in_town["risk_type"] == risk).sum()))
        rows.append(row)
    names = SHARED_TABLES["town_summary"].names
    return pd.DataFrame(rows, columns=list(names))


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


def collect_shared_tables(
    conn: Connection, as_of: date, *, datasets: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Every shared table as of a date, plain: profiles and alerts from their providers
    (tasks.profiles, tasks.alerts — imported here, lazily), the ledger, the current rows of
    every dataset (or only of `datasets`) and the audit log."""
    from warehouse.history import current_rows

    try:
        from tasks import alerts as alert_provider
        from tasks import profiles
    except ImportError as exc:
        raise PublishError(
            f"the profile and alert providers are not available: {exc.name}"
        ) from None
    tables: dict[str, pd.DataFrame] = {
        "person_profile": profiles.person_profile(conn, as_of),
        "household_profile": profiles.household_profile(conn, as_of),
        "alerts": alert_provider.alerts_frame(conn, as_of),
        **ledger_tables(conn, as_of),
    }
    wanted = None if datasets is None else set(datasets)
    for dataset in load_contracts():
        if wanted is None or dataset in wanted:
            tables[dataset] = current_rows(conn, dataset, as_of)
    return tables


# --- publishing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlTarget:
    """Names of what is published into PostgreSQL (prefixes differ in tests: roles are global)."""

    schema_prefix: str = "pub_"
    role_prefix: str = "ds_"
    internal_schema: str | None = None  # default: current_schema(), i.e. the engine's search_path
    enabled: bool = True

    def schema(self, consumer: str) -> str:
        return f"{self.schema_prefix}{consumer.lower()}"

    def role(self, consumer: str) -> str:
        return f"{self.role_prefix}{consumer.lower()}"


@dataclass(frozen=True)
class Publication:
    """What one publication did (small: ids and counts)."""

    publication_id: str
    as_of: date
    path: Path  # the version folder
    consumers: tuple[str, ...]
    files: int
    rows: int
    catalog_sha256: str
    sql_schemas: tuple[str, ...] = ()
    tables_written: int = 0  # (consumer, table) outputs written in this publication
    tables_linked: int = 0  # unchanged since the previous publication: files hard-linked
    bytes_written: int = 0  # bytes of the files written (linked ones not counted)
    pruned: tuple[str, ...] = ()  # versions removed by the retention after the switch


@dataclass
class _Output:
    consumer: str
    table: str
    columns: list[tuple[ColumnDef, Form]]
    data: pa.Table | None  # None: unchanged since the current publication, files linked
    files: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    source: str | None = None  # digest of what the table is built from (None: not known)
    created: date | None = None  # XLSX creation date: when the content last changed
    reused: bool = False

    def __post_init__(self) -> None:
        if self.data is not None:
            self.rows = self.data.num_rows

    @property
    def personal(self) -> str:
        forms = {form for column, form in self.columns if column.pii in MASKABLE}
        forms |= {"key" for column, _ in self.columns if column.type == "key"}
        return next((f for f in ("plain", "masked", "key") if f in forms), "none")


_ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "id18": pa.string(),
    "key": pa.string(),
    "date": pa.date32(),
    "int": pa.int64(),
    "decimal": pa.float64(),
    "ratio": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def to_arrow(frame: pd.DataFrame, columns: list[tuple[ColumnDef, Form]]) -> pa.Table:
    """The published Arrow table: types fixed by the definition, labels in field metadata."""
    fields, arrays = [], []
    for column, form in columns:
        kind = _ARROW[column.type]
        values = frame[column.name]
        if column.type == "date":
            array = pa.Array.from_pandas(values).cast(pa.date32())
        elif column.type == "timestamp":
            array = pa.Array.from_pandas(values).cast(kind, safe=False)
        else:
            array = pa.Array.from_pandas(values, type=kind)
        arrays.append(array)
        fields.append(
            pa.field(
                column.name,
                kind,
                metadata={"label": column.label, "type": column.type, "form": form},
            )
        )
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _catalog_entry(out: _Output, title: str) -> dict[str, Any]:
    return {
        "consumer": out.consumer,
        "table": out.table,
        "title": title,
        "rows": out.rows,
        "personal": out.personal,
        "columns": [
            {"name": c.name, "label": c.label, "type": c.type, "form": form}
            for c, form in out.columns
        ],
        "files": out.files,
    }


def publish(
    engine: Engine,
    publish_dir: Path,
    *,
    as_of: date,
    secret: bytes,
    tables: SharedTables | None = None,
    keep_days: int = 30,
    actor: str = "nightly",
    access: AccessMatrix | None = None,
    sql: SqlTarget | None = None,
    xlsx_max_rows: int = XLSX_MAX_ROWS,
    on_consumer: Callable[[str], None] | None = None,
    retention: Retention | None = None,
    incremental: bool = True,
    workers: int | None = None,
) -> Publication:
    """Publish the shared dataset to every consumer, atomically, with an audit trail.

    tables: the plain shared tables (default: collect_shared_tables as of `as_of`); the audit
    log is added from the warehouse. Files go to a version folder, then `current` is switched;
    on PostgreSQL the pub_<consumer> schemas are rebuilt in one transaction. `on_consumer` is
    called after each consumer's files are written (progress, tests).

    Incremental (when the tables are read from the warehouse): a consumer's table whose inputs
    (`dataset_sources`: the deliveries it is built from, the definition, the secret, the
    exchange date where an age is computed) are those of the current publication is not read
    nor written again: its files are hard-linked from the current version, its catalog entry
    and audit rows repeat the same hash. `incremental=False` writes everything (same bytes).
    Changed tables are written `workers` at a time. After the switch, versions the retention
    (default: the last `keep_days` exchange dates and 12 month ends) does not keep are pruned.
    """
    matrix = access or default_access()
    target = sql or SqlTarget()
    publish_dir = Path(publish_dir)
    retention = retention or Retention(nights=keep_days)
    with files.publish_lock(publish_dir):
        files.remove_incomplete(publish_dir)
        previous = _previous_version(publish_dir) if incremental and tables is None else None
        reuse: dict[tuple[str, str], dict[str, Any]] = {}
        planned: dict[tuple[str, str], str | None] = {}
        created: dict[tuple[str, str], date] = {}
        with engine.begin() as conn:
            # Left 'writing' by a run that died: switched in (only the bookkeeping failed)
            # or not.
            current = files.current_publication(publish_dir)
            writing = publications.c.status == "writing"
            conn.execute(
                update(publications)
                .where(writing, publications.c.publication_id == current)
                .values(status="published")
            )
            conn.execute(update(publications).where(writing).values(status="abandoned"))
            if tables is None:
                sources, changed_on = _dataset_inputs(conn, as_of)
                # A dataset never delivered has no date of its own: its (empty) files carry
                # the exchange date, so they are written every night.
                sources = {t: s for t, s in sources.items() if t in changed_on}
                planned = _plan(matrix, as_of, secret, xlsx_max_rows, sources)
                created = _created(matrix, changed_on)
                if previous is not None:
                    reuse = _reusable(previous, planned)
                tables = collect_shared_tables(conn, as_of, datasets=_needed(matrix, reuse))
            if "audit_log" not in tables:
                tables = {**tables, "audit_log": audit_frame(conn)}
        prepared = {name: prepare(name, frame, secret, matrix) for name, frame in tables.items()}
        if {
            "household_profile",
            "person_profile",
            "alerts",
        } <= prepared.keys() and "town_summary" not in prepared:
            prepared["town_summary"] = prepare(
                "town_summary",
                town_summary(
                    prepared["household_profile"], prepared["person_profile"], prepared["alerts"]
                ),
                secret,
                matrix,
            )
        started = files.utc_now()
        with engine.begin() as conn:
            publication_id = _start(conn, as_of, actor, started)
        try:
            outputs = _write_version(
                publish_dir,
                publication_id,
                as_of,
                started,
                prepared,
                matrix,
                xlsx_max_rows,
                on_consumer,
                planned=planned,
                created=created,
                reuse=reuse,
                previous=previous.root if previous is not None else None,
                workers=workers or _default_workers(),
            )
            catalog = files.version_dir(publish_dir, publication_id) / files.CATALOG
            catalog_sha = files.seal(catalog)
            consumers = tuple(dict.fromkeys(o.consumer for o in outputs))
            schemas: tuple[str, ...] = ()
            with engine.begin() as conn:
                _audit(conn, publication_id, actor, outputs, catalog_sha)
                if conn.dialect.name == "postgresql" and target.enabled:
                    schemas = _publish_sql(
                        conn,
                        outputs,
                        target,
                        publication_id,
                        actor,
                        previous=current,
                        root=files.version_dir(publish_dir, publication_id),
                    )
            files.switch(
                publish_dir, publication_id, consumers, links=files.symlinks_supported(publish_dir)
            )
        except BaseException:
            _abandon(engine, publish_dir, publication_id)
            raise
        finished = files.utc_now()
        with engine.begin() as conn:
            conn.execute(
                update(publications)
                .where(publications.c.publication_id == publication_id)
                .values(
                    status="published",
                    finished_at=finished,
                    consumers=len(consumers),
                    files=sum(len(o.files) for o in outputs),
                    catalog_sha256=catalog_sha,
                )
            )
        removed = files.prune(publish_dir, retention, finished)
        if removed:
            with engine.begin() as conn:
                _audit_pruned(conn, actor, removed)
    result = Publication(
        publication_id=publication_id,
        as_of=as_of,
        path=files.version_dir(publish_dir, publication_id),
        consumers=consumers,
        files=sum(len(o.files) for o in outputs),
        rows=sum(o.rows for o in outputs),
        catalog_sha256=catalog_sha,
        sql_schemas=schemas,
        tables_written=sum(not o.reused for o in outputs),
        tables_linked=sum(o.reused for o in outputs),
        bytes_written=sum(f["bytes"] for o in outputs if not o.reused for f in o.files),
        pruned=tuple(removed),
    )
    log.info(
        "publication %s (%s): %d consumers, %d files, %d rows; %d tables written, %d linked "
        "unchanged; %d old versions removed",
        publication_id,
        as_of,
        len(consumers),
        result.files,
        result.rows,
        result.tables_written,
        result.tables_linked,
        len(removed),
    )
    return result


# --- incremental publication: what a table is built from -----------------------------------------

# Bump when the same input gives other published bytes (a writer or a masking rule changed):
# every table is then written again once.
_SOURCE_FORMAT = "1"
_SOURCES = ".sources.json"  # in a version folder: (consumer/table) -> source digest, entry


def _schema_revision(conn: Connection) -> str:
    try:
        with conn.begin_nested():  # a failed statement must not abort the caller's transaction
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # no migrations table (tests build the schema directly)
        return ""
    return ",".join(sorted(found))


def dataset_sources(conn: Connection, as_of: date) -> dict[str, str]:
    """Per dataset, a digest of what its rows as of `as_of` are built from.

    The dataset's ledger up to that date (a new, re-delivered, superseded or forced delivery
    changes it), the warehouse schema's revision and the published definition. History is
    written only by deliveries, so equal digests mean equal current rows; it is read from the
    small ledger, not by reading the tables.
    """
    return _dataset_inputs(conn, as_of)[0]


def _dataset_inputs(conn: Connection, as_of: date) -> tuple[dict[str, str], dict[str, date]]:
    """dataset_sources, and per dataset the exchange date of its latest delivery up to as_of
    (the date its published content last changed: the XLSX creation date, so a file linked
    from an earlier night and one written tonight are the same bytes)."""
    d = deliveries.c
    revision = _schema_revision(conn)
    found = conn.execute(
        select(d.dataset, d.delivery_id, d.exchange_date, d.sha256, d.status)
        .where(d.exchange_date <= as_of)
        .order_by(d.dataset, d.delivery_id)
    ).all()
    ledger: dict[str, list[str]] = {}
    latest: dict[str, date] = {}
    for dataset, delivery_id, day, sha, status in found:
        ledger.setdefault(dataset, []).append(f"{delivery_id}|{day}|{sha}|{status}")
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        latest[dataset] = max(latest.get(dataset, day), day)
    out: dict[str, str] = {}
    for dataset in load_contracts():
        digest = hashlib.sha256(f"{_SOURCE_FORMAT}|{revision}|{_dataset_def(dataset)!r}".encode())
        for item in ledger.get(dataset, ()):
            digest.update(b"\n" + item.encode())
        out[dataset] = digest.hexdigest()
    return out, latest


def _created(matrix: AccessMatrix, changed_on: Mapping[str, date]) -> dict[tuple[str, str], date]:
    """(consumer, dataset table) -> the latest delivery date of what it is built from."""
    created: dict[tuple[str, str], date] = {}
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            days = [changed_on[t] for t in {table} | _referenced(entry.rows) if t in changed_on]
            if table in load_contracts() and days:
                created[(consumer, table)] = max(days)
    return created


def _referenced(rows: Iterable[RowCondition]) -> set[str]:
    """Tables a row condition reads (in_table), transitively."""
    found: set[str] = set()
    for cond in rows:
        if cond.in_table is not None:
            found |= {cond.in_table.table} | _referenced(cond.in_table.rows)
    return found


def _dated(rows: Iterable[RowCondition]) -> bool:
    return any(
        cond.age is not None or (cond.in_table is not None and _dated(cond.in_table.rows))
        for cond in rows
    )


def _plan(
    matrix: AccessMatrix,
    as_of: date,
    secret: bytes,
    xlsx_max_rows: int,
    sources: Mapping[str, str],
) -> dict[tuple[str, str], str | None]:
    """(consumer, table) -> digest of everything its files are made from (None: unknown, so
    always written: the profiles, alerts, ledger and audit log are rebuilt every night)."""
    base = hashlib.sha256(b"datashare-publication-source|" + secret).hexdigest()
    plan: dict[tuple[str, str], str | None] = {}
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            inputs = {table} | _referenced(entry.rows)
            if any(t not in sources for t in inputs):
                plan[(consumer, table)] = None
                continue
            columns = resolve_columns(matrix, table_def(table), entry)
            dated = _dated(entry.rows) or any(c.derived for c, _ in columns)
            payload = {
                "format": _SOURCE_FORMAT,
                "base": base,
                "xlsx_max_rows": xlsx_max_rows,
                "consumer": consumer,
                "table": table,
                "entry": entry.model_dump(mode="json", by_alias=True),
                "never": sorted(matrix.never_columns),
                "inputs": {t: sources[t] for t in sorted(inputs)},
                "as_of": as_of.isoformat() if dated else None,  # ages move with the date
            }
            blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
            plan[(consumer, table)] = hashlib.sha256(blob).hexdigest()
    return plan


@dataclass(frozen=True)
class _Previous:
    root: Path
    sources: dict[str, dict[str, Any]]  # "CONSUMER/table" -> {"source": digest, "entry": …}


def _previous_version(publish_dir: Path) -> _Previous | None:
    current = files.current_publication(publish_dir)
    if current is None:
        return None
    root = files.version_dir(publish_dir, current)
    try:
        content = json.loads((root / _SOURCES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _Previous(root, content if isinstance(content, dict) else {})


def _reusable(
    previous: _Previous, planned: Mapping[tuple[str, str], str | None]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Outputs whose source is that of the current publication and whose files are there."""
    reuse = {}
    for (consumer, table), source in planned.items():
        before = previous.sources.get(f"{consumer}/{table}")
        if source is None or before is None or before.get("source") != source:
            continue
        entry = before.get("entry") or {}
        paths = [previous.root / f["path"] for f in entry.get("files", ())]
        if paths and all(p.is_file() for p in paths):
            reuse[(consumer, table)] = entry
    return reuse


def _needed(matrix: AccessMatrix, reuse: Mapping[tuple[str, str], Any]) -> set[str]:
    """Datasets some output that is written again reads (itself or through a grant's rows)."""
    datasets = set(load_contracts())
    needed: set[str] = set()
    for consumer, entries in matrix.consumers.items():
        for table, entry in entries.items():
            if (consumer, table) not in reuse:
                needed |= ({table} | _referenced(entry.rows)) & datasets
    return needed


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _audit_pruned(conn: Connection, actor: str, removed: Iterable[str]) -> None:
    """The files of pruned versions are gone; their audit rows stay, and this says when."""
    at = files.utc_now()
    conn.execute(
        insert(audit_log),
        [
            {
                "at": at,
                "actor": actor,
                "action": "prune",
                "publication_id": publication_id,
                "consumer": None,
                "object": f"{files.VERSIONS}/{publication_id}",
                "rows": None,
                "sha256": None,
                "personal": "none",
            }
            for publication_id in removed
        ],
    )


def _start(conn: Connection, as_of: date, actor: str, started: datetime) -> str:
    done = conn.execute(
        select(func.count()).select_from(publications).where(publications.c.as_of == as_of)
    ).scalar_one()
    publication_id = f"{as_of:%Y%m%d}-{done + 1:02d}"
    conn.execute(
        insert(publications).values(
            publication_id=publication_id,
            as_of=as_of,
            actor=actor,
            status="writing",
            started_at=started,
        )
    )
    return publication_id


def _abandon(engine: Engine, publish_dir: Path, publication_id: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                update(publications)
                .where(publications.c.publication_id == publication_id)
                .values(status="abandoned")
            )
        files.remove_version(publish_dir, publication_id)
    except Exception:  # the original error matters more; the next run cleans up
        log.exception("publication %s could not be cleaned up", publication_id)


def _write_version(
    publish_dir: Path,
    publication_id: str,
    as_of: date,
    started: datetime,
    prepared: dict[str, pd.DataFrame],
    matrix: AccessMatrix,
    xlsx_max_rows: int,
    on_consumer: Callable[[str], None] | None,
    *,
    planned: Mapping[tuple[str, str], str | None] | None = None,
    created: Mapping[tuple[str, str], date] | None = None,
    reuse: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    previous: Path | None = None,
    workers: int = 1,
) -> list[_Output]:
    root = files.version_dir(publish_dir, publication_id)
    root.mkdir(parents=True)
    planned, reuse = planned or {}, reuse or {}
    outputs: list[_Output] = []
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for consumer, entries in matrix.consumers.items():
            ctx = _Context(consumer, as_of, prepared.get)
            mine: list[_Output] = []
            for table in entries:
                before = reuse.get((consumer, table))
                if before is not None and previous is not None:
                    out = _Output(
                        consumer,
                        table,
                        resolve_columns(matrix, table_def(table), entries[table]),
                        None,
                        files=[dict(f) for f in before["files"]],
                        rows=int(before["rows"]),
                        source=planned.get((consumer, table)),
                        reused=True,
                    )
                    for f in out.files:
                        files.link_unchanged(previous / f["path"], root / f["path"])
                    mine.append(out)
                    continue
                if table not in prepared:
                    continue
                projected = _project(matrix, consumer, table, prepared[table], ctx)
                if projected is None:
                    continue
                frame, columns = projected
                mine.append(
                    _Output(
                        consumer,
                        table,
                        columns,
                        to_arrow(frame, columns),
                        source=planned.get((consumer, table)),
                        created=(created or {}).get((consumer, table)),
                    )
                )
            jobs = [
                pool.submit(_write_files, root, o, as_of, xlsx_max_rows)
                for o in mine
                if not o.reused
            ]
            for job in jobs:
                job.result()
            if mine:
                catalog = _catalog(publication_id, as_of, started, mine)
                files.write_json(root / consumer / files.CATALOG, catalog)
                files.seal(root / consumer / files.CATALOG)
            outputs += mine
            if on_consumer is not None:
                on_consumer(consumer)
    files.write_json(
        root / _SOURCES,
        {
            f"{o.consumer}/{o.table}": {
                "source": o.source,
                "entry": _catalog_entry(o, table_def(o.table).title),
            }
            for o in outputs
            if o.source is not None
        },
    )
    files.write_json(root / files.CATALOG, _catalog(publication_id, as_of, started, outputs))
    return outputs


def _catalog(
    publication_id: str, as_of: date, started: datetime, outputs: list[_Output]
) -> dict[str, Any]:
    return {
        "publication_id": publication_id,
        "exchange_date": as_of.isoformat(),
        "published_at": started.isoformat(),
        "tables": [_catalog_entry(o, table_def(o.table).title) for o in outputs],
    }


def _write_files(root: Path, out: _Output, as_of: date, xlsx_max_rows: int) -> None:
    assert out.data is not None  # linked outputs are not written
    folder = root / out.consumer
    labels = [c.label for c, _ in out.columns]
    parquet = folder / f"{out.table}.parquet"
    files.write_parquet(parquet, out.data)
    written = [(parquet, "parquet")]
    if out.data.num_rows <= xlsx_max_rows:
        sheet = folder / f"{out.table}.xlsx"
        created = out.created or as_of
        files.write_xlsx(sheet, out.data, labels, sheet=table_def(out.table).title, created=created)
        written.append((sheet, "xlsx"))
    else:
        sheet = folder / f"{out.table}.csv"
        files.write_csv_bom(sheet, out.data, labels)
        written.append((sheet, "csv"))
    for path, kind in written:
        out.files.append(
            {
                "path": f"{out.consumer}/{path.name}",
                "format": kind,
                "sha256": files.seal(path),
                "bytes": path.stat().st_size,
            }
        )


def _audit(
    conn: Connection, publication_id: str, actor: str, outputs: list[_Output], catalog_sha: str
) -> None:
    at = files.utc_now()
    strongest = next(
        (f for f in ("plain", "masked", "key") if any(o.personal == f for o in outputs)), "none"
    )
    rows = [
        {
            "at": at,
            "actor": actor,
            "action": "publication",
            "publication_id": publication_id,
            "consumer": None,
            "object": files.CATALOG,
            "rows": sum(o.rows for o in outputs),
            "sha256": catalog_sha,
            "personal": strongest,
        }
    ]
    rows += [
        {
            "at": at,
            "actor": actor,
            "action": "file",
            "publication_id": publication_id,
            "consumer": o.consumer,
            "object": f["path"],
            "rows": o.rows,
            "sha256": f["sha256"],
            "personal": o.personal,
        }
        for o in outputs
        for f in o.files
    ]
    conn.execute(insert(audit_log), rows)


def record_export(
    conn: Connection,
    *,
    actor: str,
    consumer: str | None,
    obj: str,
    rows: int,
    sha256: str | None,
    personal: str,
) -> None:
    """Record an export made outside a publication (e.g. an ad-hoc file with plain ids)."""
    conn.execute(
        insert(audit_log).values(
            at=files.utc_now(),
            actor=actor,
            action="export",
            publication_id=None,
            consumer=consumer,
            object=obj,
            rows=rows,
            sha256=sha256,
            personal=personal,
        )
    )


# --- PostgreSQL: one schema and one login-less role per consumer ---------------------------------

_SQL_TYPES = {
    "text": "text",
    "id18": "text",
    "key": "text",
    "date": "date",
    "int": "bigint",
    "decimal": "numeric(14,2)",
    "ratio": "double precision",
    "bool": "boolean",
    "timestamp": "timestamptz",
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _publish_sql(
    conn: Connection,
    outputs: list[_Output],
    target: SqlTarget,
    publication_id: str,
    actor: str,
    *,
    previous: str | None = None,
    root: Path | None = None,
) -> tuple[str, ...]:
    """Rebuild every consumer's schema in the caller's transaction (readers see old or new).

    A table unchanged since the `previous` publication (its files were linked) is kept as it
    is when that publication's audit says it loaded it; otherwise it is loaded again from the
    new version's Parquet file under `root`.

    The pipeline's own user owns the schemas; each role may use its schema and select its
    tables, nothing else: PUBLIC loses every right on the internal schema and its tables.
    """
    quote = conn.dialect.identifier_preparer.quote
    internal = target.internal_schema or conn.execute(text("SELECT current_schema()")).scalar_one()
    conn.execute(text(f"REVOKE ALL ON SCHEMA {quote(internal)} FROM PUBLIC"))
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quote(internal)} FROM PUBLIC"))
    by_consumer: dict[str, list[_Output]] = {}
    for out in outputs:
        by_consumer.setdefault(out.consumer, []).append(out)
    at = files.utc_now()
    audit_rows = []
    for consumer, outs in by_consumer.items():
        schema, role = quote(target.schema(consumer)), quote(target.role(consumer))
        conn.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object "
                f"OR unique_violation THEN NULL; END $$"
            )
        )
        conn.execute(text(f"ALTER ROLE {role} NOLOGIN"))
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(text(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
        existing = conn.execute(
            text(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind IN ('r', 'v')"
            ),
            {"s": target.schema(consumer)},
        ).all()
        kept = _sql_kept(conn, target, consumer, outs, previous, existing)
        for name, kind in existing:
            if name in kept:
                continue
            conn.execute(
                text(
                    f"DROP {'VIEW' if kind == 'v' else 'TABLE'} IF EXISTS "
                    f"{schema}.{quote(name)} CASCADE"
                )
            )
        for out in outs:
            name = f"{schema}.{quote(out.table.lower())}"
            cols = [c for c, _ in out.columns]
            if out.table.lower() in kept:
                pass  # unchanged: the table, its comments and its grant are already there
            elif out.table == "audit_log":  # live, through the view owner's rights
                conn.execute(
                    text(
                        f"CREATE VIEW {name} AS SELECT {', '.join(quote(c.name) for c in cols)} "
                        f"FROM {quote(internal)}.{quote(audit_log.name)}"
                    )
                )
            else:
                conn.execute(
                    text(
                        f"CREATE TABLE {name} ("
                        + ", ".join(f"{quote(c.name)} {_SQL_TYPES[c.type]}" for c in cols)
                        + ")"
                    )
                )
                data = out.data
                if data is None:  # unchanged table whose SQL copy cannot be trusted
                    assert root is not None
                    data = pq.read_table(root / out.consumer / f"{out.table}.parquet")
                _copy(conn, name, [quote(c.name) for c in cols], data)
            if out.table.lower() not in kept:
                conn.execute(
                    text(
                        f"COMMENT ON {'VIEW' if out.table == 'audit_log' else 'TABLE'} "
                        f"{name} IS {_literal(table_def(out.table).title)}"
                    )
                )
                for c in cols:
                    conn.execute(
                        text(f"COMMENT ON COLUMN {name}.{quote(c.name)} IS {_literal(c.label)}")
                    )
                conn.execute(text(f"GRANT SELECT ON {name} TO {role}"))
            audit_rows.append(
                {
                    "at": at,
                    "actor": actor,
                    "action": "sql",
                    "publication_id": publication_id,
                    "consumer": consumer,
                    "object": f"{target.schema(consumer)}.{out.table.lower()}",
                    "rows": out.rows,
                    "sha256": None,
                    "personal": out.personal,
                }
            )
    if audit_rows:
        conn.execute(insert(audit_log), audit_rows)
    return tuple(target.schema(c) for c in by_consumer)


def _sql_kept(
    conn: Connection,
    target: SqlTarget,
    consumer: str,
    outs: list[_Output],
    previous: str | None,
    existing: Iterable[Any],
) -> set[str]:
    """Tables of a consumer's schema that stay as they are: unchanged outputs whose last SQL
    load, by the audit, was the previous (still current) publication's, and that exist."""
    unchanged = {o.table.lower() for o in outs if o.reused and o.table != "audit_log"}
    present = {name for name, kind in existing if kind == "r"}
    if previous is None or not unchanged & present:
        return set()
    schema = target.schema(consumer)
    objects = [f"{schema}.{t}" for t in sorted(unchanged & present)]
    a = audit_log.c
    last = (
        select(a.object, func.max(a.audit_id).label("audit_id"))
        .where(a.action == "sql", a.object.in_(objects))
        .group_by(a.object)
        .subquery()
    )
    loaded_by = conn.execute(
        select(a.object, a.publication_id).join(last, a.audit_id == last.c.audit_id)
    ).all()
    return {obj.split(".", 1)[1] for obj, pid in loaded_by if pid == previous}


def _copy(conn: Connection, name: str, columns: list[str], data: pa.Table) -> None:
    if data.num_rows == 0:
        return
    driver = conn.connection.driver_connection
    sql = f"COPY {name} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    options = pacsv.WriteOptions(include_header=False)
    with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        for batch in data.to_batches(max_chunksize=100_000):
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
