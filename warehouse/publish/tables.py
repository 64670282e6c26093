"""What is published: the shared tables and every dataset, their columns, labels and types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from domain.alert_rules import risk_columns
from expectations.contract import CONTRACTS_DIR, NEVER_PUBLISHED, get_contract, load_contracts
from warehouse.tables import person_key_column

ACCESS_FILE = CONTRACTS_DIR.parent / "access.yaml"
PUBLIC = "PUBLIC"
# XLSX only where a person opens it (issue 13). The tables a department acts on (the alerts
# pushed to it, its rejected rows, its delivery ledger, the public town summary) are workbooks
# up to XLSX_MAX_ROWS rows; the bulk tables (the profiles, the datasets, the audit log) are
# read by programs and analysts (Parquet, SQL) and are workbooks only while a person could
# still scroll them, up to XLSX_BULK_MAX_ROWS rows (a county's monitored households, not a
# city's roster). Above its limit a table is a CSV with a BOM beside the Parquet: Excel and WPS
# open it, and writing it costs a fraction of a workbook (xlsxwriter was two thirds of a city
# night's publication).
XLSX_MAX_ROWS = 200_000
XLSX_BULK_MAX_ROWS = 20_000
OPENED_BY_PEOPLE = frozenset({"alerts", "rejects", "deliveries", "town_summary"})


def xlsx_wanted(table: str, rows: int, max_rows: int, bulk_max_rows: int) -> bool:
    """Whether a published table of this many rows is written as XLSX (else CSV)."""
    return rows <= (max_rows if table in OPENED_BY_PEOPLE else min(max_rows, bulk_max_rows))


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
    copied: bool = False  # the same content as another consumer's: its files linked, not written

    def __post_init__(self) -> None:
        if self.data is not None:
            self.rows = self.data.num_rows

    @property
    def personal(self) -> str:
        forms = {form for column, form in self.columns if column.pii in MASKABLE}
        forms |= {"key" for column, _ in self.columns if column.type == "key"}
        return next((f for f in ("plain", "masked", "key") if f in forms), "none")
