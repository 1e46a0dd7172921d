"""The set-up scripts, run as a new user runs them, with a stand-in Python that records what it
was asked to do (installing for real is what CI's own set-up does)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDING_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../calls"
if [ "$1" = "-VV" ]; then echo "Python 3.11.7 (stand-in)"; fi
"""


def test_install_runs_pip_only_when_the_project_changed_and_quietly(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install", tmp_path / "scripts" / "install")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    calls = tmp_path / ".venv" / "calls"

    def install() -> list[str]:
        calls.write_text("")
        done = subprocess.run(
            [tmp_path / "scripts" / "install"], capture_output=True, text=True, check=True
        )
        assert done.stdout == done.stderr == "", "nothing printed when all goes well"
        return [c for c in calls.read_text().splitlines() if c.startswith("-m pip")]

    first = install()
    assert first == [
        "-m pip install -qq --disable-pip-version-check --upgrade pip",
        "-m pip install -qq --disable-pip-version-check -e .[dev]",
    ]
    assert install() == [], "nothing changed: no pip"
    with (tmp_path / "pyproject.toml").open("a") as project:
        project.write("\n# a changed requirement\n")
    assert install() == first
