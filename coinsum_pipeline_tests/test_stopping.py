"""Long-running commands stop when told, however they were started: here, started in the
background with SIGINT ignored, as a script's ``&``, ``nohup`` or a supervisor leaves it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coinsum_pipeline_tests.browser import free_port, wait_for_ui

pytestmark = pytest.mark.services

COINSUM = Path(sys.executable).parent / "coinsum"
STOP_SECONDS = 10


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_coinsum_dev_started_with_sigint_ignored_stops_on_sigterm_leaving_nothing(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "COINSUM_DB": str(tmp_path / "coinsum.duckdb"),
        "COINSUM_EXPORTS": str(tmp_path / "exports"),
        "COINSUM_BOARD_PORT": str(free_port()),
    }
    log = tmp_path / "dev.log"

    def as_in_the_background() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    with log.open("w") as out:
        dev = subprocess.Popen(
            [COINSUM, "dev", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=as_in_the_background,
        )
    try:
        wait_for_ui(f"http://127.0.0.1:{port}", dev, log)
        started = time.monotonic()
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"coinsum dev still running {STOP_SECONDS} s after SIGTERM; see {log}")
        deadline = started + STOP_SECONDS
        while group_alive(dev.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(dev.pid), f"a process of coinsum dev was left; see {log}"
    finally:
        if group_alive(dev.pid):
            os.killpg(dev.pid, signal.SIGKILL)
