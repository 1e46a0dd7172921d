"""Every setting coinsum reads from the environment, with its default and meaning: one table.

The Dagster resources get each setting through ``configured``: an ``EnvVar`` when the variable is
set (Dagster reads it when a run starts, and the UI shows where it came from), its default when
not. The command line reads the same table through ``value``. Nothing here writes to the
environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dagster import EnvVar

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    default: str
    meaning: str
    kind: type[str] | type[int] | type[float] = str


SETTINGS: dict[str, Setting] = {
    "OKX_BASE_URL": Setting(
        "https://www.okx.com", "OKX host; a regional host, or the local stand-in"
    ),
    "OKX_TIMEOUT_SECONDS": Setting("10", "per OKX request; a slower answer is retried", kind=int),
    "COINSUM_DB": Setting(
        str(PROJECT_ROOT / "data" / "coinsum.duckdb"),
        "the pipeline's DuckDB file; readers use *.read.duckdb beside it",
    ),
    "COINSUM_DB_WAIT_SECONDS": Setting(
        "60",
        "how long a write waits for a session outside coinsum that holds COINSUM_DB",
        kind=int,
    ),
    "COINSUM_EXPORTS": Setting(
        str(PROJECT_ROOT / "data" / "exports"),
        "CSVs and charts: a folder per Beijing day, ranges/ for ranges",
    ),
    "COINSUM_COLORS": Setting(
        "cn",
        "the pictures' and the board's colours: cn (red up, green down, as China's markets) or "
        "west",
    ),
    "COINSUM_BOARD_PORT": Setting(
        "3001", "the board's port when scripts/start or the demo starts it", kind=int
    ),
    "COINSUM_CODE_SERVER": Setting(
        "127.0.0.1:4266",
        "where `coinsum serve code` listens, and the webserver and the daemon find it",
    ),
    "COINSUM_DAGSTER_URL": Setting(
        "http://127.0.0.1:3000",
        "the Dagster UI as the board's readers reach it: the board links each slot and day there",
    ),
    "COINSUM_COINS": Setting(
        "", "the basket of a new database; empty: the database's basket (the default 27 when new)"
    ),
    "COINSUM_START": Setting(
        "2026-01-03", "first Beijing day with partitions (read when the code location loads)"
    ),
    "COINSUM_MAX_MOVE_PCT": Setting(
        "10", "a 30-minute move beyond this many percent is flagged by a check", kind=float
    ),
    "COINSUM_PG_URL": Setting(
        "",
        "the Dagster instance's PostgreSQL (runs, events, schedules), e.g. "
        "postgresql+psycopg2://coinsum@/dagster?host=/var/run/postgresql; empty: SQLite files in "
        "DAGSTER_HOME",
    ),
    "COINSUM_CELERY_BROKER": Setting(
        "",
        "the Redis that hands runs to `coinsum serve worker` processes (Dagster's Celery run "
        "launcher), e.g. redis://127.0.0.1:6379/0; empty: runs start beside the code server",
    ),
    "COINSUM_ALERT_WEBHOOK": Setting("", "where alerts are POSTed; empty: alerts are off"),
    "COINSUM_ALERT_FORMAT": Setting("json", "the alert's body: json, slack, dingtalk or feishu"),
    "COINSUM_ALERT_LEVELS": Setting(
        "20,-20", "levels of the basket sum whose crossing is alerted (a comma list)"
    ),
    "COINSUM_ALERT_MOVE_PCT": Setting(
        "5", "alert when the sum moves more than this many points in one slot; 0: never", float
    ),
    "COINSUM_ALERT_RETRY_SECONDS": Setting(
        "30", "wait between the 4 tries of a delivery that failed", kind=int
    ),
}


def value(name: str) -> str:
    """The variable's value now, or its default."""
    return os.environ.get(name) or SETTINGS[name].default


def configured(name: str) -> str | int | float | EnvVar:
    """A setting as resource config: its ``EnvVar`` when the variable is set, else its default.

    Dagster has no ``EnvVar`` for decimals: those are read when the definitions load.
    """
    setting = SETTINGS[name]
    if os.environ.get(name) and setting.kind is str:
        return EnvVar(name)
    if os.environ.get(name) and setting.kind is int:
        return EnvVar.int(name)
    return setting.kind(value(name))
