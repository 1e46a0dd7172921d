"""The parent of a command's long-running processes, which stops them all when told.

Deliberately light (the standard library only, Dagster imported only to close runs once
stopped): ``coinsum serve`` and ``coinsum dev`` prepare what they need, then replace themselves
with this module, so each service keeps a supervisor of about 10 MB instead of a second copy of
Dagster's 160 MB. ``python -m coinsum_pipeline.instance.supervisor JSON`` runs ``supervise``
with the arguments in JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long the children have to stop on their own before what is left of them is killed: the
# UI and the daemon stop in one to two seconds; a run in flight would take as long as it has left.
STOP_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _as_a_child_of_a_supervisor() -> None:
    """In a child, before it runs: its own signal handling, and SIGTERM when the supervisor dies
    (even by SIGKILL, which it cannot pass on), so nothing outlives it."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _prctl(option: int, arg: int) -> None:
    """Linux's process controls, where there are any (a desk on macOS goes without)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(option, arg)


class Supervisor:
    """The parent of a command's long-running processes, which stops them all when told.

    Each child runs in a session of its own with default signal handling, so that:
    - a Ctrl-C in a terminal reaches this process alone, not every process of Dagster's tree
      at once (which stopped the UI, the daemon, the code server and a run's worker each in its
      own time, printed tracebacks over the prompt, and left orphans on a second Ctrl-C);
    - a child started from a background job or a supervisor, where SIGINT is inherited ignored,
      still stops: Dagster's processes make SIGTERM do what SIGINT does, so they ignored both.
    SIGTERM, SIGINT or SIGHUP here sends SIGTERM to each child; after ``STOP_GRACE_SECONDS``
    whatever is left of their sessions (a code server, a run's worker mid-run) is killed, and a
    second signal kills at once. Where the children run runs (``runs_home``, their instance's
    home), the runs whose worker is gone are closed before the children start (a predecessor's,
    killed) and after they stop (a run killed mid-way), so none holds the okx pool; run retries
    collect them again once Dagster runs again. With ``ready`` (a command that succeeds once the
    children serve), the predecessor's are closed only then, and ``settle_seconds`` later: closing
    one starts its retry at once in a running daemon, and a retry asked of a daemon that does not
    see the code server yet (it looks for a restarted one only now and then) is given up for good.
    Processes a child leaves behind become this process's children (Linux's "child
    subreaper"), so it can wait until none is left."""

    def __init__(
        self,
        name: str,
        runs_home: Path | None = None,
        ready: Sequence[str] | None = None,
        settle_seconds: float = 0,
    ) -> None:
        self.name = name
        self.children: list[subprocess.Popen] = []
        self.stop_signal: int | None = None
        self._runs_home = runs_home
        self._ready = list(ready) if ready else None
        self._settle_seconds = settle_seconds
        if self._ready is None:
            self._close_runs_left_started()
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is not None:
            self._kill_sessions()
        self.stop_signal = signum

    def start(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.Popen:
        """``command`` as a child in a session of its own."""
        child = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_as_a_child_of_a_supervisor,
        )
        self.children.append(child)
        return child

    def run(self, main: subprocess.Popen) -> int:
        """Wait until ``main`` ends or a stop is asked, then stop every child. ``main``'s exit
        code; 0 when stopped by a signal, as asked."""
        if self._ready:
            while (
                subprocess.run(self._ready, capture_output=True).returncode
                and main.poll() is None
                and self.stop_signal is None
            ):
                time.sleep(1)
            self._sleep_until_told(main, self._settle_seconds)
            if main.poll() is None and self.stop_signal is None:
                self._close_runs_left_started()
        self._sleep_until_told(main)
        self.stop()
        return 0 if self.stop_signal is not None else main.returncode

    def _sleep_until_told(self, main: subprocess.Popen, seconds: float | None = None) -> None:
        """Until ``main`` ends, a stop signal comes or ``seconds`` pass, asleep: a service's
        supervisor runs for months, and waking five times a second to look cost CPU all along
        (operations.md#idle). A signal writes to the "wakeup" pipe (the C-level handler, before
        ours runs), and the end of ``main`` makes its pidfd readable (Linux; elsewhere, a look
        every 0.2 s)."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        ended = [os.pidfd_open(main.pid)] if hasattr(os, "pidfd_open") else []
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while main.poll() is None and self.stop_signal is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                if not ended:  # no pidfd: a look every 0.2 s
                    left = 0.2 if left is None else min(left, 0.2)
                select.select([read, *ended], [], [], left)
        finally:
            signal.set_wakeup_fd(previous)
            for fd in (read, write, *ended):
                os.close(fd)

    def stop(self) -> None:
        """Stop the children as described above, and forget them; returns when none of their
        processes is left."""
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(child.poll() is None for child in self.children):
            if time.monotonic() > deadline:
                print(
                    f"{self.name}: still running {STOP_GRACE_SECONDS:.0f} s after SIGTERM; killed",
                    file=sys.stderr,
                    flush=True,
                )
                break
            time.sleep(0.1)
        self._kill_sessions()
        for child in self.children:
            child.wait()
        while any(_session_alive(child.pid) for child in self.children):
            try:
                os.waitpid(-1, os.WNOHANG)  # what the children left, killed above
            except ChildProcessError:
                break  # not ours to wait for (no subreaper): init does
            time.sleep(0.02)
        self.children.clear()
        self._close_runs_left_started()

    def _close_runs_left_started(self) -> None:
        if self._runs_home is None:
            return
        from dagster import DagsterInstance

        from coinsum_pipeline.instance.runs import (
            close_dead_backfill_runs,
            close_orphaned_daemon_runs,
        )

        with DagsterInstance.from_config(str(self._runs_home)) as instance:
            closed = close_dead_backfill_runs(instance) + close_orphaned_daemon_runs(instance)
        for run_id in closed:
            print(f"{self.name}: run {run_id} was left started, its worker gone; marked failed")

    def _kill_sessions(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


def _session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def stopping_within(name: str, on_overdue: Callable[[], None]) -> Iterator[threading.Event]:
    """For a command that runs Dagster runs in its own process (``coinsum backfill``): SIGTERM
    and SIGINT set the event (even when SIGINT was inherited ignored), which the command checks
    between runs; a run under way is interrupted by Dagster and reported failed. Nothing is
    raised at a random point of the command's own code (a KeyboardInterrupt inside a database
    driver prints its traceback over the terminal).

    Dagster swaps the signal handlers while a run executes, so a handler of the command's own
    cannot be relied on to see the signal. The C-level handler writes every signal to a
    "wakeup" pipe, whichever Python handler is in place; a thread reads it. If the command has
    not ended ``STOP_GRACE_SECONDS`` after the signal (a request in flight, a read-ahead
    finishing), ``on_overdue`` closes what it must, and the process exits."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: None)  # the thread below acts on it
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    stop, ended = threading.Event(), threading.Event()

    def watch() -> None:
        while not {signal.SIGINT, signal.SIGTERM} & set(os.read(read, 64)):
            pass
        stop.set()
        if ended.wait(STOP_GRACE_SECONDS):
            return
        print(
            f"{name}: still running {STOP_GRACE_SECONDS:.0f} s after the signal; ended",
            file=sys.stderr,
            flush=True,
        )
        on_overdue()
        os._exit(130)

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    try:
        yield stop
    finally:
        ended.set()
        signal.set_wakeup_fd(previous)


def supervise(
    name: str,
    commands: Sequence[Sequence[str]],
    cwd: str | None,
    runs_home: str | None,
    ready: Sequence[str] | None = None,
    settle_seconds: float = 0,
) -> int:
    """Run ``commands`` under a ``Supervisor`` until the last one ends or a stop is asked; its
    exit code (0 when stopped)."""
    supervisor = Supervisor(name, Path(runs_home) if runs_home else None, ready, settle_seconds)
    children = [supervisor.start(command, os.environ, cwd) for command in commands]
    return supervisor.run(children[-1])


def exec_supervisor(
    name: str,
    commands: Sequence[Sequence[str]],
    env: Mapping[str, str],
    cwd: Path,
    runs_home: Path | None,
    ready: Sequence[str] | None = None,
    settle_seconds: float = 0,
) -> NoReturn:
    """Replace this process with a light one running ``supervise`` (see above), the
    ``commands`` to run in ``env``."""
    arguments = json.dumps(
        {
            "name": name,
            "commands": [list(map(str, command)) for command in commands],
            "cwd": str(cwd),
            "runs_home": str(runs_home) if runs_home else None,
            "ready": list(ready) if ready else None,
            "settle_seconds": settle_seconds,
        }
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", __name__, arguments], dict(env))


if __name__ == "__main__":
    sys.exit(supervise(**json.loads(sys.argv[1])))
