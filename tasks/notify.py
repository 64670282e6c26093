"""Notifications to the people who watch the nightly run, through Apprise.

    night_message(exchange_date, summaries, freshness, error=None, report_failures=())
        -> Message | None
    notify(urls, title, body) -> bool

One Apprise URL per channel (settings `notify_urls`): WeCom `wecombot://KEY`, DingTalk
`dingtalk://TOKEN/SECRET`, e-mail `mailtos://user:pass@host?to=...`, Slack `slack://...`, or a
generic webhook `json://host:port/path` / `jsons://...` (POSTs {"title", "message", "type"}).
URLs carry tokens: they are never logged, and a failure names the channel kind only.

Messages are in Chinese (people read them) and carry no personal data: counts, departments,
datasets, the ledger's reasons (which are masked by construction) with any id-, phone- or
card-like digit run masked again here as a second line of defence, and for a failed run only the
error's class, never its text (an unexpected error may quote a value).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import pandas as pd

from expectations.contract import load_common, load_contracts

log = logging.getLogger(__name__)

# 15-18 character ids (last may be X), 11-digit phones, bank cards: any run of 11+ digits.
_DIGIT_RUN = re.compile(r"\d{6}(\d{1,12})([\dXx]{4})(?!\d)|\d{11,}")
MAX_LINES = 30  # per section; the ledger has the rest


class _Summary(Protocol):
    @property
    def dept(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Message:
    """A notification: a one-line title and a short body (plain text, Chinese)."""

    title: str
    body: str
    level: str = "warning"  # info | warning | failure (Apprise notify types)


def scrub(text: str) -> str:
    """Mask digit runs that could be an id number, a phone or an account (keep 6 + last 4)."""

    def _mask(m: re.Match[str]) -> str:
        s = m.group(0)
        return s[:6] + "*" * (len(s) - 10) + s[-4:] if len(s) >= 15 else s[:3] + "****" + s[-4:]

    return _DIGIT_RUN.sub(_mask, text)


def _dept_name(dept: str) -> str:
    return load_common().departments.get(dept, dept)


def _title_of(dataset: str) -> str:
    contract = load_contracts().get(dataset)
    return contract.title.split(" (")[0].strip() if contract else dataset


def _lines(items: Sequence[str]) -> list[str]:
    shown = list(items[:MAX_LINES])
    if len(items) > MAX_LINES:
        shown.append(f"  …另有 {len(items) - MAX_LINES} 项，详见交换台账")
    return shown


def night_message(
    exchange_date: date,
    summaries: Iterable[_Summary],
    freshness: pd.DataFrame | None = None,
    *,
    error: BaseException | str | None = None,
    run_name: str | None = None,
    report_failures: Sequence[tuple[str, str, str]] = (),
) -> Message | None:
    """The message for one night, or None when there is nothing to tell.

    Tells: the run failed (`error`: the exception or its class name); departments' failed
    deliveries (from the run's summaries); expected deliveries missing, failed or late (from the
    freshness frame of tasks.freshness); reports the night could not build
    (`report_failures`: (period, error class, command to rebuild)).
    """
    summaries = list(summaries)
    failed = [s for s in summaries if s.status == "failed"]
    fresh = freshness if freshness is not None else pd.DataFrame(columns=["dataset", "state"])
    missing = fresh[fresh["state"] == "missing"]
    late = fresh[fresh["state"] == "late"]
    if error is None and not failed and missing.empty and late.empty and not report_failures:
        return None

    body: list[str] = []
    heads: list[str] = []
    if error is not None:
        kind = error if isinstance(error, str) else type(error).__name__
        heads.append("运行失败")
        where = f"（Prefect 运行 {run_name}）" if run_name else ""
        body += [f"■ 夜间运行失败{where}：{kind}。已入库的交付保持有效，请查看运行日志后重跑。"]
    if report_failures:
        heads.append(f"{len(report_failures)} 份报告未生成")
        body.append(f"■ 未能生成的报告（{len(report_failures)}），本夜发布不受影响：")
        body += _lines(
            [
                f"  - {period}：{kind}，请排查后用 `{command}` 重新生成"
                for period, kind, command in report_failures
            ]
        )
    if failed:
        heads.append(f"{len(failed)} 个交付被退回")
        body.append(f"■ 被退回的交付（{len(failed)}），请通知部门更正后重新报送：")
        body += _lines(
            [
                f"  - {_dept_name(s.dept)} {s.dataset}（{_title_of(s.dataset)}）："
                f"{scrub((s.reason or '未说明原因').strip())[:120]}"
                for s in sorted(failed, key=lambda s: (s.dept, s.dataset))
            ]
        )
    if not missing.empty:
        heads.append(f"{len(missing)} 个应交未交")
        body.append(f"■ 应交未交（{len(missing)}）：")
        body += _lines(
            [
                f"  - {_dept_name(dept)} {ds}（{_title_of(ds)}）"
                for dept, ds in zip(missing["dept"], missing["dataset"], strict=True)
            ]
        )
    if not late.empty:
        heads.append(f"{len(late)} 个逾期交付")
        body.append(f"■ 逾期交付（{len(late)}）：")
        body += _lines(
            [
                f"  - {_dept_name(dept)} {ds}（{_title_of(ds)}）"
                for dept, ds in zip(late["dept"], late["dataset"], strict=True)
            ]
        )
    loaded = sum(1 for s in summaries if s.status == "loaded")
    body.append(f"本次共处理 {len(summaries)} 个交付，入库 {loaded} 个。")
    title = f"【数据共享】{exchange_date:%Y-%m-%d} 交换：" + "，".join(heads)
    return Message(
        title=title, body="\n".join(body), level="failure" if error is not None else "warning"
    )


def notify(
    urls: Sequence[str],
    title: str,
    body: str,
    *,
    level: str = "warning",
    apprise_factory: Any = None,
) -> bool:
    """Send one message to every URL; True if all of them accepted it. Never raises on a
    channel's failure (a notification must not fail the run); logs the channel kind only."""
    if not urls:
        return True
    import apprise

    factory = apprise_factory or apprise.Apprise
    ok = True
    for url in urls:
        kind = url.split("://", 1)[0] if "://" in url else "?"
        sender = factory()
        with warnings.catch_warnings():
            # Apprise loads its plugins on first use; its e-mail plugin imports the stdlib
            # `imghdr`, deprecated since Python 3.11: not ours to fix, and not an error here.
            warnings.filterwarnings("ignore", message=".*imghdr.*", category=DeprecationWarning)
            added = sender.add(url)
        if not added:
            log.warning("notification channel %s:// is not a valid Apprise URL", kind)
            ok = False
            continue
        notify_type = {"info": apprise.NotifyType.INFO, "failure": apprise.NotifyType.FAILURE}.get(
            level, apprise.NotifyType.WARNING
        )
        try:
            sent = sender.notify(title=title, body=body, notify_type=notify_type)
        except Exception as exc:  # a channel must never fail the run
            log.warning("notification to a %s:// channel failed: %s", kind, type(exc).__name__)
            sent = False
        if not sent:
            log.warning("notification to a %s:// channel was not delivered", kind)
            ok = False
    return ok


def notify_night(
    urls: Sequence[str],
    exchange_date: date,
    summaries: Iterable[_Summary],
    freshness: pd.DataFrame | None = None,
    *,
    error: BaseException | str | None = None,
    run_name: str | None = None,
    report_failures: Sequence[tuple[str, str, str]] = (),
) -> bool:
    """Build the night's message and send it, if there is anything to tell."""
    message = night_message(
        exchange_date,
        summaries,
        freshness,
        error=error,
        run_name=run_name,
        report_failures=report_failures,
    )
    if message is None or not urls:
        return True
    return notify(urls, message.title, message.body, level=message.level)
