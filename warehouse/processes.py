"""The night's worker processes: one fork server, with the modules its workers run preloaded.

Not fork: the night's process has threads (Prefect's, the intake's, the writers'), and a fork
copies their locks in whatever state they are in. The fork server is started once per process
by the first pool that asks for it, so every pool asks with the same preload: a worker then
starts in a fraction of a second (the publication's workbook writers, the SQLite readers).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ("warehouse.published", "warehouse.sqlite_reads")


def allowed() -> bool:
    """This process may start worker processes: not a daemonic one (a Dask worker, a
    multiprocessing pool's worker), which Python forbids children."""
    return not multiprocessing.current_process().daemon


def forkserver() -> BaseContext:
    """The fork server context, its preload set (it takes effect when the server starts)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context
