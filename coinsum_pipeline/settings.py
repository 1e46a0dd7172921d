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
    "OKX_TIMEOUT_SECONDS": "10",  # per request; a slower answer is retried
    "COINSUM_DB": str(PROJECT_ROOT / "data" / "coinsum.duckdb"),
    # how long a write waits for a session outside coinsum holding COINSUM_DB, then fails
    "COINSUM_DB_WAIT_SECONDS": "60",
    "COINSUM_EXPORTS": str(PROJECT_ROOT / "data" / "exports"),  # CSVs and charts, per day
    # empty: the database's basket (SPEC's 27 for a new one); see basket.py
    "COINSUM_COINS": "",
    "COINSUM_START": "2026-01-03",  # first Beijing day with partitions
    "COINSUM_MAX_MOVE_PCT": "10",  # a 30-minute move beyond this is flagged by a check
}


def setting(name: str) -> EnvVar:
    """For resource config: an ``EnvVar``, read when a run starts, never frozen at import.

    An unset variable gets its default in this process's environment first, which the run
    workers Dagster starts from here inherit.
    """
    if not os.environ.get(name):
        os.environ[name] = DEFAULTS[name]
    return EnvVar(name)


def int_setting(name: str) -> EnvVar:
    """``setting`` for a whole-number variable."""
    setting(name)
    return EnvVar.int(name)


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
