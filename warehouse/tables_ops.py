"""Tables of the ops part of the warehouse (registered on warehouse.tables.metadata)."""

from __future__ import annotations

from warehouse.tables import metadata  # noqa: F401
