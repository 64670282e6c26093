"""Dataset contracts: the machine-readable form of what each department delivers.

A contract is declared once, in ``expectations/contracts/<DATASET>.yaml``, and the one generic
engine reads, normalises, validates and merges every dataset from it. Departments are data, not
code: adding one means adding a contract file (and sample files), not a module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

EXPECTATIONS_DIR = Path(__file__).parent  # contracts/, calendar.yaml, access.yaml
CONTRACTS_DIR = EXPECTATIONS_DIR / "contracts"

ColumnType = Literal[
    "text", "id18", "credit_code", "int", "decimal", "date", "month", "bool", "enum", "enum_multi"
]
Pii = Literal["id", "name", "phone", "bank", "health", "address"]
# PII kinds that are never published in any form (publishing.md, "Forms of personal data").
NEVER_PUBLISHED: frozenset[str] = frozenset({"bank", "health", "address"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Column(_Model):
    """One column of a delivered dataset."""

    name: str
    header: str
    aliases: tuple[str, ...] = ()
    type: ColumnType
    required: bool = False
    pii: Pii | None = None
    values: tuple[str, ...] = ()
    synonyms: dict[str, str] = Field(default_factory=dict)
    codes: dict[str, str] = Field(default_factory=dict)
    separators: tuple[str, ...] = ()
    pattern: str | None = None
    min: float | None = None
    max: float | None = None

    @property
    def headers(self) -> tuple[str, ...]:
        return (self.header, *self.aliases)

    @model_validator(mode="after")
    def _enum_has_values(self) -> Column:
        if self.type in {"enum", "enum_multi"} and not self.values:
            raise ValueError(f"枚举列 {self.name} 没有列出取值（values）")
        return self


class Condition(_Model):
    """A condition on one column of the same row, used by row rules."""

    column: str
    present: bool | None = None
    equals: Any = None
    in_: tuple[str, ...] | None = Field(default=None, alias="in")


class RowRule(_Model):
    """A check across several columns of one row (or, for hooks, of one delivery)."""

    id: str
    check: Literal[
        "required_when",
        "not_before",
        "absent_unless",
        "difference_equals",
        "sign_by",
        "equals_all",
        "min_age",
        "hook",
    ]
    columns: tuple[str, ...]
    message: str
    when: Condition | None = None
    hook: str | None = None
    tolerance: float = 0.0
    by: str | None = None
    signs: dict[str, Literal["non_negative", "non_positive"]] = Field(default_factory=dict)
    min_age: int | None = None
    zero_counts_as_absent: bool = False
    # A group rule: it looks across the rows sharing this column's value (e.g. a household)
    # and is judged after identical duplicates are collapsed; its message names the rows of
    # the group that break it.
    group_by: str | None = None


class Derivation(_Model):
    """Fill a column from another when it is missing (e.g. CL id from the certificate number)."""

    column: str
    from_column: str
    take_first: int
    when_missing: bool = True


class Contract(_Model):
    """Everything the engine needs to know about one dataset."""

    dataset: str
    dept: str
    title: str
    format: Literal["csv", "xlsx", "json"]
    encoding: str | None = None
    title_rows: int = 0
    mode: Literal["snapshot", "events"]
    key: tuple[str, ...]
    quarantine_threshold: float = 0.20
    min_snapshot_ratio: float | None = None
    merge_hook: str | None = None
    columns: tuple[Column, ...]
    derive: tuple[Derivation, ...] = ()
    row_rules: tuple[RowRule, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.dataset} 没有列 {name!r}")

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that must be present in a delivery and filled in every row (key included)."""
        derived = {d.column for d in self.derive}
        return tuple(
            c.name
            for c in self.columns
            if (c.required or c.name in self.key) and c.name not in derived
        )

    @property
    def pii_columns(self) -> dict[str, str]:
        return {c.name: c.pii for c in self.columns if c.pii}

    @model_validator(mode="after")
    def _references_exist(self) -> Contract:
        names = set(self.column_names)
        missing = [k for k in self.key if k not in names]
        for rule in self.row_rules:
            missing += [c for c in rule.columns if c not in names]
            if rule.when and rule.when.column not in names:
                missing.append(rule.when.column)
            if rule.by and rule.by not in names:
                missing.append(rule.by)
            if rule.group_by and rule.group_by not in names:
                missing.append(rule.group_by)
        for d in self.derive:
            missing += [c for c in (d.column, d.from_column) if c not in names]
        if missing:
            raise ValueError(
                f"{self.dataset}：主键、行规则或派生列引用了未声明的列 {sorted(set(missing))}"
            )
        return self


class Common(_Model):
    """Conventions shared by every dataset."""

    bool_synonyms: dict[str, tuple[str, ...]]
    null_tokens: tuple[str, ...]
    province_code: str
    file_name: str
    footer_markers: tuple[str, ...]
    departments: dict[str, str]

    @property
    def true_tokens(self) -> frozenset[str]:
        return frozenset(self.bool_synonyms["true"])

    @property
    def false_tokens(self) -> frozenset[str]:
        return frozenset(self.bool_synonyms["false"])


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}：数据集约定文件的顶层应为映射（键: 值），请检查 YAML 格式")
    return data


# The expectations in use: the package's own folder, or a copy a tool or test points to with
# `use_expectations` (process-wide, like the contracts it stands for).
_in_use: list[Path] = [EXPECTATIONS_DIR]
# Called when the contracts in use change (warehouse.tables keeps its metadata in step).
_listeners: list[Callable[[], object]] = []


def expectations_dir() -> Path:
    """The folder whose contracts/, calendar.yaml and access.yaml are in use."""
    return _in_use[-1]


@contextlib.contextmanager
def use_expectations(directory: Path) -> Iterator[Path]:
    """Within the block, the contracts, calendar and access matrix are read from `directory`
    (a folder laid out like expectations/: contracts/, calendar.yaml, access.yaml).

    Process-wide, for tools and tests that try a changed set of contracts (a new dataset)
    without touching the installed one; the history tables follow (warehouse.tables)."""
    directory = Path(directory).resolve()
    if not (directory / "contracts" / "_common.yaml").is_file():
        raise FileNotFoundError(
            f"{directory} 中没有 contracts/_common.yaml：不是 expectations/ 那样的目录"
        )
    _in_use.append(directory)
    try:
        _changed()
        yield directory
    finally:
        _in_use.pop()
        _changed()


def on_contracts_changed(listener: Callable[[], object]) -> None:
    """Call `listener` whenever `use_expectations` changes the contracts in use (a layer above
    that builds something from them: the warehouse's tables)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


def load_common(directory: Path | None = None) -> Common:
    """The conventions of `directory` (default: the contracts in use)."""
    return _load_common(directory or expectations_dir() / "contracts")


@cache
def _load_common(directory: Path) -> Common:
    return Common.model_validate(_load_yaml(directory / "_common.yaml"))


def load_contracts(directory: Path | None = None) -> dict[str, Contract]:
    """All dataset contracts of `directory` (default: the contracts in use), keyed by dataset
    name, in a stable order; the same dict object on every call for the same folder."""
    return _load_contracts(directory or expectations_dir() / "contracts")


@cache
def _load_contracts(directory: Path) -> dict[str, Contract]:
    contracts: dict[str, Contract] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        contract = Contract.model_validate(_load_yaml(path))
        if contract.dataset != path.stem:
            raise ValueError(
                f"{path.name} 声明的数据集是 {contract.dataset}：文件名须与数据集代码一致"
            )
        contracts[contract.dataset] = contract
    return contracts


def get_contract(dataset: str) -> Contract:
    try:
        return load_contracts()[dataset]
    except KeyError:
        raise KeyError(f"数据集 {dataset!r} 没有数据集约定") from None
