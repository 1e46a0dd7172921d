"""``coinsum demo``: the whole pipeline offline and live, in one command.

It starts the stand-in for OKX (``okx/fake.py``) on the real clock, so its market has been
trading up to this minute; backfills the last few Beijing days from it through Dagster; then
starts the UI and the daemon, whose live schedule adds a slot every 30 minutes. Everything lives
in its own folder (``.demo/``: instance, DuckDB file, exports), apart from a real installation's
data, and the partitions start on the demo's first day, so the first look is all green.
"""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path

from coinsum_pipeline import clock
from coinsum_pipeline.core.slots import DateError
from coinsum_pipeline.instance.home import prepare_home
from coinsum_pipeline.instance.services import board_command, dev_command, service_environment
from coinsum_pipeline.instance.supervisor import Supervisor
from coinsum_pipeline.okx.fake import FakeOKX
from coinsum_pipeline.settings import PROJECT_ROOT

DEMO_FOLDER = PROJECT_ROOT / ".demo"
DEMO_DAYS = 3


def demo_environment(folder: Path, okx_url: str, first: date) -> dict[str, str]:
    """The environment of the demo's processes: its own instance, database and exports, the
    stand-in OKX, and partitions from the demo's ``first`` day on."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(prepare_home(folder / "dagster_home")),
        "COINSUM_DB": str(folder / "coinsum.duckdb"),
        "COINSUM_EXPORTS": str(folder / "exports"),
        "COINSUM_START": first.isoformat(),
        "COINSUM_COINS": "",
        "OKX_BASE_URL": okx_url,
    }


def run_demo(days: int, folder: Path, okx_port: int, dev_args: list[str]) -> int:
    """Backfill the demo's days, then run ``dagster dev`` and the board until stopped (Ctrl-C,
    SIGTERM: see ``Supervisor``); the stand-in OKX lives as long as this process."""
    if days < 1:
        raise DateError(f"--days {days}: the demo needs at least 1 day of history.")
    okx = FakeOKX()
    url = okx.start(okx_port)
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    env = service_environment(demo_environment(folder, url, first))
    coinsum = str(Path(sys.executable).parent / "coinsum")
    print(f"coinsum demo: stand-in OKX on {url}, data in {folder}", flush=True)
    try:
        home = Path(env["DAGSTER_HOME"])
        supervisor = Supervisor("coinsum demo", runs_home=home)
        backfill = [coinsum, "backfill", "--from", f"{first}", "--to", f"{today}"]
        code = supervisor.run(supervisor.start(backfill, env))
        if supervisor.stop_signal is not None:
            return 0
        if code:
            print("coinsum demo: the backfill failed (see above); not starting the UI.")
            return code
        supervisor.start(board_command(), env)
        return supervisor.run(supervisor.start(dev_command(dev_args), env, cwd=home))
    finally:
        okx.stop()
