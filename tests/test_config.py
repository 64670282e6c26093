"""Configuration flows from Settings (issue 12): RunConfig has no defaults of its own, and an
entry point's Settings reach the flow as an argument, not through the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow

from datashare.settings import (
    DEFAULT_GX_MAX_ROWS,
    DEFAULT_PROVINCE,
    Settings,
    current_settings,
    use_settings,
)
from flows.nightly import RunConfig


def _settings(tmp_path: Path, **more: object) -> Settings:
    return Settings(home=tmp_path, secret="k" * 32, environment="test", **more)  # type: ignore[arg-type]


def test_run_config_has_no_defaults_but_the_runs_own_choices() -> None:
    defaulted = [name for name, field in RunConfig.model_fields.items() if not field.is_required()]
    assert defaulted == ["datasets", "force"]


def test_run_config_is_the_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, gx_max_rows=5000, province="62", max_workers=3, read_max_columns=99
    )
    config = RunConfig.from_settings(settings, datasets=["XC_HU"])
    assert (config.gx_max_rows, config.province, config.max_workers) == (5000, "62", 3)
    assert config.read_limits.max_columns == 99
    assert config.datasets == ("XC_HU",) and config.force == ()
    assert config.publish_dir == str(tmp_path / "published")
    # the defaults are written once, in settings
    plain = RunConfig.from_settings(_settings(tmp_path))
    assert (plain.gx_max_rows, plain.province) == (DEFAULT_GX_MAX_ROWS, DEFAULT_PROVINCE)


@flow(name="settings-probe")
def _settings_probe() -> str:
    return str(current_settings().home)


def test_a_flow_reads_the_settings_its_caller_passed(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASHARE_HOME", str(tmp_path / "from-the-environment"))
    with use_settings(_settings(tmp_path / "from-the-caller")):
        assert _settings_probe() == str(tmp_path / "from-the-caller")
    # without a caller's settings (a deployment run), the environment's
    assert _settings_probe() == str(tmp_path / "from-the-environment")
