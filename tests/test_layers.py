"""Layers point one way (issue 12): the import contracts of pyproject.toml hold, the check can
fail, and nothing below flows/ reads the environment."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
BELOW_FLOWS = ("datashare", "domain", "expectations", "warehouse", "tasks")
# Environment reads allowed below flows/, each with why.
ENV_READS_ALLOWED = {
    # pyarrow's own variable, read where the pool is chosen: in every process that takes in a
    # delivery (Dask workers included, where no entry point of ours runs); not our setting.
    ("tasks/intake.py", "ARROW_DEFAULT_MEMORY_POOL"),
}


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_broken_layer_fails_the_check(tmp_path: Path) -> None:
    """The same packages under a contract they break (the steps below the warehouse they use):
    lint-imports fails and names the import."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]
    roots = ", ".join(f'"{p}"' for p in config["root_packages"])
    (tmp_path / "upside_down.toml").write_text(
        "[tool.importlinter]\n"
        f"root_packages = [{roots}]\n"
        "[[tool.importlinter.contracts]]\n"
        'name = "upside down"\n'
        'type = "layers"\n'
        'layers = ["warehouse", "tasks"]\n',
        encoding="utf-8",
    )
    done = _lint_imports("--config", str(tmp_path / "upside_down.toml"))
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "tasks." in done.stdout and "-> warehouse." in done.stdout


def test_the_contract_orders_the_layers_as_the_style_says() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    assert layers == [
        "cli",
        "portal | flows",
        "tasks",
        "warehouse",
        "expectations : domain",
        "datashare.settings",
        "datashare.errors",
    ]


def _env_reads(path: Path) -> list[int]:
    """Lines of a module that touch the environment: os.environ, os.getenv, or either imported."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv", "putenv"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & {"environ", "getenv", "putenv"}
        ):
            lines.append(node.lineno)
    return lines


def test_nothing_below_flows_reads_the_environment() -> None:
    readers = {}
    for package in BELOW_FLOWS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            lines = _env_reads(path)
            allowed = [var for file, var in ENV_READS_ALLOWED if file == rel]
            source = path.read_text(encoding="utf-8").splitlines()
            lines = [n for n in lines if not any(var in source[n - 1] for var in allowed)]
            if lines:
                readers[rel] = lines
    assert readers == {}
