"""What a night reads once: the facts the rules and the profiles share, and every current
(person, name) pair DQ-01 and person_profile both go through (issue 13).

    facts_read_once()                 the scope: flows.nightly holds it for the whole night
    read_once(what, conn, as_of, load)
                                      load() once per (what, warehouse, date, state of the
                                      ledger) within the scope; outside it, every call loads

The state is the ledger (every delivery's status and bytes, every merge into history): history
is written only by merges, so an equal ledger means equal history, and equal reads of it.

One reading at a time per `what`: a second thread asking for what a first is still loading
waits for it instead of loading it again (the night reads the profiles ahead, beside the
alerts, and both go through the facts).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import Connection, select

from warehouse.tables import deliveries, history_merges

T = TypeVar("T")


@dataclass
class _Reading:
    depth: int = 0
    kept: dict[str, tuple[tuple[str, date, str], Any]] = field(default_factory=dict)
    # per `what`, held while it is loaded (re-entrant: a load may read another `what`)
    loading: dict[str, threading.RLock] = field(default_factory=dict)


_reading = _Reading()
_reading_lock = threading.Lock()


@contextmanager
def facts_read_once() -> Iterator[None]:
    """Within it, `read_once` reads the warehouse once per state: a night's alerts and its two
    profiles share one reading instead of three. Outside it, every call reads."""
    with _reading_lock:
        _reading.depth += 1
    try:
        yield
    finally:
        with _reading_lock:
            _reading.depth -= 1
            if not _reading.depth:
                _reading.kept.clear()
                _reading.loading.clear()


def read_once(what: str, conn: Connection, as_of: date, load: Callable[[], T]) -> T:
    """`load()`, or what it gave for the same warehouse, date and state within the scope (one
    reading kept per `what`: the newest)."""
    if not _reading.depth:
        return load()
    key = (conn.engine.url.render_as_string(), as_of, warehouse_state(conn))
    with _reading_lock:
        gate = _reading.loading.setdefault(what, threading.RLock())
    with gate:
        with _reading_lock:
            kept = _reading.kept.get(what)
            if kept is not None and kept[0] == key:
                return kept[1]  # type: ignore[no-any-return]
        value = load()
        with _reading_lock:
            if _reading.depth:
                _reading.kept[what] = (key, value)
    return value


def warehouse_state(conn: Connection, upto: date | None = None) -> str:
    """A digest of the ledger (up to an exchange date): every delivery's status and bytes and
    every merge into history. History as of a date is written only by the merges of that date
    and before (a late delivery undoes and redoes them), so an equal ledger up to a date means
    equal history as of it."""
    d, m = deliveries.c, history_merges.c
    ledger = select(d.delivery_id, d.status, d.sha256, d.exchange_date).order_by(d.delivery_id)
    merges = select(history_merges).order_by(m.dataset, m.exchange_date)
    if upto is not None:
        ledger = ledger.where(d.exchange_date <= upto)
        merges = merges.where(m.exchange_date <= upto)
    digest = hashlib.sha256()
    for query in (ledger, merges):
        for row in conn.execute(query):
            digest.update(repr(tuple(row)).encode())
        digest.update(b"\0")
    return digest.hexdigest()
