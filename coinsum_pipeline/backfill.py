"""Headless backfills: the same asset and job as the UI, run through Dagster from a script.

Runs are recorded in the instance under ``DAGSTER_HOME``, so the UI shows them like any other.
A range is cut into runs of ``SLOTS_PER_RUN`` slots, the same size the asset's backfill policy
gives UI backfills, so each run costs one candle page per coin. While a run writes its events,
the next run's candles and this run's daily opens are read ahead (okx/ahead.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dagster import DagsterInstance

from coinsum_pipeline.core.basket import DEFAULT_COINS
from coinsum_pipeline.core.slots import (
    SLOT,
    DateError,
    current_slot,
    day_start,
    days_in,
    slot_key,
    slots_in,
)
from coinsum_pipeline.definitions import build_defs
from coinsum_pipeline.defs.constants import FAIL_FAST_TAG, SLOTS_PER_RUN
from coinsum_pipeline.defs.dagster_compat import partition_tags, planned_events_per_run
from coinsum_pipeline.defs.jobs import collect_slots, export_days
from coinsum_pipeline.defs.partitions import FIRST_DAY
from coinsum_pipeline.defs.resources import resolved
from coinsum_pipeline.instance.runs import backfill_tags, close_dead_backfill_runs
from coinsum_pipeline.okx.ahead import READ_AHEAD
from coinsum_pipeline.okx.fetch import daily_opens, fetch_basket
from coinsum_pipeline.warehouse.exports import start_drawing_processes

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    first_key: str
    last_key: str
    slots: int
    run_id: str
    success: bool
    error: str


def plan(first: date, last: date, now: datetime) -> list[list[datetime]]:
    """The slots of Beijing days ``first``..``last``, up to the running slot, cut into runs."""
    days_in(first, last)  # refuses a reversed range
    if first < FIRST_DAY:
        raise DateError(
            f"{first} is before the first partition day {FIRST_DAY}: start later, or set "
            "COINSUM_START to an earlier YYYY-MM-DD."
        )
    newest = current_slot(now)
    if day_start(first) > newest:
        raise DateError(f"{first} is in the future: the newest slot is {slot_key(newest)}.")
    end = min(day_start(last + timedelta(days=1)), newest + SLOT)
    slots = list(slots_in(day_start(first), end))
    return [slots[i : i + SLOTS_PER_RUN] for i in range(0, len(slots), SLOTS_PER_RUN)]


def run_slots(
    slots: list[datetime], instance: DagsterInstance, step_retries: bool = True
) -> RunOutcome:
    """Materialize one range of slots as one Dagster run; failures are reported, not raised."""
    first, last = slot_key(slots[0]), slot_key(slots[-1])
    # A failed run's slots then show as missing rather than failed in the UI; this command
    # reports the failure itself, and the slots' reasons are in missing_values.
    extra = {} if step_retries else {FAIL_FAST_TAG: "true"}
    with planned_events_per_run():
        return _execute(collect_slots.name, first, last, len(slots), instance, extra)


def export_range(first: date, last: date, instance: DagsterInstance) -> RunOutcome:
    """Write the exports of days ``first``..``last`` as one run of ``day_exports``."""
    days = len(days_in(first, last))
    return _execute(export_days.name, first.isoformat(), last.isoformat(), days, instance, {})


def _execute(
    job: str, first: str, last: str, size: int, instance: DagsterInstance, tags: dict[str, str]
) -> RunOutcome:
    result = (
        build_defs()
        .resolve_job_def(job)
        .execute_in_process(
            instance=instance,
            run_config=QUIET_LOGS,
            raise_on_error=False,
            tags={
                **partition_tags(first, last),
                **backfill_tags(),
                **tags,
            },
        )
    )
    errors = [
        event.step_failure_data.user_failure_data.description
        if event.step_failure_data.user_failure_data
        else event.step_failure_data.error.message.strip()
        for event in result.get_step_failure_events()
    ]
    return RunOutcome(first, last, size, result.run_id, result.success, "; ".join(errors))


def backfill(
    first: date,
    last: date,
    now: datetime,
    instance: DagsterInstance,
    step_retries: bool = True,
) -> Iterator[RunOutcome]:
    """Run every slot of the range, yielding each run's outcome as it finishes.

    Before each run, checks that the DuckDB file can be written (``DatabaseHeld`` if a user's
    session holds it), so a held file stops the backfill at once instead of failing every run.
    """
    close_dead_backfill_runs(instance)
    runs = plan(first, last, now)
    if last > first:  # the range's export that follows draws its days in parallel processes
        start_drawing_processes()
    with resolved("database") as database, reading_ahead() as read:
        for i, slots in enumerate(runs):
            database.probe()
            read(daily_opens, days_in(slots[0].date(), slots[-1].date()))
            if i + 1 < len(runs):
                read(fetch_basket, runs[i + 1])
            yield run_slots(slots, instance, step_retries)


@contextmanager
def reading_ahead() -> Iterator[Callable[[Callable, list], Future]]:
    """``read(fetch, what)``: run ``fetch(client, coins, what)`` in the background with a client
    that keeps its candles for the run that will ask for them. The coins are the basket asked
    for (``COINSUM_COINS``); a run going by another basket asks OKX for what it lacks. Whatever
    no run took is dropped at the end."""
    with resolved("okx") as okx, resolved("basket") as basket:
        client = okx.build_client(reads_ahead=True)
        coins = basket.requested() or DEFAULT_COINS
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-ahead") as pool:
            try:
                yield lambda fetch, what: pool.submit(fetch, client, coins, what)
            finally:
                pool.shutdown(cancel_futures=True)
                client.close()
                READ_AHEAD.forget()
