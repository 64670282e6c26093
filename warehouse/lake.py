"""The lake: where every byte of Parquet and every delivered file is kept. One owner of paths."""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FILE_MODE = 0o644  # files are readable by the service accounts that consume them


def lake_path(kind: str, dataset: str, exchange_date: date, name: str) -> str:
    """The path, relative to the lake root, of one lake object.

    kind: 'raw' (delivered bytes, kept so that any range can be re-derived),
          'accepted' (the accepted rows of one delivery).
    """
    return f"{kind}/{dataset}/exchange_date={exchange_date.isoformat()}/{name}"


def mirror_path(table: str) -> str:
    """The path, relative to the lake root, of a warehouse table's mirror (warehouse.mirror)."""
    return f"mirror/{table}.parquet"


def mirror_part_path(table: str, part: str) -> str:
    """One part of a table mirrored in parts (warehouse.mirror.PARTITIONED): a dataset's, a
    date's."""
    return f"mirror/{table}/{part}.parquet"


def write_bytes_atomic(root: Path, relative: str, content: bytes) -> None:
    """Write a file so that readers see either the old file or the whole new one."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600: consumers and web servers must read it
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(root: Path, relative: str, table: pa.Table) -> None:
    """Write a Parquet file atomically, deterministically (no timestamps in the file)."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True, store_schema=True)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
