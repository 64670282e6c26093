"""The intake of one delivery: read, normalise, validate, gate, and record — all or nothing.

    bytes ─ read_delivery ─ validate_rows ─ GX (verdict + Data Docs) ─ gates ─┬─ lake (Parquet)
                                                                              └─ ledger + rejects

Outcomes (the ledger's status):
  loaded      accepted rows are in the lake; quarantined rows are in rejects
  failed      a delivery-level gate failed; nothing of it is loaded, its rows count as rejected
  duplicate   an events delivery whose bytes were already loaded for another date (the same
              events delivered twice); nothing loaded. A snapshot with the same bytes as an
              earlier date is loaded normally: it says "nothing changed", which history records.
  superseded  (later) a re-delivery for the same date replaced it
Re-running over the same bytes for the same dataset and date is a no-op that records nothing.

A loaded delivery's ledger row, its rejects and its merge into history are written in one
transaction. Its Parquet in the lake is written first, under a path derived from the delivery id,
and only becomes part of the warehouse through the ledger row that names it: if the process dies
before the commit, the next run writes the same bytes to the same path and commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from datashare.errors import DeliveryError, GateFailed, LayoutError
from datashare.settings import DEFAULT_GX_MAX_ROWS
from expectations.contract import Common, Contract
from tasks.landing import DeliveryRef
from tasks.read import SPREADSHEET_FORMATS, ReadLimits, read_delivery
from tasks.validate import REJECT_COLUMNS, Validated, check_conservation, validate_rows
from warehouse import ledger
from warehouse.history import (
    MergeOrderError,
    accepted_schema,
    attach_held_keys,
    merge_delivery,
    rebuild_from,
)
from warehouse.lake import lake_path, write_bytes_atomic, write_parquet_atomic

log = logging.getLogger(__name__)

# IO that can fail transiently (landing, lake, database connection): raised for the task to retry.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, httpx.TransportError, OperationalError)


@functools.cache
def use_arrow_pool() -> str:
    """Make Arrow allocate from jemalloc for this process, unless ARROW_DEFAULT_MEMORY_POOL
    chooses; the name of the pool in use.

    The intake's Arrow work (CSV parsing and transcoding, string kernels, Parquet) is mostly
    large short-lived buffers. With Arrow's default mimalloc pool the 1M-row GB18030 benchmark
    ran at 189k-216k rows/s, with jemalloc at 229k-266k (the read stage 0.7 s instead of 1.3-1.5 s)
    and a peak no higher (bench/bench_intake.py, docs/scaling.md).
    """
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        with contextlib.suppress(NotImplementedError):  # pyarrow built without jemalloc
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    return pa.default_memory_pool().backend_name


@dataclass(frozen=True)
class IntakeOptions:
    """Where intake writes and how it gates; plain values, built from Settings at the edge."""

    lake_root: Path
    gx_root: Path
    gx_max_rows: int = DEFAULT_GX_MAX_ROWS
    build_docs: bool = True
    force: bool = False  # accept a snapshot below half of the previous one (operator's call)
    secret: bytes = b""  # HMAC key for person_key; required to load
    # what a reader may consume (DATASHARE_READ_*)
    read_limits: ReadLimits = dataclasses.field(default_factory=ReadLimits)


@dataclass(frozen=True)
class IntakeSummary:
    """What a Prefect task returns: counts and ids, never a frame."""

    delivery_id: str
    dept: str
    dataset: str
    exchange_date: date
    source_file: str
    status: str  # loaded | failed | duplicate | unchanged
    rows_in: int
    rows_loaded: int
    rows_rejected: int
    duplicates: int
    reason: str | None
    rebuilt_from: date | None = None  # history re-derived from this date (past re-delivery)


def to_arrow_table(
    accepted: pd.DataFrame, contract: Contract, delivery_id: str, source_file: str
) -> pa.Table:
    """The accepted rows as Arrow, in the lake schema, column by column (no copy of the frame;
    dates cast in Arrow, never through Python date objects)."""
    schema = accepted_schema(contract)  # what the lake keeps and merge_delivery expects
    n = len(accepted)
    lineage = {"delivery_id": delivery_id, "source_file": source_file}
    columns = []
    for field in schema:
        if field.name in lineage:
            one = pa.array([lineage[field.name]], type=field.type)
            columns.append(one.take(pa.array(np.zeros(n, dtype=np.int64))))
            continue
        values = accepted[field.name]
        if pa.types.is_date32(field.type):
            if values.dtype.kind == "M":  # midnight timestamps: the cast is exact
                columns.append(pa.array(values, from_pandas=True).cast(field.type))
                continue
            values = values.dt.date
        columns.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(columns, schema=schema)


def _failure_rejects(rule: str, message: str, column: str | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "source_row": None,
                "column": column,
                "rule": rule,
                "value_masked": None,
                "message": message,
            }
        ],
        columns=REJECT_COLUMNS,
    )


def _gate(
    contract: Contract, validated: Validated, previous_rows: int | None, force: bool
) -> tuple[str, str] | None:
    """The first delivery-level gate that fails, as (rule, Chinese reason)."""
    share = validated.quarantine_share
    if share > contract.quarantine_threshold:
        return (
            "quarantine_share",
            f"问题数据占比 {share:.1%}，超过 {contract.quarantine_threshold:.0%}，整批退回",
        )
    if contract.mode == "snapshot" and previous_rows and contract.min_snapshot_ratio and not force:
        distinct = validated.rows_in - validated.duplicates
        if distinct < previous_rows * contract.min_snapshot_ratio:
            return (
                "truncated_snapshot",
                f"本次 {distinct} 行，不足上次已接收的 {previous_rows} 行的"
                f"{contract.min_snapshot_ratio:.0%}，疑似导出不完整，整批退回",
            )
    return None


def _outcome(
    did: str,
    contract: Contract,
    ref: DeliveryRef,
    status: str,
    rows_in: int = 0,
    loaded: int = 0,
    rejected: int = 0,
    dups: int = 0,
    reason: str | None = None,
) -> IntakeSummary:
    return IntakeSummary(
        did,
        contract.dept,
        contract.dataset,
        ref.exchange_date,
        ref.file_name,
        status,
        rows_in,
        loaded,
        rejected,
        dups,
        reason,
    )


def intake_delivery(
    ref: DeliveryRef,
    content: bytes,
    contract: Contract,
    common: Common,
    engine: Engine,
    options: IntakeOptions,
) -> IntakeSummary:
    """Take in one delivery and record its outcome; see the module docstring."""
    use_arrow_pool()
    sha = hashlib.sha256(content).hexdigest()
    did = ledger.delivery_id(contract.dataset, ref.exchange_date, sha)
    summary = functools.partial(_outcome, did, contract, ref)

    status = ledger.known(engine, contract.dataset, ref.exchange_date, sha)
    # An operator forcing a delivery that failed (e.g. a truncated snapshot) re-runs it, and so
    # does any run after a failure that was not the file's fault (an unexpected error): its failed
    # record is then replaced. Anything else already recorded is a no-op.
    retry = status == "failed" and (options.force or ledger.crashed(engine, did))
    if status is not None and not retry:
        return summary("unchanged", reason=f"already recorded as {status}")

    raw_rel = lake_path("raw", contract.dataset, ref.exchange_date, f"{did}__{ref.file_name}")
    base: dict[str, Any] = dict(
        delivery_id=did,
        dept=contract.dept,
        dataset=contract.dataset,
        exchange_date=ref.exchange_date,
        source_file=ref.file_name,
        location=ref.location,
        sha256=sha,
        received_at=datetime.now(UTC),
        raw_path=raw_rel,
    )
    write_bytes_atomic(options.lake_root, raw_rel, content)

    try:
        return _take_in(ref, content, contract, common, engine, options, base, retry)
    except TRANSIENT:
        raise  # the task retries transient IO; the delivery is then taken in afresh
    except Exception as exc:
        # Anything unexpected (a reader's bug, a RecursionError, a merge that breaks) fails this
        # delivery, not the night. The merge's transaction has rolled back, so the warehouse is
        # as before it. Its message may quote a value: only the class is recorded.
        crash = DeliveryError(
            f"处理时发生意外错误（{type(exc).__name__}），整批未入库，请平台运维排查",
            dept=contract.dept,
            dataset=contract.dataset,
            source_file=ref.file_name,
            rule="unexpected_error",
        )
        log.error(
            "delivery %s of %s crashed with %s; recorded as failed",
            did,
            contract.dataset,
            type(exc).__name__,
        )
        return _record_failure(engine, base, crash, rows_in=0, dups=0, rejects=None, replace=retry)


def _take_in(
    ref: DeliveryRef,
    content: bytes,
    contract: Contract,
    common: Common,
    engine: Engine,
    options: IntakeOptions,
    base: dict[str, Any],
    retry: bool,
) -> IntakeSummary:
    """Read, validate, gate, record and merge one delivery whose raw bytes are in the lake."""
    did, sha = base["delivery_id"], base["sha256"]
    summary = functools.partial(_outcome, did, contract, ref)

    try:
        raw = read_delivery(content, ref.file_name, contract, common, options.read_limits)
    except DeliveryError as exc:
        rows_in = exc.rows_in  # rows the reader counted before refusing
        return _record_failure(
            engine, base, exc, rows_in=rows_in, dups=0, rejects=None, replace=retry
        )

    extra = json.dumps(list(raw.extra_columns), ensure_ascii=False) if raw.extra_columns else None
    base |= dict(file_format=raw.fmt, sheet=raw.sheet, encoding=raw.encoding, extra_columns=extra)
    rows_in = len(raw.frame)
    missing = [c for c in raw.missing_columns if c in contract.required_columns]
    if missing:
        headers = "、".join(f"{contract.column(c).header}（{c}）" for c in missing)
        err: DeliveryError = LayoutError(
            f"缺少必需列：{headers}",
            dept=contract.dept,
            dataset=contract.dataset,
            source_file=ref.file_name,
            column=missing[0],
            rule="missing_column",
        )
        return _record_failure(
            engine, base, err, rows_in=rows_in, dups=0, rejects=None, replace=retry
        )

    if (
        contract.mode == "events"
        and (earlier := ledger.loaded_elsewhere(engine, contract.dataset, sha)) is not None
    ):
        rec = ledger.DeliveryRecord(
            **base,
            status="duplicate",
            rows_in=rows_in,
            rows_loaded=0,
            rows_rejected=0,
            duplicates=rows_in,
            reason=f"与已接收的交付 {earlier} 内容完全相同",
        )
        with ledger.writing(engine) as conn:
            ledger.record(conn, rec, pd.DataFrame(columns=REJECT_COLUMNS), replace=retry)
        return summary("duplicate", rows_in, 0, 0, rows_in, rec.reason)

    validated = validate_rows(
        raw.frame,
        contract,
        common,
        exchange_date=ref.exchange_date,
        excel=raw.fmt in SPREADSHEET_FORMATS,
    )
    previous = (
        ledger.previous_snapshot_rows(engine, contract.dataset, ref.exchange_date)
        if contract.mode == "snapshot"
        else None
    )
    # GX sees the rows the engine counts (duplicates collapsed) and the columns the file had;
    # it is handed the typed frame and those rows' positions, and copies only what it reads.
    gx_frame = validated.typed.drop(columns=list(raw.missing_columns))
    # The lake table of the accepted rows is built while GX judges (both only read `validated`;
    # building it has no side effect, and it is used, or its error raised, only once the
    # gates have passed, as before).
    # GX is imported where a delivery is judged (two seconds of imports): a night that takes
    # nothing new in, an unchanged re-run, never loads it.
    from tasks.gx_validate import validate_delivery_gx

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-arrow") as pool:
        building = pool.submit(
            lambda: to_arrow_table(validated.accepted, contract, did, ref.file_name)
        )
        verdict = validate_delivery_gx(
            gx_frame,
            contract,
            rows=validated.distinct_rows,
            exchange_date=ref.exchange_date,
            previous_rows=None if options.force else previous,
            context_root=options.gx_root,
            run_label=did,
            max_rows=options.gx_max_rows,
            build_docs=options.build_docs,
        )
    base |= dict(gx_success=verdict.success)
    gate = _gate(contract, validated, previous, options.force)
    if gate is None and not verdict.success:
        gate = ("gx_failed", "数据质量校验未通过：" + "；".join(verdict.failed_expectations))
    if gate is not None:
        rule, reason = gate
        err = GateFailed(
            reason,
            dept=contract.dept,
            dataset=contract.dataset,
            source_file=ref.file_name,
            rule=rule,
        )
        rejected = validated.rows_in - validated.duplicates
        return _record_failure(
            engine,
            base,
            err,
            rows_in=validated.rows_in,
            dups=validated.duplicates,
            rejects=validated.rejects,
            rejected=rejected,
            replace=retry,
        )

    accepted_rel = lake_path("accepted", contract.dataset, ref.exchange_date, f"{did}.parquet")
    # The keys of quarantined rows go with the accepted rows: a snapshot holds them open.
    quarantined = ~validated.accepted_mask & ~validated.duplicate
    held = validated.typed.loc[quarantined, list(contract.key)]
    table = attach_held_keys(building.result(), contract, held)
    write_parquet_atomic(options.lake_root, accepted_rel, table)
    rec = ledger.DeliveryRecord(
        **base,
        status="loaded",
        rows_in=validated.rows_in,
        rows_loaded=validated.rows_loaded,
        rows_rejected=validated.rows_quarantined,
        duplicates=validated.duplicates,
        lake_path=accepted_rel,
    )
    rebuilt_from = None
    with ledger.writing(engine) as conn:
        ledger.record(conn, rec, validated.rejects, replace=retry)
        try:
            merge_delivery(
                conn,
                contract,
                table,
                delivery_id=did,
                exchange_date=ref.exchange_date,
                secret=options.secret,
            )
        except MergeOrderError:
            # A re-delivery (or a late delivery) for a past date: replay from that date on.
            rebuild_from(
                conn,
                contract,
                ref.exchange_date,
                lake_root=options.lake_root,
                secret=options.secret,
            )
            rebuilt_from = ref.exchange_date
    done = summary("loaded", rec.rows_in, rec.rows_loaded, rec.rows_rejected, rec.duplicates)
    return dataclasses.replace(done, rebuilt_from=rebuilt_from)


def _record_failure(
    engine: Engine,
    base: dict[str, Any],
    err: DeliveryError,
    *,
    rows_in: int,
    dups: int,
    rejects: pd.DataFrame | None,
    rejected: int | None = None,
    replace: bool = False,
) -> IntakeSummary:
    """Record a failed delivery: nothing loaded, every distinct row counted as rejected."""
    rejected = rows_in - dups if rejected is None else rejected
    check_conservation(rows_in, 0, rejected, dups)
    reason = str(err)
    rule = err.rule or type(err).__name__
    rows = _failure_rejects(rule, err.reason, err.column)
    if rejects is not None and len(rejects):
        rows = pd.concat([rows, rejects], ignore_index=True)
    rec = ledger.DeliveryRecord(
        **base,
        status="failed",
        rows_in=rows_in,
        rows_loaded=0,  # type: ignore[arg-type]
        rows_rejected=rejected,
        duplicates=dups,
        reason=reason,
    )
    with ledger.writing(engine) as conn:
        ledger.record(conn, rec, rows, replace=replace)
    log.info("delivery %s failed: %s", rec.delivery_id, reason)  # the ledger is the report
    return IntakeSummary(
        rec.delivery_id,
        rec.dept,
        rec.dataset,
        rec.exchange_date,
        rec.source_file,
        "failed",
        rows_in,
        0,
        rejected,
        dups,
        reason,
    )
