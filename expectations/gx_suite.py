"""A dataset contract as two Great Expectations suites: the delivery gate and the full contract.

    <DATASET>.delivery   cheap, always run on the whole normalised frame, and the gate:
                         - every required column exists: expect_column_to_exist
                         - a snapshot is not truncated: expect_table_row_count_to_be_between
                           with min_value = ceil(previous_rows * min_snapshot_ratio)
                         - the quarantine share is within bounds: expect_column_values_to_be_in_set
                           (`_defects` == 0 for at least 1 - quarantine_threshold of the rows)
    <DATASET>.contract   every column and row rule of the contract, for the record, Data Docs and
                         a second gate: not null (required), in set (enums), regex (patterns,
                         enum_multi), between (min/max), valid GB 11643 ids and GB 32100 codes,
                         one expect_row_rule_to_hold per row rule; each with
                         mostly = 1 - quarantine_threshold.

Both work on the engine's normalised, typed frame (tasks/validate.py): canonical column names,
canonical enum values, `_defects` = the number of quarantine reasons the engine found per row.
Checks of personal columns use expectations that never list a value (expectations/gx_custom.py).
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal

from expectations.contract import Column, Contract
from expectations.gx_custom import (
    ExpectColumnValuesToBeValidCreditCode,
    ExpectColumnValuesToBeValidId18,
    ExpectPersonalValuesToBeBetween,
    ExpectPersonalValuesToBeInSet,
    ExpectPersonalValuesToMatchRegex,
    ExpectRowRuleToHold,
    gx,
    row_rule_columns,
)

gxe = gx.expectations

DEFECTS_COLUMN = "_defects"
ExpectationSuite = gx.ExpectationSuite
Expectation = gxe.Expectation


def delivery_suite_name(dataset: str) -> str:
    """Name of the delivery (gate) suite of a dataset."""
    return f"{dataset}.delivery"


def contract_suite_name(dataset: str) -> str:
    """Name of the full-contract suite of a dataset."""
    return f"{dataset}.contract"


def min_snapshot_rows(contract: Contract, previous_rows: int | None) -> int | None:
    """Fewest rows a snapshot may have without being a truncated export (None: no gate).

    Computed in decimal so that e.g. 0.3 x 10 is 3, not 3.0000000000000004 rounded up to 4.
    """
    if contract.mode != "snapshot" or previous_rows is None or not contract.min_snapshot_ratio:
        return None
    return math.ceil(Decimal(str(contract.min_snapshot_ratio)) * previous_rows)


def row_mostly(contract: Contract) -> float:
    """`mostly` for row-level expectations: the share of rows that must pass."""
    return round(1.0 - contract.quarantine_threshold, 10)


def build_delivery_suite(contract: Contract, *, previous_rows: int | None) -> ExpectationSuite:
    """The delivery (gate) suite; see the module docstring."""
    expectations: list[Expectation] = [
        gxe.ExpectColumnToExist(column=name) for name in contract.required_columns
    ]
    min_rows = min_snapshot_rows(contract, previous_rows)
    expectations.append(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=min_rows if min_rows is not None else 0,
            meta={
                "gate": "truncated_snapshot" if min_rows is not None else "record_only",
                "previous_rows": previous_rows,
            },
        )
    )
    expectations.append(
        gxe.ExpectColumnValuesToBeInSet(
            column=DEFECTS_COLUMN,
            value_set=[0],
            mostly=row_mostly(contract),
            meta={
                "gate": "quarantine_share",
                "quarantine_threshold": contract.quarantine_threshold,
            },
        )
    )
    return ExpectationSuite(
        name=delivery_suite_name(contract.dataset),
        expectations=expectations,
        meta={"dataset": contract.dataset, "dept": contract.dept, "title": contract.title},
    )


def _full_pattern(pattern: str) -> str:
    """GX matches a regex anywhere in the value; the contract means the whole value."""
    if pattern.startswith("^") and pattern.endswith("$"):
        return pattern
    return f"^(?:{pattern})$"


def _enum_multi_pattern(column: Column) -> str:
    one = "|".join(re.escape(v) for v in column.values)
    return f"^(?:{one})(?:、(?:{one}))*$"


def _column_expectations(
    column: Column, *, required: bool, mostly: float, exchange_date: date
) -> list[Expectation]:
    personal = column.pii is not None
    found: list[Expectation] = []
    if required:
        found.append(gxe.ExpectColumnValuesToNotBeNull(column=column.name, mostly=mostly))
    if column.type == "enum":
        in_set = ExpectPersonalValuesToBeInSet if personal else gxe.ExpectColumnValuesToBeInSet
        found.append(in_set(column=column.name, value_set=list(column.values), mostly=mostly))
    regex_type = (
        ExpectPersonalValuesToMatchRegex if personal else gxe.ExpectColumnValuesToMatchRegex
    )
    if column.type == "enum_multi":
        found.append(
            regex_type(column=column.name, regex=_enum_multi_pattern(column), mostly=mostly)
        )
    if column.pattern:
        found.append(
            regex_type(column=column.name, regex=_full_pattern(column.pattern), mostly=mostly)
        )
    if column.min is not None or column.max is not None:
        between = ExpectPersonalValuesToBeBetween if personal else gxe.ExpectColumnValuesToBeBetween
        found.append(
            between(column=column.name, min_value=column.min, max_value=column.max, mostly=mostly)
        )
    if column.type == "id18":
        found.append(
            ExpectColumnValuesToBeValidId18(
                column=column.name, exchange_date=exchange_date.isoformat(), mostly=mostly
            )
        )
    if column.type == "credit_code":
        found.append(
            ExpectColumnValuesToBeValidCreditCode(
                column=column.name, hide_values=personal, mostly=mostly
            )
        )
    return found


def build_contract_suite(contract: Contract, *, exchange_date: date) -> ExpectationSuite:
    """The full-contract suite; see the module docstring."""
    mostly = row_mostly(contract)
    required = set(contract.required_columns)
    expectations: list[Expectation] = []
    for column in contract.columns:
        expectations += _column_expectations(
            column, required=column.name in required, mostly=mostly, exchange_date=exchange_date
        )
    for rule in contract.row_rules:
        expectations.append(
            ExpectRowRuleToHold(
                column_list=row_rule_columns(rule),
                dataset=contract.dataset,
                rule_id=rule.id,
                exchange_date=exchange_date.isoformat(),
                mostly=mostly,
                meta={"message": rule.message},
            )
        )
    return ExpectationSuite(
        name=contract_suite_name(contract.dataset),
        expectations=expectations,
        meta={"dataset": contract.dataset, "dept": contract.dept, "title": contract.title},
    )


def build_suites(
    contract: Contract, *, exchange_date: date, previous_rows: int | None
) -> tuple[ExpectationSuite, ExpectationSuite]:
    """The (delivery, contract) suites of a dataset for one delivery.

    `previous_rows` is the row count of the last accepted snapshot (None when unknown, or for
    events datasets: no truncation gate then).
    """
    return (
        build_delivery_suite(contract, previous_rows=previous_rows),
        build_contract_suite(contract, exchange_date=exchange_date),
    )
