"""Masked forms of personal data: moved to `domain.masking` (issue 12: the warehouse's
publication masks too, and may not import the steps). Re-exported here so that existing imports
keep working; new code imports `domain.masking`.

The HMAC `person_key` that used to be copied here lives in one place: `warehouse.identity`.
"""

from __future__ import annotations

from domain.masking import (
    HIDDEN,
    mask_id,
    mask_lookalikes,
    mask_lookalikes_text,
    mask_name,
    mask_phone,
    mask_series,
    mask_value,
)

__all__ = [
    "HIDDEN",
    "mask_id",
    "mask_lookalikes",
    "mask_lookalikes_text",
    "mask_name",
    "mask_phone",
    "mask_series",
    "mask_value",
]
