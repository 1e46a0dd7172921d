"""What the definitions use of Dagster beyond its stable public API, in one place.

- Dagster's own run tags for a partition range: there is no public way to ask for a range from a
  sensor's ``RunRequest`` or from ``execute_in_process``.
- Dagster's switch for one "planned" event per ranged run instead of one per partition.
- The materialization a check result judged: a result logged for one partition of a ranged run
  needs it, or Dagster counts the result as stale and the UI shows no status for that partition.

What operating the instance uses (tidying it, the daemon's turns) is in ``coinsum_pipeline/
instance/``. ``test_dagster_compat.py`` checks each use against the installed Dagster, so an
upgrade that moves one fails there, naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

# Dagster's run tags for one partition and for a range, as its maintainers show them for launching
# a range (dagster-io/dagster discussion 11653); named here rather than imported from
# dagster._core.storage.tags. test_dagster_compat.py checks that Dagster still reads them.
PARTITION_NAME_TAG = "dagster/partition"
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Read by Dagster when a run starts: emit one planned-materialization event per run, not one
# per partition: the events are a backfill's biggest cost (docs/performance.md).
PLANNED_EVENTS_AS_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def partition_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make a run materialize partitions ``first``..``last``; one partition runs
    as that partition (as a schedule's run does), so its checks record their result on it."""
    if first == last:
        return {PARTITION_NAME_TAG: first}
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


@contextmanager
def planned_events_per_run() -> Iterator[None]:
    """Within the block, this process's in-process runs emit one planned event per run instead of
    per partition. The price: a failed run's partitions show as missing rather than failed in
    the UI, and its partitions as not in progress while it runs. Only for the block: a run
    created afterwards in this process (a test's daemon turns) plans per partition again."""
    before = os.environ.get(PLANNED_EVENTS_AS_SUBSET)
    os.environ[PLANNED_EVENTS_AS_SUBSET] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PLANNED_EVENTS_AS_SUBSET]
        else:
            os.environ[PLANNED_EVENTS_AS_SUBSET] = before


def latest_materializations(
    instance: DagsterInstance, asset_key: AssetKey, partitions: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each of ``partitions``' latest materialization, as the target of a check result on it."""
    if not partitions:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=10_000
    ).records  # newest first
    latest: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:
        partition = record.event_log_entry.dagster_event.partition
        latest.setdefault(
            partition,
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            ),
        )
    return latest
