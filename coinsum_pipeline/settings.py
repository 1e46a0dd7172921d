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


# More than a run's slots (288), so a run's materializations are one batch.
EVENT_BATCH_SIZE = "1000"


def dagster_home() -> Path:
    """``DAGSTER_HOME``, defaulting to ``.dagster_home`` in the project, with our dagster.yaml.

    Without it Dagster's CLI would use a throw-away instance that no UI sees, so the command
    line and ``coinsum dev`` agree on one instance and export it for the processes they start.
    """
    home = prepare_home(Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)
    # Dagster hands a run's partition materializations to the storage as one batch when this
    # is set (it is off by default): PostgreSQL writes them in one insert instead of one each,
    # SQLite one by one as before. The processes started from here inherit it.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
    return home


GENERATED = "# Written by coinsum from dagster.yaml and deploy/postgres-storage.yaml: edit those.\n"


def prepare_home(home: Path) -> Path:
    """``home`` created if need be, with the project's instance settings; returns it absolute.

    Its dagster.yaml is a link to the project's (so a change there reaches every instance), or,
    while ``COINSUM_PG_URL`` is set, that file with the PostgreSQL storage added, rewritten at
    each start. A dagster.yaml of the user's own (neither) is left alone.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    ours = config.is_symlink() or not config.exists() or config.read_text().startswith(GENERATED)
    if not ours:
        return home
    staging = home / f".dagster.yaml.{os.getpid()}"  # then one rename: never half a file
    staging.unlink(missing_ok=True)
    if value("COINSUM_PG_URL"):
        parts = [PROJECT_ROOT / "dagster.yaml", PROJECT_ROOT / "deploy" / "postgres-storage.yaml"]
        text = GENERATED + "\n".join(part.read_text() for part in parts)
        if config.is_symlink() or not config.exists() or config.read_text() != text:
            staging.write_text(text)
            staging.replace(config)
    elif not config.is_symlink():
        staging.symlink_to(PROJECT_ROOT / "dagster.yaml")
        staging.replace(config)
    return home
