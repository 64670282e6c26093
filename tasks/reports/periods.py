"""Report periods: week, month, quarter, half and year (Period), and those a night closes."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

# --- periods --------------------------------------------------------------------------------------

PeriodKind = Literal["week", "month", "quarter", "half", "year"]
REPORT_KINDS: dict[str, str] = {
    "week": "周报",
    "month": "月报",
    "quarter": "季调度",
    "half": "半年小结",
    "year": "年度总结",
}


@dataclass(frozen=True)
class Period:
    """A report period: an ISO week (Monday–Sunday) or a calendar month."""

    kind: PeriodKind
    start: date
    end: date
    label: str  # 2025-W11 | 2025-03 | 2025-Q1 | 2025-H1 | 2025

    @classmethod
    def parse(cls, kind: PeriodKind, text: str) -> Period:
        """A period of `kind` from its label (2025-W11, 2025-03, 2025-Q1, 2025-H1, 2025)."""
        return {
            "week": cls.parse_week,
            "month": cls.parse_month,
            "quarter": cls.parse_quarter,
            "half": cls.parse_half,
            "year": cls.parse_year,
        }[kind](text)

    @classmethod
    def _months(cls, kind: PeriodKind, year: int, first: int, count: int, label: str) -> Period:
        last = first + count - 1
        end = date(year, last, calendar.monthrange(year, last)[1])
        return cls(kind, date(year, first, 1), end, label)

    @classmethod
    def parse_quarter(cls, text: str) -> Period:
        """A calendar quarter, "2025-Q1" (季调度)."""
        m = re.fullmatch(r"(\d{4})-Q([1-4])", text.strip())
        if not m:
            raise ValueError(f"季度应写作 YYYY-Qn（如 2025-Q1），收到 {text!r}")
        q = int(m[2])
        return cls._months("quarter", int(m[1]), 3 * q - 2, 3, f"{m[1]}-Q{q}")

    @classmethod
    def parse_half(cls, text: str) -> Period:
        """A half year, "2025-H1" (半年小结)."""
        m = re.fullmatch(r"(\d{4})-H([12])", text.strip())
        if not m:
            raise ValueError(f"半年应写作 YYYY-H1 或 YYYY-H2（如 2025-H1），收到 {text!r}")
        h = int(m[2])
        return cls._months("half", int(m[1]), 6 * h - 5, 6, f"{m[1]}-H{h}")

    @classmethod
    def parse_year(cls, text: str) -> Period:
        """A calendar year, "2025" (年度总结)."""
        m = re.fullmatch(r"(\d{4})", text.strip())
        if not m:
            raise ValueError(f"年度应写作 YYYY（如 2025），收到 {text!r}")
        return cls._months("year", int(m[1]), 1, 12, m[1])

    @classmethod
    def of(cls, kind: PeriodKind, day: date) -> Period:
        """The period of `kind` that contains `day`."""
        if kind == "week":
            return cls.week_of(day)
        label = {
            "month": f"{day:%Y-%m}",
            "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}",
            "half": f"{day.year}-H{1 if day.month <= 6 else 2}",
            "year": f"{day.year}",
        }[kind]
        return cls.parse(kind, label)

    @classmethod
    def parse_week(cls, text: str) -> Period:
        """An ISO week, "2025-W11" (Monday 2025-03-10 to Sunday 2025-03-16)."""
        m = re.fullmatch(r"(\d{4})-W(\d{2})", text.strip())
        if not m:
            raise ValueError(f"周应写作 YYYY-Www（如 2025-W11），收到 {text!r}")
        year, week = int(m[1]), int(m[2])
        try:
            start = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(f"{text!r}：{year} 年没有第 {week} 周（ISO 周）") from None
        return cls("week", start, start + timedelta(days=6), f"{year}-W{week:02d}")

    @classmethod
    def parse_month(cls, text: str) -> Period:
        """A calendar month, "2025-03"."""
        m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if not m or not 1 <= int(m[2]) <= 12:
            raise ValueError(f"月份应写作 YYYY-MM（如 2025-03），收到 {text!r}")
        year, month = int(m[1]), int(m[2])
        last = calendar.monthrange(year, month)[1]
        return cls("month", date(year, month, 1), date(year, month, last), f"{year}-{month:02d}")

    @classmethod
    def week_of(cls, day: date) -> Period:
        """The ISO week that contains `day`."""
        iso = day.isocalendar()
        return cls.parse_week(f"{iso.year}-W{iso.week:02d}")

    @classmethod
    def month_of(cls, day: date) -> Period:
        """The calendar month that contains `day`."""
        return cls.parse_month(f"{day:%Y-%m}")

    @property
    def year_start(self) -> date:
        """First day of the year to date: 1 January of the year of `end`."""
        return date(self.end.year, 1, 1)

    @property
    def ytd_start(self) -> date:
        """First day of the year-to-date span: year_start, or the period's start when the period
        begins in the previous year (2025-W01 starts 2024-12-30), so the year to date always
        contains the period."""
        return min(self.year_start, self.start)

    def previous(self) -> Period:
        """The period of the same kind that ends the day before this one starts."""
        return Period.of(self.kind, self.start - timedelta(days=1))

    @property
    def report_kind(self) -> str:
        """What the report is called: 周报, 月报, 季调度, 半年小结, 年度总结."""
        return REPORT_KINDS[self.kind]

    @property
    def name(self) -> str:
        """The files' base name: 周报_2025-W11, 月报_2025-03, 季调度_2025-Q1, 半年小结_2025-H1,
        年度总结_2025."""
        return f"{self.report_kind}_{self.label}"

    @property
    def title(self) -> str:
        """Chinese title: 2025年第11周（3月10日至3月16日）, 2025年3月, 2025年第1季度,
        2025年上半年, 2025年."""
        y = self.start.year
        if self.kind == "month":
            return f"{y}年{self.start.month}月"
        if self.kind == "quarter":
            return f"{y}年第{self.label[-1]}季度"
        if self.kind == "half":
            return f"{y}年{'上' if self.label.endswith('H1') else '下'}半年"
        if self.kind == "year":
            return f"{y}年"
        year, week = self.label.split("-W")
        return (
            f"{year}年第{int(week)}周（{self.start.month}月{self.start.day}日至"
            f"{self.end.month}月{self.end.day}日）"
        )


def closing_periods(exchange_date: date) -> list[Period]:
    """The periods whose last day is `exchange_date`: its week on a Sunday, its month on the
    last day of a month, its quarter (季调度) at a quarter's end, the first half (半年小结) on
    30 June and the year (年度总结) on 31 December — the year's own summary stands for its
    second half, so H2 is built only on demand."""
    closing = []
    if exchange_date.weekday() == 6:
        closing.append(Period.week_of(exchange_date))
    for kind in ("month", "quarter", "half", "year"):
        period = Period.of(kind, exchange_date)
        if period.end == exchange_date and period.label[-2:] != "H2":
            closing.append(period)
    return closing
