"""History tables (one per dataset), the merge log and person identity.

Revision ID: 0002
Revises: 0001

The dataset tables are frozen here as they were declared by the contracts when this revision was
written (warehouse.tables builds them from the contracts at run time): a later contract change
needs a new revision, and tests/test_migrations.py fails until it has one.
"""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TYPES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "text": sa.Text,
    "enum": sa.Text,
    "enum_multi": sa.Text,
    "month": lambda: sa.String(7),
    "id18": lambda: sa.String(18),
    "credit_code": lambda: sa.String(18),
    "date": sa.Date,
    "decimal": lambda: sa.Numeric(14, 2),
    "int": sa.BigInteger,
    "bool": sa.Boolean,
}

# table: (key, has cancel_reversals, "column:type ...") as the contracts declared them.
_HISTORY: dict[str, tuple[tuple[str, ...], bool, str]] = {
    "h_cl_canji": (
        ("id_number",),
        False,
        "name:text id_number:id18 cert_no:text category:enum level:enum issue_date:date "
        "cert_status:enum living_subsidy:decimal care_subsidy:decimal",
    ),
    "h_ga_biandong": (
        ("event_id",),
        False,
        "event_id:text name:text id_number:id18 change_type:enum change_date:date reason:text",
    ),
    "h_jt_xueji": (
        ("id_number",),
        False,
        "name:text id_number:id18 student_no:text school:text stage:enum grade:text "
        "enrolment_status:enum status_date:date",
    ),
    "h_jt_zizhu": (
        ("payment_id",),
        False,
        "payment_id:text name:text id_number:id18 program:enum term:enum year:int "
        "amount:decimal paid_date:date",
    ),
    "h_mz_dibao": (
        ("id_number", "assistance_type"),
        False,
        "village_code:text head_name:text head_id_number:id18 name:text id_number:id18 "
        "assistance_type:enum support_mode:enum monthly_amount:decimal start_date:date "
        "end_date:date status:enum bank_account:text",
    ),
    "h_mz_linshi": (
        ("case_id",),
        False,
        "case_id:text name:text id_number:id18 relief_type:enum reason:text "
        "amount:decimal approved_date:date",
    ),
    "h_ny_chanye": (
        ("project_id",),
        False,
        "project_id:text head_name:text head_id_number:id18 industry:enum "
        "support_mode:enum amount:decimal year:int project_status:enum",
    ),
    "h_rs_jiuye": (
        ("id_number",),
        False,
        "name:text id_number:id18 employment_status:enum employer:text "
        "employer_credit_code:credit_code start_date:date end_date:date "
        "monthly_income:decimal",
    ),
    "h_sl_yinshui": (
        ("head_id_number",),
        False,
        "head_name:text head_id_number:id18 village_code:text supply_mode:enum "
        "quantity_ok:bool quality_ok:bool convenience_ok:bool reliability_ok:bool "
        "water_safe:bool survey_date:date",
    ),
    "h_wj_manbing": (
        ("id_number", "kind", "disease"),
        False,
        "name:text id_number:id18 kind:enum disease:text start_date:date status:enum",
    ),
    "h_xc_hecha": (
        ("alert_id",),
        False,
        "alert_id:text outcome:enum checked_date:date checker:text",
    ),
    "h_xc_hu": (
        ("household_id",),
        False,
        "household_id:text county:text town:text village:text village_code:text "
        "head_name:text head_id_number:id18 household_size:int household_type:enum "
        "monitoring_category:enum risk_types:enum_multi identified_month:month "
        "risk_eliminated:bool elimination_method:enum eliminated_month:month "
        "income_per_capita:decimal wage_income:decimal business_income:decimal "
        "property_income:decimal transfer_income:decimal compliant_self_pay:decimal "
        "phone:text",
    ),
    "h_xc_ren": (
        ("id_number",),
        False,
        "household_id:text name:text id_number:id18 relation:enum gender:enum "
        "birth_date:date ethnicity:text health:enum labour_skill:enum school_status:text "
        "medical_insured:bool",
    ),
    "h_yb_canbao": (
        ("id_number", "year"),
        False,
        "name:text id_number:id18 year:int scheme:enum status:enum subsidised:bool "
        "subsidy_category:enum",
    ),
    "h_yb_jiesuan": (
        ("settlement_id", "settle_kind"),
        True,
        "settlement_id:text settle_kind:enum name:text id_number:id18 visit_type:enum "
        "admit_date:date discharge_date:date settle_date:date hospital:text "
        "diagnosis:text total_cost:decimal in_policy_cost:decimal fund_paid:decimal "
        "critical_illness_paid:decimal medical_aid_paid:decimal other_paid:decimal "
        "self_burden:decimal",
    ),
    "h_zj_fangwu": (
        ("head_id_number", "assessed_date"),
        False,
        "head_name:text head_id_number:id18 village_code:text address:text "
        "target_group:enum structure:enum assessed_date:date grade:enum "
        "renovation_status:enum subsidy:decimal",
    ),
}


def _person_key(column: str) -> str:
    if column.endswith("id_number"):
        return column.removesuffix("id_number") + "person_key"
    return f"{column}_person_key"


def _create_history(name: str, key: tuple[str, ...], cancel: bool, declared: str) -> None:
    pairs = [item.split(":") for item in declared.split()]
    columns: list[sa.Column[Any]] = [
        sa.Column(c, _TYPES[t](), nullable=c not in key) for c, t in pairs
    ]
    columns += [sa.Column(_person_key(c), sa.String(32)) for c, t in pairs if t == "id18"]
    columns += [
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("source_file", sa.String(255), nullable=False),
        sa.Column("source_row", sa.BigInteger),
        sa.Column("row_hash", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
        sa.Column("is_current", sa.Boolean, nullable=False),
    ]
    if cancel:
        columns += [
            sa.Column("cancelled", sa.Boolean, nullable=False),
            sa.Column("cancelled_by", sa.String(64)),
        ]
    op.create_table(name, *columns, sa.PrimaryKeyConstraint(*key, "valid_from", name=f"pk_{name}"))
    current = sa.text("is_current = true")
    op.create_index(
        f"ix_{name}_current",
        name,
        [*key, "row_hash", "is_current"],
        sqlite_where=sa.text("is_current = 1"),
        postgresql_where=current,
    )


def upgrade() -> None:
    for name, (key, cancel, declared) in _HISTORY.items():
        _create_history(name, key, cancel, declared)
    op.create_table(
        "history_merges",
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("exchange_date", sa.Date, nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("inserted", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("closed", sa.Integer, nullable=False),
        sa.Column("unchanged", sa.Integer, nullable=False),
        sa.Column("reopened", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("dataset", "exchange_date", name="pk_history_merges"),
    )
    op.create_table(
        "person_sources",
        sa.Column("person_key", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("id_column", sa.String(32), nullable=False),
        sa.Column("dept", sa.String(8), nullable=False),
        sa.Column("id_number", sa.String(18), nullable=False),
        sa.Column("first_seen", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("person_key", "dataset", "id_column", name="pk_person_sources"),
    )
    op.create_index(
        "ix_person_sources_dataset_first_seen", "person_sources", ["dataset", "first_seen"]
    )


def downgrade() -> None:
    op.drop_table("person_sources")
    op.drop_table("history_merges")
    for name in reversed(_HISTORY):
        op.drop_table(name)
