"""Gap repair: re-run recent slots that OKX may now be able to fill.

OKX sometimes publishes a candle late, and a fetch can fail after all its retries. The sensor
finds recent slots with ``no_candle`` or ``fetch_failed`` values and requests a run for each,
within bounds: how far back it looks, how many runs one tick requests, and how many times one
slot is tried. A slot still empty after its tries stays in ``missing_values``, reported, and is
not tried again.
"""

import json
from datetime import datetime, timedelta

import duckdb
from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from coinsum_pipeline.partitions import BEIJING, slot_key
from coinsum_pipeline.schedules import slots_job
from coinsum_pipeline.settings import value
from coinsum_pipeline.storage import repairable_gaps, snapshot_path

LOOKBACK = timedelta(hours=48)
RUNS_PER_TICK = 4
TRIES_PER_SLOT = 3
TICK_SECONDS = 600  # so a slot is retried at most every 10 minutes
REPAIR_TAG = "coinsum/gap_repair"
TRY_TAG = "coinsum/gap_repair_try"
BUSY = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def plan_repairs(
    gaps: list[tuple[datetime, str]], tries: dict[str, int]
) -> tuple[list[RunRequest], dict[str, int], list[str]]:
    """Run requests for the newest gaps still worth a try, the updated tries, the given-up slots."""
    requests: list[RunRequest] = []
    given_up: list[str] = []
    tries = dict(tries)
    for slot, missing in gaps:
        key = slot_key(slot.replace(tzinfo=BEIJING))
        done = tries.get(key, 0)
        if done >= TRIES_PER_SLOT:
            given_up.append(key)
            continue
        if len(requests) == RUNS_PER_TICK:
            continue
        tries[key] = done + 1
        requests.append(
            RunRequest(
                run_key=f"gap-repair:{key}:{done + 1}",
                partition_key=key,
                tags={REPAIR_TAG: missing[:200], TRY_TAG: f"{done + 1}/{TRIES_PER_SLOT}"},
            )
        )
    return requests, tries, given_up


@sensor(
    job=slots_job,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Re-runs slots of the last {LOOKBACK.total_seconds() / 3600:.0f} hours that have "
        f"no_candle or fetch_failed values: at most {RUNS_PER_TICK} runs a tick, "
        f"{TRIES_PER_SLOT} tries a slot. Each run's tags say which coins it is for and why."
    ),
)
def gap_repair(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    busy = context.instance.get_run_records(
        RunsFilter(job_name=slots_job.name, statuses=BUSY), limit=1
    )
    if busy:
        return SkipReason("a collect_slots run is queued or running; gaps are checked after it")
    snapshot = snapshot_path(value("COINSUM_DB"))
    if not snapshot.exists():
        return SkipReason(f"no data yet ({snapshot} does not exist)")
    since = datetime.now(BEIJING) - LOOKBACK
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        gaps = repairable_gaps(conn, since)
    cursor = json.loads(context.cursor or "{}")
    tries = {k: n for k, n in cursor.items() if k >= slot_key(since)}
    requests, tries, given_up = plan_repairs(gaps, tries)
    if given_up:
        context.log.info(f"left reported after {TRIES_PER_SLOT} tries: {', '.join(given_up)}")
    if not requests:
        return SkipReason(
            f"no gaps to repair since {slot_key(since)}"
            + (f" ({len(given_up)} slots left reported after their tries)" if given_up else "")
        )
    return SensorResult(run_requests=requests, cursor=json.dumps(tries, sort_keys=True))
