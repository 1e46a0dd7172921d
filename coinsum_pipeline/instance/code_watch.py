"""The webserver and the daemon, looking for a restarted code server every 10 s, not every second.

Both ask the code server for its id (a new gRPC connection each time) to notice that it was
restarted and take its new code. Dagster asks every second and has no setting for it: the
interval is a private constant, ``dagster._grpc.server_watcher.WATCH_INTERVAL``, read when the
watch starts. Every second it cost the idle services more than anything else of Dagster's
(docs/operations.md#idle). Every 10 s, a restarted code server's new code reaches the UI and the
daemon within 10 s; runs launch on it in the meantime all the same, since every call to it opens
its own connection. ``test_dagster_compat.py`` fails if Dagster stops reading the constant.

    python -m coinsum_pipeline.instance.code_watch dagster-webserver ARGS...

runs that command of Dagster's (a console script of this environment) in this process, with the
watch set first, and for the webserver its web server waking once a second (``web_ticks.py``).
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import dagster._grpc.server_watcher as server_watcher

from coinsum_pipeline.instance.services import WATCH_SECONDS
from coinsum_pipeline.web_ticks import tick_once_a_second


def watch_less_often() -> None:
    """From now on, watches of a code server that start in this process ask every
    ``WATCH_SECONDS``."""
    server_watcher.WATCH_INTERVAL = WATCH_SECONDS


def main() -> None:
    """Run the console script named by the first argument with the others, idling as above."""
    command, *args = sys.argv[1:]
    (script,) = entry_points(group="console_scripts", name=command)
    watch_less_often()
    if command == "dagster-webserver":
        tick_once_a_second()
    sys.argv = [command, *args]
    sys.exit(script.load()())


if __name__ == "__main__":
    main()
