"""Landing connectors: where deliveries are picked up.

    open_landing(url, *, sql_url=None, sql_views=None) -> Landing
    landing.survey(exchange_date, contracts) -> Survey     deliveries + every other file (issues)
    landing.discover(exchange_date, contracts) -> [DeliveryRef]   the deliveries only
    landing.fetch(ref) -> bytes                            the delivered bytes
    record_survey(engine, survey) / discover_and_record(...)   issues into `landing_issues`

Every file under a folder landing area is accounted for (issue 11): a well-named file of a known
dataset in its department's folder is a delivery; anything else for the night -- an unsupported
extension, a name that does not parse, an unknown dataset, a dataset in another department's
folder, a file outside a department folder or in a subfolder, a symlink leaving the landing area,
two files for one dataset and date (then none of them is taken in) -- is a `LandingIssue` with a
Chinese reason, recorded in `landing_issues` and published to the department (docs/intake.md,
"Landing outcomes").

A landing area holds `<DEPT>/<DATASET>_<YYYYMMDD>.<ext>` (../shared/spec/README.md): a local
folder or any fsspec URL (sftp://, s3://, memory://…), or an HTTP endpoint serving the same names
(a GET of `<base>/<DEPT>/` may list them; otherwise each expected name is probed). A department
database view is a SQL query per dataset with a `:exchange_date` parameter; its result is turned
into a JSON array keyed by the contract's Chinese headers, with stable row order and number
formatting, so the same view result always gives the same bytes (and the same sha256).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Engine

from datashare.errors import DeliveryError
from expectations.contract import Contract
from warehouse.db import normalise_url

__all__ = [
    "EXTENSIONS",
    "DeliveryRef",
    "FsspecLanding",
    "HttpLanding",
    "Landing",
    "LandingIssue",
    "SqlViewLanding",
    "Survey",
    "discover_and_record",
    "open_landing",
    "record_survey",
]

# What discovery hands to the intake; tasks/read.py reads each of them (an unreadable one is a
# failed delivery in the ledger, with its reason), every other extension is a landing issue.
EXTENSIONS = ("csv", "xlsx", "xls", "ods", "et", "json")


@dataclass(frozen=True)
class DeliveryRef:
    """One delivery waiting in the landing area (no content, only where it is)."""

    dept: str
    dataset: str
    exchange_date: date
    file_name: str
    location: str  # URL or path it was found at (no credentials), kept in the ledger
    # Its bytes, where the landing's listing gives them (a folder, fsspec): the night takes in
    # the largest deliveries first. Not part of what the delivery is.
    size: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LandingIssue:
    """A file in the landing area that is not taken in, and why (Chinese, for the department).

    `dated`: the file's name carries the exchange date it is recorded for; an undated file (no
    date in its name) is recorded once, for the first night that saw it.
    """

    exchange_date: date
    dept: str | None  # the department folder it was found in (None: no department's folder)
    dataset: str | None  # the dataset its name claims, when it claims one
    file_name: str  # path relative to the landing root, e.g. MZ/MZ_DIBAO_20250312 (1).csv
    location: str
    kind: str  # see ISSUE_KINDS
    reason: str
    dated: bool = True


ISSUE_KINDS = (
    "outside_dept_folder",
    "unknown_folder",
    "subfolder",
    "bad_name",
    "unknown_dataset",
    "wrong_folder",
    "unsupported_format",
    "symlink_outside",
    "ambiguous",
)


@dataclass(frozen=True)
class Survey:
    """What a landing area holds for one exchange date: deliveries, and everything else."""

    exchange_date: date
    deliveries: list[DeliveryRef]
    issues: list[LandingIssue] = field(default_factory=list)


class Landing(Protocol):
    def survey(self, exchange_date: date, contracts: Iterable[Contract]) -> Survey: ...

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]: ...

    def fetch(self, ref: DeliveryRef) -> bytes: ...


# <DATASET>_<YYYYMMDD>.<ext>, loosely: what the name claims, to say what is wrong with it.
_NAME = re.compile(
    r"^(?P<dataset>[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?)_(?P<day>\d{8})\.(?P<ext>.+)$"
)
_ANY_DAY = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_FORMATS_TEXT = "、".join(EXTENSIONS)


def _day(digits: str) -> date | None:
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        return None


def _where(text: str, dept: str | None, dataset: str | None, file_name: str) -> str:
    """The reason with where, in the ledger's form (datashare.errors.DeliveryError)."""
    return str(DeliveryError(text, dept=dept, dataset=dataset, source_file=file_name))


def classify(
    rel_path: str,
    exchange_date: date,
    known: Mapping[str, Contract],
    *,
    wanted: Iterable[str] | None = None,
    outside: bool = False,
) -> tuple[str, str | None, str | None, str | None, bool] | None:
    """What a file at `rel_path` (relative to the landing root, '/'-separated) is for the night.

    Returns None when the file is not this night's concern (another date, or a dataset this run
    was not asked for); ("delivery", dept, dataset, None, True) for a delivery candidate; else
    (kind, dept, dataset, reason, dated) for a landing issue. Pure: tests call it directly.
    """
    parts = rel_path.split("/")
    name = parts[-1]
    depts = sorted({c.dept for c in known.values()})
    folder = parts[0] if len(parts) > 1 else None
    dept = folder if folder in depts else None
    match = _NAME.match(name)
    claimed = match["dataset"].upper() if match else None
    day = _day(match["day"]) if match else None
    if day is None:
        loose = [d for d in map(_day, _ANY_DAY.findall(name)) if d is not None]
        day = loose[0] if loose else None
    if day is not None and day != exchange_date:
        return None  # another night's file: that night accounts for it
    dated = day is not None
    if claimed not in known:  # `MZ_DIBAO_20250312 (1).csv` still names its dataset
        claimed = next((d for d in sorted(known) if name.upper().startswith(d + "_")), claimed)
    asked = set(wanted) if wanted is not None else set(known)
    if claimed in known and claimed not in asked:
        return None  # a run restricted to other datasets
    dataset = claimed if claimed in known else None
    example = dataset or next((d for d, c in sorted(known.items()) if c.dept == dept), "MZ_DIBAO")
    example += f"_{exchange_date:%Y%m%d}.csv"

    def issue(kind: str, text: str) -> tuple[str, str | None, str | None, str | None, bool]:
        return (
            kind,
            dept,
            dataset or claimed,
            _where(text, dept, dataset or claimed, rel_path),
            dated,
        )

    if outside:
        return issue("symlink_outside", "文件是指向交换区以外的链接，出于安全不读取，未接收")
    if folder is None:
        return issue(
            "outside_dept_folder",
            f"文件不在任何部门文件夹中：交付文件应放在部门文件夹下（{'、'.join(depts)}），未接收",
        )
    if dept is None:
        return issue(
            "unknown_folder",
            f"文件夹 {folder} 不是部门代码（部门文件夹：{'、'.join(depts)}，区分大小写），未接收",
        )
    if len(parts) > 2:
        return issue(
            "subfolder",
            f"文件在子文件夹 {'/'.join(parts[1:-1])} 中：交付文件应直接放在 {dept}/ 下，未接收",
        )
    if match is None or _day(match["day"]) is None:
        bad_day = f"（日期 {match['day']} 不是有效日期）" if match else ""
        return issue(
            "bad_name",
            f"文件名不符合约定 <数据集>_<YYYYMMDD>.<扩展名>{bad_day}，例如 {example}；"
            "未接收，请改名后重新报送",
        )
    if claimed not in known or claimed != match["dataset"].upper():
        claimed, dataset = match["dataset"].upper(), None
        own = "、".join(d for d, c in sorted(known.items()) if c.dept == dept)
        return issue(
            "unknown_dataset", f"数据集 {claimed} 不存在（{dept} 的数据集：{own}），未接收"
        )
    owner = known[str(claimed)].dept
    if owner != dept:
        return issue(
            "wrong_folder",
            f"数据集 {claimed} 属于部门 {owner}，不应放在 {dept} 文件夹中；"
            f"未接收，请放到 {owner}/ 下",
        )
    if match["ext"].lower() not in EXTENSIONS:
        return issue(
            "unsupported_format",
            f"文件类型 .{match['ext']} 不受支持（支持 {_FORMATS_TEXT}），未接收",
        )
    return "delivery", dept, claimed, None, True


def _ambiguous(
    candidates: list[DeliveryRef], exchange_date: date
) -> tuple[list[DeliveryRef], list[LandingIssue]]:
    """Two or more files for one dataset and date: none of them is taken in (no last-one-wins)."""
    by_dataset: dict[str, list[DeliveryRef]] = defaultdict(list)
    for ref in candidates:
        by_dataset[ref.dataset].append(ref)
    refs: list[DeliveryRef] = []
    issues: list[LandingIssue] = []
    for dataset, group in sorted(by_dataset.items()):
        if len(group) == 1:
            refs.extend(group)
            continue
        names = "、".join(sorted(r.file_name for r in group))
        for ref in group:
            text = (
                f"同一数据集同一交换日期有 {len(group)} 个文件（{names}），无法判断以哪个为准，"
                "均未接收；请只保留一个文件"
            )
            issues.append(
                LandingIssue(
                    exchange_date,
                    ref.dept,
                    dataset,
                    f"{ref.dept}/{ref.file_name}",
                    ref.location,
                    "ambiguous",
                    _where(text, ref.dept, dataset, f"{ref.dept}/{ref.file_name}"),
                )
            )
    return refs, issues


def _known_contracts() -> dict[str, Contract]:
    from expectations.contract import load_contracts

    return dict(load_contracts())


def _redact(url: str) -> str:
    """A URL without user:password (it goes into the ledger and logs)."""
    return re.sub(r"(?<=://)[^/@]*@", "", url)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _walk_local(
    root: str, prefix: str = "", seen: set[str] | None = None
) -> Iterator[tuple[str, bool, int | None]]:
    """Every file under a local root, sorted, as (path, leaves the root, bytes); a symlink
    is followed only inside the root."""
    seen = seen if seen is not None else {root}
    here = os.path.join(root, prefix) if prefix else root
    try:
        entries = sorted(os.scandir(here), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = f"{prefix}/{entry.name}" if prefix else entry.name
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _inside(target, root):
                yield rel, True, None
            elif os.path.isdir(target):
                if target not in seen:  # a link loop is walked once
                    seen.add(target)
                    yield from _walk_local(root, rel, seen)
            elif os.path.isfile(target):
                yield rel, False, _size(target)
        elif entry.is_dir():
            yield from _walk_local(root, rel, seen)
        elif entry.is_file():
            yield rel, False, _size(entry.path)


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:  # gone since it was listed: the intake says so when it reads it
        return None


class FsspecLanding:
    """A folder or any fsspec URL. Every file under the root is accounted for (`survey`)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        protocol = self.fs.protocol
        self.local = "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def _files(self) -> Iterator[tuple[str, bool, int | None]]:
        """(path relative to the root, leaves the landing area, bytes if listed) for every
        file under the root."""
        root = self.root.rstrip("/") or "/"
        if self.local:
            yield from _walk_local(os.path.realpath(root))
            return
        if not self.fs.isdir(root):
            return
        for path, info in sorted(self.fs.find(root, withdirs=False, detail=True).items()):
            if info.get("type", "file") == "file":
                size = info.get("size")
                yield path[len(root) :].lstrip("/"), False, size if isinstance(size, int) else None

    def survey(self, exchange_date: date, contracts: Iterable[Contract]) -> Survey:
        """Deliveries of the date for `contracts`, and every other file of the night, with why."""
        known = _known_contracts()
        wanted = [c.dataset for c in contracts]
        for c in contracts:
            known.setdefault(c.dataset, c)
        candidates: list[DeliveryRef] = []
        issues: list[LandingIssue] = []
        for rel, outside, size in self._files():
            found = classify(rel, exchange_date, known, wanted=wanted, outside=outside)
            if found is None:
                continue
            kind, dept, dataset, reason, dated = found
            location = _redact(f"{self.url}/{rel}")
            if kind == "delivery":
                assert dept is not None and dataset is not None
                name = rel.split("/")[-1]
                candidates.append(
                    DeliveryRef(dept, dataset, exchange_date, name, location, size=size)
                )
            else:
                issues.append(
                    LandingIssue(
                        exchange_date, dept, dataset, rel, location, kind, str(reason), dated
                    )
                )
        refs, ambiguous = _ambiguous(candidates, exchange_date)
        return Survey(exchange_date, refs, sorted(issues + ambiguous, key=lambda i: i.file_name))

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        """The deliveries of the date (see `survey` for the files that are not)."""
        return self.survey(exchange_date, contracts).deliveries

    def fetch(self, ref: DeliveryRef) -> bytes:
        with self.fs.open(f"{self.root.rstrip('/')}/{ref.dept}/{ref.file_name}", "rb") as f:
            return f.read()


class HttpLanding:
    """An HTTP(S) endpoint that serves `<base>/<DEPT>/<DATASET>_<YYYYMMDD>.<ext>`.

    Discovery probes each expected name with HEAD (servers rarely list directories), or with a
    GET whose body is not read where the server does not allow HEAD; a 404 means not delivered,
    any other error status is raised (and retried by the flow as transient IO).
    """

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _client(self):  # type: ignore[no-untyped-def]
        import httpx

        return httpx.Client(timeout=self.timeout, follow_redirects=True)

    def survey(self, exchange_date: date, contracts: Iterable[Contract]) -> Survey:
        """The expected names that exist; two formats of one dataset are a landing issue.

        A server that cannot list cannot show other files: only a folder landing accounts for
        every file (docs/intake.md).
        """
        refs, issues = _ambiguous(self._probe(exchange_date, contracts), exchange_date)
        return Survey(exchange_date, refs, issues)

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        """The deliveries of the date (see `survey`)."""
        return self.survey(exchange_date, contracts).deliveries

    def _probe(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        refs: list[DeliveryRef] = []
        with self._client() as client:
            for contract in contracts:
                for ext in EXTENSIONS:
                    name = f"{contract.dataset}_{exchange_date:%Y%m%d}.{ext}"
                    url = f"{self.url}/{contract.dept}/{name}"
                    response = client.head(url)
                    if response.status_code in (405, 501):  # HEAD not allowed/implemented
                        with client.stream("GET", url) as streamed:
                            response = streamed
                    if response.status_code in (404, 410):
                        continue
                    response.raise_for_status()
                    refs.append(
                        DeliveryRef(
                            contract.dept, contract.dataset, exchange_date, name, _redact(url)
                        )
                    )
        return refs

    def fetch(self, ref: DeliveryRef) -> bytes:
        with self._client() as client:
            response = client.get(f"{self.url}/{ref.dept}/{ref.file_name}")
            response.raise_for_status()
            return response.content


def _json_value(value: object) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f") if value == value else None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class SqlViewLanding:
    """A department database: one SQL query (usually a view) per dataset.

    `views` maps a dataset to a query taking `:exchange_date`; a result with no rows means nothing
    was delivered. Column names may be the canonical names or the Chinese headers.
    """

    def __init__(self, url: str, views: Mapping[str, str]) -> None:
        self.url = url
        self.views = dict(views)

    def survey(self, exchange_date: date, contracts: Iterable[Contract]) -> Survey:
        """The deliveries of the date; a view has no stray files, so no landing issues."""
        return Survey(exchange_date, self.discover(exchange_date, contracts))

    def discover(self, exchange_date: date, contracts: Iterable[Contract]) -> list[DeliveryRef]:
        """The datasets whose query returns rows for the date (one row is fetched per query)."""
        from sqlalchemy import create_engine, make_url, text

        wanted = [c for c in contracts if c.dataset in self.views]
        if not wanted:
            return []
        where = make_url(self.url).render_as_string(hide_password=True)
        refs: list[DeliveryRef] = []
        engine = create_engine(normalise_url(self.url))
        try:
            with engine.connect() as conn:
                for c in wanted:
                    # A server-side cursor where the driver has one: only the first row travels.
                    result = conn.execution_options(stream_results=True).execute(
                        text(self.views[c.dataset]), {"exchange_date": exchange_date}
                    )
                    if result.first() is None:
                        continue
                    refs.append(
                        DeliveryRef(
                            c.dept,
                            c.dataset,
                            exchange_date,
                            f"{c.dataset}_{exchange_date:%Y%m%d}.json",
                            f"{where}#{c.dataset}",
                        )
                    )
        finally:
            engine.dispose()
        return refs

    def fetch(self, ref: DeliveryRef) -> bytes:
        from sqlalchemy import create_engine, text

        from expectations.contract import load_contracts

        contract = load_contracts()[ref.dataset]
        engine = create_engine(normalise_url(self.url))
        try:
            with engine.connect() as conn:
                result = conn.execute(
                    text(self.views[ref.dataset]), {"exchange_date": ref.exchange_date}
                )
                names = list(result.keys())
                rows = [tuple(r) for r in result]
        finally:
            engine.dispose()
        headers = [_header(contract, n) for n in names]
        records = [dict(zip(headers, map(_json_value, row), strict=True)) for row in rows]
        # Stable order whatever the database returns: the bytes (and sha256) depend on the data.
        records.sort(key=lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
        return json.dumps(records, ensure_ascii=False, indent=0).encode()


def _header(contract: Contract, name: str) -> str:
    """The Chinese header for a canonical column name; other names pass unchanged."""
    for column in contract.columns:
        if column.name == name:
            return column.header
    return name


def open_landing(
    url: str, *, sql_url: str | None = None, sql_views: Mapping[str, str] | None = None
) -> Landing:
    """The connector for a landing URL (or a department database when views are configured)."""
    if sql_views:
        if not sql_url:
            from datashare.errors import ConfigurationError

            raise ConfigurationError(
                "已配置 DATASHARE_LANDING_SQL_VIEWS（SQL 视图交付），但未设置 "
                "DATASHARE_LANDING_SQL_URL：请设置部门数据库的地址，或删除视图配置"
            )
        return SqlViewLanding(sql_url, sql_views)
    if url.startswith(("http://", "https://")):
        return HttpLanding(url)
    return FsspecLanding(url)


def record_survey(engine: Engine, survey: Survey, *, at: datetime | None = None) -> int:
    """Record the survey's landing issues in `landing_issues` (idempotent); how many are new."""
    from warehouse.tables_ops import record_landing_issues

    rows = [
        {
            "exchange_date": i.exchange_date,
            "dept": i.dept,
            "dataset": i.dataset,
            "source_file": i.file_name,
            "location": i.location,
            "kind": i.kind,
            "reason": i.reason,
            "dated": i.dated,
        }
        for i in survey.issues
    ]
    if not rows:
        return 0
    with engine.begin() as conn:
        return record_landing_issues(conn, rows, at or datetime.now(UTC))


def discover_and_record(
    landing: Landing, exchange_date: date, contracts: Iterable[Contract], warehouse_url: str
) -> list[DeliveryRef]:
    """Survey the landing area for the date, record its landing issues, return the deliveries."""
    from warehouse.db import connect

    survey = landing.survey(exchange_date, list(contracts))
    if survey.issues:
        engine = connect(warehouse_url)
        try:
            record_survey(engine, survey)
        finally:
            engine.dispose()
    return survey.deliveries
