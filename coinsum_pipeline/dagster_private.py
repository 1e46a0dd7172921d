"""The Dagster internals coinsum relies on, in one place.

Dagster has no public way to ask for a run over a partition range (from a sensor's
``RunRequest`` or from ``execute_in_process``) other than its own run tags, which live in a
private module. If an upgrade moves them, this import fails at once, naming what moved.
"""

from __future__ import annotations

from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)


def partition_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make a run materialize partitions ``first``..``last``; one partition runs
    as that partition (as a schedule's run does), so its checks record their result on it."""
    if first == last:
        return {PARTITION_NAME_TAG: first}
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
