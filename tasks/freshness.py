"""Freshness: which expected deliveries came on time, late, failed, or not at all.

    load_calendar()                               expectations/calendar.yaml, validated
    expected_deliveries(exchange_date)            [(dept, dataset, due_at)] due for that date
    expected_frame(date_from, date_to)            (dept, dataset, exchange_date) for reports
    judge(expected, ledger_rows, now, grace)      the pure judgement (a frame in, a frame out)
    check_freshness(conn, exchange_date, now)     judge one date from the ledger and record it
    freshness_frame(conn, date_from, date_to)     what was recorded, for summaries and reports

States: on_time (an accepted delivery taken in by due time + grace), late (taken in after it),
failed (only failed deliveries for the date), missing (nothing, and the due time has passed).
An expected delivery with nothing yet, before its due time, is not judged (no row).

Deterministic: on_time/late/failed depend on the ledger only (received_at is written once per
delivery and never changes on a re-run), so re-running a past night gives the same rows; `now`
only decides whether "nothing yet" is already "missing", which for a past date it always is. A
state changes only when the ledger does: a missing delivery that arrives becomes late.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, delete, insert, select

from datashare.errors import ConfigurationError
from domain.labels import FRESHNESS_STATE
from expectations.contract import expectations_dir, load_contracts
from warehouse.tables import deliveries
from warehouse.tables_ops import freshness

CALENDAR_NAME = "calendar.yaml"  # in the expectations folder in use (beside contracts/)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ACCEPTED = ("loaded", "duplicate", "superseded")
STATES = ("on_time", "late", "missing", "failed")
assert set(FRESHNESS_STATE) == set(STATES), "every freshness state needs a label"
COLUMNS = ["dept", "dataset", "exchange_date", "state", "due_at", "received_at", "delivery_id"]

State = Literal["on_time", "late", "missing", "failed"]


class _Due(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    day_offset: int = Field(default=1, ge=0, le=7)
    by: time = time(1, 30)


class DatasetCalendar(BaseModel):
    """When one dataset is due: on which weekdays of the exchange date, and by when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: tuple[int, ...]  # 0 = Monday
    day_offset: int | None = None
    by: time | None = None

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, value: object) -> tuple[int, ...]:
        if value == "daily":
            return tuple(range(7))
        if not isinstance(value, list):
            raise ValueError("weekdays 应为 'daily' 或由 mon…sun 组成的列表")
        try:
            return tuple(sorted({WEEKDAYS.index(str(v).lower()[:3]) for v in value}))
        except ValueError:
            raise ValueError(
                f"weekdays 中有无法识别的星期 {value}：请用 {'、'.join(WEEKDAYS)}"
            ) from None


class Calendar(BaseModel):
    """The expected-delivery calendar (expectations/calendar.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "Asia/Shanghai"
    defaults: _Due = _Due()
    intake_grace_hours: float = Field(default=6, ge=0)
    datasets: dict[str, DatasetCalendar]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self.intake_grace_hours)

    def due_at(self, dataset: str, exchange_date: date) -> datetime | None:
        """When `dataset`'s delivery for `exchange_date` is due (aware), or None if not expected."""
        entry = self.datasets.get(dataset)
        if entry is None or exchange_date.weekday() not in entry.weekdays:
            return None
        offset = self.defaults.day_offset if entry.day_offset is None else entry.day_offset
        by = entry.by or self.defaults.by
        return datetime.combine(exchange_date + timedelta(days=offset), by, tzinfo=self.tz)


@cache
def _load(path: Path, datasets: frozenset[str]) -> Calendar:
    try:
        calendar = Calendar.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"报送日程 {path.name} 无效：{exc}") from None
    # Every dataset has an entry, and every entry a dataset: a forgotten entry would make a
    # dataset silently never expected ("not expected" is written `weekdays: []`).
    problems = []
    if unknown := sorted(set(calendar.datasets) - datasets):
        problems.append(f"列有未知的数据集 {unknown}（没有数据集约定声明它们）")
    if missing := sorted(datasets - set(calendar.datasets)):
        problems.append(f"缺少数据集 {missing} 的条目（请补上；从不应报的写 `{{weekdays: []}}`）")
    if problems:
        raise ConfigurationError(f"报送日程 {path.name} " + "；".join(problems))
    return calendar


def load_calendar(path: Path | None = None) -> Calendar:
    """The delivery calendar (default: calendar.yaml of the expectations in use);
    ConfigurationError if it is invalid, names a dataset no contract declares, or lacks an entry
    for a dataset a contract declares."""
    path = Path(path) if path is not None else expectations_dir() / CALENDAR_NAME
    return _load(path, frozenset(load_contracts()))


def expected_deliveries(
    exchange_date: date,
    calendar: Calendar | None = None,
    datasets: tuple[str, ...] | list[str] = (),
) -> list[tuple[str, str, datetime]]:
    """(dept, dataset, due_at) for every delivery due for `exchange_date`, by dataset."""
    calendar = calendar or load_calendar()
    contracts = load_contracts()
    out = []
    for dataset in sorted(calendar.datasets):
        if datasets and dataset not in datasets:
            continue
        if (due := calendar.due_at(dataset, exchange_date)) is not None:
            out.append((contracts[dataset].dept, dataset, due))
    return out


def expected_frame(
    date_from: date, date_to: date, calendar: Calendar | None = None
) -> pd.DataFrame:
    """(dept, dataset, exchange_date) of every expected delivery in the range (weekly report)."""
    rows = [
        (dept, dataset, day)
        for n in range((date_to - date_from).days + 1)
        for day in [date_from + timedelta(days=n)]
        for dept, dataset, _ in expected_deliveries(day, calendar)
    ]
    return pd.DataFrame(rows, columns=["dept", "dataset", "exchange_date"])


def judge(
    expected: list[tuple[str, str, datetime]],
    exchange_date: date,
    ledger_rows: pd.DataFrame,
    now: datetime,
    grace: timedelta,
) -> pd.DataFrame:
    """The freshness of each expected delivery (pure; see the module docstring).

    ledger_rows: the ledger's rows for the date (dataset, delivery_id, status, received_at).
    """
    out = []
    for dept, dataset, due_at in expected:
        mine = ledger_rows[ledger_rows["dataset"] == dataset]
        accepted = mine[mine["status"].isin(ACCEPTED)].sort_values(["received_at", "delivery_id"])
        failed = mine[mine["status"] == "failed"].sort_values(["received_at", "delivery_id"])
        received_at: datetime | None = None
        delivery_id: str | None = None
        if len(accepted):
            first = accepted.iloc[0]
            received_at, delivery_id = _aware(first["received_at"]), first["delivery_id"]
            state: State = "on_time" if received_at <= due_at + grace else "late"
        elif len(failed):
            first = failed.iloc[0]
            received_at, delivery_id = _aware(first["received_at"]), first["delivery_id"]
            state = "failed"
        elif now >= due_at:
            state = "missing"
        else:
            continue  # not due yet: nothing to say
        out.append(
            (dept, dataset, exchange_date, state, due_at.astimezone(UTC), received_at, delivery_id)
        )
    return pd.DataFrame(out, columns=COLUMNS)


def _aware(value: object) -> datetime:
    # SQLite hands back naive datetimes for DateTime(timezone=True); the ledger writes UTC.
    ts = pd.Timestamp(value).to_pydatetime()  # type: ignore[arg-type]
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def check_freshness(
    conn: Connection,
    exchange_date: date,
    now: datetime,
    *,
    calendar: Calendar | None = None,
    datasets: tuple[str, ...] | list[str] = (),
) -> pd.DataFrame:
    """Judge the expected deliveries of `exchange_date` from the ledger and record them.

    Replaces the date's rows in `freshness` (for `datasets` only, when given) in the caller's
    transaction. Columns: dept, dataset, exchange_date, state, due_at, received_at, delivery_id.
    """
    if now.tzinfo is None:
        raise ValueError("now 必须带时区（timezone-aware）")
    calendar = calendar or load_calendar()
    expected = expected_deliveries(exchange_date, calendar, datasets)
    d = deliveries.c
    rows = conn.execute(
        select(d.dataset, d.delivery_id, d.status, d.received_at).where(
            d.exchange_date == exchange_date
        )
    ).all()
    ledger_rows = pd.DataFrame(rows, columns=["dataset", "delivery_id", "status", "received_at"])
    judged = judge(expected, exchange_date, ledger_rows, now, calendar.grace)
    stmt = delete(freshness).where(freshness.c.exchange_date == exchange_date)
    if datasets:
        stmt = stmt.where(freshness.c.dataset.in_(list(datasets)))
    conn.execute(stmt)
    if len(judged):
        conn.execute(
            insert(freshness),
            [
                {k: (None if pd.isna(v) else v) for k, v in rec.items()}
                for rec in judged.to_dict("records")
            ],
        )
    return judged


def freshness_frame(conn: Connection, date_from: date, date_to: date) -> pd.DataFrame:
    """The recorded freshness for a range of exchange dates (run summary, weekly report)."""
    f = freshness.c
    rows = conn.execute(
        select(f.dept, f.dataset, f.exchange_date, f.state, f.due_at, f.received_at, f.delivery_id)
        .where(f.exchange_date.between(date_from, date_to))
        .order_by(f.exchange_date, f.dataset)
    ).all()
    return pd.DataFrame(rows, columns=COLUMNS)
