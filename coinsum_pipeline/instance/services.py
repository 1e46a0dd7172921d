"""How coinsum starts Dagster's long-running processes: the command line and environment.

``coinsum dev`` is ``dagster dev``: the UI and the daemon in one process tree, for a desk.
``coinsum serve webserver`` and ``coinsum serve daemon`` are the two production services of
Dagster, ``coinsum serve board`` the traders' page (each its own process, restarted on its own,
stopped by SIGTERM within a second or two): what the systemd units in ``deploy/`` run.
``coinsum dev`` and the demo start the board beside Dagster, ending with it.

``dagster dev`` runs from ``DAGSTER_HOME``: run from the project folder, which holds the
``dagster.yaml`` that the home links to, Dagster would warn that this file "will not be used"
(it is used, through the link). Its notice that ``dagster dev`` is superseded by ``dg dev`` (a
separate package, ``dagster-dg-cli``, that coinsum does not need) is filtered out: it is not
something a user of coinsum can act on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from coinsum_pipeline.settings import PROJECT_ROOT

# Python's -W syntax: the start of the message, any warning category.
QUIET = "ignore:Function `dev_command` is superseded"


def dev_command(extra: list[str]) -> list[str]:
    """``dagster dev`` of this environment (not whatever ``dagster`` is first on PATH) on the
    project's workspace; ``extra`` are the user's own options (port, host)."""
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *extra]


def service_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` with Dagster's notices that users cannot act on filtered out."""
    warnings = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET]))
    return {**env, "PYTHONWARNINGS": warnings}


def serve_command(service: str, host: str, port: int) -> list[str]:
    """The production service ``service`` (``webserver`` or ``daemon``) on the project's
    workspace; the webserver listens on ``host``:``port``."""
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    if service == "webserver":
        return [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port)]
    return [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]


def exec_in_home(command: list[str], home: Path) -> NoReturn:
    """Replace this process with ``command``, run from ``home`` (see above).

    SIGINT back to its default first: a process started in the background by a script or a
    supervisor inherits it ignored, and ``dagster dev`` makes SIGTERM do whatever SIGINT does,
    so it would then ignore SIGTERM too and only SIGKILL could stop it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(home)
    os.execve(command[0], command, service_environment(dict(os.environ)))


def start_board_beside(env: Mapping[str, str]) -> subprocess.Popen:
    """The board, on ``COINSUM_BOARD_PORT``, as a child that ends when its parent does (a Ctrl-C
    in the terminal reaches it directly): for ``coinsum dev`` and the demo."""
    coinsum = str(Path(sys.executable).parent / "coinsum")
    return subprocess.Popen([coinsum, "serve", "board", "--with-parent"], env=dict(env))
