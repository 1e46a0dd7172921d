"""The environment variables coinsum reads, their defaults, and where local state lives.

One table of names and defaults, used both by the Dagster definitions (as ``EnvVar``s, so the
UI shows their source) and by the command line (as plain values).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DEFAULTS: dict[str, str] = {
    "OKX_BASE_URL": "https://www.okx.com",
    "COINSUM_DB": str(PROJECT_ROOT / "data" / "coinsum.duckdb"),
    "COINSUM_COINS": "",  # empty: SPEC's 27 coins
    "COINSUM_START": "2026-01-03",  # first Beijing day with partitions
}


def setting(name: str) -> str | EnvVar:
    """For resource config: the ``EnvVar`` when the variable is set, else the default."""
    return EnvVar(name) if os.environ.get(name) else DEFAULTS[name]


def value(name: str) -> str:
    """The variable's value now, or its default."""
    return os.environ.get(name) or DEFAULTS[name]


def dagster_home() -> Path:
    """``DAGSTER_HOME``, defaulting to ``.dagster_home`` in the project, with our dagster.yaml.

    Without it Dagster's CLI would use a throw-away instance that no UI sees, so the command
    line and ``coinsum dev`` agree on one instance and export it for the processes they start.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.symlink_to(PROJECT_ROOT / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
