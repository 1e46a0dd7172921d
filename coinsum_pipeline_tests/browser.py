"""What the tests that drive the Dagster UI share: the browser, a free port, its GraphQL API.

Needs Debian's chromium (`.ci/run` installs it) and Playwright's Python client, which drives
that browser (no browser download). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
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


@contextmanager
def serving(command: Sequence[str | Path], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run ``command`` (which serves the UI on the port in it) until the block ends, waiting
    for its GraphQL API first; its output goes to ``log``."""
    url = f"http://127.0.0.1:{command[command.index('-p') + 1]}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one kill ends webserver, daemon, code
            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 180
            while not graphql_up(url):
                assert proc.poll() is None, f"{command[0]} exited; see {log}"
                assert time.monotonic() < deadline, f"the Dagster UI did not come up; see {log}"
                time.sleep(1)
            yield
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
