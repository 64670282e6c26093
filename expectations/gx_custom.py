"""Custom Great Expectations (GX Core 1.x) expectations for what GX has no built-in for.

    ExpectColumnValuesToBeValidId18        GB 11643 id numbers: MOD 11-2 check character and a
                                           real birth date from 1900 to the exchange date
    ExpectColumnValuesToBeValidCreditCode  GB 32100 unified social credit codes
    ExpectRowRuleToHold                    one row rule of a dataset contract
    ExpectPersonalValuesToMatchRegex       the built-in regex / in-set / between checks, for
    ExpectPersonalValuesToBeInSet          columns that hold personal data: same check, same
    ExpectPersonalValuesToBeBetween        rendering, but the result never lists a value

Each is evaluated by the same vectorised function the quarantine engine calls
(domain.identity_codes.id18_valid, .credit_code_valid, expectations.row_rules.row_rule_broken),
so GX and the engine judge a value the same way. Importing this module registers them with GX
(GX keeps a process-wide registry keyed by the snake-case class name, e.g.
``expect_row_rule_to_hold``); the suites in expectations/gx_suite.py import it, so a suite JSON
that names them can always be loaded, validated and rendered in Data Docs. Import GX through
this module (`gx`): it keeps GX's import-time DeprecationWarning off stderr.

Personal data never reaches a validation result: GX applies one run-level ``result_format`` to
every expectation of a run (it overrides any per-expectation one), so expectations whose domain
holds personal data strip their unexpected values themselves (`_HidesValues`): counts and
percentages stay, values go. Id numbers are personal by definition; a row rule hides values when
any of its columns is personal in the contract; the credit-code check and the ``Personal``
built-in variants hide them as declared.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from copy import deepcopy
from datetime import date
from typing import Any, ClassVar, Literal

import pandas as pd

with warnings.catch_warnings():
    # GX 1.24 imports the deprecated stdlib module sre_constants; keep that off stderr and out
    # of `-W error` test runs.
    warnings.simplefilter("ignore", DeprecationWarning)
    import great_expectations as gx
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
        ExpectColumnValuesToBeInSet,
    )
    from great_expectations.expectations.core.expect_column_values_to_match_regex import (
        ExpectColumnValuesToMatchRegex,
    )
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
        parse_result_format,
    )
    from great_expectations.expectations.metrics.map_metric_provider import (
        ColumnMapMetricProvider,
        MulticolumnMapMetricProvider,
        column_condition_partial,
        multicolumn_condition_partial,
    )
    from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
    from great_expectations.render.renderer.renderer import renderer
    from great_expectations.render.renderer_configuration import (
        RendererConfiguration,
        RendererValueType,
    )
    from great_expectations.render.util import num_to_str

from datashare.errors import CheckFailed  # re-exported: old import path
from domain.identity_codes import credit_code_valid, id18_valid
from expectations.contract import RowRule, get_contract
from expectations.row_rules import row_rule_broken

__all__ = [
    "CheckFailed",
    "ExpectColumnValuesToBeValidCreditCode",
    "ExpectColumnValuesToBeValidId18",
    "ExpectPersonalValuesToBeBetween",
    "ExpectPersonalValuesToBeInSet",
    "ExpectPersonalValuesToMatchRegex",
    "ExpectRowRuleToHold",
    "find_row_rule",
    "gx",
    "hides_values",
    "row_rule_columns",
]


# --- personal data: results that never list a value ---------------------------------------------


def _guarded(check: str, run: Callable[[], pd.Series]) -> pd.Series:
    """Run a check; if it raises, raise `CheckFailed` without the original message.

    GX stores an expectation's exception message and traceback in the validation result; a
    pandas error message can quote a cell value, so it must not get there.
    """
    try:
        return run()
    except Exception as err:
        raise CheckFailed(f"检查 {check} 运行出错（{type(err).__name__}）") from None


class _HidesValues:
    """Mixin for expectations: when `_hides_values()`, results carry counts but no values.

    GX resolves the result format per expectation through `_get_result_format`, letting the
    run-level format (Checkpoint / ValidationDefinition) win over the expectation's own; this
    override takes that resolved format and removes everything that would echo a cell value.
    """

    def _hides_values(self) -> bool:
        return True

    def _get_result_format(self, runtime_configuration: dict | None = None) -> dict[str, Any] | str:
        result_format = super()._get_result_format(  # type: ignore[misc]
            runtime_configuration=runtime_configuration
        )
        if not self._hides_values():
            return result_format
        parsed = parse_result_format(deepcopy(result_format))
        parsed.pop("unexpected_index_column_names", None)  # would echo other columns' values
        return {
            **parsed,
            "exclude_unexpected_values": True,
            "partial_unexpected_count": 0,
            "include_unexpected_rows": False,
        }


def hides_values(expectation: object) -> bool:
    """True if the expectation strips unexpected values from its results (see `_HidesValues`)."""
    return isinstance(expectation, _HidesValues) and expectation._hides_values()


# --- rendering helpers ---------------------------------------------------------------------------


def _finish_template(cls: Any, renderer_configuration: Any, template: str) -> Any:
    """The common tail of an atomic renderer: the `mostly` share, then the column name."""
    params = renderer_configuration.params
    if params.mostly and params.mostly.value < 1.0:
        renderer_configuration = cls._add_mostly_pct_param(
            renderer_configuration=renderer_configuration
        )
        template += ", at least $mostly_pct % of the time."
    else:
        template += "."
    if renderer_configuration.include_column_name:
        template = f"$column {template}"
    renderer_configuration.template_str = template
    return renderer_configuration


def _mostly_suffix(params: dict[str, Any]) -> str:
    mostly = params.get("mostly")
    if isinstance(mostly, (int, float)) and mostly < 1.0:
        params["mostly_pct"] = num_to_str(mostly * 100, no_scientific=True)
        return ", at least $mostly_pct % of the time."
    return "."


def _legacy_block(
    template: str, params: dict[str, Any], runtime_configuration: dict | None
) -> list[RenderedStringTemplateContent]:
    """The HTML Data Docs block (legacy prescriptive renderer) for a template and its params."""
    styling = (runtime_configuration or {}).get("styling")
    return [
        RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": template, "params": params, "styling": styling},
        )
    ]


def _column_prefix(template: str, runtime_configuration: dict | None) -> str:
    # Data Docs group column expectations under the column's heading and then leave it out.
    include = (runtime_configuration or {}).get("include_column_name") is not False
    return f"$column {template}" if include else template


# --- GB 11643 identity numbers -------------------------------------------------------------------


class ColumnValuesValidId18(ColumnMapMetricProvider):
    """Metric: the value is a valid GB 11643 id number (birth date not after `exchange_date`)."""

    condition_metric_name = "column_values.valid_id18"
    condition_value_keys = ("exchange_date",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(
        cls, column: pd.Series, exchange_date: str | None = None, **kwargs: Any
    ) -> pd.Series:
        latest = pd.Timestamp(exchange_date) if exchange_date else None
        return _guarded("id18_valid", lambda: id18_valid(column, latest))


class ExpectColumnValuesToBeValidId18(_HidesValues, ColumnMapExpectation):
    """Expect id numbers (GB 11643) with the right check character and a real birth date.

    The birth date (digits 7-14) must be a real date from 1900-01-01 to `exchange_date` (ISO
    date; no upper bound when it is omitted). Missing values are not judged here (see
    expect_column_values_to_not_be_null). Results never list the offending ids.
    """

    exchange_date: str | None = None

    map_metric = "column_values.valid_id18"
    success_keys = ("mostly", "exchange_date")
    args_keys = ("column",)

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["datashare", "GB 11643"],
        "contributors": [],
    }

    @classmethod
    def _prescriptive_template(
        cls, renderer_configuration: RendererConfiguration
    ) -> RendererConfiguration:
        renderer_configuration.add_param(name="column", param_type=RendererValueType.STRING)
        renderer_configuration.add_param(name="mostly", param_type=RendererValueType.NUMBER)
        renderer_configuration.add_param(name="exchange_date", param_type=RendererValueType.STRING)
        params = renderer_configuration.params
        template = "values must be valid GB 11643 id numbers"
        if params.exchange_date:
            template += " born no later than $exchange_date"
        return _finish_template(cls, renderer_configuration, template)

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(
        cls,
        configuration: ExpectationConfiguration | None = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        params = dict(configuration.kwargs) if configuration else {}
        template = "values must be valid GB 11643 id numbers"
        if params.get("exchange_date"):
            template += " born no later than $exchange_date"
        template += _mostly_suffix(params)
        return _legacy_block(
            _column_prefix(template, runtime_configuration), params, runtime_configuration
        )


# --- GB 32100 unified social credit codes --------------------------------------------------------


class ColumnValuesValidCreditCode(ColumnMapMetricProvider):
    """Metric: the value is an 18-character GB 32100 code with the right check character."""

    condition_metric_name = "column_values.valid_credit_code"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return _guarded("credit_code_valid", lambda: credit_code_valid(column))


class ExpectColumnValuesToBeValidCreditCode(_HidesValues, ColumnMapExpectation):
    """Expect unified social credit codes (GB 32100) with the right check character.

    Missing values are not judged here. With `hide_values` (set for personal columns) results
    never list the offending codes.
    """

    hide_values: bool = False

    map_metric = "column_values.valid_credit_code"
    success_keys = ("mostly",)
    args_keys = ("column",)

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["datashare", "GB 32100"],
        "contributors": [],
    }

    def _hides_values(self) -> bool:
        return self.hide_values

    @classmethod
    def _prescriptive_template(
        cls, renderer_configuration: RendererConfiguration
    ) -> RendererConfiguration:
        renderer_configuration.add_param(name="column", param_type=RendererValueType.STRING)
        renderer_configuration.add_param(name="mostly", param_type=RendererValueType.NUMBER)
        template = "values must be valid GB 32100 unified social credit codes"
        return _finish_template(cls, renderer_configuration, template)

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(
        cls,
        configuration: ExpectationConfiguration | None = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        params = dict(configuration.kwargs) if configuration else {}
        template = "values must be valid GB 32100 unified social credit codes"
        template += _mostly_suffix(params)
        return _legacy_block(
            _column_prefix(template, runtime_configuration), params, runtime_configuration
        )


# --- contract row rules --------------------------------------------------------------------------


def find_row_rule(dataset: str, rule_id: str) -> RowRule:
    """The row rule `rule_id` of the dataset's contract (KeyError if there is none)."""
    for rule in get_contract(dataset).row_rules:
        if rule.id == rule_id:
            return rule
    raise KeyError(f"{dataset} 的数据集约定中没有行规则 {rule_id!r}")


def row_rule_columns(rule: RowRule, *, filler: str = "source_row") -> list[str]:
    """The columns a row rule reads, in a stable order, for an expectation's `column_list`.

    GX's multicolumn domain needs at least two columns; a rule that reads one (min_age) gets
    `filler` (the engine's source_row: a row number, never personal) as the second.
    """
    columns = list(
        dict.fromkeys(
            [
                *rule.columns,
                *([rule.when.column] if rule.when else []),
                *([rule.by] if rule.by else []),
            ]
        )
    )
    if len(columns) < 2:
        columns.append(filler)
    return columns


class RowRuleHolds(MulticolumnMapMetricProvider):
    """Metric: the contract row rule `rule_id` of `dataset` holds in the row."""

    condition_metric_name = "multicolumn_values.row_rule_holds"
    condition_domain_keys = (
        "batch_id",
        "table",
        "column_list",
        "row_condition",
        "condition_parser",
        "ignore_row_if",
    )
    condition_value_keys = ("dataset", "rule_id", "exchange_date")

    @multicolumn_condition_partial(engine=PandasExecutionEngine)
    def _pandas(
        cls,
        column_list: pd.DataFrame,
        dataset: str,
        rule_id: str,
        exchange_date: str | None = None,
        **kwargs: Any,
    ) -> pd.Series:
        rule = find_row_rule(dataset, rule_id)
        if exchange_date:
            on = date.fromisoformat(exchange_date)
        elif rule.check == "min_age":
            raise ValueError(
                f"{dataset} 的行规则 {rule_id}（min_age）需要 exchange_date，调用时未给出"
            )
        else:
            on = date.min  # only min_age reads the date
        return ~_guarded(f"行规则 {rule_id}", lambda: row_rule_broken(column_list, rule, on))


class ExpectRowRuleToHold(_HidesValues, MulticolumnMapExpectation):
    """Expect a row rule of a dataset contract to hold (expectations.row_rules.row_rule_broken).

    `dataset` and `rule_id` name the rule in expectations/contracts/<dataset>.yaml; `column_list`
    holds the columns it reads (see `row_rule_columns`); `exchange_date` (ISO) is the day ages
    are computed on. Rows are never skipped for missing values: a rule whose inputs are missing
    is not broken (expectations/row_rules.py). Results list no values when any column is
    personal.
    """

    dataset: str
    rule_id: str
    exchange_date: str | None = None
    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = "never"

    map_metric = "multicolumn_values.row_rule_holds"
    success_keys = ("mostly", "dataset", "rule_id", "exchange_date")
    args_keys = ("column_list", "dataset", "rule_id")

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["datashare", "row rule"],
        "contributors": [],
    }

    def _hides_values(self) -> bool:
        pii = get_contract(self.dataset).pii_columns
        return any(c in pii for c in self.column_list)

    @classmethod
    def _message(cls, dataset: Any, rule_id: Any) -> str:
        try:
            return find_row_rule(str(dataset), str(rule_id)).message
        except KeyError:
            return ""

    @classmethod
    def _prescriptive_template(
        cls, renderer_configuration: RendererConfiguration
    ) -> RendererConfiguration:
        for name in ("dataset", "rule_id"):
            renderer_configuration.add_param(name=name, param_type=RendererValueType.STRING)
        renderer_configuration.add_param(name="mostly", param_type=RendererValueType.NUMBER)
        params = renderer_configuration.params
        message = cls._message(
            params.dataset.value if params.dataset else "",
            params.rule_id.value if params.rule_id else "",
        )
        renderer_configuration.add_param(
            name="message", param_type=RendererValueType.STRING, value=message
        )
        template = "Row rule $rule_id of $dataset must hold (broken: $message)"
        if params.mostly and params.mostly.value < 1.0:
            renderer_configuration = cls._add_mostly_pct_param(
                renderer_configuration=renderer_configuration
            )
            template += ", at least $mostly_pct % of the time."
        else:
            template += "."
        renderer_configuration.template_str = template
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(
        cls,
        configuration: ExpectationConfiguration | None = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        params = dict(configuration.kwargs) if configuration else {}
        params["message"] = cls._message(params.get("dataset"), params.get("rule_id"))
        params["columns"] = ", ".join(params.get("column_list") or [])
        template = "Row rule $rule_id of $dataset must hold over $columns (broken: $message)"
        template += _mostly_suffix(params)
        return _legacy_block(template, params, runtime_configuration)


# --- built-in checks for personal columns --------------------------------------------------------


class ExpectPersonalValuesToMatchRegex(_HidesValues, ExpectColumnValuesToMatchRegex):
    """expect_column_values_to_match_regex for a personal column: results list no values."""


class ExpectPersonalValuesToBeInSet(_HidesValues, ExpectColumnValuesToBeInSet):
    """expect_column_values_to_be_in_set for a personal column: results list no values."""


class ExpectPersonalValuesToBeBetween(_HidesValues, ExpectColumnValuesToBeBetween):
    """expect_column_values_to_be_between for a personal column: results list no values."""
