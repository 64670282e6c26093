"""Rule parameters: RuleParams from expectations/reference/rule_params.yaml (province, year)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from datashare.errors import ConfigurationError
from domain.alert_rules import param_defaults, param_names

RULE_PARAMS = (
    Path(__file__).resolve().parents[2] / "expectations" / "reference" / ("rule_params.yaml")
)
DIVISIONS = RULE_PARAMS.parent / "divisions.csv"


# --- parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleParams:
    """The rule parameters of one province and year (rules.md: reference data, never code).

    `values` holds every parameter the declared rules need (domain/alert_rules.py), e.g.
    income_threshold (INC-01) and medical_burden_household_12m (YB-01), in yuan; each is also
    an attribute (`params.income_threshold`).
    """

    province: str
    year: int
    values: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        values = self.__dict__.get("values") or {}
        if name in values:
            return float(values[name])
        raise AttributeError(name)

    def value(self, name: str) -> float:
        """A parameter's value; one no declared rule needs fails naming it."""
        if name not in self.values:
            raise ConfigurationError(
                f"预警规则参数 {name} 没有任何规则声明（domain/alert_rules.py）："
                "请检查参数名是否写错"
            )
        return float(self.values[name])

    def cents(self, name: str) -> int:
        """A money parameter in whole cents (money is compared to the cent)."""
        return round(self.value(name) * 100)


@cache
def _reference(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"无法读取预警规则参数文件 {path}：{exc}；请检查文件是否存在、是否为有效的 YAML"
        ) from None
    return dict(data)


def load_rule_params(province: str, year: int, *, path: Path = RULE_PARAMS) -> RuleParams:
    """The alert rule parameters of a province and year; a missing one is a ConfigurationError.

    A value under the year wins over the province's defaults, which win over the default the
    rule declares (domain/alert_rules.py). Nothing is guessed: a province missing from the
    reference data, or a parameter with no value and no declared default, stops the run,
    naming parameter, province and year.
    """
    provinces = _reference(path).get("provinces") or {}
    entry = provinces.get(str(province))
    if entry is None:
        raise ConfigurationError(
            f"{path.name} 中没有省份 {province}（{year} 年）的预警规则参数：请在其中补上"
            f"{'、'.join(param_names())}"
        )
    merged = dict(entry.get("defaults") or {})
    merged.update((entry.get("years") or {}).get(int(year)) or {})
    values: dict[str, float] = {}
    defaults = param_defaults()
    for name in param_names():
        value = merged.get(name, defaults[name])
        if value is None:
            raise ConfigurationError(
                f"缺少省份 {province} {year} 年的预警规则参数 {name}（参考数据 {path.name}）："
                "请在该文件中填写，程序不会猜测"
            )
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"省份 {province} {year} 年的预警规则参数 {name} 不是数字（{path.name}）："
                "请改为数值"
            ) from None
    return RuleParams(province=str(province), year=int(year), values=values)
