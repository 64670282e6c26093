"""Names across departments: id/name pairs of current data, name normalisation and DQ-01."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import ColumnElement, Connection, String, select

from domain.alert_rules import implements
from expectations.contract import get_contract, load_contracts
from tasks.alerts.facts import DEPT_ORDER, FINDING_COLUMNS, read_current
from tasks.alerts.findings import _text, person_findings, sources
from tasks.alerts.reading import read_once
from tasks.alerts.rules import RuleInput
from warehouse.bulk import fetch_arrow_all, staging
from warehouse.history import as_of_read
from warehouse.tables import history_tables, person_key_column


def _name_pairs() -> list[tuple[str, str, str, str]]:
    """(dataset, dept, id column, name column) for every id18 column with a paired name."""
    pairs = []
    for dataset, contract in sorted(load_contracts().items()):
        names = set(contract.column_names)
        for column in contract.columns:
            if column.type != "id18":
                continue
            name = column.name.removesuffix("id_number") + "name"
            if name in names:
                pairs.append((dataset, contract.dept, column.name, name))
    return pairs


def normalise_names(names: pd.Series) -> pd.Series:
    """Names as compared across departments: NFKC, no whitespace, one form of the middle dot."""
    distinct = pd.Series(names.dropna().unique())
    clean = (
        distinct.map(lambda s: unicodedata.normalize("NFKC", str(s)))
        .str.replace(r"\s+", "", regex=True)
        .str.replace(r"[·•‧・.．]", "·", regex=True)
    )
    return names.map(dict(zip(distinct, clean, strict=True))).astype("string")


def id_names(conn: Connection, as_of: date, only: pd.Index | None = None) -> pd.DataFrame:
    """Every (person, dataset, name) in current data: latest snapshots and current events.

    Columns person_key, id_number, name, dataset, dept, delivery_id, source_file, norm (the
    name as compared: normalise_names). `only`: just these person_keys (staged in a temporary
    table). Read for DQ-01 and the profiles' names.
    """
    if only is not None:
        keys = pa.table({"person_key": pa.array(list(only.astype(str)), pa.string())})
        with staging(
            conn, "tmp_alert_keys", [("person_key", String(32))], keys, primary_key=["person_key"]
        ) as stage:
            return _id_names(
                conn,
                as_of,
                lambda dataset, column: column.in_(select(stage.c.person_key)),
            )
    return _id_names(conn, as_of, lambda dataset, column: None)


def _id_names(
    conn: Connection,
    as_of: date,
    where: Callable[[str, ColumnElement[Any]], ColumnElement[bool] | None],
) -> pd.DataFrame:
    """id_names with a condition per dataset (given its person_key column)."""
    parts = []
    for dataset, dept, id_col, name_col in _name_pairs():
        key_col = person_key_column(id_col)
        column = history_tables[dataset].c[key_col]
        rows = read_current(
            conn, dataset, as_of, [key_col, id_col, name_col], where=where(dataset, column)
        )
        rows = rows.loc[rows[key_col].notna()].drop_duplicates([key_col, name_col])
        parts.append(
            pd.DataFrame(
                {
                    "person_key": rows[key_col],
                    "id_number": rows[id_col],
                    "name": rows[name_col],
                    "dataset": dataset,
                    "dept": dept,
                    "delivery_id": rows["delivery_id"],
                    "source_file": rows["source_file"],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(norm=normalise_names(frame["name"]))


_SPACES = (" ", "\u3000", "\t", "\n", "\r", "\xa0")
_DOTS = ("•", "‧", "・", ".", "．")


def _comparable(names: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """normalise_names without NFKC (done at intake): equal here => equal there."""
    for space in _SPACES:
        names = pc.replace_substring(names, space, "")
    for dot in _DOTS:
        names = pc.replace_substring(names, dot, "·")
    return names


def name_keys(conn: Connection, as_of: date) -> pa.Table:
    """Every current (person, name) pair of every dataset, unordered and without lineage.

    Columns dataset, dept, lead (the row's first key column, as text: how DQ-01 finds the
    rows again through the primary key), person_key, name. Rows without a person_key are
    left out; rows without a name are kept (id_names keeps them). Read once a night for
    DQ-01 and person_profile (`read_once`: 3.1M rows of sixteen tables on a city).
    """
    return read_once("name_keys", conn, as_of, lambda: _read_name_keys(conn, as_of))


def _read_name_keys(conn: Connection, as_of: date) -> pa.Table:
    pairs = _name_pairs()
    reads = []
    for dataset, _, id_col, name_col in pairs:
        table = history_tables[dataset]
        key_col = person_key_column(id_col)
        columns = [get_contract(dataset).key[0], key_col, name_col]
        reads.append(as_of_read(dataset, as_of, columns, where=table.c[key_col].is_not(None)))
    parts = []
    for (dataset, dept, id_col, name_col), rows in zip(
        pairs, fetch_arrow_all(conn, reads), strict=True
    ):
        lead = get_contract(dataset).key[0]
        key_col = person_key_column(id_col)
        n = rows.num_rows
        parts.append(
            pa.table(
                {
                    "dataset": pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, np.int32)), pa.array([dataset])
                    ),
                    "dept": pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, np.int32)), pa.array([dept])
                    ),
                    "lead": rows.column(lead).cast(pa.string()),
                    "person_key": rows.column(key_col).cast(pa.string()),
                    "name": rows.column(name_col).cast(pa.string()),
                }
            )
        )
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def _name_clash_candidates(pairs: pa.Table) -> pd.Index:
    """Persons whose current names differ across departments (before NFKC): the only persons
    DQ-01 reads back with their lineage (a few in a thousand).

    The same test the exact one (normalise_names, in _dq01) makes, on the cheaper comparable
    form: a superset of the exact clashes.
    """
    named = pairs.filter(pc.is_valid(pairs.column("name")))
    frame = pa.table(
        {
            "person_key": named.column("person_key"),
            "name": named.column("name"),
            "dept": named.column("dept").cast(pa.string()),
        }
    )
    with duckdb.connect() as duck:
        duck.register("pairs", frame)
        # Two names (as delivered) in two departments first: comparable names can only
        # differ where the names do, so only those persons' names are made comparable.
        maybe = duck.sql(
            "SELECT person_key, name, dept FROM pairs WHERE person_key IN ("
            "SELECT person_key FROM pairs GROUP BY person_key "
            "HAVING min(name) <> max(name) AND min(dept) <> max(dept))"
        ).arrow()
        if hasattr(maybe, "read_all"):
            maybe = maybe.read_all()
        duck.register("maybe", maybe.set_column(1, "norm", _comparable(maybe.column("name"))))
        keys = duck.sql(
            "SELECT person_key FROM maybe GROUP BY person_key "
            "HAVING count(DISTINCT norm) > 1 AND count(DISTINCT dept) > 1"
        ).fetchnumpy()["person_key"]
    return pd.Index(list(keys), dtype="string")


def _id_names_of(conn: Connection, as_of: date, only: pd.Index, pairs: pa.Table) -> pd.DataFrame:
    """id_names(conn, as_of, only), looked up through the primary keys of the history tables.

    `pairs` (name_keys) gives, per dataset, the first key column of every row of those
    persons: the rows are then probed by key (indexed) instead of scanning each table for
    the person_key (not indexed). Same rows, same order, same frame as id_names.
    """
    wanted = pairs.filter(
        pc.is_in(
            pairs.column("person_key"), value_set=pa.array(list(only.astype(str)), pa.string())
        )
    )
    leads = (
        pa.table(
            {
                "dataset": wanted.column("dataset").cast(pa.string()),
                "value": wanted.column("lead"),
            }
        )
        .group_by(["dataset", "value"])
        .aggregate([])
    )
    keys = pa.table({"person_key": pa.array(list(only.astype(str)), pa.string())})
    with (
        staging(
            conn, "tmp_alert_keys", [("person_key", String(32))], keys, primary_key=["person_key"]
        ) as key_stage,
        staging(
            conn,
            "tmp_alert_leads",
            [("dataset", String(32)), ("value", String())],
            leads,
            primary_key=["dataset", "value"],
        ) as lead_stage,
    ):

        def where(dataset: str, column: ColumnElement[Any]) -> ColumnElement[bool]:
            lead = history_tables[dataset].c[get_contract(dataset).key[0]]
            values = select(lead_stage.c.value).where(lead_stage.c.dataset == dataset)
            return lead.in_(values) & column.in_(select(key_stage.c.person_key))

        return _id_names(conn, as_of, where)


@implements("DQ-01")
def _dq01(inp: RuleInput) -> pd.DataFrame:
    conn, facts = inp.conn, inp.facts
    homes = (
        pd.concat(
            [
                facts.members[["person_key", "household_id"]],
                facts.households[["head_person_key", "household_id"]].rename(
                    columns={"head_person_key": "person_key"}
                ),
            ]
        )
        .dropna()
        .drop_duplicates()
    )
    n_homes = homes.groupby("person_key")["household_id"].nunique()
    pairs = name_keys(conn, facts.as_of)
    candidates = _name_clash_candidates(pairs).union(
        pd.Index(n_homes.index[n_homes >= 2], dtype="string")
    )
    seen = _id_names_of(conn, facts.as_of, candidates, pairs)
    named = seen.loc[seen["norm"].notna()]
    g = named.groupby("person_key")
    stats = pd.DataFrame({"names": g["norm"].nunique(), "depts": g["dept"].nunique()})
    clash = stats.index[(stats["names"] >= 2) & (stats["depts"] >= 2)]
    two_homes = n_homes.index[n_homes >= 2]
    subjects = pd.Index(clash).union(pd.Index(two_homes))
    if subjects.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS[1:])
    rel = seen.loc[seen["person_key"].isin(subjects)]
    # Names: each (dataset, name) once, in dataset order; households the id belongs to.
    shown = (
        rel.loc[rel["person_key"].isin(clash) & rel["name"].notna()]
        .sort_values(["person_key", "dataset", "name"])
        .drop_duplicates(["person_key", "dataset", "name"])
    )
    name_text = (
        (shown["dataset"] + "「" + _text(shown["name"]) + "」")
        .groupby(shown["person_key"])
        .agg("、".join)
    )
    home_text = (
        homes.loc[homes["person_key"].isin(two_homes)]
        .sort_values(["person_key", "household_id"])
        .groupby("person_key")["household_id"]
        .agg("、".join)
    )
    base = (
        rel.sort_values(["person_key", "dataset"])
        .drop_duplicates("person_key")
        .set_index("person_key")
    )
    src = sources(rel, "person_key")
    evidence = pd.Series("", index=subjects, dtype="string")
    evidence = evidence + ("同一身份证号在各部门现有数据中姓名不一致：" + name_text).reindex(
        subjects
    ).fillna("")
    both = subjects.isin(clash) & subjects.isin(two_homes)
    evidence = (
        evidence
        + np.where(both, "；", "")
        + ("同一身份证号属于两个及以上户：" + home_text).reindex(subjects).fillna("")
    )
    evidence = evidence + "；" + src.reindex(subjects).fillna("")
    depts = rel[["person_key", "dept"]].drop_duplicates()
    depts = depts.assign(order=depts["dept"].map({d: i for i, d in enumerate(DEPT_ORDER)}))
    pushed = (
        depts.loc[depts["dept"] != "XC"]
        .sort_values(["person_key", "order"])
        .groupby("person_key")["dept"]
        .agg(",".join)
        .reindex(subjects)
    )
    pushed = ("XC," + pushed).fillna("XC")
    found = pd.DataFrame(
        {
            "person_key": subjects,
            "id_number": base["id_number"].reindex(subjects).to_numpy(),
            "name": base["name"].reindex(subjects).to_numpy(),
            "severity": "low",
            "evidence": evidence.to_numpy(),
        }
    )
    return person_findings(facts, found, inp.rule, pd.Series(pushed.to_numpy()))
