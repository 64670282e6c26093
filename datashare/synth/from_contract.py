"""Rows for a dataset that has no builder of its own, made from its contract alone.

    contract_rows(county, contract, day)   the dataset's snapshot on `day`
    contract_gaps(contract)                what the contract lacks for that ([]: nothing)

A new snapshot dataset appears in the synthetic county with no code (docs/datasets.md): its
rows are a stable share of the county's persons (a key the persons have, e.g. id_number) or
households (household_id, head_id_number), and each column is

    a reference   a column named like one of the county's facts (name, id_number, gender,
                  birth_date, household_id, village_code, town …; head_<fact> for the
                  household head) takes the fact, when it fits the column's type, enum values
                  and pattern;
    generated     otherwise by type: enum values, int and decimal within min/max, dates in
                  the year before the county's start, bools, phone numbers, free text.

Values are drawn once per person or household, so a dataset's snapshot changes only as the
county does (a death, a move). What the generic builder cannot honour — row rules, derived
columns, merge hooks, events (when do they happen?), a pattern or an id it cannot source — it
names in a ConfigurationError rather than guessing: that dataset needs a builder in county.py.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from datashare.errors import ConfigurationError
from datashare.synth.files import rng_for
from expectations.contract import Column, Contract

if TYPE_CHECKING:
    from datashare.synth.county import County

SHARE = 0.05  # persons (or households) a generic dataset lists; at least one
_TEXT_LIKE = frozenset({"text", "enum", "enum_multi"})


def _reference(county: County, column: Column) -> tuple[str, str] | None:
    """(subject, fact) a column takes from the county: ("head", "name") for head_name."""
    persons, households = county.persons, county.households
    if column.name.startswith("head_") and column.name.removeprefix("head_") in persons:
        return "head", column.name.removeprefix("head_")
    if column.name in persons:
        return "person", column.name
    if column.name in households:
        return "household", column.name
    return None


def _fits(values: np.ndarray, column: Column) -> bool:
    """Whether the county's values of a fact are valid values of the column."""
    present = [v for v in values if v is not None and not pd.isna(v)]
    if column.type in {"enum", "enum_multi"}:
        return set(map(str, present)) <= set(column.values)
    if column.type in _TEXT_LIKE or column.type == "id18":
        pattern = column.pattern
        return pattern is None or all(re.fullmatch(pattern, str(v)) for v in present)
    if column.type == "date":
        return np.issubdtype(np.asarray(values).dtype, np.datetime64)
    if column.type == "bool":
        return np.asarray(values).dtype == bool
    if column.type in {"int", "decimal"}:
        return np.issubdtype(np.asarray(values).dtype, np.number)
    return False


def _subject(county: County, contract: Contract) -> str | None:
    """Whose rows these are: persons when a key column is a person's fact, else households."""
    kinds = {(_reference(county, contract.column(k)) or ("", ""))[0] for k in contract.key}
    if "person" in kinds:
        return "person"
    if kinds & {"household", "head"}:
        return "household"
    return None


def _generable(column: Column) -> str | None:
    """Why a column without a reference cannot be generated (None: it can)."""
    if column.type == "id18":
        return "一个模拟县没有对应事实的身份证号列"
    if column.type == "credit_code":
        return "一个统一社会信用代码列"
    if column.type == "text" and column.pattern and column.pii is None:
        return f"一个格式约束（{column.pattern}）"
    return None


def contract_gaps(county: County, contract: Contract) -> list[str]:
    """What `contract` lacks for rows to be made from it alone (empty: nothing)."""
    gaps = []
    if contract.mode != "snapshot":
        gaps.append("说明事件何时发生的生成函数（事件型数据集）")
    if contract.row_rules:
        gaps.append(f"遵守其行规则 {[r.id for r in contract.row_rules]} 的生成函数")
    if contract.derive:
        gaps.append("生成其派生列的生成函数")
    if contract.merge_hook:
        gaps.append(f"实现其合并钩子 {contract.merge_hook} 的生成函数")
    if _subject(county, contract) is None:
        gaps.append("模拟县认得的主键（人员的 id_number，或户的 household_id、head_id_number）")
    for column in contract.columns:
        ref = _reference(county, column)
        if ref is not None:
            frame = county.households if ref[0] == "household" else county.persons
            if _fits(frame[ref[1]].to_numpy(), column):
                continue
        if (why := _generable(column)) is not None:
            gaps.append(f"列 {column.name} 的数据来源：{why}")
    return gaps


def contract_rows(county: County, contract: Contract, day: date) -> pd.DataFrame:
    """The snapshot a dataset with no builder delivers on `day`, made from its contract."""
    gaps = contract_gaps(county, contract)
    if gaps:
        raise ConfigurationError(
            f"模拟县无法仅凭数据集约定生成 {contract.dataset}：缺少{'；'.join(gaps)}。"
            "请在 datashare/synth/county.py 中为它编写生成函数"
        )
    subject = _subject(county, contract)
    persons, households = county.persons, county.households
    dates = county.person_dates
    alive = ~np.isnat(dates["exists_from"]) & (dates["exists_from"] <= np.datetime64(day, "D"))
    alive &= np.isnat(dates["gone"]) | (dates["gone"] > np.datetime64(day, "D"))
    heads = households["head"].to_numpy()
    eligible = alive if subject == "person" else alive[heads]
    rng = rng_for(county.seed, contract.dataset, "rows")
    chosen = rng.random(len(eligible)) < SHARE
    if not chosen.any():
        chosen[int(rng.integers(0, len(eligible)))] = True
    rows = np.flatnonzero(chosen & eligible)
    if subject == "person":
        person, hh = rows, persons["hh"].to_numpy()[rows]
    else:
        person, hh = heads[rows], rows
    data: dict[str, object] = {}
    for column in contract.columns:
        ref = _reference(county, column)
        if ref is not None:
            kind, fact = ref
            frame = households if kind == "household" else persons
            values = frame[fact].to_numpy()
            if _fits(values, column):
                pick = hh if kind == "household" else (heads[hh] if kind == "head" else person)
                data[column.name] = _canonical(values[pick], column)
                continue
        n = len(persons) if subject == "person" else len(households)
        data[column.name] = _generated(county, contract.dataset, column, n)[rows]
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


def _canonical(values: np.ndarray, column: Column) -> np.ndarray:
    if column.type == "date":
        return values.astype("datetime64[D]")
    if column.type in _TEXT_LIKE or column.type == "id18":
        return values.astype(object)
    return values


def _generated(county: County, dataset: str, column: Column, n: int) -> np.ndarray:
    """One value for each of the county's `n` persons or households (all of them, so that a
    listed one keeps its values whoever else is listed)."""
    rng = rng_for(county.seed, dataset, column.name)
    lo = column.min if column.min is not None else 0.0
    match column.type:
        case "enum" | "enum_multi":
            return np.asarray(column.values, dtype=object)[rng.integers(0, len(column.values), n)]
        case "int":
            hi = column.max if column.max is not None else lo + 100
            return rng.integers(int(lo), int(hi) + 1, n).astype(np.int64)
        case "decimal":
            hi = column.max if column.max is not None else lo + 10_000
            return np.round(rng.uniform(lo, hi, n), 2)
        case "bool":
            return rng.random(n) < 0.5
        case "date" | "month":
            first = county.start - timedelta(days=365)
            days = np.datetime64(first, "D") + rng.integers(0, 365, n).astype("timedelta64[D]")
            if column.type == "date":
                return days
            return np.datetime_as_string(days.astype("datetime64[M]"), unit="M").astype(object)
        case _:
            return _text(rng, column, n)


def _text(rng: np.random.Generator, column: Column, n: int) -> np.ndarray:
    if column.pii == "phone":
        digits = rng.integers(0, 10**9, n)
        return np.asarray([f"13{d:09d}" for d in digits], dtype=object)
    if column.pii == "bank":
        digits = rng.integers(0, 10**12, n)
        return np.asarray([f"6217{d:015d}" for d in digits], dtype=object)
    return np.asarray([f"{column.header}{i + 1:05d}" for i in range(n)], dtype=object)
