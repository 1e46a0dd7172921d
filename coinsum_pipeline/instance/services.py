"""How coinsum runs Dagster's long-running processes, and how it stops them.

``coinsum dev`` is ``dagster dev``: the UI and the daemon in one process tree, for a desk.
``coinsum serve code``, ``webserver`` and ``daemon`` are Dagster's production services, as its
deployment docs lay them out: one long-lived code server that loads coinsum's definitions and
runs the runs, and the webserver and the daemon connecting to it; ``coinsum serve board`` is the
traders' page. Each is what a systemd unit in ``deploy/`` runs. ``coinsum dev`` and the demo
start the board beside Dagster.

Every one of them runs under a supervisor (``supervisor.py``), which is what makes them stop
when told. ``dagster dev`` runs from ``DAGSTER_HOME``: run from the project folder, which holds
the ``dagster.yaml`` that the home links to, Dagster would warn that this file "will not be used"
(it is used, through the link). Its notice that ``dagster dev`` is superseded by ``dg dev`` (a
separate package, ``dagster-dg-cli``, that coinsum does not need) is filtered out: it is not
something a user of coinsum can act on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from coinsum_pipeline.settings import PROJECT_ROOT, value

# Python's -W syntax: the start of the message, any warning category.
QUIET = "ignore:Function `dev_command` is superseded"
LOCATION = "coinsum"


def dev_command(extra: list[str]) -> list[str]:
    """``dagster dev`` of this environment (not whatever ``dagster`` is first on PATH) on the
    project's workspace; ``extra`` are the user's own options (port, host)."""
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *extra]


def service_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with Dagster's notices that users cannot act on filtered out."""
    warnings = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET]))
    return {**env, "PYTHONWARNINGS": warnings}


def code_server_address() -> tuple[str, int]:
    """Where ``coinsum serve code`` listens and the webserver and the daemon find it."""
    host, _, port = value("COINSUM_CODE_SERVER").rpartition(":")
    return host or "127.0.0.1", int(port)


# How often the webserver and the daemon look for a restarted code server (``code_watch.py``).
WATCH_SECONDS = 10


def serve_command(service: str, home: Path, host: str, port: int) -> list[str]:
    """The production service ``service`` (``code``, ``webserver`` or ``daemon``); the
    webserver listens on ``host``:``port``, and it and the daemon load coinsum's code from
    the code server (the workspace file ``code_workspace`` writes), watching it for restarts
    every ``WATCH_SECONDS``."""
    if service == "code":
        bin_dir = Path(sys.executable).parent
        code_host, code_port = code_server_address()
        return [
            str(bin_dir / "dagster"),
            *("api", "grpc", "-m", "coinsum_pipeline.definitions"),
            *("--location-name", LOCATION, "-h", code_host, "-p", str(code_port)),
        ]
    workspace = ["-w", str(home / "workspace.yaml")]
    watching = [sys.executable, "-m", "coinsum_pipeline.instance.code_watch"]
    if service == "webserver":
        return [*watching, "dagster-webserver", *workspace, "-h", host, "-p", str(port)]
    return [*watching, "dagster-daemon", "run", *workspace]


def code_server_health_check() -> list[str]:
    """Dagster's own check: succeeds once the code server on ``COINSUM_CODE_SERVER`` answers."""
    host, port = code_server_address()
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "api", "grpc-health-check", "-h", host, "-p", str(port)]


def wait_for_code_server(service: str) -> None:
    """Return once ``coinsum serve code`` answers (Dagster's own health check): the webserver
    and the daemon load the code location once, as they start, so started before it they would
    show it as unreachable."""
    host, port = code_server_address()
    told = False
    while subprocess.run(code_server_health_check(), capture_output=True).returncode:
        if not told:
            print(
                f"coinsum serve {service}: waiting for the code server on {host}:{port} "
                "(`coinsum serve code`, the coinsum-code unit; COINSUM_CODE_SERVER)",
                flush=True,
            )
            told = True
        time.sleep(1)


def code_workspace(home: Path) -> None:
    """The workspace of the webserver and the daemon in ``home``: coinsum's location, served by
    ``coinsum serve code`` (named as ``dagster dev`` names it, so schedules and sensors keep the
    state stored under that name)."""
    host, port = code_server_address()
    staging = home / f".workspace.yaml.{os.getpid()}"  # then one rename: never half a file
    staging.write_text(
        "# Written by `coinsum serve`: the code location is served by `coinsum serve code`.\n"
        "load_from:\n"
        f"  - grpc_server:\n      host: {host}\n      port: {port}\n"
        f"      location_name: {LOCATION}\n"
    )
    staging.replace(home / "workspace.yaml")


def worker_command(runs: str, name: str, concurrency: int) -> list[str]:
    """A Celery worker for the runs of ``runs`` (``WORKER_QUEUES``): what ``coinsum serve
    worker`` and its unit run (``workers.py``)."""
    module = "coinsum_pipeline.instance.workers"
    return [sys.executable, "-m", module, runs, name, str(concurrency)]


def board_command() -> list[str]:
    """The board, on ``COINSUM_BOARD_PORT``: what ``coinsum dev`` and the demo start beside
    Dagster."""
    return [str(Path(sys.executable).parent / "coinsum"), "serve", "board"]
