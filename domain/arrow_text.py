"""Arrow text columns as bytes: the fixed-width views the vectorised checks run on.

Identity codes (domain/identity_codes.py), normalisation and duplicate detection read a column
of text once as one contiguous Arrow large_string buffer and test fixed-width values as a k × w
uint8 matrix, in numpy: no per-row Python.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def text_array(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """The values as one contiguous Arrow large_string array (no copy for a one-chunk
    Arrow-backed string Series)."""
    if isinstance(values, pd.Series):
        values = pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = (
            values.chunk(0)
            if values.num_chunks == 1
            else values.combine_chunks()
            if values.num_chunks
            else pa.array([], pa.large_string())
        )
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return values


def offsets_and_bytes(arr: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, n + 1 of them, into the data bytes; the data bytes) of a large_string array."""
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return offsets, data


def fixed_width(
    arr: pa.LargeStringArray, width: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(k × width uint8 matrix, row positions) of the non-null values that are exactly
    `width` bytes long (among `rows`, a boolean mask, if given), in row order."""
    offsets, _ = offsets_and_bytes(arr)
    sel = np.diff(offsets) == width
    if arr.null_count:
        sel &= arr.is_valid().to_numpy(zero_copy_only=False)
    if rows is not None:
        sel &= rows
    positions = np.flatnonzero(sel)
    if not len(positions):
        return np.zeros((0, width), dtype=np.uint8), positions
    picked = arr if len(positions) == len(arr) else arr.filter(pa.array(sel))
    offsets, data = offsets_and_bytes(picked)
    # Every picked value is `width` bytes: the data between the first and last offset is the
    # matrix, row after row.
    block = data[offsets[0] : offsets[-1]]
    return block.reshape(len(positions), width), positions
