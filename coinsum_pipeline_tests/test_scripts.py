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


def test_install_installs_the_lock_only_when_it_or_the_project_changed_and_quietly(
    tmp_path: Path,
) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install", tmp_path / "scripts" / "install")
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
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
        "-m pip install -qq --disable-pip-version-check --no-deps --require-hashes "
        "-r requirements.lock",
        "-m pip install -qq --disable-pip-version-check --no-deps -e .",
    ], "exactly what the lock says, then coinsum itself"
    assert install() == [], "nothing changed: no pip"
    for changed in ("pyproject.toml", "requirements.lock"):
        with (tmp_path / changed).open("a") as project:
            project.write("\n# a change\n")
        assert install() == first, f"{changed} changed: pip again"
