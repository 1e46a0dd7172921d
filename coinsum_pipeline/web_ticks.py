"""uvicorn's servers (the board's, and Dagster's webserver) waking once a second, not ten times.

Between requests, uvicorn's server wakes every 0.1 s to see whether it was told to stop and, each
tenth time, to refresh the Date header it sends. For a board or a UI that waits hours between
visits, those wakeups were most of their idle CPU (docs/operations.md#idle), and uvicorn has no
setting for them. Once a second, the header is refreshed as often as before; a stop is seen
within a second instead of a tenth of one.
"""

from __future__ import annotations

import asyncio

import uvicorn

TICK_SECONDS = 1.0


async def _main_loop(self: uvicorn.Server) -> None:
    # uvicorn's ``on_tick(counter)`` refreshes the header when ``counter % 10 == 0``: each of
    # these ticks is a second, so each is such a tick.
    while not await self.on_tick(0):
        await asyncio.sleep(TICK_SECONDS)


def tick_once_a_second() -> None:
    """From now on, every uvicorn server this process runs wakes once a second. Dagster's
    webserver builds its own, so the method is replaced on uvicorn's class rather than
    overridden in a subclass."""
    uvicorn.Server.main_loop = _main_loop
