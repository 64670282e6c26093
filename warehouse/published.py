"""Published files: what departments consume. Only this module writes under PUBLISH_DIR.

The folder layer beneath warehouse.publish: that package decides what a publication holds
(tables, access, forms, catalog, audit, SQL); this module only lays files out, switches and prunes.

Layout (docs/publishing.md):

    <publish_dir>/
      .versions/<publication_id>/          one complete publication, written aside
          catalog.json
          <CONSUMER>/<table>.parquet       canonical column names (programs)
          <CONSUMER>/<table>.xlsx | .csv   Chinese headers (people); CSV with BOM above a limit
          <CONSUMER>/catalog.json          that consumer's part of the catalog
      current -> .versions/<publication_id>    the switch: one symlink, replaced with os.replace
      catalog.json -> current/catalog.json
      <CONSUMER>/                          a real directory with stable names for consumers:
          <table>.parquet -> ../current/<CONSUMER>/<table>.parquet
          reports/                         (XC) written by the reports, never touched here
      .publish.lock                        one publisher at a time (flock, where available)

Every stable path resolves through `current` when it is opened, so the switch from one
publication to the next is a single atomic rename. A reader that wants several files from the
same publication resolves `current` once (os.path.realpath) and reads below it. Where symlinks
are not available (Windows without the privilege), files are copied onto the stable paths one
by one instead, each atomically (os.replace), catalog.json last: no file is ever half written, but
the set is not switched at once.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import xlsxwriter

from datashare.errors import PublishLocked  # re-exported: old import path
from domain.cell_width import display_width, wrapped_lines, wrapped_lines_each
from warehouse.sheet_xml import SheetPlan, data_rows, insert_rows

VERSIONS = ".versions"
CURRENT = "current"
CATALOG = "catalog.json"
LOCK = ".publish.lock"
HOLD = ".hold"  # readers hold a version with a shared flock on it (pruning respects it)
POINTER = "CURRENT"  # copy mode only: the id of the publication copied onto the stable paths
_LINK_PREFIX = f"../{CURRENT}/"
# Excel shows local time; the county is in China (one time zone, no daylight saving).
_LOCAL = timezone(timedelta(hours=8))
_XLSX_OPTIONS = {
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}
# Print layout of a published sheet (issue 14): columns as wide as what they show (a header
# wraps over up to three lines, text wider than the cap wraps in its cell), rows as high as
# their lines (neither Excel nor LibreOffice grows a row for wrapped text xlsxwriter writes).
_XLSX_MAX_WIDTH = 40.0
_XLSX_HEADER_LINES = 3
_XLSX_WIDTH_SAMPLE = 1000  # rows whose values size a column
_XLSX_LINE = 15.0  # points per line (xlsxwriter's default row height)
_XLSX_MAX_LINES = 20


# --- writers -------------------------------------------------------------------------------------


def _shown_width(value: Any) -> int:
    """Width of a value as a cell shows it, in Excel character units (CJK counts two)."""
    if isinstance(value, str):
        return display_width(value)
    if isinstance(value, datetime):
        return 19
    if isinstance(value, date):
        return 10
    if isinstance(value, bool):
        return 2  # 是 / 否
    if isinstance(value, float):
        return len(f"{value:,.2f}")  # an amount's format (a rate's is narrower)
    return len(str(value))


def _column_widths(labels: Sequence[str], columns: list[list[Any]]) -> list[float]:
    """Each column as wide as its widest value (of the first rows) or its header over up to
    three lines, at least 6 and at most _XLSX_MAX_WIDTH."""
    widths = []
    for label, values in zip(labels, columns, strict=True):
        shown = [_shown_width(v) for v in values[:_XLSX_WIDTH_SAMPLE] if v is not None]
        head = math.ceil(_shown_width(label) / _XLSX_HEADER_LINES)
        widths.append(min(max(max(shown, default=0), head, 4) + 2.0, _XLSX_MAX_WIDTH))
    return widths


def write_parquet(path: Path, table: pa.Table) -> None:
    """Deterministic Parquet: the same table gives the same bytes (no timestamps inside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", write_statistics=True, store_schema=True)


def _excel_sheet_name(title: str) -> str:
    for bad in "[]:*?/\\":
        title = title.replace(bad, " ")
    return title.strip()[:31] or "data"


def write_xlsx(
    path: Path,
    table: pa.Table,
    labels: Sequence[str],
    *,
    sheet: str,
    created: date,
    counts: Collection[str] = (),
    note: str | None = None,
) -> None:
    """XLSX for people: Chinese headers, dates as dates, text (ids) as text, flags as 是/否.

    `counts`: text columns holding counts or a suppression mark ("<5"): a count is written as
    a number, a mark as text set apart (grey, italic, right-aligned) and `note` below the table
    says what it means. The workbook's creation date is the exchange date, so the same table
    gives the same bytes.

    xlsxwriter writes the workbook around the data (styles, columns, page setup, filter,
    header, note); the data rows are built by Arrow (warehouse.sheet_xml) as xlsxwriter's
    constant-memory mode would write them, and put in after the header.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    book = io.BytesIO()
    frame = xlsx_frame(book, table, labels, sheet=sheet, created=created, counts=counts, note=note)
    frame.workbook.close()
    rows, last = data_rows(table, frame.plan, _LOCAL)
    last_row = table.num_rows + 2 if note else last
    content = insert_rows(book.getvalue(), rows, last_row, max(table.num_columns - 1, 0))
    path.write_bytes(content)


@dataclass(frozen=True)
class XlsxFrame:
    """A workbook written but for its data rows, and how they are to be shown."""

    workbook: xlsxwriter.Workbook
    sheet: Any  # xlsxwriter's Worksheet
    plan: SheetPlan
    formats: list[Any]  # per column, a cell's own format (or None)
    top: Any  # a tall row's format
    mark: Any  # a count column's mark


def xlsx_frame(
    book: io.BytesIO,
    table: pa.Table,
    labels: Sequence[str],
    *,
    sheet: str,
    created: date,
    counts: Collection[str] = (),
    note: str | None = None,
) -> XlsxFrame:
    """Everything of write_xlsx's workbook but the data rows, in xlsxwriter's constant-memory
    mode (the data cells' styles registered), not yet closed."""
    workbook = xlsxwriter.Workbook(book, {**_XLSX_OPTIONS, "constant_memory": True})
    workbook.set_properties({"created": datetime.combine(created, time())})
    header = workbook.add_format(
        {"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"}
    )
    # top-aligned: in a row grown for wrapped text every cell reads on its first line (a cell
    # without a format of its own takes its row's)
    top_fmt = workbook.add_format({"valign": "top"})
    wrap_fmt = workbook.add_format({"text_wrap": True, "valign": "top"})
    date_fmt = workbook.add_format({"num_format": "yyyy-mm-dd", "valign": "top"})
    stamp_fmt = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss", "valign": "top"})
    text_fmt = workbook.add_format({"num_format": "@"})
    # A rate (0.3636) reads as a percentage; the cell keeps the number (issue 14).
    rate_fmt = workbook.add_format({"num_format": "0.0%", "valign": "top"})
    # An amount (double) shows its cents the same way in every row: 164.00 under 283.19.
    amount_fmt = workbook.add_format({"num_format": "#,##0.00", "valign": "top"})
    mark_fmt = workbook.add_format(
        {"italic": True, "font_color": "#595959", "align": "right", "valign": "top"}
    )
    sheet_ = workbook.add_worksheet(_excel_sheet_name(sheet))
    types = [f.type for f in table.schema]
    counted = {i for i, f in enumerate(table.schema) if f.name in counts}
    sample = [table.column(i).slice(0, _XLSX_WIDTH_SAMPLE).to_pylist() for i in range(len(types))]
    widths = _column_widths(labels, sample)
    column_formats = []
    for col, (width, kind) in enumerate(zip(widths, types, strict=True)):
        as_text = pa.types.is_string(kind) and col not in counted
        column_formats.append(text_fmt if as_text else None)
        sheet_.set_column(col, col, width, column_formats[-1])
    # Text wider than its column wraps in it (an alert's evidence, a reject's explanation).
    wrapped = {
        col
        for col, (width, kind) in enumerate(zip(widths, types, strict=True))
        if pa.types.is_string(kind) and col not in counted and width >= _XLSX_MAX_WIDTH
    }
    sheet_.freeze_panes(1, 0)
    # Page setup (issue 14): A4 landscape, one page wide, the header row on every page.
    sheet_.set_paper(9)
    sheet_.set_landscape()
    sheet_.fit_to_pages(1, 0)
    sheet_.repeat_rows(0)
    sheet_.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    sheet_.set_footer("&C第 &P 页，共 &N 页")
    shown_heads = zip(labels, widths, strict=True)
    head_lines = max((wrapped_lines(h, w) for h, w in shown_heads), default=1)
    if head_lines > 1:
        sheet_.set_row(0, _XLSX_LINE * head_lines)
    for col, label in enumerate(labels):
        sheet_.write_string(0, col, label, header)
    # Lines per row: the most its wrapped cells take.
    row_lines = functools.reduce(
        np.maximum,
        (wrapped_lines_each(table.column(c), widths[c]) for c in sorted(wrapped)),
        np.ones(table.num_rows, dtype=np.int64),
    )
    kinds: list[str] = []
    own: list[xlsxwriter.format.Format | None] = []
    for col, kind in enumerate(types):
        if col in counted:
            kinds.append("count")
            own.append(None)
        elif pa.types.is_string(kind):
            kinds.append("wrapped" if col in wrapped else "text")
            own.append(wrap_fmt if col in wrapped else None)
        elif pa.types.is_date(kind):
            kinds.append("date")
            own.append(date_fmt)
        elif pa.types.is_timestamp(kind):
            kinds.append("timestamp")
            own.append(stamp_fmt)
        elif pa.types.is_boolean(kind):
            kinds.append("bool")
            own.append(None)
        else:
            kinds.append("number")
            floating = pa.types.is_floating(kind)
            own.append(
                rate_fmt
                if floating and "rate" in table.schema[col].name
                else amount_fmt
                if floating
                else None
            )
    if table.num_columns:
        sheet_.autofilter(0, 0, max(table.num_rows, 1), table.num_columns - 1)
    if note:  # below the table, a blank row apart: outside the filter, never summed
        sheet_.write_string(table.num_rows + 2, 0, note)
    # The data cells' styles are xlsxwriter's own, registered before it writes styles.xml.
    used = {id(f): f for f in [*own, *column_formats, top_fmt, mark_fmt] if f is not None}
    index = {key: f._get_xf_index() for key, f in used.items()}
    plan = SheetPlan(
        kinds=kinds,
        styles=[None if f is None else index[id(f)] for f in own],
        column_styles=[None if f is None else index[id(f)] for f in column_formats],
        row_lines=row_lines,
        row_style=index[id(top_fmt)],
        mark_style=index[id(mark_fmt)],
        max_lines=_XLSX_MAX_LINES,
        line_points=_XLSX_LINE,
    )
    return XlsxFrame(workbook, sheet_, plan, own, top_fmt, mark_fmt)


def write_csv_bom(path: Path, table: pa.Table, labels: Sequence[str]) -> None:
    """CSV with a UTF-8 BOM (Excel and WPS open it as UTF-8) for tables above the XLSX row
    limit. Written by Arrow's CSV writer, column by column (a Python loop over cells was a
    fifth of a city night's publication): yes/no as 是/否, times in Beijing time, a text that
    Excel would run as a formula prefixed with an apostrophe (CSV injection)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = pa.table(
        [_csv_column(table.column(i), field.type) for i, field in enumerate(table.schema)],
        names=[f"c{i}" for i in range(table.num_columns)],
    )
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow(labels)
    with path.open("wb") as f:
        f.write(header.getvalue().encode("utf-8-sig"))
        pacsv.write_csv(
            shown, f, write_options=pacsv.WriteOptions(include_header=False, eol="\r\n")
        )


def _csv_column(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "是", "否")
    if pa.types.is_timestamp(kind):
        utc = column if kind.tz else pc.assume_timezone(column, "UTC")
        # whole seconds, as the workbooks show them (%S of a finer unit adds a fraction)
        local = pc.cast(utc, pa.timestamp("s", tz="+08:00"), safe=False)
        return pc.strftime(local, format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_floating(kind):
        return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.float64()), column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        formula = pc.match_substring_regex(column, r"^[=+@\t\r]")
        if not pc.any(formula).as_py():  # the common case: nothing to prefix, nothing copied
            return column
        return pc.if_else(formula, pc.binary_join_element_wise("'", column, ""), column)
    return column


def write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(content, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )


def link_unchanged(source: Path, target: Path) -> None:
    """Put an unchanged file of an earlier publication into a new one: a hard link (the bytes
    are stored once, whatever the number of versions keeping them), or a copy where the file
    system has no hard links. Published files are never written in place, so sharing is safe."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def seal(path: Path) -> str:
    """fsync a written file and return its sha256."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        os.fsync(f.fileno())
    return digest.hexdigest()


# --- layout, lock and switch -------------------------------------------------------------------


def version_dir(publish_dir: Path, publication_id: str) -> Path:
    """Where a publication is written before it is switched in."""
    return publish_dir / VERSIONS / publication_id


@contextlib.contextmanager
def publish_lock(publish_dir: Path) -> Iterator[None]:
    """Hold the publish folder's lock (released by the OS if the process dies)."""
    publish_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: rely on the run lock of the warehouse
        yield
        return
    with (publish_dir / LOCK).open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PublishLocked(f"另一个发布正在写入 {publish_dir}：请待其结束后重新运行") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def symlinks_supported(publish_dir: Path) -> bool:
    """Whether this folder takes symlinks (not on Windows without the privilege)."""
    probe = publish_dir / f".probe-{os.getpid()}"
    try:
        os.symlink(VERSIONS, probe)
    except (OSError, NotImplementedError):
        return False
    probe.unlink()
    return True


def current_publication(publish_dir: Path) -> str | None:
    """The id of the publication consumers see now (None before the first one)."""
    link = publish_dir / CURRENT
    if link.is_symlink():
        return Path(os.readlink(link)).name
    pointer = publish_dir / POINTER
    if pointer.exists():
        return pointer.read_text(encoding="utf-8").strip() or None
    return None


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_with_symlink(target: str, path: Path) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def switch(
    publish_dir: Path, publication_id: str, consumers: Sequence[str], *, links: bool = True
) -> None:
    """Make a complete publication the one consumers see.

    With symlinks: `current` is replaced in one rename, then stable names are added for tables
    new in this publication and removed for tables it no longer has. Without: files are copied
    onto the stable paths, each atomically, each consumer's catalog.json last.
    """
    source = version_dir(publish_dir, publication_id)
    if not (source / CATALOG).exists():
        raise FileNotFoundError(
            f"发布 {publication_id} 不完整（缺少 catalog.json），不能切换为当前发布"
        )
    _fsync_dir(source)
    if links:
        _replace_with_symlink(f"{VERSIONS}/{publication_id}", publish_dir / CURRENT)
        _fsync_dir(publish_dir)
        _replace_with_symlink(f"{CURRENT}/{CATALOG}", publish_dir / CATALOG)
    else:
        _copy_atomic(source / CATALOG, publish_dir / CATALOG)
    for consumer in consumers:
        stable = publish_dir / consumer
        stable.mkdir(exist_ok=True)
        names = sorted(p.name for p in (source / consumer).iterdir() if p.is_file())
        ordered = [n for n in names if n != CATALOG] + [n for n in names if n == CATALOG]
        for name in ordered:
            path = stable / name
            if links:
                target = f"{_LINK_PREFIX}{consumer}/{name}"
                if not (path.is_symlink() and os.readlink(path) == target):
                    _replace_with_symlink(target, path)
            else:
                _copy_atomic(source / consumer / name, path)
        _remove_stale(
            stable, set(names), links=links, published=_published_names(publish_dir, consumer)
        )
    for stale in _consumer_dirs(publish_dir) - set(consumers):
        _remove_stale(
            publish_dir / stale, set(), links=links, published=_published_names(publish_dir, stale)
        )
    if not links:
        tmp = publish_dir / f".tmp-{POINTER}"
        tmp.write_text(publication_id + "\n", encoding="utf-8")
        os.replace(tmp, publish_dir / POINTER)


def _consumer_dirs(publish_dir: Path) -> set[str]:
    return {
        p.name
        for p in publish_dir.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name != CURRENT
    }


def _published_names(publish_dir: Path, consumer: str) -> set[str]:
    """Names in a consumer's folder that some publication put there (copy mode bookkeeping)."""
    names: set[str] = set()
    versions = publish_dir / VERSIONS
    if versions.is_dir():
        for version in versions.iterdir():
            folder = version / consumer
            if folder.is_dir():
                names |= {p.name for p in folder.iterdir()}
    return names


def _remove_stale(stable: Path, keep: set[str], *, links: bool, published: set[str]) -> None:
    if not stable.is_dir():
        return
    for path in stable.iterdir():
        if path.name in keep:
            continue
        ours = (path.is_symlink() and os.readlink(path).startswith(_LINK_PREFIX)) or (
            not links and path.is_file() and path.name in published
        )
        if ours:
            path.unlink()


def _copy_atomic(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_incomplete(publish_dir: Path) -> list[str]:
    """Remove version folders without a catalog (a run died while writing); under the lock."""
    versions = publish_dir / VERSIONS
    current = current_publication(publish_dir)
    removed: list[str] = []
    if versions.is_dir():
        for folder in sorted(versions.iterdir()):
            if folder.name != current and not (folder / CATALOG).exists():
                shutil.rmtree(folder)
                removed.append(folder.name)
    return removed


def remove_version(publish_dir: Path, publication_id: str) -> None:
    """Remove a publication that was never switched in (its run failed)."""
    if publication_id != current_publication(publish_dir):
        shutil.rmtree(version_dir(publish_dir, publication_id), ignore_errors=True)


@dataclass(frozen=True)
class Retention:
    """Which complete publications stay on disk after a switch (docs/publishing.md).

    Kept: the current one; any a reader holds (`hold`); the last publication of each of the
    last `nights` exchange dates; the last publication of each of the last `month_ends`
    months (the state at a month's end, what a department may be asked for); and any replaced
    less than `grace_seconds` ago (a reader that resolved `current` just before the switch).
    """

    nights: int = 30
    month_ends: int = 12
    grace_seconds: float = 0


def _hold_file(publish_dir: Path, publication_id: str) -> Path:
    return version_dir(publish_dir, publication_id) / HOLD


@contextlib.contextmanager
def hold(publish_dir: Path, publication_id: str) -> Iterator[Path]:
    """Keep one publication on disk while reading it (a shared lock pruning respects).

    Yields the version folder. Raises FileNotFoundError if it was pruned before the hold.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; pruning keeps the grace period only
        yield version_dir(publish_dir, publication_id)
        return
    path = _hold_file(publish_dir, publication_id)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            if not (path.parent / CATALOG).exists():  # pruned while we waited
                raise FileNotFoundError(f"发布 {publication_id} 已不再保留（已被清理）")
            yield path.parent
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _unheld(folder: Path) -> Iterator[bool]:
    """Exclusive lock on a version's hold file: True when no reader holds it."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    with (folder / HOLD).open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _versions_on_disk(publish_dir: Path) -> list[tuple[str, date, datetime, float]]:
    """(id, exchange date, published_at, when its catalog was sealed) of complete versions,
    in publication order."""
    versions = publish_dir / VERSIONS
    found: list[tuple[str, date, datetime, float]] = []
    if not versions.is_dir():
        return found
    for folder in versions.iterdir():
        catalog = folder / CATALOG
        if not catalog.exists():
            continue
        content = json.loads(catalog.read_text(encoding="utf-8"))
        if content.get("published_at") is None or content.get("exchange_date") is None:
            continue
        found.append(
            (
                folder.name,
                date.fromisoformat(content["exchange_date"]),
                datetime.fromisoformat(content["published_at"]),
                catalog.stat().st_mtime,
            )
        )
    return sorted(found, key=lambda v: (v[2], v[0]))


def kept_versions(publish_dir: Path, retention: Retention, now: datetime) -> set[str]:
    """The publications the retention keeps (holds by readers are checked when pruning)."""
    found = _versions_on_disk(publish_dir)
    keep = {current_publication(publish_dir)} - {None}
    last_of_date: dict[date, str] = {}
    for publication_id, as_of, _, _ in found:  # publication order: the last one wins
        last_of_date[as_of] = publication_id
    dates = sorted(last_of_date)
    if retention.nights > 0:
        keep |= {last_of_date[d] for d in dates[-retention.nights :]}
    last_of_month: dict[tuple[int, int], date] = {}
    for d in dates:
        last_of_month[(d.year, d.month)] = d
    if retention.month_ends > 0:
        months = sorted(last_of_month)[-retention.month_ends :]
        keep |= {last_of_date[last_of_month[m]] for m in months}
    if retention.grace_seconds > 0:
        # A version is replaced when its successor is sealed; within the grace, keep it.
        for (publication_id, *_), (_, _, _, sealed) in itertools.pairwise(found):
            if now.timestamp() - sealed < retention.grace_seconds:
                keep.add(publication_id)
    return {k for k in keep if k is not None}


def prune(publish_dir: Path, retention: Retention | int, now: datetime) -> list[str]:
    """Remove complete publications the retention does not keep, never the current one nor
    one a reader holds. An int is the number of exchange dates kept (`Retention(nights=n)`).

    Files shared with a kept version (hard links of unchanged tables) stay on disk through it.
    """
    if isinstance(retention, int):
        retention = Retention(nights=retention)
    keep = kept_versions(publish_dir, retention, now)
    current = current_publication(publish_dir)
    removed: list[str] = []
    for publication_id, *_ in _versions_on_disk(publish_dir):
        if publication_id in keep or publication_id == current:
            continue
        folder = version_dir(publish_dir, publication_id)
        with _unheld(folder) as free:
            if free:
                # A reader arriving while the folder goes re-creates the hold file in it (then
                # finds no catalog and lets go): a second pass removes what it left.
                shutil.rmtree(folder, ignore_errors=True)
                if folder.exists():
                    shutil.rmtree(folder)
                removed.append(publication_id)
    return removed


def utc_now() -> datetime:
    return datetime.now(UTC)
