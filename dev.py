#!/usr/bin/env python3
"""Set up the project's virtual environment from the lock file, then run a command in it.

    python3 dev.py demo        set up, then run `datashare demo` (synthetic county, several nights)
    python3 dev.py test        set up, then run the tests (the slow group left out: minutes)
    python3 dev.py test --run-slow      everything, as CI runs it (.ci/run sets DATASHARE_TEST_ALL)
    python3 dev.py check       set up, then lint, type-check, check the import layers and test
    python3 dev.py -- CMD ...  set up, then run any command inside the environment

Needs only Python 3.11+. The environment lives in .venv and is rebuilt when requirements.lock
changes; installs are hash-checked against the lock.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".lock-sha256"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _lock_digest() -> str:
    payload = LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    return hashlib.sha256(payload).hexdigest()


def _quiet(cmd: list[str]) -> None:
    """Run a setup step; show its output only if it fails (pip's index warnings are noise)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        sys.exit(f"setting up .venv failed: {' '.join(cmd[2:5])} … (exit {done.returncode})")


def ensure_venv() -> None:
    """Create or refresh .venv so that it matches requirements.lock exactly."""
    if sys.version_info < (3, 11):  # noqa: UP036  dev.py runs under whatever python3 is there
        sys.exit(f"datashare needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    digest = _lock_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    print("Setting up .venv from requirements.lock (first run takes a few minutes)…", flush=True)
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    # The lock is the complete, resolved set: install exactly it (no resolver; old pips mishandle
    # extras under --require-hashes), then let pip confirm that it is consistent.
    _quiet([*pip, "install", "--require-hashes", "--no-deps", "-r", str(LOCK)])
    _quiet([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    _quiet([*pip, "check"])
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    ensure_venv()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command, rest = argv[0], argv[1:]
    if command == "demo":
        cmd = [str(BIN / "datashare"), "demo", *rest]
    elif command == "test":
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    elif command == "check":
        steps = (
            ["ruff", "check", "."],
            ["ruff", "format", "--check", "."],
            ["mypy"],
            ["lint-imports"],  # layers point one way: [tool.importlinter] in pyproject.toml
        )
        for step in steps:
            subprocess.run([str(BIN / step[0]), *step[1:]], cwd=ROOT, env=env, check=True)
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    elif command == "--":
        cmd = rest
    else:
        print(__doc__)
        return 2
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
