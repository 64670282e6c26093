"""What a consumer may see, read for the portal's pages and API.

Over 600 lines on purpose: every read a page or the API makes goes through apply_access here,
so that one module is the whole answer to "what may this consumer see".

Files of a publication are read under `warehouse.published.hold` (a shared lock the retention's
pruning respects): a version is never removed under a reader. FileNotFoundError from a hold
means the version was pruned before it: the caller answers as for one that does not exist.

One rule: every row and column a page shows went through `warehouse.publish.apply_access` (the
function that shapes the published files) for the logged-in consumer, or was read from that
consumer's own published files (which it shaped). SQL only *narrows* first, for speed, with
conditions translated from the same loaded matrix entry (`narrowing`); the shaping decides.
A row the shaping drops is not shown, whatever the SQL let through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
)

from domain import definitions as dd
from domain import labels
from expectations.contract import Contract, load_contracts
from tasks.alerts import PUBLISHED_COLUMNS, with_status
from warehouse import published as files
from warehouse.publish import (
    AccessMatrix,
    RowCondition,
    apply_access,
    default_access,
    table_def,
)
from warehouse.tables import deliveries, history_tables, rejects
from warehouse.tables_alerts import alert_runs, alerts
from warehouse.tables_ops import freshness
from warehouse.tables_portal import portal_opinions, portal_verifications

ID_LIMIT_DAYS = 15  # rules.md / reports: the identification time limit of an alert
PAGE_SIZE = 50
_VERSION = re.compile(r"^[0-9]{8}-[0-9]{2,4}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


# --- the matrix, translated for narrowing -----------------------------------------------------


def _condition_sql(table: Table, cond: RowCondition, consumer: str) -> ColumnElement[bool] | None:
    if cond.column not in table.c:
        return None
    col = table.c[cond.column]
    if cond.in_ is not None:
        return col.in_([v.replace("{consumer}", consumer) for v in cond.in_])
    if cond.contains is not None:
        wanted = cond.contains.replace("{consumer}", consumer)
        listed = literal(",") + func.replace(col, " ", "") + literal(",")
        return listed.contains(f",{wanted},", autoescape=True)
    if cond.dataset_of is not None:
        dept = cond.dataset_of.replace("{consumer}", consumer)
        names = [n for n, c in load_contracts().items() if c.dept == dept]
        return col.in_(names) if names else false()
    if cond.present is not None:
        present = and_(col.is_not(None), col != "")
        return present if cond.present else ~present
    return None  # age, in_table: left to apply_access


def narrowing(
    matrix: AccessMatrix, consumer: str, table_name: str, table: Table
) -> ColumnElement[bool]:
    """A SQL condition no stricter than the matrix's rows for (consumer, table); false() when
    the consumer has no entry at all."""
    entry = matrix.entry(consumer, table_name)
    if entry is None:
        return false()
    parts = [c for cond in entry.rows if (c := _condition_sql(table, cond, consumer)) is not None]
    return and_(true(), *parts)


# --- context -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the portal reads: the publication folder, the person_key secret, the matrix."""

    publish_dir: Path
    secret: bytes
    gx_root: Path | None = None
    matrix: AccessMatrix | None = None

    @property
    def access(self) -> AccessMatrix:
        return self.matrix or default_access()


def latest_date(conn: Connection) -> date | None:
    """The exchange date the alerts table describes, else the latest evaluated, else the
    latest in the ledger: the date every page shows (never today's date)."""
    at = conn.execute(select(func.max(alerts.c.as_of))).scalar()
    if at is None:
        at = conn.execute(select(func.max(alert_runs.c.exchange_date))).scalar()
    if at is None:
        at = conn.execute(select(func.max(deliveries.c.exchange_date))).scalar()
    return _as_date(at) if at is not None else None


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def shape(
    src: Source, consumer: str, table: str, frame: pd.DataFrame, as_of: date | None
) -> pd.DataFrame | None:
    """apply_access for the consumer (None: the consumer has no such table)."""
    return apply_access(consumer, table, frame, src.secret, as_of=as_of, access=src.access)


# --- my night ---------------------------------------------------------------------------------


def night(src: Source, conn: Connection, consumer: str, days: int = 14) -> dict[str, Any]:
    """The consumer's deliveries (and missing ones) of the last `days` exchange dates."""
    last = latest_date(conn)
    if last is None:
        return {"as_of": None, "rows": [], "trend": []}
    since = last - timedelta(days=days - 1)
    d = deliveries.c
    ledger = pd.read_sql(
        select(deliveries).where(
            d.exchange_date >= since,
            d.exchange_date <= last,
            narrowing(src.access, consumer, "deliveries", deliveries),
        ),
        conn,
    )
    f = freshness.c
    fresh = pd.read_sql(
        select(f.dataset, f.exchange_date, f.dept, f.state).where(
            f.exchange_date >= since, f.exchange_date <= last
        ),
        conn,
    )
    fresh["exchange_date"] = pd.to_datetime(fresh["exchange_date"]).dt.date
    missing = fresh[fresh["state"] == "missing"]
    pseudo = pd.DataFrame(
        {
            "dept": missing["dept"],
            "dataset": missing["dataset"],
            "exchange_date": missing["exchange_date"],
            "source_file": "",
            "sha256": "",
            "received_at": pd.NaT,
            "status": "missing",
            "rows_in": pd.NA,
            "rows_loaded": pd.NA,
            "rows_rejected": pd.NA,
            "duplicates": pd.NA,
            "reason": "应报未报",
        }
    )
    ledger["exchange_date"] = pd.to_datetime(ledger["exchange_date"]).dt.date
    ids = {
        (r.dataset, r.exchange_date, r.source_file, r.sha256): r.delivery_id
        for r in ledger.itertuples()
    }
    frame = pd.concat([ledger, pseudo], ignore_index=True) if len(pseudo) else ledger
    frame["exchange_date"] = pd.to_datetime(frame["exchange_date"])
    shaped = shape(src, consumer, "deliveries", frame, last)
    if shaped is None:
        return {"as_of": last, "rows": [], "trend": []}
    states = {(r.dataset, r.exchange_date): r.state for r in fresh.itertuples()}
    rows = []
    for r in shaped.sort_values(
        ["exchange_date", "dataset"], ascending=[False, True], kind="mergesort"
    ).itertuples():
        day = pd.Timestamp(r.exchange_date).date()
        rows.append(
            {
                "dept": r.dept,
                "dataset": r.dataset,
                "exchange_date": day,
                "source_file": r.source_file or "",
                "status": r.status,
                "status_label": labels.label("ledger", str(r.status)),
                "timeliness": labels.label("freshness", states.get((r.dataset, day), "")),
                "rows_in": _int(r.rows_in),
                "rows_loaded": _int(r.rows_loaded),
                "rows_rejected": _int(r.rows_rejected),
                "reason": r.reason if isinstance(r.reason, str) else "",
                "delivery_id": ids.get((r.dataset, day, r.source_file, r.sha256)),
            }
        )
    trend = []
    loaded = shaped[shaped["status"].isin(["loaded", "failed"])]
    for day, group in loaded.groupby("exchange_date"):
        rows_in = int(group["rows_in"].fillna(0).sum())
        rejected = int(group["rows_rejected"].fillna(0).sum())
        trend.append(
            {
                "exchange_date": pd.Timestamp(str(day)).date(),
                "rows_in": rows_in,
                "rejected": rejected,
                "rate": (rejected / rows_in) if rows_in else 0.0,
            }
        )
    return {"as_of": last, "rows": rows, "trend": trend}


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


# --- my data (published files) -----------------------------------------------------------------


def _consumer_catalog(root: Path, consumer: str) -> dict[str, Any] | None:
    path = root / consumer / files.CATALOG
    if not path.is_file():
        return None
    content: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return content


def versions(src: Source, consumer: str) -> list[dict[str, Any]]:
    """The publications still on disk that hold this consumer's tables, newest first."""
    out: list[dict[str, Any]] = []
    base = src.publish_dir / files.VERSIONS
    current = files.current_publication(src.publish_dir)
    if not base.is_dir():
        return out
    for folder in sorted(base.iterdir(), reverse=True):
        if not _VERSION.match(folder.name):
            continue
        catalog = _consumer_catalog(folder, consumer)
        if catalog is None:
            continue
        out.append(
            {
                "publication_id": folder.name,
                "exchange_date": catalog.get("exchange_date"),
                "current": folder.name == current,
            }
        )
    return out


def catalog(src: Source, consumer: str, version: str | None = None) -> dict[str, Any] | None:
    """The consumer's catalog of one publication (default: the current one)."""
    version = version or files.current_publication(src.publish_dir)
    if version is None or not _VERSION.match(version):
        return None
    folder = files.version_dir(src.publish_dir, version)
    if not folder.is_dir():
        return None
    found = _consumer_catalog(folder, consumer)
    if found is None:
        return None
    # Only tables the matrix grants now: a grant withdrawn since is not served from old files.
    found["tables"] = [
        t for t in found.get("tables", []) if src.access.entry(consumer, t["table"]) is not None
    ]
    return found


def table_entry(
    src: Source, consumer: str, table: str, version: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(catalog, table entry) when the consumer has that table in that publication."""
    if not _TABLE.match(table):
        return None
    found = catalog(src, consumer, version)
    if found is None:
        return None
    for entry in found["tables"]:
        if entry["table"] == table and entry["consumer"] == consumer:
            return found, entry
    return None


def table_file(src: Source, catalog_: dict[str, Any], entry: dict[str, Any], fmt: str) -> Path:
    """The published file of a table in a format, if that publication wrote it."""
    folder = files.version_dir(src.publish_dir, catalog_["publication_id"])
    return folder / entry["consumer"] / f"{entry['table']}.{fmt}"


def preview(
    src: Source, catalog_: dict[str, Any], entry: dict[str, Any], offset: int, limit: int
) -> pd.DataFrame:
    """Rows [offset, offset+limit) of a published table (read from its Parquet, under a hold
    of its publication)."""
    path = table_file(src, catalog_, entry, "parquet")
    with files.hold(src.publish_dir, catalog_["publication_id"]):
        pf = pq.ParquetFile(path)
        batches: list[pa.RecordBatch] = []
        seen = 0
        for batch in pf.iter_batches(batch_size=max(limit, 256)):
            if seen + batch.num_rows > offset:
                start = max(offset - seen, 0)
                batches.append(batch.slice(start, limit - sum(b.num_rows for b in batches)))
                if sum(b.num_rows for b in batches) >= limit:
                    break
            seen += batch.num_rows
        if not batches:
            return pf.schema_arrow.empty_table().to_pandas()
        return pa.Table.from_batches(batches).to_pandas()


# --- my problems (rejects) -----------------------------------------------------------------------


@dataclass(frozen=True)
class RejectFilter:
    dataset: str | None = None
    exchange_date: date | None = None
    column: str | None = None
    rule: str | None = None
    source_file: str | None = None
    delivery_id: str | None = None


def _reject_where(src: Source, consumer: str, flt: RejectFilter) -> list[ColumnElement[bool]]:
    d, r = deliveries.c, rejects.c
    standing = select(d.delivery_id).where(d.status != "superseded")
    where = [r.delivery_id.in_(standing), narrowing(src.access, consumer, "rejects", rejects)]
    if flt.dataset:
        where.append(r.dataset == flt.dataset)
    if flt.exchange_date:
        where.append(r.exchange_date == flt.exchange_date)
    if flt.column:
        where.append(r.column == flt.column)
    if flt.rule:
        where.append(r.rule == flt.rule)
    if flt.source_file:
        where.append(r.source_file == flt.source_file)
    if flt.delivery_id:
        where.append(r.delivery_id == flt.delivery_id)
    return where


def _reject_groups(
    src: Source, conn: Connection, consumer: str, flt: RejectFilter
) -> list[tuple[str, int]]:
    """(delivery_id, rejects matching the filter) of every standing delivery of the consumer's
    rejects, in page order (exchange date, newest first; dataset; file).

    The matrix's rows for `rejects` are conditions on `dataset`, a column the ledger has too:
    narrowing the ledger (a few rows per night) lets the count per delivery run on the
    rejects' delivery_id index alone, instead of sorting every reject of the consumer."""
    d, r = deliveries.c, rejects.c
    query = select(d.delivery_id).where(
        d.status != "superseded", narrowing(src.access, consumer, "rejects", deliveries)
    )
    if flt.dataset:
        query = query.where(d.dataset == flt.dataset)
    if flt.exchange_date:
        query = query.where(d.exchange_date == flt.exchange_date)
    if flt.source_file:
        query = query.where(d.source_file == flt.source_file)
    if flt.delivery_id:
        query = query.where(d.delivery_id == flt.delivery_id)
    ordered = [
        str(x)
        for x in conn.execute(
            query.order_by(d.exchange_date.desc(), d.dataset, d.source_file, d.delivery_id)
        ).scalars()
    ]
    if not ordered:
        return []
    counting = select(r.delivery_id, func.count()).where(r.delivery_id.in_(ordered))
    if flt.column:
        counting = counting.where(r.column == flt.column)
    if flt.rule:
        counting = counting.where(r.rule == flt.rule)
    counts = dict(conn.execute(counting.group_by(r.delivery_id)).tuples().all())
    return [(x, int(counts[x])) for x in ordered if counts.get(x)]


def problems(
    src: Source,
    conn: Connection,
    consumer: str,
    flt: RejectFilter,
    offset: int = 0,
    limit: int | None = PAGE_SIZE,
) -> tuple[pd.DataFrame, int, dict[tuple[str, date, str], str]]:
    """One page of the consumer's quarantined rows (shaped), the total, and delivery ids.

    Rows come in page order: deliveries newest first, then by row number within a delivery
    (a refused delivery's own row, without a number, first)."""
    r = rejects.c
    groups = _reject_groups(src, conn, consumer, flt)
    total = sum(n for _, n in groups)
    end = total if limit is None else min(offset + limit, total)
    parts: list[pd.DataFrame] = []
    seen = 0
    for delivery_id, n in groups:
        lo, hi = max(offset - seen, 0), min(end - seen, n)
        seen += n
        if hi <= lo:
            if seen >= end:
                break
            continue
        query = (
            select(rejects)
            .where(
                r.delivery_id == delivery_id,
                narrowing(src.access, consumer, "rejects", rejects),
            )
            .order_by(r.source_row.asc().nulls_first(), r.column, r.rule)
            .offset(lo)
            .limit(hi - lo)
        )
        if flt.column:
            query = query.where(r.column == flt.column)
        if flt.rule:
            query = query.where(r.rule == flt.rule)
        parts.append(pd.read_sql(query, conn))
        if seen >= end:
            break
    raw = (
        pd.concat(parts, ignore_index=True)
        if len(parts) > 1
        else (parts[0] if parts else pd.read_sql(select(rejects).where(false()), conn))
    )
    raw["exchange_date"] = pd.to_datetime(raw["exchange_date"])
    ids = {
        (x.dataset, pd.Timestamp(x.exchange_date).date(), x.source_file): x.delivery_id
        for x in raw.itertuples()
    }
    shaped = shape(src, consumer, "rejects", raw, latest_date(conn))
    if shaped is None:
        return pd.DataFrame(), 0, {}
    rank = {x: i for i, (x, _) in enumerate(groups)}
    keys = {(k[0], pd.Timestamp(k[1]), k[2]): rank.get(v, 0) for k, v in ids.items()}
    shaped = shaped.assign(
        _rank=[
            keys.get((a, pd.Timestamp(b), c), 0)
            for a, b, c in zip(
                shaped["dataset"], shaped["exchange_date"], shaped["source_file"], strict=True
            )
        ]
    )
    shaped = shaped.sort_values(
        ["_rank", "source_row", "column", "rule"], kind="mergesort", na_position="first"
    ).drop(columns="_rank")
    return shaped.reset_index(drop=True), total, ids


# Filter choices are DISTINCT scans of a consumer's rows: kept per consumer until the ledger (or
# the alerts) change. They only fill drop-downs; what a page shows is read and shaped each time.
_CHOICES: dict[tuple[Any, ...], dict[str, list[str]]] = {}


def _cached(key: tuple[Any, ...], build: Any) -> dict[str, list[str]]:
    if key not in _CHOICES:
        if len(_CHOICES) > 512:
            _CHOICES.clear()
        _CHOICES[key] = build()
    return _CHOICES[key]


def problem_choices(src: Source, conn: Connection, consumer: str) -> dict[str, list[str]]:
    """Values offered in the filters (datasets, columns, rules) of the consumer's rejects."""
    d = deliveries.c
    stamp = tuple(conn.execute(select(func.count(), func.max(d.received_at))).one())
    key = ("rejects", str(src.publish_dir), consumer, *stamp)
    return _cached(key, lambda: _problem_choices(src, conn, consumer))


def _problem_choices(src: Source, conn: Connection, consumer: str) -> dict[str, list[str]]:
    r = rejects.c
    where = _reject_where(src, consumer, RejectFilter())
    out: dict[str, list[str]] = {}
    for name in ("dataset", "column", "rule"):
        values = conn.execute(
            select(r[name]).where(*where, r[name].is_not(None)).distinct().order_by(r[name])
        ).scalars()
        out[name] = [str(v) for v in values]
    return out


def delivery(
    src: Source, conn: Connection, consumer: str, delivery_id: str
) -> dict[str, Any] | None:
    """One delivery of the ledger, if the consumer may see it (shaped), with its GX result."""
    d = deliveries.c
    raw = pd.read_sql(
        select(deliveries).where(
            d.delivery_id == delivery_id,
            narrowing(src.access, consumer, "deliveries", deliveries),
        ),
        conn,
    )
    if raw.empty:
        return None
    raw["exchange_date"] = pd.to_datetime(raw["exchange_date"])
    shaped = shape(src, consumer, "deliveries", raw, None)
    if shaped is None or shaped.empty:
        return None
    row = shaped.iloc[0].to_dict()
    row["delivery_id"] = delivery_id
    row["status_label"] = labels.label("ledger", str(row["status"]))
    row["gx"] = gx_result(src, delivery_id)
    return row


def gx_result(src: Source, delivery_id: str) -> list[dict[str, Any]]:
    """The GX expectations of a delivery: which, on which column, passed or not, how many
    unexpected (counts and percentages only: GX's sample values are never shown), each also
    in Chinese for people (domain.labels; the column's header from the contract)."""
    if src.gx_root is None or not re.fullmatch(r"[A-Za-z0-9_\-]{8,64}", delivery_id):
        return []
    out: list[dict[str, Any]] = []
    for path in sorted(src.gx_root.glob(f"**/validations/**/{delivery_id}/*/*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        suite = str(content.get("suite_name") or path.parts[-4])
        contract = load_contracts().get(suite.partition(".")[0])
        for result in content.get("results", []):
            config = result.get("expectation_config", {}) or {}
            kwargs = config.get("kwargs", {}) or {}
            stats = result.get("result", {}) or {}
            kind = str(config.get("type") or config.get("expectation_type"))
            column = kwargs.get("column")
            columns = [column] if column else list(kwargs.get("column_list") or [])
            out.append(
                {
                    "suite": suite,
                    "suite_label": labels.suite_label(suite),
                    "expectation": kind,
                    "label": labels.expectation_label(kind, config.get("meta") or {}),
                    "column": "、".join(str(c) for c in columns),
                    "column_label": "、".join(_header(contract, str(c)) for c in columns),
                    "success": bool(result.get("success")),
                    "unexpected_count": stats.get("unexpected_count"),
                    "unexpected_percent": stats.get("unexpected_percent"),
                    "observed": _safe_observed(stats.get("observed_value")),
                }
            )
    return out


def _published_header(dataset: str, column: str) -> str:
    """A dataset's published column as its Chinese header (derived ones too: 年龄, 已冲销)."""
    try:
        return table_def(dataset).column(column).label
    except KeyError:
        return column


def _header(contract: Contract | None, column: str) -> str:
    """A column's Chinese header; a helper column of the suites (`_defects`) is the row."""
    if column.startswith("_"):
        return "整行"
    if contract is not None and column in contract.column_names:
        return contract.column(column).header
    return labels.header_of(None, column)


def _safe_observed(value: Any) -> str:
    """Numbers only: an observed value that is text may be personal."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return f"{value:g}"
    return ""


# --- my alerts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilter:
    rule_id: str | None = None
    town: str | None = None
    village: str | None = None
    status: str | None = None
    age: str | None = None  # "new" (<=7 days) | "due" (8-15) | "overdue" (>15)


def _alert_where(
    src: Source, consumer: str, flt: AlertFilter, as_of: date
) -> list[ColumnElement[bool]]:
    a = alerts.c
    where = [narrowing(src.access, consumer, "alerts", alerts)]
    for name in ("rule_id", "town", "village", "status"):
        value = getattr(flt, name)
        if value:
            where.append(a[name] == value)
    if flt.age == "new":
        where.append(a.first_raised > as_of - timedelta(days=7))
    elif flt.age == "due":
        where.append(
            and_(
                a.first_raised <= as_of - timedelta(days=7),
                a.first_raised >= as_of - timedelta(days=ID_LIMIT_DAYS),
            )
        )
    elif flt.age == "overdue":
        where.append(a.first_raised < as_of - timedelta(days=ID_LIMIT_DAYS))
    return where


def _alert_frame(
    conn: Connection, where: Sequence[ColumnElement[bool]], **page: Any
) -> pd.DataFrame:
    a = alerts.c
    query = (
        select(*(a[c] for c in [*PUBLISHED_COLUMNS, "pushed_to"]))
        .where(*where)
        .order_by(a.first_raised, a.alert_id)
    )
    if page.get("offset"):
        query = query.offset(page["offset"])
    if page.get("limit"):
        query = query.limit(page["limit"])
    frame = pd.read_sql(query, conn)
    for c in ("first_raised", "last_seen", "resolved_on"):
        frame[c] = pd.to_datetime(frame[c])
    return frame


def days_left(first_raised: Any, as_of: date) -> int | None:
    """Days left of the 15-day identification limit, counted from first_raised to the
    exchange date shown (negative: overdue)."""
    if first_raised is None or pd.isna(first_raised):
        return None
    return ID_LIMIT_DAYS - (as_of - pd.Timestamp(first_raised).date()).days


def alert_list(
    src: Source,
    conn: Connection,
    consumer: str,
    flt: AlertFilter,
    offset: int = 0,
    limit: int | None = PAGE_SIZE,
) -> tuple[pd.DataFrame, int, date | None]:
    """One page of the alerts pushed to the consumer (shaped), the total, the date shown."""
    as_of = latest_date(conn)
    if as_of is None:
        return pd.DataFrame(), 0, None
    where = _alert_where(src, consumer, flt, as_of)
    total = int(conn.execute(select(func.count()).select_from(alerts).where(*where)).scalar_one())
    raw = _alert_frame(conn, where, offset=offset, limit=limit)
    shaped = shape(src, consumer, "alerts", raw, as_of)
    if shaped is None:
        return pd.DataFrame(), 0, as_of
    shaped = shaped.sort_values(["first_raised", "alert_id"], kind="mergesort")
    return shaped.reset_index(drop=True), total, as_of


def alert_choices(src: Source, conn: Connection, consumer: str) -> dict[str, list[str]]:
    """Values offered in the alert filters (rules, towns, villages, statuses)."""
    a, v = alerts.c, portal_verifications.c
    stamp = (
        *conn.execute(select(func.count(), func.max(a.as_of))).one(),
        conn.execute(select(func.max(v.verification_id))).scalar(),
    )
    key = ("alerts", str(src.publish_dir), consumer, *stamp)
    return _cached(key, lambda: _alert_choices(src, conn, consumer))


def _alert_choices(src: Source, conn: Connection, consumer: str) -> dict[str, list[str]]:
    a = alerts.c
    where = narrowing(src.access, consumer, "alerts", alerts)
    out: dict[str, list[str]] = {}
    for name in ("rule_id", "town", "village", "status"):
        values = conn.execute(
            select(a[name]).where(where, a[name].is_not(None)).distinct().order_by(a[name])
        ).scalars()
        out[name] = [str(v) for v in values]
    return out


def alert(
    src: Source, conn: Connection, consumer: str, alert_id: str
) -> tuple[dict[str, Any], date] | None:
    """One alert, if pushed to the consumer (shaped), and the date shown."""
    as_of = latest_date(conn)
    if as_of is None:
        return None
    where = [
        alerts.c.alert_id == alert_id,
        narrowing(src.access, consumer, "alerts", alerts),
    ]
    shaped = shape(src, consumer, "alerts", _alert_frame(conn, where), as_of)
    if shaped is None or shaped.empty:
        return None
    return shaped.iloc[0].to_dict(), as_of


def alert_notes(conn: Connection, consumer: str, alert_id: str, bureau: bool) -> dict[str, Any]:
    """Opinions (a department sees its own; the bureau all) and XC's verifications."""
    o, v = portal_opinions.c, portal_verifications.c
    query = select(o.consumer, o.opinion, o.recorded_by, o.recorded_at).where(
        o.alert_id == alert_id
    )
    if not bureau:
        query = query.where(o.consumer == consumer)
    opinions = [dict(r._mapping) for r in conn.execute(query.order_by(o.recorded_at))]
    verifications = [
        dict(r._mapping)
        for r in conn.execute(
            select(v.outcome, v.checked_date, v.note, v.recorded_by, v.recorded_at)
            .where(v.alert_id == alert_id)
            .order_by(v.recorded_at)
        )
    ]
    return {"opinions": opinions, "verifications": verifications}


def status_now(conn: Connection, alert_id: str, as_of: date, feedback: pd.DataFrame) -> pd.Series:
    """The status of one alert as the lifecycle derives it (tasks.alerts.with_status) from
    the alerts table's dates and the feedback known on as_of."""
    a = alerts.c
    state = pd.read_sql(
        select(a.alert_id, a.opened_on, a.last_seen).where(a.alert_id == alert_id), conn
    )
    state = state.assign(
        opened_on=pd.to_datetime(state["opened_on"]).astype("datetime64[s]"),
        last_seen=pd.to_datetime(state["last_seen"]).astype("datetime64[s]"),
        alert_id=state["alert_id"].astype("string"),
    )
    mine = feedback.loc[feedback["alert_id"] == alert_id]
    return with_status(state, mine, as_of).iloc[0]


# --- the bureau -------------------------------------------------------------------------------


def dashboard(src: Source, conn: Connection) -> dict[str, Any]:
    """XC's week: open and overdue alerts by town, rule and department, monitored households
    and 风险消除率, intake traffic lights."""
    as_of = latest_date(conn)
    if as_of is None:
        return {"as_of": None}
    a = alerts.c
    overdue = a.first_raised < as_of - timedelta(days=ID_LIMIT_DAYS)
    is_open = a.status == "open"

    def by(column: Any) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(
                column.label("k"),
                func.count().label("open"),
                func.sum(case((overdue, 1), else_=0)).label("overdue"),
            )
            .where(is_open)
            .group_by(column)
            .order_by(column)
        )
        return [
            {"key": r.k or "—", "open": int(r.open), "overdue": int(r.overdue or 0)} for r in rows
        ]

    depts = pd.read_sql(select(a.pushed_to, a.first_raised).where(is_open), conn)
    depts["first_raised"] = pd.to_datetime(depts["first_raised"])
    depts["overdue"] = depts["first_raised"] < pd.Timestamp(as_of - timedelta(days=ID_LIMIT_DAYS))
    exploded = depts.assign(dept=depts["pushed_to"].str.replace(" ", "").str.split(",")).explode(
        "dept"
    )
    by_dept = [
        {"key": str(k), "open": len(g), "overdue": int(g["overdue"].sum())}
        for k, g in exploded.groupby("dept")
    ]
    monitored = _monitoring(src)
    f = freshness.c
    week = pd.read_sql(
        select(f.dept, f.state).where(f.exchange_date > as_of - timedelta(days=7)), conn
    )
    lights = []
    for dept, g in week.groupby("dept"):
        states = set(g["state"])
        light = (
            "red" if states & {"missing", "failed"} else "yellow" if "late" in states else "green"
        )
        lights.append(
            {
                "dept": dept,
                "light": light,
                "on_time": int((g["state"] == "on_time").sum()),
                "late": int((g["state"] == "late").sum()),
                "missing": int((g["state"] == "missing").sum()),
                "failed": int((g["state"] == "failed").sum()),
            }
        )
    return {
        "as_of": as_of,
        "by_town": by(a.town),
        "by_rule": by(a.rule_id),
        "by_dept": by_dept,
        "monitoring": monitored,
        "lights": lights,
    }


def _monitoring(src: Source) -> dict[str, Any]:
    """Monitored households and 风险消除率 from XC's published household_profile."""
    found = table_entry(src, "XC", "household_profile")
    if found is None:
        return {}
    path = table_file(src, found[0], found[1], "parquet")
    try:
        with files.hold(src.publish_dir, found[0]["publication_id"]):
            hp = pq.read_table(
                path, columns=["town", "monitoring_category", "risk_eliminated"]
            ).to_pandas()
    except FileNotFoundError:  # pruned since the catalog was read
        return {}
    monitored = dd.identified(hp["monitoring_category"])  # the same count as town_summary's
    eliminated = dd.eliminated(hp["monitoring_category"], hp["risk_eliminated"])
    towns = []
    for town, g in hp.assign(m=monitored, e=eliminated).groupby("town"):
        m, e = int(g["m"].sum()), int(g["e"].sum())
        towns.append({"town": town, "monitored": m, "eliminated": e, "rate": e / m if m else None})
    m, e = int(monitored.sum()), int(eliminated.sum())
    return {"monitored": m, "eliminated": e, "rate": e / m if m else None, "towns": towns}


def reports(src: Source) -> list[dict[str, Any]]:
    folder = src.publish_dir / "XC" / "reports"
    if not folder.is_dir():
        return []
    return [
        {"name": p.name, "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"), reverse=True)
        if p.is_file() and p.suffix in {".html", ".xlsx"} and p.parent == folder
    ]


def report_path(src: Source, name: str) -> Path | None:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", name) or name.startswith("."):
        return None
    path = src.publish_dir / "XC" / "reports" / name
    return path if path.is_file() and path.suffix in {".html", ".xlsx"} else None


def lookup_person(src: Source, conn: Connection, id_number: str) -> dict[str, Any] | None:
    """一人一档 for XC: the profile (XC's published person_profile), every version of every
    dataset row carrying the id (shaped for XC: never-form columns gone), the alerts."""
    found = table_entry(src, "XC", "person_profile")
    profile: dict[str, Any] | None = None
    if found is not None:
        path = table_file(src, found[0], found[1], "parquet")
        try:
            with files.hold(src.publish_dir, found[0]["publication_id"]):
                rows = pq.read_table(path, filters=[("id_number", "=", id_number)]).to_pandas()
        except FileNotFoundError:  # pruned since the catalog was read
            rows = pd.DataFrame()
        if len(rows):
            profile = rows.iloc[0].to_dict()
    history: list[dict[str, Any]] = []
    as_of = latest_date(conn)
    for dataset, contract in load_contracts().items():
        table = history_tables[dataset]
        id_cols = [c.name for c in contract.columns if c.type == "id18"]
        if not id_cols:
            continue
        raw = pd.read_sql(
            select(table).where(or_(*(table.c[c] == id_number for c in id_cols))), conn
        )
        for _, version in raw.iterrows():
            one = version.to_frame().T.reset_index(drop=True)
            shaped = shape(src, "XC", dataset, one, as_of)
            if shaped is None or shaped.empty:
                continue
            history.append(
                {
                    "dataset": dataset,
                    "title": contract.title,
                    "valid_from": version["valid_from"],
                    "valid_to": version["valid_to"],
                    "values": {
                        _published_header(dataset, k): v
                        for k, v in shaped.iloc[0].items()
                        if not k.endswith("person_key") and v is not None and not pd.isna(v)
                    },
                }
            )
    a = alerts.c
    household = profile.get("household_id") if profile else None
    cond = a.id_number == id_number
    if household:
        cond = or_(cond, a.household_id == household)
    person_alerts = shape(src, "XC", "alerts", _alert_frame(conn, [cond]), as_of)
    if profile is None and not history:
        return None
    return {
        "profile": profile,
        "history": history,
        "alerts": [] if person_alerts is None else person_alerts.to_dict("records"),
    }
