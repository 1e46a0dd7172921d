"""The Dagster instance's home: where it is, and the settings file in it.

The one place coinsum writes to its own environment: every ``coinsum`` command, and the
processes it starts, agree on one instance through ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path

from coinsum_pipeline.settings import PROJECT_ROOT, value

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
    # A backfill the daemon looks at while the code server restarts would otherwise be failed
    # for good ("Asset basket_slots existed at storage-time, but no longer does"): with this
    # Dagster pauses it until the code location loads again. It still fails a backfill whose
    # assets are really gone from a code location that loads.
    os.environ.setdefault("DAGSTER_BACKFILL_RETRY_DEFINITION_CHANGED_ERROR", "1")
    return home


GENERATED = "# Written by coinsum from dagster.yaml and deploy/*.yaml: edit those.\n"
OURS = "# Written by coinsum"  # what every release's generated file starts with
# What is added to the project's dagster.yaml while each variable is set.
ADDITIONS = {
    "COINSUM_PG_URL": "postgres-storage.yaml",
    "COINSUM_CELERY_BROKER": "celery-run-launcher.yaml",
}


def prepare_home(home: Path) -> Path:
    """``home`` created if need be, with the project's instance settings; returns it absolute.

    Its dagster.yaml is a link to the project's (so a change there reaches every instance), or,
    while ``COINSUM_PG_URL`` or ``COINSUM_CELERY_BROKER`` is set, that file with the PostgreSQL
    storage or the Celery run launcher added, rewritten at each start. A dagster.yaml of the
    user's own (neither) is left alone.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    ours = config.is_symlink() or not config.exists() or config.read_text().startswith(OURS)
    if not ours:
        return home
    staging = home / f".dagster.yaml.{os.getpid()}"  # then one rename: never half a file
    staging.unlink(missing_ok=True)
    added = [PROJECT_ROOT / "deploy" / part for name, part in ADDITIONS.items() if value(name)]
    if added:
        parts = [PROJECT_ROOT / "dagster.yaml", *added]
        text = GENERATED + "\n".join(part.read_text() for part in parts)
        if config.is_symlink() or not config.exists() or config.read_text() != text:
            staging.write_text(text)
            staging.replace(config)
    elif not config.is_symlink():
        staging.symlink_to(PROJECT_ROOT / "dagster.yaml")
        staging.replace(config)
    return home
