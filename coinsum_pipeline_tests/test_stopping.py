"""Every long-running command stops within 10 seconds when told, whatever it is doing, however it
was started, and leaves no process behind.

Two ways of being started and told: from a terminal, where Ctrl-C sends SIGINT to the whole
foreground process group; and in the background (a script's ``&``, ``nohup``, a supervisor, a
CI job), where SIGINT is inherited ignored and SIGTERM is the signal. "Nothing left" is checked
on every process the command had started by the moment it was told (its whole tree, read from
/proc), a run's worker included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from coinsum_pipeline.settings import PROJECT_ROOT
from coinsum_pipeline_tests.browser import (
    as_a_background_job,
    free_port,
    launch_backfill,
    launch_run,
    start_service,
    turn_off_live_collection,
    wait_for_ui,
)
from coinsum_pipeline_tests.helpers import Pipeline, running, tree, wait_for

pytestmark = pytest.mark.services

COINSUM = Path(sys.executable).parent / "coinsum"
STOP_SECONDS = 10
TERMINAL = "Ctrl-C in a terminal"
BACKGROUND = "SIGTERM to a background job"


def as_a_terminal_job() -> None:
    """In a child before it runs: the signals a terminal's foreground job has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(
    command: Sequence[str | Path], env: dict[str, str], log: Path, how: str
) -> subprocess.Popen:
    """``command`` as the foreground job of a terminal (a process group of its own, which a
    Ctrl-C signals as a whole) or as a background job (SIGINT ignored)."""
    as_started = as_a_background_job if how == BACKGROUND else as_a_terminal_job
    return start_service([str(part) for part in command], env, log, as_started)


def tell_to_stop(proc: subprocess.Popen, how: str, log: Path, times: int = 1) -> float:
    """Signal ``proc`` as ``how`` says (``times`` Ctrl-Cs a second apart); the seconds until it
    and everything it had started are gone. Fails past ``STOP_SECONDS``."""
    processes = tree(proc.pid)
    started = time.monotonic()
    for press in range(times):
        if press:
            time.sleep(1)
        if how == TERMINAL:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
    deadline = started + STOP_SECONDS
    while proc.poll() is None or any(running(pid) for pid in processes):
        if time.monotonic() > deadline:
            left = sorted(pid for pid in processes if running(pid))
            commands = [Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in left]
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{how}: after {STOP_SECONDS} s still running: {commands}; see {log}")
        time.sleep(0.1)
    return time.monotonic() - started


def started_runs(instance: DagsterInstance) -> list:
    return instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))


def slow_okx(pipeline: Pipeline) -> None:
    """Every OKX answer takes 3 s: a run stays in flight long enough to be stopped mid-way."""
    pipeline.okx.fault_rate = 1.0
    pipeline.okx.fault_kinds = ("timeout",)
    pipeline.okx.slow_seconds = 3


def launch_a_backfill(url: str) -> None:
    launch_backfill(url, "basket_slots", [f"2026-01-05-{h:02d}:00" for h in range(24)])


def launch_a_run(url: str) -> None:
    launch_run(url, "basket_slots", "2026-01-05-00:00")


@pytest.mark.parametrize(
    ("command", "how", "launch"),
    [
        (["coinsum", "dev"], BACKGROUND, launch_a_backfill),
        (["scripts/start"], TERMINAL, launch_a_run),
    ],
    ids=["coinsum-dev-background-backfill", "scripts-start-terminal-run"],
)
def test_dagster_stops_in_the_middle_of_a_run(
    pipeline: Pipeline,
    tmp_path: Path,
    command: list[str],
    how: str,
    launch: Callable[[str], None],
) -> None:
    """Reported: Ctrl-C on scripts/start with a run in flight took 43 s, and a second Ctrl-C
    left the code server and the run's worker running; SIGTERM to a background coinsum dev
    did nothing. Here both, mid-run (a second Ctrl-C too), the one a backfill's run (its
    daemon takes up to 30 s to launch it), the other a run launched from the UI: the run is
    marked failed, its okx pool slot freed, and nothing is left."""
    env = dict(os.environ)
    turn_off_live_collection(env)
    port = free_port()
    log = tmp_path / "dev.log"
    executable = COINSUM if command[0] == "coinsum" else PROJECT_ROOT / command[0]
    proc = start([executable, *command[1:], "-p", str(port)], env, log, how)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ui(url, proc, log)
        slow_okx(pipeline)
        launch(url)
        wait_for("a run in flight", 120, lambda: started_runs(pipeline.instance))
        time.sleep(2)
        tell_to_stop(proc, how, log, times=2 if how == TERMINAL else 1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not started_runs(pipeline.instance), "a run is left started"
    assert not pipeline.instance.event_log_storage.get_concurrency_info("okx").claimed_slots
    # What was reported printed over the prompt. (Dagster's backfill daemon may log a KeyError
    # traceback when its iteration meets the location shutting down: its own, and harmless.)
    printed = log.read_text()
    assert not re.search(r"^(KeyboardInterrupt|subprocess\.TimeoutExpired)", printed, re.M)
    assert "did not terminate cleanly" not in printed


@pytest.mark.parametrize("how", [BACKGROUND, TERMINAL])
def test_the_demo_stops_in_the_middle_of_its_backfill(tmp_path: Path, how: str) -> None:
    log = tmp_path / "demo.log"
    folder = tmp_path / "demo"
    proc = start([COINSUM, "demo", "--days", "3", "--folder", folder], dict(os.environ), log, how)
    try:
        wait_for(
            "the demo's backfill under way",
            120,
            lambda: (folder / "coinsum.duckdb").exists(),
        )
        time.sleep(1)
        tell_to_stop(proc, how, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with DagsterInstance.from_config(str(folder / "dagster_home")) as instance:
        assert not started_runs(instance), "a run of the demo's backfill is left started"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("how", [BACKGROUND, TERMINAL])
def test_a_backfill_stops_mid_run_and_its_run_is_closed(
    pipeline: Pipeline, tmp_path: Path, how: str
) -> None:
    log = tmp_path / "backfill.log"
    slow_okx(pipeline)
    command = [COINSUM, "backfill", "--from", "2026-01-05", "--to", "2026-01-05"]
    proc = start(command, dict(os.environ), log, how)
    try:
        wait_for("a run in flight", 120, lambda: started_runs(pipeline.instance))
        tell_to_stop(proc, how, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not started_runs(pipeline.instance), "the backfill's run is left started"
    assert not pipeline.instance.event_log_storage.get_concurrency_info("okx").claimed_slots


@pytest.mark.parametrize("how", [BACKGROUND, TERMINAL])
@pytest.mark.parametrize(
    ("command", "ready"),
    [
        (["serve", "board", "--port", "{port}"], "coinsum board: http"),
        (
            [sys.executable, "-m", "coinsum_pipeline.okx.fake", "--port", "{port}"],
            "fake OKX serving",
        ),
    ],
    ids=["board", "stand-in-okx"],
)
def test_the_board_and_the_stand_in_exchange_stop(
    pipeline: Pipeline, tmp_path: Path, command: list[str], ready: str, how: str
) -> None:
    log = tmp_path / "service.log"
    port = str(free_port())
    parts = [part.replace("{port}", port) for part in command]
    proc = start(
        parts if parts[0] == sys.executable else [COINSUM, *parts], dict(os.environ), log, how
    )
    try:
        wait_for("listening", 60, lambda: ready in log.read_text())
        tell_to_stop(proc, how, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_what_a_killed_supervisor_started_ends_with_it(pipeline: Pipeline, tmp_path: Path) -> None:
    """SIGKILL, which the supervisor cannot pass on (the OOM killer, kill -9): its children
    still end, each told by the kernel (no process is left running the board)."""
    log = tmp_path / "parent.log"
    parent = start(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from coinsum_pipeline.instance.services import board_command\n"
            "from coinsum_pipeline.instance.supervisor import Supervisor\n"
            "child = Supervisor('test').start(board_command(), os.environ)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        dict(os.environ),
        log,
        BACKGROUND,
    )
    try:
        wait_for("the board", 60, lambda: "coinsum board: http" in log.read_text())
        board = int(log.read_text().split()[0])
        parent.kill()
        parent.wait()
        wait_for("the board gone", STOP_SECONDS, lambda: not running(board))
    finally:
        if parent.poll() is None:
            parent.kill()
