"""Idle cost: production's services with nothing due, their CPU and memory over a window.

A new instance (PostgreSQL through PgBouncer, as production; ``--direct``: PostgreSQL's own
socket) and DuckDB file; today so far backfilled from the
stand-in OKX (on the real clock, in this process); what collects on the clock turned off (the
live schedule, the re-collections, gap repair: nothing is due); then ``coinsum serve`` for each
service, as the systemd units run them. After a minute's warm-up, the window: the CPU seconds
of every service's process tree (a process that ended inside it counts through its parent),
the resident memory of the trees (sampled every 5 s; the peak), and how many processes came
and went; and the CPU of PostgreSQL (every connection's process) and PgBouncer answering them.

    .venv/bin/python bench/idle.py                        # 600 s, every service coinsum has
    .venv/bin/python bench/idle.py --seconds 120 --services webserver,daemon
    PYTHONPATH=/tmp/old .venv/bin/python bench/idle.py    # an earlier coinsum's services
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from postgres import drop_database, new_database

from coinsum_pipeline.core.slots import BEIJING
from coinsum_pipeline.instance.pgbouncer import trial_pgbouncer
from coinsum_pipeline.okx.fake import FakeOKX

ROOT = Path(__file__).resolve().parent.parent
COINSUM = str(ROOT / ".venv/bin/coinsum")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def processes() -> dict[int, tuple[int, int, int]]:
    """{pid: (parent, CPU ticks of itself and its waited-for children, resident pages)}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            pages = int((entry / "statm").read_text().split()[1])
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (int(fields[1]), sum(map(int, fields[11:15])), pages)
    return found


def trees(
    roots: list[int], table: dict[int, tuple[int, int, int]] | None = None
) -> dict[int, tuple[int, int, int]]:
    """The processes under ``roots`` (themselves included) in ``table`` (default: now)."""
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        found[pid] = table[pid]
        todo.extend(children.get(pid, []))
    return found


def postmaster() -> int:
    """PostgreSQL's server process: its tree holds every connection's backend, and the CPU of
    backends that ended counts in its children's ticks."""
    table = processes()
    return next(
        pid
        for pid in sorted(table)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
        and Path(f"/proc/{table[pid][0]}/comm").read_text().strip() != "postgres"
    )


def turn_off_collection(env: dict[str, str]) -> None:
    """The tests' turn_off_live_collection, which a bench may not import (test_layout)."""
    dagster = str(ROOT / ".venv/bin/dagster")
    for kind, name in (
        ("schedule", "live_slots"),
        ("schedule", "recollect_today"),
        ("schedule", "recollect_yesterday"),
        ("sensor", "gap_repair"),
    ):
        subprocess.run(
            [dagster, kind, "stop", name, "-w", str(ROOT / "workspace.yaml")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--services", default="code,webserver,daemon,board")
    parser.add_argument(
        "--port", type=int, default=3100, help="the webserver's; the board's is the next one"
    )
    parser.add_argument(
        "--direct", action="store_true", help="PostgreSQL's own socket, without PgBouncer"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coinsum-idle-"))
    okx = FakeOKX()
    today = datetime.now(BEIJING).date().isoformat()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "home"),
        "COINSUM_DB": str(work / "coinsum.duckdb"),
        "COINSUM_EXPORTS": str(work / "exports"),
        "OKX_BASE_URL": okx.start(),
        "COINSUM_START": today,
        "COINSUM_CODE_SERVER": f"127.0.0.1:{args.port + 2}",
    }
    database, env["COINSUM_PG_URL"] = new_database("coinsum_idle")
    log = (work / "services.log").open("w")
    started: list[subprocess.Popen] = []
    pooling = contextlib.ExitStack()  # stopped after the services
    try:
        answering = [postmaster()]  # PostgreSQL, and PgBouncer in front of it
        if not args.direct:
            url = env["COINSUM_PG_URL"]
            env["COINSUM_PG_URL"], pooler = pooling.enter_context(trial_pgbouncer(url))
            answering.append(pooler)
        subprocess.run(
            [COINSUM, "backfill", "--from", today, "--to", today],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        turn_off_collection(env)
        ports = {"webserver": ["--port", str(args.port)], "board": ["--port", str(args.port + 1)]}
        for service in args.services.split(","):
            started.append(
                subprocess.Popen(
                    [COINSUM, "serve", service, *ports.get(service, [])],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        roots = [proc.pid for proc in started]
        time.sleep(60)
        first, server_first = trees(roots), trees(answering)
        seen, peak = set(first), sum(pages for _, _, pages in first.values())
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(5)
            now = trees(roots)
            seen |= set(now)
            peak = max(peak, sum(pages for _, _, pages in now.values()))
        last, server_last = trees(roots), trees(answering)
        # A process alive at both ends counts its difference; one that ended inside the
        # window counts through its parent's children's ticks.
        cpu = (sum(t for _, t, _ in last.values()) - sum(t for _, t, _ in first.values())) / TICKS
        names = args.services.split(",")
        each = {
            name: sum(t for _, t, _ in trees([root]).values())
            - sum(t for _, t, _ in trees([root], first).values())
            for name, root in zip(names, roots, strict=True)
        }
        print(f"services {args.services}; work folder {work}; log {log.name}")
        print(f"window {args.seconds} s after a 60 s warm-up")
        print(f"CPU {cpu:.1f} s = {cpu / args.seconds:.1%} of a core: ", end="")
        shares = (f"{name} {ticks / TICKS / args.seconds:.1%}" for name, ticks in each.items())
        print(", ".join(shares))
        server = sum(t for _, t, _ in server_last.values()) - sum(
            t for _, t, _ in server_first.values()
        )
        servers = "PostgreSQL" + ("" if args.direct else " and PgBouncer")
        print(f"{servers}, answering them: {server / TICKS / args.seconds:.1%} of a core")
        resident = sum(pages for *_, pages in last.values()) * PAGE / 2**20
        print(f"memory (resident, every process) {resident:.0f} MiB at the end, ", end="")
        print(f"{peak * PAGE / 2**20:.0f} MiB at the peak")
        print(f"processes: {len(first)} at the start, {len(last)} at the end, {len(seen)} seen")
        warnings = (work / "services.log").read_text().count("No heartbeat received")
        print(f"'No heartbeat received' warnings in the log: {warnings}")
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):  # an earlier coinsum's leftovers
                os.killpg(proc.pid, signal.SIGKILL)
        okx.stop()
        pooling.close()
        drop_database(database)


if __name__ == "__main__":
    sys.exit(main())
