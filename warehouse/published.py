"""Published files: what departments consume. Only this module writes under PUBLISH_DIR."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine

from warehouse import ledger
from warehouse.lake import write_parquet_atomic

# Column order is the published interface (publishing.md, "Tables").
DELIVERIES_COLUMNS = [
    "dept", "dataset", "exchange_date", "source_file", "sha256", "received_at", "status",
    "rows_in", "rows_loaded", "rows_rejected", "duplicates", "reason",
]
REJECTS_COLUMNS = [
    "dataset", "exchange_date", "source_file", "source_row", "column", "rule", "value_masked",
    "message",
]


def _table(frame: pd.DataFrame, columns: list[str]) -> pa.Table:
    frame = frame[columns].copy()
    if "exchange_date" in frame:
        frame["exchange_date"] = pd.to_datetime(frame["exchange_date"]).dt.date
    return pa.Table.from_pandas(frame, preserve_index=False)


def publish_ledger(engine: Engine, publish_dir: Path) -> None:
    """Write XC's deliveries.parquet and rejects.parquet (whole ledger, stable order)."""
    deliveries = ledger.ledger_frame(engine)
    rejects = ledger.rejects_frame(engine)
    # Rejects of a superseded delivery no longer stand: the re-delivery replaced them.
    current = deliveries.loc[deliveries["status"] != "superseded", "delivery_id"]
    rejects = rejects[rejects["delivery_id"].isin(current)]
    rejects = rejects.assign(source_row=rejects["source_row"].astype("Int64"))
    write_parquet_atomic(publish_dir, "XC/deliveries.parquet",
                         _table(deliveries, DELIVERIES_COLUMNS))
    write_parquet_atomic(publish_dir, "XC/rejects.parquet", _table(rejects, REJECTS_COLUMNS))
