"""Where the vectorised checks used to live; kept so existing imports keep working.

Identity codes (GB 11643 id numbers, GB 32100 credit codes) live in domain/identity_codes.py,
the Arrow fixed-width text helpers in domain/arrow_text.py: new code imports from those. This
module only re-exports their names (nothing is defined here).
"""

from __future__ import annotations

from domain.arrow_text import fixed_width, offsets_and_bytes, text_array
from domain.identity_codes import (
    _ID_CHECK,
    credit_code_valid,
    id17_check_codes,
    id18_birth_dates,
    id18_check_char,
    id18_checksum_ok,
    id18_valid,
    upgrade_id15,
)

__all__ = [
    "_ID_CHECK",
    "credit_code_valid",
    "fixed_width",
    "id17_check_codes",
    "id18_birth_dates",
    "id18_check_char",
    "id18_checksum_ok",
    "id18_valid",
    "offsets_and_bytes",
    "text_array",
    "upgrade_id15",
]
