"""The access matrix (expectations/access.yaml): who gets which rows, columns and forms."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from datashare.errors import ConfigurationError  # PublishError: old path
from expectations.contract import expectations_dir, load_common
from warehouse.publish.tables import (
    ACCESS_FILE,
    MASKABLE,
    NEVER_COLUMNS,
    PUBLIC,
    ColumnDef,
    Form,
    TableDef,
    table_def,
)

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
            raise ValueError(
                f"{self.column} 上的行条件须恰好有一项检验"
                "（in、present、contains、age、dataset_of 或 in_table）"
            )
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


def load_access(path: Path | None = None) -> AccessMatrix:
    """Read and check the access matrix (default: access.yaml of the expectations in use); a
    matrix that breaks a publishing.md rule is refused."""
    path = path or expectations_dir() / ACCESS_FILE.name
    try:
        with path.open(encoding="utf-8") as f:
            matrix = AccessMatrix.model_validate(yaml.safe_load(f))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigurationError(f"{path.name} 无法读取或格式不对：{exc}") from None
    problems = check_access(matrix)
    if problems:
        raise ConfigurationError(
            f"{path.name} 违反发布规则（docs/publishing.md），请修改后重试：" + "；".join(problems)
        )
    return matrix


def default_access() -> AccessMatrix:
    """The access matrix of the expectations in use (expectations.contract.use_expectations)."""
    return _access_in(expectations_dir())


@cache
def _access_in(directory: Path) -> AccessMatrix:
    return load_access(directory / ACCESS_FILE.name)


def check_access(matrix: AccessMatrix) -> list[str]:
    """Rule violations in a matrix (empty: fine). The rules are publishing.md's, not the file's."""
    problems: list[str] = []
    departments = set(load_common().departments)
    missing_never = NEVER_COLUMNS - set(matrix.never_columns)
    if missing_never:
        problems.append(f"never_columns 缺少 {sorted(missing_never)}")
    for consumer, entries in matrix.consumers.items():
        if consumer not in departments and consumer != PUBLIC:
            problems.append(f"未知的使用方 {consumer}")
        for name, entry in entries.items():
            where = f"{consumer}.{name}"
            try:
                tdef = table_def(name)
            except KeyError:
                problems.append(f"{where}：未知的表")
                continue
            if consumer == PUBLIC and name != "town_summary":
                problems.append(f"{where}：PUBLIC 只能得到 town_summary")
            problems += _check_columns(matrix, where, tdef, entry)
            problems += _check_rows(where, tdef, entry.rows)
            foreign = tdef.dept is not None and tdef.dept != consumer and consumer != "XC"
            if foreign and not entry.grant:
                problems.append(f"{where}：其他部门的数据集须写明 grant（共享依据）")
            problems += _check_hidden_digits(matrix, where, tdef, entry)
            if consumer not in ("XC", PUBLIC) and name != "alerts" and (foreign or not tdef.dept):
                plain = [
                    c.name
                    for c, form in resolve_columns(matrix, tdef, entry)
                    if form == "plain" and c.pii in MASKABLE
                ]
                if plain:
                    problems.append(f"{where}：{plain} 不能以明文（plain）给 {consumer}")
    return problems


def _check_hidden_digits(
    matrix: AccessMatrix, where: str, tdef: TableDef, entry: TableAccess
) -> list[str]:
    """publishing.md "Forms": where an id is masked, no column of the row may carry its hidden
    digits (the birth date): publish age in whole years instead."""
    resolved = resolve_columns(matrix, tdef, entry)
    masked = {c.name for c, form in resolved if c.pii == "id" and form == "masked"}
    return [
        f"{where}：{c.name} 能还原脱敏的 {c.reveals} 中隐去的数字（请改为发布年龄）"
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
                problems.append(f"{where}：'*' 只能是 plain 或 masked")
            continue
        if name not in tdef.names:
            problems.append(f"{where}：未知的列 {name}")
            continue
        column = tdef.column(name)
        if matrix.never(column) and form != "never":
            problems.append(f"{where}：{name} 永不发布，只能写 never")
        elif form == "masked" and column.pii not in MASKABLE:
            problems.append(f"{where}：{name} 没有脱敏形式（masked）")
        elif (form == "key") != (column.type == "key") and form != "never":
            problems.append(f"{where}：{name} 不能是 {form}")
    return problems


def _check_rows(where: str, tdef: TableDef, rows: Iterable[RowCondition]) -> list[str]:
    problems = []
    for cond in rows:
        if cond.column not in tdef.names or tdef.column(cond.column).never:
            problems.append(f"{where}：行条件用了未知的列 {cond.column}")
        if cond.in_table is not None:
            try:
                other = table_def(cond.in_table.table)
            except KeyError:
                problems.append(f"{where}：行条件引用了未知的表 {cond.in_table.table}")
                continue
            if cond.in_table.column not in other.names:
                problems.append(f"{where}：行条件引用了未知的列 {cond.in_table.column}")
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
