"""Row rules moved to expectations/row_rules.py (beside the contracts, below the warehouse and
the steps); this module re-exports its names so existing imports keep working."""

from __future__ import annotations

from expectations.row_rules import (
    CHECKS,
    HOOKS,
    Hook,
    birth_date_matches_id,
    cert_matches_id_category_level,
    gender_matches_id,
    one_head_per_household,
    row_rule_broken,
    unemployed_has_no_job,
)

__all__ = [
    "CHECKS",
    "HOOKS",
    "Hook",
    "birth_date_matches_id",
    "cert_matches_id_category_level",
    "gender_matches_id",
    "one_head_per_household",
    "row_rule_broken",
    "unemployed_has_no_job",
]
