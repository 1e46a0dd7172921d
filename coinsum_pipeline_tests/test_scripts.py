"""The set-up scripts, run as a new user runs them, with a stand-in Python that records what it
was asked to do (installing for real is what CI's own set-up does)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Stand-ins for the venv's Python and uv: each records its arguments; pip's requirements from
# stdin are kept too.
RECORDING_PYTHON = """#!/usr/bin/env bash
echo "python $*" >> "$(dirname "$0")/../calls"
if [ "$1" = "-VV" ]; then echo "Python 3.11.7 (stand-in)"; fi
if [[ "$*" == *"-r /dev/stdin"* ]]; then cat > "$(dirname "$0")/../stdin"; fi
"""
RECORDING_UV = """#!/usr/bin/env bash
echo "uv $*" >> "$(dirname "$0")/../calls"
"""


def stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(RECORDING_PYTHON)
    (bin_dir / "uv").write_text(RECORDING_UV)
    (bin_dir / "coinsum").write_text("#!/bin/sh\nexit 0\n")
    for stand_in in bin_dir.iterdir():
        stand_in.chmod(0o755)


def test_install_installs_the_lock_only_when_it_or_the_project_changed_and_quietly(
    tmp_path: Path,
) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install", tmp_path / "scripts" / "install")
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    stand_ins(tmp_path / ".venv" / "bin")
    calls = tmp_path / ".venv" / "calls"

    def install() -> list[str]:
        calls.write_text("")
        done = subprocess.run(
            [tmp_path / "scripts" / "install"], capture_output=True, text=True, check=True
        )
        assert done.stdout == done.stderr == "", "nothing printed when all goes well"
        return [c for c in calls.read_text().splitlines() if "pip" in c]

    first = install()
    assert first == [
        "python -m pip install -qq --disable-pip-version-check --no-deps --require-hashes "
        "-r /dev/stdin",
        "uv pip install -q --python .venv/bin/python --no-deps --compile-bytecode "
        "--require-hashes -r requirements.lock",
        "uv pip install -q --python .venv/bin/python --no-deps -e .",
    ], "uv, then exactly what the lock says, then coinsum itself"
    uv = (tmp_path / ".venv" / "stdin").read_text()
    assert uv.startswith("uv==") and "--hash=sha256:" in uv, "pip installs uv as locked"
    assert len(re.findall(r"^\S", uv, re.M)) == 1, "and only uv"
    assert install() == [], "nothing changed: no pip"
    for changed in ("pyproject.toml", "requirements.lock"):
        with (tmp_path / changed).open("a") as project:
            project.write("\n# a change\n")
        assert install() == first, f"{changed} changed: pip again"


def _project_with_stand_ins(folder: Path) -> None:
    """``folder`` as a project whose venv is stand-ins: its Python records, its coinsum runs."""
    (folder / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "install", folder / "scripts" / "install")
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, folder / name)
    stand_ins(folder / ".venv" / "bin")


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="runs a command as another user"
)
def test_install_for_a_service_user_checks_that_user_can_run_it(tmp_path: Path) -> None:
    """Reported: as root, the venv came from a Python under /root (mode 700), and the service
    user got "Permission denied". Here the project sits in a folder only root can enter:
    refused, saying how; in a folder every user can read: accepted."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    _project_with_stand_ins(locked / "project")
    refused = subprocess.run(
        [locked / "project" / "scripts" / "install", "--service-user", "nobody"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert "the user nobody cannot run" in refused.stderr
    assert "Permission denied" in refused.stderr
    assert "PYTHON=/usr/bin/python3 scripts/install --service-user nobody" in refused.stderr

    readable = Path(tempfile.mkdtemp(prefix="coinsum-install-"))
    try:
        readable.chmod(0o755)
        _project_with_stand_ins(readable / "project")
        accepted = subprocess.run(
            [readable / "project" / "scripts" / "install", "--service-user", "nobody"],
            capture_output=True,
            text=True,
        )
        assert accepted.returncode == 0, accepted.stderr
    finally:
        shutil.rmtree(readable)
