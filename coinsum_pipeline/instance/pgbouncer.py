"""PgBouncer as production runs it (``deploy/pgbouncer.ini``), started for a trial: the tests and
benches that take the services' path to the instance through it.

Production's PgBouncer is a systemd unit of its own; a trial cannot use it (its socket folder
belongs to the ``coinsum`` user, its one database is production's), so it gets a copy of the
same settings on a socket of its own, in front of the trial's database.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coinsum_pipeline.settings import PROJECT_ROOT

PGBOUNCER = Path("/usr/sbin/pgbouncer")  # Debian's; scripts/postgres installs it
# PostgreSQL's own socket (Debian's): the URLs given to trial_pgbouncer point here.
SERVER_SOCKET = "/var/run/postgresql"


@contextmanager
def trial_pgbouncer(url: str) -> Iterator[tuple[str, int]]:
    """``url`` (a database on PostgreSQL's own socket) through a PgBouncer of its own: the URL to
    use instead, and PgBouncer's process id. PgBouncer will not run as root: then it runs as
    ``postgres`` and logs in as that role. The user running this may read its statistics
    (``SHOW STATS``). Stopped, its connections closed, when the block ends."""
    me = getpass.getuser()
    runs_as = "postgres" if os.geteuid() == 0 else me
    folder = Path(tempfile.mkdtemp(prefix="coinsum-pgbouncer-"))  # where runs_as can reach
    shutil.chown(folder, runs_as)
    config = (PROJECT_ROOT / "deploy/pgbouncer.ini").read_text()
    config = re.sub(
        r"(?m)^coinsum_dagster = .*$", f"* = host={SERVER_SOCKET} user={runs_as}", config
    )
    config = re.sub(
        r"(?m)^unix_socket_dir = .*$", f"unix_socket_dir = {folder}\nstats_users = {me}", config
    )
    (folder / "pgbouncer.ini").write_text(config)
    user = ["-u", runs_as] if os.geteuid() == 0 else []
    pooler = subprocess.Popen([PGBOUNCER, *user, folder / "pgbouncer.ini"])
    try:
        deadline = time.monotonic() + 10
        while not (folder / ".s.PGSQL.6432").exists():
            if pooler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"PgBouncer did not open its socket in {folder} (exit code "
                    f"{pooler.poll()}): its own messages are above"
                )
            time.sleep(0.05)
        yield url.replace(f"host={SERVER_SOCKET}", f"host={folder}&port=6432"), pooler.pid
    finally:
        pooler.terminate()
        pooler.wait()
        shutil.rmtree(folder)
