"""What the tests that drive the Dagster UI share: the browser, a free port, its GraphQL API.

Needs Debian's chromium (`.ci/run` installs it) and Playwright's Python client, which drives
that browser (no browser download). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
  }
}"""

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium here (`apt-get install chromium`); CI installs it and runs this",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql_up(url: str) -> bool:
    try:
        answer = requests.post(f"{url}/graphql", json={"query": "{ version }"}, timeout=5)
        return answer.ok and "data" in answer.json()
    except requests.RequestException:
        return False


def graphql(url: str, query: str, variables: dict) -> dict:
    answer = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def turn_off_live_collection(env: dict[str, str]) -> None:
    """Stop, in the instance ``env`` names, what collects on the real clock, as a user would in
    the UI: the live schedule, gap repair (today's slots and the last 48 hours) and the
    re-collections (the day so far every three hours, yesterday at 00:03), beside what a test
    launches and counts. Before any service runs: through Dagster's GraphQL API without a
    server (``dagster-graphql``), two commands that each load the code location once."""
    command = Path(sys.executable).parent / "dagster-graphql"
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"

    def ask(query: str, variables: dict) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            answer = Path(folder) / "answer.json"
            # No pipes: the code server the command starts may outlive it for a while.
            subprocess.run(
                [command, "-w", workspace, "-t", query, "-v", json.dumps(variables), "-o", answer],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=True,
            )
            body = json.loads(answer.read_text())
        assert "errors" not in body, body["errors"]
        return body["data"]

    _stop_live_collection(ask)


def stop_live_collection(url: str) -> None:
    """``turn_off_live_collection`` through a running UI's GraphQL API, as its toggles do: for
    the services' tests, which start the daemon only afterwards."""
    _stop_live_collection(lambda query, variables: graphql(url, query, variables))


LIVE_COLLECTION = {
    "schedules": ("live_slots", "recollect_today", "recollect_yesterday"),
    "sensors": ("gap_repair",),
}
FIND_INSTIGATORS = """query Find($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    ... on Repository { schedules { id name } sensors { id name } } } }"""
# The UI's toggles, by the ids FIND_INSTIGATORS gives.
STOP = {"schedules": "stopRunningSchedule", "sensors": "stopSensor"}
STOPPED = ("ScheduleStateResult", "StopSensorMutationResult")


def _stop_live_collection(ask: Callable[[str, dict], dict]) -> None:
    repository = {"repositoryLocationName": "coinsum", "repositoryName": "__repository__"}
    (found,) = ask(FIND_INSTIGATORS, {"selector": repository}).values()
    ids = {kind: {i["name"]: i["id"] for i in found[kind]} for kind in LIVE_COLLECTION}
    stops = [
        f'{name}: {STOP[kind]}(id: "{ids[kind][name]}") {{ __typename }}'
        for kind, names in LIVE_COLLECTION.items()
        for name in names
    ]
    stopped = ask(f"mutation {{ {' '.join(stops)} }}", {})
    assert {answer["__typename"] for answer in stopped.values()} <= set(STOPPED), stopped


def start_services(env: dict[str, str], log: Path, port: int) -> dict[str, subprocess.Popen]:
    """``coinsum serve code``, ``webserver`` (on ``port``) and ``daemon``, as their units run
    them, their output appended to ``log``; live collection is stopped through the UI before
    the daemon starts, so only what the test launches runs."""
    coinsum = Path(sys.executable).parent / "coinsum"
    services = {
        "code": start_service([coinsum, "serve", "code"], env, log),
        "webserver": start_service([coinsum, "serve", "webserver", "--port", str(port)], env, log),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ui(url, services["webserver"], log)
        stop_live_collection(url)
    except BaseException:
        for proc in services.values():
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    services["daemon"] = start_service([coinsum, "serve", "daemon"], env, log)
    return services


def as_a_background_job() -> None:
    """In a child before it runs: the signals as a script's ``&`` or a supervisor leaves them
    (SIGINT ignored), which services must stop under all the same."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_service(
    command: Sequence[str | Path],
    env: dict[str, str],
    log: Path,
    as_started: Callable[[], None] = as_a_background_job,
) -> subprocess.Popen:
    """``command`` in a process group of its own, as a background job (or as ``as_started``
    sets its signals), its output appended to ``log``."""
    with log.open("a") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=as_started,
        )


@contextmanager
def serving(command: Sequence[str | Path], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run ``command`` (which serves the UI on the port in it) until the block ends, waiting
    for its GraphQL API first; its output goes to ``log``."""
    url = f"http://127.0.0.1:{command[command.index('-p') + 1]}"
    proc = start_service(command, env, log)
    try:
        wait_for_ui(url, proc, log)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_ui(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while not graphql_up(url):
        assert proc.poll() is None, f"{proc.args[0]} exited; see {log}"
        assert time.monotonic() < deadline, f"the Dagster UI did not come up; see {log}"
        time.sleep(1)


def launch_backfill(url: str, asset: str, partitions: list[str]) -> str:
    """What the UI's "Materialize…" dialog sends; returns the backfill's id."""
    params = {"assetSelection": [{"path": [asset]}], "partitionNames": partitions}
    launched = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def launch_run(url: str, asset: str, partition: str) -> str:
    """What the UI's "Materialize selected" sends for one partition; returns the run's id."""
    params = {
        "selector": {
            "repositoryLocationName": "coinsum",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [asset]}],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_backfill(url: str, backfill_id: str, seconds: float = 300) -> None:
    """Until the backfill daemon has finished the backfill, successfully."""
    deadline = time.monotonic() + seconds
    while True:
        status = graphql(url, STATUS, {"id": backfill_id})
        state = status["partitionBackfillOrError"]["status"]
        if state in ("COMPLETED", "COMPLETED_SUCCESS"):
            return
        assert state in ("REQUESTED", "IN_PROGRESS"), f"backfill ended {state}"
        assert time.monotonic() < deadline, f"backfill still {state} after {seconds} s"
        time.sleep(2)


def backfill_through_the_ui(url: str, asset: str, partitions: list[str]) -> None:
    wait_for_backfill(url, launch_backfill(url, asset, partitions))


@contextmanager
def browser_page() -> Iterator:
    """A page of headless Debian chromium, 1600 x 1200, driven by Playwright (its screenshots
    go to ``ARTIFACTS``)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: `apt-get install chromium`"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1200})
        finally:
            browser.close()
