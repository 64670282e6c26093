"""Notifications: the message (Chinese, no personal data) and its delivery to a real webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from tasks.notify import night_message, notify, notify_night, scrub

DAY = date(2025, 3, 12)


@dataclass(frozen=True)
class _S:
    dept: str
    dataset: str
    status: str
    reason: str | None = None


class _Hook:
    """A local HTTP server that records every POST (the generic webhook Apprise json:// calls)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, object]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    with _Hook() as h:
        yield h


def _freshness(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [(d, ds, DAY, st) for d, ds, st in rows],
        columns=["dept", "dataset", "exchange_date", "state"],
    )


def test_nothing_to_tell_on_a_good_night() -> None:
    assert (
        night_message(DAY, [_S("XC", "XC_HU", "loaded")], _freshness(("XC", "XC_HU", "on_time")))
        is None
    )


def test_message_names_failed_missing_late_and_masks_digits() -> None:
    summaries = [
        _S("MZ", "MZ_DIBAO", "failed", "问题数据占比 25.0%，超过 20%，整批退回"),
        _S("CL", "CL_CANJI", "failed", "证号 610327199001011234 位数错误（手机 13800138000）"),
        _S("XC", "XC_HU", "loaded"),
    ]
    fresh = _freshness(
        ("RS", "RS_JIUYE", "missing"), ("XC", "XC_REN", "late"), ("XC", "XC_HU", "on_time")
    )
    msg = night_message(DAY, summaries, fresh)
    assert msg is not None
    assert msg.title == "【数据共享】2025-03-12 交换：2 个交付被退回，1 个应交未交，1 个逾期交付"
    assert "民政局 MZ_DIBAO" in msg.body and "整批退回" in msg.body
    assert "人力资源和社会保障局 RS_JIUYE" in msg.body and "逾期交付（1）" in msg.body
    assert "610327199001011234" not in msg.body and "610327********1234" in msg.body
    assert "13800138000" not in msg.body
    assert "本次共处理 3 个交付，入库 1 个。" in msg.body


def test_a_failed_run_says_only_the_error_class() -> None:
    err = ValueError("could not convert '610327199001011234 张三' to float")
    msg = night_message(DAY, [], None, error=err, run_name="nightly-abc")
    assert msg is not None and msg.level == "failure"
    assert "运行失败" in msg.title and "ValueError" in msg.body and "nightly-abc" in msg.body
    assert "张三" not in msg.body and "6103271990" not in msg.body


def test_scrub_keeps_ordinary_numbers() -> None:
    assert (
        scrub("第 12 行，共 20241 行，交换日期 20250312")
        == "第 12 行，共 20241 行，交换日期 20250312"
    )


def test_webhook_is_received_by_a_local_http_server(hook: _Hook) -> None:
    msg = night_message(
        DAY,
        [_S("MZ", "MZ_DIBAO", "failed", "缺少必需列：成员身份证号")],
        _freshness(("RS", "RS_JIUYE", "missing")),
    )
    assert msg is not None
    assert notify([f"json://127.0.0.1:{hook.port}/hooks/datashare"], msg.title, msg.body)
    assert len(hook.received) == 1
    path, payload = hook.received[0]
    assert path == "/hooks/datashare"
    assert payload["title"] == msg.title
    assert payload["message"] == msg.body
    assert payload["type"] == "warning"


def test_notify_night_sends_to_every_channel_and_survives_a_dead_one(hook: _Hook) -> None:
    urls = [
        f"json://127.0.0.1:{hook.port}/a",
        f"json://127.0.0.1:{hook.port}/b",
        "json://127.0.0.1:9/nobody-listens",
        "not a url",
    ]
    ok = notify_night(urls, DAY, [], None, error="WarehouseUnavailable")
    assert ok is False  # two channels failed, but the run goes on and the others got it
    assert sorted(p for p, _ in hook.received) == ["/a", "/b"]
    assert all(payload["type"] == "failure" for _, payload in hook.received)
    assert notify_night(urls, DAY, [_S("XC", "XC_HU", "loaded")], None) is True  # nothing to tell
    assert len(hook.received) == 2


def test_a_report_that_failed_is_told_with_the_command_that_rebuilds_it() -> None:
    failures = [("2025-W35", "ValueError", "datashare report --week 2025-W35")]
    msg = night_message(DAY, [_S("XC", "XC_HU", "loaded")], None, report_failures=failures)
    assert msg is not None and msg.level == "warning"
    assert msg.title == "【数据共享】2025-03-12 交换：1 份报告未生成"
    assert "2025-W35：ValueError" in msg.body and "datashare report --week 2025-W35" in msg.body
    assert "发布不受影响" in msg.body
    # Without it the same good night tells nothing.
    assert night_message(DAY, [_S("XC", "XC_HU", "loaded")], None) is None
