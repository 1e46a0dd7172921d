"""A Redis of its own for a trial of the Celery run workers: the tests and benches that run them.

Production's Redis is Debian's ``redis-server`` unit (docs/operations.md#workers); a trial gets
its own on a free loopback port, keeping nothing on disk, so it shares no queue with another.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_SERVER = Path("/usr/bin/redis-server")  # Debian's; scripts/test installs it


@contextmanager
def trial_redis() -> Iterator[str]:
    """A new Redis on a free loopback port, as a broker URL; stopped when the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="coinsum-redis-"))
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Redis did not listen on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder)
