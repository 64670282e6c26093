"""Great Expectations as the delivery gate: run the dataset's suites on its normalised frame.

The engine (tasks/validate.py) decides row by row what is quarantined; GX then judges the whole
delivery and its verdict gates the load. Per delivery, under one process-wide lock:

    suites   <DATASET>.delivery and <DATASET>.contract (expectations/gx_suite.py), written with
             add-or-update semantics into the expectations store
    runs     one ValidationDefinition + Checkpoint per suite, both under one run id
             (run_label); the Checkpoint's UpdateDataDocsAction builds the Data Docs pages
    verdict  success = the delivery suite passed. The contract suite is for the record (Data
             Docs, ledger statistics): GX's `mostly` counts only filled cells, so gating on it
             would refuse deliveries the spec accepts (6 bad codes in 20 filled cells of a
             100-row file are 6% of rows, not 30%).

What lands under `context_root` (a GX file project, created on first use):

    gx/great_expectations.yml              project config: analytics off, progress bars off,
                                           one pandas data source "datashare", one dataframe
                                           asset per dataset (no data: frames are passed per run)
    gx/expectations/<suite>.json           the suites
    gx/validation_definitions/, checkpoints/   one per suite
    gx/uncommitted/validations/<suite>/<run_label>/<time>/<batch>.json   validation results
    gx/uncommitted/data_docs/local_site/   HTML Data Docs (index.html), rewritten after each
                                           build to load no asset from the internet
                                           (tasks/gx_offline.py)

Personal data: results hold counts, percentages and at most 20 unexpected values per
expectation, and expectations on personal columns (contract `pii`) hold no values at all
(expectations/gx_custom.py). Every other value a result holds is masked if it looks like an id,
a phone or a bank account (tasks.mask.mask_lookalikes: an id typed into 救助类型 must not show
under "Sampled Unexpected Values"): the project's validation results store masks each result
before it is stored, and the Data Docs are built from what it stored. Batch parameters are
stored as a placeholder, never the frame.

GX objects are not thread-safe: everything GX runs under `_LOCK` (Prefect runs deliveries in
threads). A project is opened once per `context_root` per process and kept.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from datashare.settings import DEFAULT_GX_MAX_ROWS
from expectations.contract import Contract
from expectations.gx_custom import gx
from expectations.gx_suite import DEFECTS_COLUMN, build_suites
from tasks.gx_offline import DOCS_SITE, make_site_offline
from tasks.mask import mask_lookalikes_text

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from great_expectations.checkpoint import UpdateDataDocsAction, ValidationAction
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.render.view.view import DefaultJinjaView
from jinja2 import BytecodeCache, FileSystemBytecodeCache

DATASOURCE = "datashare"
BATCH_DEFINITION = "whole_frame"
# One result format for every expectation of a run (GX lets the run's format win); personal
# columns strip their values themselves. BASIC: counts plus up to 20 values, without the
# per-row index lists SUMMARY computes (those cost ~10% more on large frames).
RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 20}
SAMPLE_SEED = 20_250_312

_LOCK = threading.RLock()


class _TemplateCache(BytecodeCache):
    """Compiled Jinja templates of GX's Data Docs, kept in memory and in Jinja's own cache
    folder so the next process finds them too.

    GX builds Data Docs with view objects made anew for every build, each with a Jinja
    environment of its own, so every checkpoint run parsed and compiled the same GX templates
    again (~0.4 s each, ~0.85 s of a delivery's two runs). Jinja's bytecode cache is keyed by
    template name and file and checked against a hash of the template source (and the Python
    version): a cached template is only used for the very source it was compiled from, so the
    pages rendered are the same. The folder is Jinja's default (private to the user, created
    0700 and checked by Jinja); without one, the cache is in memory only.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()
        try:
            self._files: BytecodeCache | None = FileSystemBytecodeCache()
        except (OSError, RuntimeError):
            self._files = None

    def load_bytecode(self, bucket: Any) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)
        elif self._files is not None:
            try:
                self._files.load_bytecode(bucket)
            except Exception:  # a damaged or foreign cache file: compile as usual
                bucket.reset()
            if bucket.code is not None:
                with self._lock:
                    self._code[bucket.key] = bucket.bytecode_to_string()

    def dump_bytecode(self, bucket: Any) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code
        if self._files is not None:
            with suppress(OSError):  # the in-memory copy still serves this process
                self._files.dump_bytecode(bucket)


_JINJA_CACHE = _TemplateCache()


def _install_template_cache() -> None:
    """Give every GX Data Docs view environment the process-wide bytecode cache (once).

    All GX views configure their environment the same way (loaders, autoescape, the `do`
    extension): only the template source differs, and the cache checks it. The hook is the
    view's template lookup, not its constructor: GX picks the arguments it passes to a view
    from the constructor's signature (a wrapped constructor loses the custom styles folder).
    """
    get_template = getattr(DefaultJinjaView, "_get_template", None)
    if get_template is None or getattr(get_template, "_datashare_cached", False):
        return  # a GX without this hook builds the same docs, only slower

    def cached_get_template(self: Any, template_str: str) -> Any:
        env = getattr(self, "env", None)
        if env is not None and env.bytecode_cache is None:
            env.bytecode_cache = _JINJA_CACHE
        return get_template(self, template_str)

    cached_get_template._datashare_cached = True  # type: ignore[attr-defined]
    DefaultJinjaView._get_template = cached_get_template  # type: ignore[method-assign]


_install_template_cache()


@dataclass(frozen=True)
class GxVerdict:
    """GX's judgement of one delivery; `success` is the gate.

    failed_expectations: short labels such as ``expect_column_values_to_be_in_set(status)``,
    delivery suite first; never values. statistics: counts and timings of both runs.
    """

    success: bool
    delivery_success: bool
    contract_success: bool
    contract_sampled: bool
    failed_expectations: tuple[str, ...]
    statistics: Mapping[str, float] = field(default_factory=dict)
    docs_index: Path | None = None


@dataclass
class _Project:
    """An open GX file project and the batch definitions made so far (one per dataset)."""

    context: Any
    batch_definitions: dict[str, Any] = field(default_factory=dict)


_PROJECTS: dict[Path, _Project] = {}


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep GX's (and pandas-inside-GX's) warnings off stderr and out of `-W error` runs.

    Only warnings raised from GX's modules are ignored; ours still surface.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
        yield


def _open_project(root: Path) -> _Project:
    """The GX file project under `root`, created (quiet, no analytics) on first use."""
    root = root.resolve()
    project = _PROJECTS.get(root)
    if project is not None:
        return project
    root.mkdir(parents=True, exist_ok=True)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="file", project_root_dir=root)
    variables = context.variables
    changed = False
    if variables.analytics_enabled is not False:
        variables.analytics_enabled = False
        changed = True
    bars = variables.progress_bars
    if not bars or bars.get("globally") is not False:
        variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    sites = dict(variables.data_docs_sites or {})
    if DOCS_SITE in sites and sites[DOCS_SITE].get("show_how_to_buttons", True):
        # GX's default site shows "how to" buttons that link to its website.
        sites[DOCS_SITE] = {**sites[DOCS_SITE], "show_how_to_buttons": False}
        variables.data_docs_sites = sites
        changed = True
    if changed:
        variables.save()
    if DATASOURCE not in context.data_sources.all():
        context.data_sources.add_pandas(name=DATASOURCE)
    _mask_stored_results(context)
    project = _Project(context=context)
    _PROJECTS[root] = project
    return project


def masked_result_value(value: Any) -> Any:
    """A validation result's value with every id, phone or bank account in it masked: text
    anywhere inside, and numbers of 11 digits or more (an id or phone typed as a number)."""
    if isinstance(value, str):
        return mask_lookalikes_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float) and abs(value) >= 1e10:
        text = str(value)
        masked = mask_lookalikes_text(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {k: masked_result_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked_result_value(v) for v in value]
    return value


def mask_suite_result(result: ExpectationSuiteValidationResult) -> None:
    """Mask, in place, every value the expectation results of a suite run hold."""
    for one in result.results:
        if one.result:
            one.result = masked_result_value(dict(one.result))


def _mask_stored_results(context: Any) -> None:
    """Make the project's validation results store mask each result before storing it.

    GX stores a suite's result as soon as it has run, before the Checkpoint's actions build
    the Data Docs from it, and offers no hook in between: the store's method is wrapped, on
    this one store object, once.
    """
    store = context.validation_results_store
    if getattr(store, "_datashare_masks", False):
        return
    original = store.store_validation_results

    def store_masked(*args: Any, **kwargs: Any) -> Any:
        result = kwargs.get("suite_validation_result", args[0] if args else None)
        if isinstance(result, ExpectationSuiteValidationResult):
            mask_suite_result(result)
        return original(*args, **kwargs)

    store.store_validation_results = store_masked
    store._datashare_masks = True


def _batch_definition(project: _Project, dataset: str) -> Any:
    """The whole-dataframe batch definition of the dataset's asset (made once)."""
    found = project.batch_definitions.get(dataset)
    if found is not None:
        return found
    source = project.context.data_sources.get(DATASOURCE)
    try:
        asset = source.get_asset(dataset)
    except LookupError:
        asset = source.add_dataframe_asset(name=dataset)
    try:
        found = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        found = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    project.batch_definitions[dataset] = found
    return found


def _label(result: ExpectationValidationResult) -> str:
    """``expectation_type(column)`` (or the rule id / column list): no values, ever."""
    config = result.expectation_config
    if config is None:
        return "unknown expectation"
    kwargs = config.kwargs
    if "column" in kwargs:
        label = f"{config.type}({kwargs['column']})"
    elif "rule_id" in kwargs:
        label = f"{config.type}({kwargs['rule_id']})"
    elif "column_list" in kwargs:
        label = f"{config.type}({','.join(kwargs['column_list'])})"
    else:
        label = config.type
    if _raised(result.exception_info):
        label += ": error"
    return label


def _raised(info: Mapping[str, Any] | None) -> bool:
    """Whether GX caught an exception for the expectation (two shapes: flat, or per metric)."""
    if not info:
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(v, Mapping) and v.get("exception_message") for v in info.values())


def _run_suite(
    project: _Project,
    suite: Any,
    batch_definition: Any,
    frame: pd.DataFrame,
    run_id: RunIdentifier,
    build_docs: bool,
) -> ExpectationSuiteValidationResult:
    """Store the suite, then validate `frame` with it through a ValidationDefinition and a
    Checkpoint (which builds its Data Docs pages when `build_docs`)."""
    definition = gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=suite)
    actions: list[ValidationAction] = (
        [UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])]
        if build_docs
        else []
    )
    # add_or_update cascades: checkpoint -> validation definition -> suite, one write each.
    checkpoint = project.context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=[definition],
            actions=actions,
            result_format=RESULT_FORMAT,
        )
    )
    try:
        outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    finally:
        _release_batches(batch_definition)
    (result,) = outcome.run_results.values()
    return result


def _release_batches(batch_definition: Any) -> None:
    """Drop the frames GX's execution engine keeps after a run (one per asset, until the next
    run of that asset): the process would otherwise hold the last frame of every dataset."""
    manager = batch_definition.data_asset.datasource.get_execution_engine().batch_manager
    manager.reset_batch_cache()
    manager.batch_data_cache.clear()


def gate_frame(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """What the delivery suite reads: every row, `_defects`, and each required column the
    delivery has, as a filled/empty flag under its own name.

    The gate looks at column names, the row count and `_defects`, never at cell values; GX
    fingerprints every batch it loads (an md5 over pandas' hash of every cell, ~1.2 s per
    million rows of id-number text), so it is handed the gate's inputs, not the text. This
    frame holds no personal data.
    """
    flags = {
        name: frame[name].notna().to_numpy(dtype=bool)
        for name in contract.required_columns
        if name in frame.columns
    }
    return pd.DataFrame({DEFECTS_COLUMN: frame[DEFECTS_COLUMN], **flags}, index=frame.index)


def _sample(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """A deterministic uniform sample of `max_rows` rows, in their delivered order."""
    return frame.sample(n=max_rows, random_state=SAMPLE_SEED).sort_index()


def _sample_rows(index: pd.Index, max_rows: int) -> np.ndarray:
    """Positions of the rows `_sample` picks from a frame with this index (the same draw,
    made on the positions instead of the frame: only the picked rows are then copied)."""
    positions = pd.Series(np.arange(len(index), dtype=np.int64), index=index)
    return _sample(positions, max_rows).to_numpy()  # type: ignore[arg-type]


def validate_delivery_gx(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    rows: np.ndarray | None = None,
    exchange_date: date,
    previous_rows: int | None,
    context_root: Path,
    run_label: str,
    max_rows: int = DEFAULT_GX_MAX_ROWS,
    build_docs: bool = True,
) -> GxVerdict:
    """Validate one delivery's normalised frame with Great Expectations; the verdict gates it.

    `frame` is the engine's typed frame: one column per contract column, plus `source_row`
    and `_defects` (the engine's count of quarantine reasons per row). `previous_rows` is the
    row count of the last accepted snapshot (None: unknown, or an events dataset). `rows`,
    if given, are the positions of the delivery's rows in `frame` (the engine's typed frame
    without its collapsed duplicates): GX judges exactly `frame.iloc[rows]`, without the
    whole frame being copied first.

    The delivery suite (required columns, truncated snapshot, quarantine share) always runs on
    every row (of `gate_frame`): it is cheap, and its `_defects` expectation carries the
    engine's full row-level result. The contract suite checks every column and row rule again
    in GX, and GX pays per expectation per row (each column check copies the non-null part of
    the frame; every batch is fingerprinted cell by cell): ~3.5 s for 1M MZ_DIBAO rows. So
    above `max_rows` rows it runs on a deterministic sample of `max_rows` rows. On a sample
    its outcome is reported but does not gate: a sample cannot prove a share over the whole
    delivery, and delivery-wide rules (one 户主 per household) are not meaningful on one.

    Raises whatever GX raises when it cannot run at all (store or config errors): a delivery
    is never accepted without a verdict.
    """
    if DEFECTS_COLUMN not in frame.columns:
        raise ValueError(
            f"{contract.dataset}: the frame has no {DEFECTS_COLUMN} column; "
            "pass the engine's typed frame"
        )
    delivery_suite, contract_suite = build_suites(
        contract, exchange_date=exchange_date, previous_rows=previous_rows
    )
    if rows is None:
        sampled = len(frame) > max_rows
        contract_frame = _sample(frame, max_rows) if sampled else frame
        gate = gate_frame(frame, contract)
        n_rows = len(frame)
    else:
        index = frame.index[rows]
        n_rows = len(rows)
        sampled = n_rows > max_rows
        contract_frame = frame.take(rows[_sample_rows(index, max_rows)] if sampled else rows)
        gate = gate_frame(frame, contract).take(rows)
    run_time = datetime.now(UTC)

    with _LOCK, _quiet():
        project = _open_project(Path(context_root))
        batch_definition = _batch_definition(project, contract.dataset)
        run_id = RunIdentifier(run_name=run_label, run_time=run_time)
        built_since = time.time() - 1  # pages GX writes from here on are this run's
        started = time.perf_counter()
        delivery = _run_suite(project, delivery_suite, batch_definition, gate, run_id, build_docs)
        middle = time.perf_counter()
        checked = _run_suite(
            project, contract_suite, batch_definition, contract_frame, run_id, build_docs
        )
        ended = time.perf_counter()
        docs_index = _docs_index(project) if build_docs else None
        if docs_index is not None:
            make_site_offline(docs_index.parent, since=built_since)

    failed = tuple(_label(r) for r in (*delivery.results, *checked.results) if not r.success)
    statistics = {
        "rows": n_rows,
        "contract_rows": len(contract_frame),
        "delivery_evaluated": delivery.statistics["evaluated_expectations"],
        "delivery_unsuccessful": delivery.statistics["unsuccessful_expectations"],
        "contract_evaluated": checked.statistics["evaluated_expectations"],
        "contract_unsuccessful": checked.statistics["unsuccessful_expectations"],
        "delivery_seconds": round(middle - started, 3),
        "contract_seconds": round(ended - middle, 3),
    }
    return GxVerdict(
        success=bool(delivery.success),
        delivery_success=bool(delivery.success),
        contract_success=bool(checked.success),
        contract_sampled=sampled,
        failed_expectations=failed,
        statistics=MappingProxyType(statistics),
        docs_index=docs_index,
    )


def _docs_index(project: _Project) -> Path | None:
    """Path of the local Data Docs site's index.html (None if it was not built)."""
    site = (project.context.variables.data_docs_sites or {}).get(DOCS_SITE) or {}
    base = site.get("store_backend", {}).get("base_directory")
    if not base:
        return None
    index = Path(project.context.root_directory) / base / "index.html"
    return index if index.exists() else None
