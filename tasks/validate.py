"""Row-level validation: which delivered rows are accepted, quarantined (with why) or duplicates.

Input is the raw text frame of one delivery (tasks/read.py); output is the typed frame of
accepted rows, the rejects (one row per quarantined row: its first defect, all defects in the
message, values masked) and the counts, with rows_in = loaded + quarantined + duplicates enforced.

The steps run in this order, here and nowhere else (`validate_rows`):

1. normalise every row, and find the defects of each cell (type, enum, pattern, min/max, id
   checks, control characters, required);
2. collapse identical rows (same normalised content) to their first occurrence;
3. row rules, then group rules (`group_by`: rules across the rows of a household), on the
   distinct rows only, so a copy of a row never counts twice;
4. key conflicts (same key, different content) among the distinct rows.

A group rule quarantines the rows that break it (for one_head_per_household: the heads of a
household with several), not the whole group, and its message names the group's rows that
break it; so does a key conflict's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from datashare.errors import ConservationError  # re-exported: old import path
from domain.arrow_text import fixed_width, text_array
from domain.identity_codes import credit_code_defects
from domain.labels import RULE_TEXT  # what each rule means, as a department reads it
from expectations.contract import Column, Common, Contract
from tasks.mask import mask_series
from tasks.normalise import NormalisedColumn, clean_text, empty_column, normalise_frame
from tasks.read import NUMBER_CELL
from tasks.rules import row_rule_broken

# A message names at most this many rows of a group (a household, a key) that break a rule.
_LISTED_ROWS = 10
_TYPE_TEXT = {
    "date": "日期",
    "month": "月份",
    "int": "整数",
    "decimal": "金额/数值",
    "bool": "是/否",
}

REJECT_COLUMNS = ["source_row", "column", "rule", "value_masked", "message"]
DEFECTS = "_defects"


@dataclass(frozen=True)
class Validated:
    """The outcome of row-level validation of one delivery.

    `distinct` and `accepted` are made from `typed` when first asked for (each is a copy of
    most of the delivery); the intake hands GX `typed` with `distinct_rows` instead, and
    GX copies only the rows it reads.
    """

    typed: pd.DataFrame  # every delivered row, typed, with source_row and _defects
    rejects: pd.DataFrame  # REJECT_COLUMNS, one row per quarantined row, sorted by source_row
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    duplicates: int
    duplicate: np.ndarray = field(repr=False, compare=False)  # per typed row: collapsed
    accepted_mask: np.ndarray = field(repr=False, compare=False)  # per typed row: to load

    @property
    def quarantine_share(self) -> float:
        distinct = self.rows_in - self.duplicates
        return self.rows_quarantined / distinct if distinct else 0.0

    @property
    def distinct_rows(self) -> np.ndarray | None:
        """Positions in `typed` of the rows GX sees (None: every row)."""
        return np.flatnonzero(~self.duplicate) if self.duplicates else None

    @cached_property
    def distinct(self) -> pd.DataFrame:
        """`typed` without the collapsed identical duplicates (what GX sees)."""
        return self.typed.loc[~self.duplicate] if self.duplicates else self.typed

    @cached_property
    def accepted(self) -> pd.DataFrame:
        """Rows to load: typed canonical columns and source_row."""
        columns = [c for c in self.typed.columns if c != DEFECTS]
        return self.typed.loc[self.accepted_mask, columns].reset_index(drop=True)


def _apply_derivations(raw: pd.DataFrame, contract: Contract, common: Common) -> pd.DataFrame:
    """Fill derived columns (e.g. CL id from the certificate number) where they are empty."""
    if not contract.derive:
        return raw
    updates: dict[str, pd.Series] = {}
    for d in contract.derive:
        source = raw.get(d.from_column)
        if source is None:
            continue
        target = (
            raw[d.column] if d.column in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
        )
        filled = clean_text(target, common.null_tokens)
        derived = clean_text(source, common.null_tokens).str.slice(0, d.take_first)
        updates[d.column] = filled.where(filled.notna(), derived)
    return raw.assign(**updates)


def _column_defects(col: Column, norm: NormalisedColumn) -> pd.Series:
    """Defects of one column beyond normalisation: pattern, credit code, min and max."""
    defects = norm.defects
    values = norm.values
    if col.pattern:
        matches = values.astype("string").str.fullmatch(col.pattern).fillna(True).astype(bool)
        defects = _add_code(defects, ~matches.to_numpy(dtype=bool), "pattern")
    if col.type == "credit_code":
        defects = defects.where(defects.notna(), credit_code_defects(values))
    if col.min is not None:
        defects = _add_code(defects, (values < col.min).fillna(False).to_numpy(dtype=bool), "min")
    if col.max is not None:
        defects = _add_code(defects, (values > col.max).fillna(False).to_numpy(dtype=bool), "max")
    return defects


def _number_cell_codes(codes: pd.Series, raw: pd.DataFrame, name: str) -> pd.Series:
    """`codes` with `number_cell` wherever the reader flagged the cell (tasks/read.py:
    NUMBER_CELL): an identifier that came as a number whose digits cannot be trusted, whatever
    its checksum says. It replaces any other defect of the cell (that is the cause), except
    id_excel_float, which already says the same of an id."""
    flag = raw.get(NUMBER_CELL + name)
    if flag is None:
        return codes
    replace = flag.to_numpy(dtype=bool) & (codes != "id_excel_float").fillna(True).to_numpy(bool)
    return codes.mask(replace, "number_cell")


def _add_code(defects: pd.Series, broken: np.ndarray, code: str) -> pd.Series:
    """`defects` with `code` where a row is `broken` and has no defect yet."""
    new = broken & defects.isna().to_numpy()
    if not new.any():
        return defects
    marked = pc.if_else(pa.array(new), pa.scalar(code, pa.large_string()), text_array(defects))
    return pd.Series(pd.array(marked, dtype="string"), index=defects.index)


def _codes(broken: np.ndarray, code: str, index: pd.Index) -> pd.Series:
    """A defect-code Series: `code` where `broken`, NA elsewhere."""
    labels = pa.array([code], type=pa.large_string())
    picked = labels.take(pa.array(np.zeros(len(broken), dtype=np.int8), mask=~broken))
    return pd.Series(pd.array(picked, dtype="string"), index=index)


def _row_identity(
    typed: pd.DataFrame,
    cleaned: dict[str, pd.Series],
    defects: dict[str, pd.Series],
    columns: list[str],
) -> pd.Series:
    """A hash per row of its normalised content (defective cells by their cleaned text)."""
    parts = {c: typed[c] for c in columns}
    for c in columns:
        if c in defects and defects[c].notna().any():
            parts[f"{c}\x00raw"] = cleaned[c].where(defects[c].notna(), pd.NA)
    return pd.util.hash_pandas_object(pd.DataFrame(parts), index=False)


def _id_numbers(values: pd.Series) -> np.ndarray | None:
    """Canonical id numbers as distinct int64s (17 digits, then the check character as 0-10),
    -1 for NA; None unless every value present is 17 ASCII digits and a digit or X."""
    if values.dtype != "string" or not len(values):
        return None
    arr = text_array(values)
    matrix, positions = fixed_width(arr, 18)
    if len(positions) != len(arr) - arr.null_count:
        return None
    digits = matrix[:, :17]
    last = matrix[:, 17]
    if not (
        ((digits >= 48) & (digits <= 57)).all()
        and (((last >= 48) & (last <= 57)) | (last == 88)).all()
    ):
        return None
    number = np.zeros(len(digits), dtype=np.int64)
    for j in range(17):
        number *= 10
        number += digits[:, j]
        number -= 48
    out = np.full(len(arr), -1, dtype=np.int64)
    out[positions] = number * 11 + np.where(last == 88, 10, last.astype(np.int64) - 48)
    return out


def _factorize(values: pd.Series) -> tuple[np.ndarray, int]:
    """(codes, number of distinct values): equal codes for equal values, -1 for NA. Canonical
    id numbers are factorized as integers (hashing a million strings costs several times
    more); the codes are then numbered differently, but equal exactly where the values are."""
    numbers = _id_numbers(values)
    if numbers is None:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return codes, len(uniques)
    present = numbers >= 0
    codes = np.full(len(numbers), -1, dtype=np.int64)
    found, uniques = pd.factorize(numbers[present])
    codes[present] = found
    return codes, len(uniques)


def _equal_codes(frame: pd.DataFrame) -> np.ndarray:
    """An int64 per row, equal for rows whose values are equal in every column (NA equal to
    NA); rows with different codes differ in some column."""
    combined = np.zeros(len(frame), dtype=np.int64)
    size = 1
    for name in frame.columns:
        codes, distinct = _factorize(frame[name])
        width = distinct + 1
        if size * width >= 2**62:  # compress before the product could overflow
            combined, seen = pd.factorize(combined)
            size = len(seen)
        combined = combined * width + (codes + 1)
        size *= width
    return combined


def _occurs_twice(codes: np.ndarray) -> np.ndarray:
    return pd.Series(codes).duplicated(keep=False).to_numpy()


def _duplicate_rows(
    typed: pd.DataFrame,
    cleaned: dict[str, pd.Series],
    defects: dict[str, pd.Series],
    columns: list[str],
    key_codes: np.ndarray,
) -> np.ndarray:
    """Rows identical to an earlier row (by `_row_identity`).

    Identical rows have the same key, so only rows whose key occurs more than once are
    hashed; the others are first occurrences. The hash of a row does not depend on the other
    rows, so this is `_row_identity(...).duplicated(keep="first")` of the whole frame.
    """
    duplicate = np.zeros(len(typed), dtype=bool)
    candidates = _occurs_twice(key_codes)
    if not candidates.any():
        return duplicate
    if candidates.all():
        return _row_identity(typed, cleaned, defects, columns).duplicated(keep="first").to_numpy()
    rows = np.flatnonzero(candidates)
    parts = {c: typed[c].iloc[rows] for c in columns}
    for c in columns:
        if c in defects and defects[c].notna().any():
            parts[f"{c}\x00raw"] = cleaned[c].iloc[rows].where(defects[c].iloc[rows].notna(), pd.NA)
    identity = pd.util.hash_pandas_object(pd.DataFrame(parts), index=False)
    duplicate[rows] = identity.duplicated(keep="first").to_numpy()
    return duplicate


def _group_rows(groups: np.ndarray, broken: np.ndarray, source_rows: np.ndarray) -> pd.Series:
    """Per broken row, the rows of its group that are broken ("第 5、9 行"), NA elsewhere."""
    out = pd.Series(pd.NA, index=range(len(broken)), dtype="string")
    where = np.flatnonzero(broken)
    if not len(where):
        return out
    order = np.lexsort((source_rows[where], groups[where]))
    where, group, rows = where[order], groups[where][order], source_rows[where][order]
    bounds = [0, *(np.flatnonzero(group[1:] != group[:-1]) + 1).tolist(), len(where)]
    numbers = [str(r) for r in rows.tolist()]
    texts = np.empty(len(where), dtype=object)
    for lo, hi in itertools.pairwise(bounds):
        listed = "、".join(numbers[lo : min(hi, lo + _LISTED_ROWS)])
        many = hi - lo > _LISTED_ROWS
        texts[lo:hi] = f"第 {listed} 行等 {hi - lo} 行" if many else f"第 {listed} 行"
    out.iloc[where] = texts
    return out


def _messages(
    contract: Contract,
    found: list[tuple[str, str, pd.Series]],
    cleaned: dict[str, pd.Series],
    rows: np.ndarray,
    where: dict[str, pd.Series],
) -> pd.Series:
    """One Chinese message per quarantined row listing every defect, values masked; a group
    rule or a key conflict also names the rows of the group that break it (`where`)."""
    message = pd.Series("", index=rows, dtype="string")
    labels = {c.name: c.header for c in contract.columns}
    rules = {r.id: r for r in contract.row_rules}
    for column, kind, codes in found:
        codes = codes.loc[rows]
        hit = codes.notna()
        if not hit.any():
            continue
        group_rows = where[kind + column].loc[rows] if kind + column in where else None
        if column in rules:
            text = pd.Series(rules[column].message, index=rows, dtype="string")
            if group_rows is not None:
                group_by = rules[column].group_by or column
                text = text + f"（同一{labels[group_by]}下违反此规则的：" + group_rows + "）"
        else:
            col = contract.column(column)
            value = mask_series(
                cleaned.get(column, pd.Series(pd.NA, index=rows)).loc[rows], col.pii
            ).fillna("空")
            rule_text = codes.map(RULE_TEXT, na_action="ignore").astype("string")
            if col.type in _TYPE_TEXT:
                rule_text = rule_text.where(
                    codes != "unparseable", f"无法识别为{_TYPE_TEXT[col.type]}"
                )
            if group_rows is not None:
                value = value + "；同一主键的：" + group_rows
            text = labels[column] + "：" + rule_text + "（" + value + "）"
        joined = message.where(message == "", message + "；") + text
        message = message.where(~hit, joined)
    return message


def validate_rows(
    raw: pd.DataFrame, contract: Contract, common: Common, *, exchange_date: date, excel: bool
) -> Validated:
    """Normalise and validate every row of a delivery; see the module docstring."""
    raw = _apply_derivations(raw, contract, common)
    normalised = normalise_frame(raw, contract, common, exchange_date=exchange_date, excel=excel)
    index = raw.index
    typed_cols = {
        c.name: normalised[c.name].values if c.name in normalised else empty_column(c, index)
        for c in contract.columns
    }
    typed = pd.DataFrame(typed_cols, index=index)
    cleaned = {name: n.cleaned for name, n in normalised.items()}

    # 1. Per-column defects, in contract column order.
    found: list[tuple[str, str, pd.Series]] = []
    required = set(contract.required_columns) | set(contract.key)
    col_defects: dict[str, pd.Series] = {}
    for col in contract.columns:
        if col.name not in normalised:
            codes = _codes(np.full(len(index), col.name in required), "required", index)
        else:
            codes = _number_cell_codes(_column_defects(col, normalised[col.name]), raw, col.name)
            if col.name in required:
                codes = _add_code(codes, normalised[col.name].cleaned.isna().to_numpy(), "required")
        col_defects[col.name] = codes
        found.append((col.name, "column", codes))

    # 2. Identical rows are collapsed to their first occurrence and counted.
    columns = list(contract.column_names)
    key_frame = typed[list(contract.key)]
    key_codes = _equal_codes(key_frame)
    if set(contract.key) <= set(columns):
        duplicate = _duplicate_rows(typed, cleaned, col_defects, columns, key_codes)
    else:
        identity = _row_identity(typed, cleaned, col_defects, columns)
        duplicate = identity.duplicated(keep="first").to_numpy()
    # What the rules read, of the distinct rows (one copy of those columns, not of the frame).
    read = {c for r in contract.row_rules for c in (*r.columns, r.by, r.group_by) if c}
    read |= {r.when.column for r in contract.row_rules if r.when is not None}
    ruled = typed[[c for c in columns if c in read]]
    distinct = ruled.loc[~duplicate] if duplicate.any() else ruled
    source_rows = raw["source_row"].to_numpy()
    where: dict[str, pd.Series] = {}

    # 3. Row rules, then group rules, judged on the distinct rows (a copy counts once).
    ordered = sorted(contract.row_rules, key=lambda r: r.group_by is not None)
    for rule in ordered:
        broken = np.zeros(len(index), dtype=bool)
        broken[~duplicate] = row_rule_broken(distinct, rule, exchange_date).to_numpy(dtype=bool)
        found.append((rule.id, "rule", _codes(broken, rule.id, index)))
        if rule.group_by is not None:
            groups, _ = _factorize(typed[rule.group_by])
            rows_text = _group_rows(groups, broken, source_rows)
            where["rule" + rule.id] = rows_text.set_axis(index)

    # 4. Same key, different content: every such row is quarantined.
    key_ok = np.ones(len(index), dtype=bool)
    for k in contract.key:
        key_ok &= col_defects[k].isna().to_numpy() & typed[k].notna().to_numpy()
    candidates = key_ok & ~duplicate
    # Rows whose key is unique among the candidates cannot conflict: hash only the others.
    shared = np.zeros(len(index), dtype=bool)
    shared[candidates] = _occurs_twice(key_codes[candidates])
    conflict = np.zeros(len(index), dtype=bool)
    if shared.any():
        rows = np.flatnonzero(shared)
        key_hash = pd.util.hash_pandas_object(key_frame.iloc[rows], index=False).to_numpy()
        conflict[rows] = pd.Series(key_hash).duplicated(keep=False).to_numpy()
        where["conflict" + contract.key[0]] = _group_rows(
            key_codes, conflict, source_rows
        ).set_axis(index)
    conflicts = _codes(conflict, "key_conflict", index)
    found.append((contract.key[0], "conflict", conflicts))

    defect_count = np.zeros(len(index), dtype=np.int64)
    for _, _, codes in found:
        defect_count += codes.notna().to_numpy()
    typed = typed.assign(source_row=source_rows, _defects=pd.array(defect_count, dtype="Int64"))

    quarantined = (defect_count > 0) & ~duplicate
    accepted_mask = ~quarantined & ~duplicate
    rows = index[quarantined]

    # The primary defect of each quarantined row: the first found, in declaration order.
    column = pd.Series(pd.NA, index=rows, dtype="string")
    rule = pd.Series(pd.NA, index=rows, dtype="string")
    value = pd.Series(pd.NA, index=rows, dtype="string")
    rule_columns = {r.id: r.columns[0] for r in contract.row_rules}
    for name, kind, codes in found:
        codes = codes.loc[rows]
        first = rule.isna() & codes.notna()
        if not first.any():
            continue
        target = rule_columns.get(name, name) if kind == "rule" else name
        rule = rule.where(~first, codes)
        column = column.where(~first, target)
        if target in cleaned:
            masked = mask_series(cleaned[target].loc[rows], contract.column(target).pii)
            value = value.where(~first, masked)
    rejects = (
        pd.DataFrame(
            {
                "source_row": raw["source_row"].loc[rows].astype("int64"),
                "column": column,
                "rule": rule,
                "value_masked": value,
                "message": _messages(contract, found, cleaned, rows, where),
            }
        )
        .sort_values("source_row", kind="stable")
        .reset_index(drop=True)
    )

    result = Validated(
        typed=typed,
        rejects=rejects,
        rows_in=len(index),
        rows_loaded=int(accepted_mask.sum()),
        rows_quarantined=int(quarantined.sum()),
        duplicates=int(duplicate.sum()),
        duplicate=duplicate,
        accepted_mask=accepted_mask,
    )
    check_conservation(
        result.rows_in, result.rows_loaded, result.rows_quarantined, result.duplicates
    )
    return result


def check_conservation(rows_in: int, loaded: int, rejected: int, duplicates: int) -> None:
    """Nothing lost, nothing invented: every delivered row is accounted for exactly once."""
    if rows_in != loaded + rejected + duplicates:
        raise ConservationError(
            f"行数对不上：收到 {rows_in} 行 ≠ 入库 {loaded} + 隔离 {rejected} + 重复 {duplicates}"
            "（rows_in ≠ loaded + rejected + duplicates）；这是程序缺陷，请报告开发人员"
        )
