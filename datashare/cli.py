"""Moved to the top-level package `cli` (issue 12: the CLI sits on top of the layers, and
`datashare` holds only what everything may import: settings and errors).

This shim keeps `python -m datashare.cli …` and `from datashare.cli import app` working for
callers not yet moved; the import contract in pyproject.toml names it as the one exception.
"""

from __future__ import annotations

from cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
