"""The sensors: gap repair, the exports that follow the slots, the freshness check's, the alerts.

Gap repair collects again the recent slots that a later fetch can fill.

Two kinds of gap. Slots stored with values OKX may still give: ``no_candle`` (OKX publishes a
candle late), ``fetch_failed`` (OKX kept failing), and ``no_base`` when the day's 00:00 candle
was one of those. And slots never written at all: the daemon or the machine was down when the
live schedule should have collected them. The sensor requests a run for each stretch of
consecutive such slots, within bounds: how far back it looks, how many runs one tick requests,
and how many times one slot is tried. A slot still empty after its tries stays in
``missing_values``, reported, and is not tried again.

``export_on_new_slots`` is Dagster's automation sensor: it re-exports each day whose slots were
written since its last export. ``freshness`` runs ``freshness_check`` whenever the newest slot
could have become overdue. ``alerts`` starts a ``deliver_alert`` run for each new alert (rules in
``core/alerts.py``), keyed by the alert, so Dagster launches each at most once.
"""

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_sensor_for_freshness_checks,
    sensor,
)

from coinsum_pipeline import clock
from coinsum_pipeline.core.alerts import late_alert, sum_alerts
from coinsum_pipeline.core.slots import SLOT, current_slot, day_start, slot_key, slots_in
from coinsum_pipeline.defs.assets import day_exports
from coinsum_pipeline.defs.checks import freshness_check
from coinsum_pipeline.defs.constants import OVERDUE_AFTER, SLOTS_PER_RUN
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline.defs.jobs import alert_run, collect_slots, deliver_alert
from coinsum_pipeline.defs.partitions import FIRST_DAY
from coinsum_pipeline.defs.resources import AlertWebhook, OKXResource
from coinsum_pipeline.okx.client import OKXError, OKXUnreachable
from coinsum_pipeline.settings import value
from coinsum_pipeline.warehouse.database import (
    CoinsumDatabase,
    StorageError,
    slot_sums_since,
    stored_since,
)

LOOKBACK = timedelta(hours=48)
# A slot is due once it is this old: the live schedule collects it seconds after it starts, and
# its run's retries take minutes.
SETTLE = timedelta(minutes=5)
RUNS_PER_TICK = 4
TRIES_PER_SLOT = 3
TICK_SECONDS = 600  # so a slot is retried at most every 10 minutes
REPAIR_TAG = "coinsum/gap_repair"
TRY_TAG = "coinsum/gap_repair_try"
NEVER_WRITTEN = "never written"
BUSY = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def due_slots(now: datetime) -> list[datetime]:
    """The slots of the look-back window that live collection should have stored by ``now``."""
    first = max(current_slot(now - LOOKBACK) + SLOT, day_start(FIRST_DAY))
    return list(slots_in(first, current_slot(now - SETTLE) + SLOT))


def _why(reasons: Sequence[str]) -> str:
    """What a run repairs, for its tag: ``ETH no_candle``, or ``never written (4 slots)``."""
    if len(reasons) == 1:
        return reasons[0]
    return "; ".join(f"{why} ({n} slot{'s' * (n > 1)})" for why, n in Counter(reasons).items())


def plan_repairs(
    due: Sequence[datetime],
    stored: set[datetime],
    gaps: Mapping[datetime, str],
    tries: Mapping[str, int],
) -> tuple[list[RunRequest], dict[str, int], list[str]]:
    """Run requests for the newest stretches of consecutive slots still worth a try, the
    updated tries, and the slots given up.

    ``due`` are aware slots; ``stored`` and ``gaps`` (slot: its coins and reasons) use naive
    Beijing times, as stored. Only slots that need it are re-run, never a stored good one in
    between: a repair that met an OKX outage would otherwise overwrite good values.
    """
    tries = dict(tries)
    given_up: list[str] = []
    stretches: list[list[tuple[datetime, str]]] = []  # newest first, each oldest first
    for slot in sorted(due, reverse=True):
        naive = slot.replace(tzinfo=None)
        if naive in stored and naive not in gaps:
            continue
        if tries.get(slot_key(slot), 0) >= TRIES_PER_SLOT:
            given_up.append(slot_key(slot))
            continue
        why = gaps.get(naive, NEVER_WRITTEN)
        last = stretches[-1] if stretches else None
        if last and last[0][0] - slot == SLOT and len(last) < SLOTS_PER_RUN:
            last.insert(0, (slot, why))
        else:
            stretches.append([(slot, why)])
    requests: list[RunRequest] = []
    for stretch in stretches[:RUNS_PER_TICK]:
        keys = [slot_key(slot) for slot, _ in stretch]
        attempt = max(tries.get(key, 0) for key in keys) + 1
        tries.update({key: tries.get(key, 0) + 1 for key in keys})
        first, last = keys[0], keys[-1]
        requests.append(
            RunRequest(
                run_key=f"gap-repair:{first}..{last}:{attempt}",
                partition_key=first if first == last else None,
                tags={
                    **partition_tags(first, last),
                    REPAIR_TAG: _why([why for _, why in stretch])[:200],
                    TRY_TAG: f"{attempt}/{TRIES_PER_SLOT}",
                },
            )
        )
    return requests, tries, given_up


@sensor(
    job=collect_slots,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Re-runs slots of the last {LOOKBACK.total_seconds() / 3600:.0f} hours that were never "
        "written (the daemon was down) or have no_candle, fetch_failed or no_base values: at "
        f"most {RUNS_PER_TICK} runs a tick, {TRIES_PER_SLOT} tries a slot. Each run's tags say "
        "which slots and coins it is for and why. While OKX cannot be reached, it requests "
        "nothing and its tick says why."
    ),
)
def gap_repair(
    context: SensorEvaluationContext, database: CoinsumDatabase, okx: OKXResource
) -> SensorResult | SkipReason:
    busy = context.instance.get_run_records(
        RunsFilter(job_name=collect_slots.name, statuses=BUSY), limit=1
    )
    if busy:
        return SkipReason("a collect_slots run is queued or running; gaps are checked after it")
    now = clock.now()
    due = due_slots(now)
    if not due:
        return SkipReason("no slot is due yet")
    try:
        with database.read() as conn:
            stored, gaps = stored_since(conn, due[0])
    except StorageError:  # no data yet: every due slot is a gap
        stored, gaps = set(), {}
    cursor = json.loads(context.cursor or "{}")
    tries = {k: n for k, n in cursor.items() if k >= slot_key(due[0])}
    requests, tries, given_up = plan_repairs(due, stored, gaps, tries)
    if given_up:
        context.log.info(f"left reported after {TRIES_PER_SLOT} tries: {', '.join(given_up)}")
    if not requests:
        return SkipReason(
            f"no gaps to repair since {slot_key(due[0])}"
            + (f" ({len(given_up)} slots left reported after their tries)" if given_up else "")
        )
    try:  # one request, so runs do not queue behind an exchange that cannot be reached
        okx.client.swap_instruments()
    except OKXUnreachable as exc:
        return SkipReason(f"{len(requests)} gap(s) to repair, but not now: {exc}")
    except OKXError:
        pass  # OKX answers, if badly: the runs' own retries deal with that
    return SensorResult(run_requests=requests, cursor=json.dumps(tries, sort_keys=True))


# The exports and the alerts look this often, so they follow a new slot within half a minute
# of it being stored (the sensor's turn, then its run's launch). Each look is one tick, deleted
# by the hourly tidy within the hour when it had nothing to do.
FOLLOW_SECONDS = 15

export_on_new_slots = AutomationConditionSensorDefinition(
    "export_on_new_slots",
    target=AssetSelection.assets(day_exports),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=FOLLOW_SECONDS,
    description="Re-exports each day whose slots were written since its last export.",
)

# Only slots this recent are alerted: a backfill of older days is history, not news.
ALERT_WINDOW = timedelta(hours=2)
# Running by default only where a webhook is set when the definitions load: a sensor with nowhere
# to post would still tick every 15 s, around the clock, to skip. Started or stopped in the UI,
# the choice made there holds whatever the variable says.
ALERTS_BY_DEFAULT = (
    DefaultSensorStatus.RUNNING
    if value("COINSUM_ALERT_WEBHOOK").strip()
    else DefaultSensorStatus.STOPPED
)


@sensor(
    job_name=deliver_alert.name,
    minimum_interval_seconds=FOLLOW_SECONDS,
    default_status=ALERTS_BY_DEFAULT,
    description=(
        "Alerts to COINSUM_ALERT_WEBHOOK (stopped by default while it is empty, and skips while "
        "it is): the basket sum crossing a level "
        "of COINSUM_ALERT_LEVELS, moving more than COINSUM_ALERT_MOVE_PCT points in one slot, a "
        f"new slot incomplete, or the newest slot not stored {OVERDUE_AFTER.seconds // 60} minutes "
        "after it starts. One deliver_alert run per alert, each alert once; a failed delivery "
        "is retried and shows as a failed run."
    ),
)
def alert_on_new_slots(
    context: SensorEvaluationContext, database: CoinsumDatabase, alerts: AlertWebhook
) -> SensorResult | SkipReason:
    if not alerts.url.strip():
        return SkipReason("alerts are off: set COINSUM_ALERT_WEBHOOK to a webhook URL")
    now = clock.now()
    cursor = json.loads(context.cursor or "{}")
    window = current_slot(now - ALERT_WINDOW)
    try:
        with database.read() as conn:
            recent = slot_sums_since(conn, window)
    except StorageError:
        recent = []
    seen = cursor.get("newest")  # None at the first look: what is stored is not news
    new = [] if seen is None else [s for s in recent if slot_key(s.slot_start) > seen]
    older = [s for s in recent if s not in new]
    found = sum_alerts(new, older[-1] if older else None, alerts.sum_levels(), alerts.move_pct)
    due = current_slot(now - OVERDUE_AFTER).replace(tzinfo=None)
    late_key = slot_key(due)
    if due >= window.replace(tzinfo=None) and due not in {s.slot_start for s in recent}:
        if cursor.get("late") != late_key:
            found.append(late_alert(due, now))
        cursor["late"] = late_key
    if recent:
        cursor["newest"] = slot_key(recent[-1].slot_start)
    else:
        cursor.setdefault("newest", "")
    requests = [RunRequest(run_key=alert.key, **alert_run(alert)) for alert in found]
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))


freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=[freshness_check],
    name="freshness",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
)
