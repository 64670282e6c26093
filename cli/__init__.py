"""The `datashare` command, on top of every layer (flows, steps, warehouse, portal).

The console script `datashare` is `cli.app:main`; `python -m cli` runs it too.
"""

from __future__ import annotations

from cli.app import EXIT_CODES, app, exit_code, main

__all__ = ["EXIT_CODES", "app", "exit_code", "main"]
