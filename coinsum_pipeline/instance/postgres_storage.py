"""The instance's run and schedule storage on PostgreSQL, asking once whether tables are migrated.

Before reading the schedules' and sensors' state, Dagster's schedule storage asks the database
whether its tables and indexes exist: two catalogue queries and three connections of their own
around the one query that matters, and the daemon's loops read that state every few seconds.
Its run storage asks the catalogue for the runs table's columns before reading runs, which the
run queue does every two seconds. Once a table, column or index exists it stays, so these
classes keep a yes for the life of the process (as Dagster's own PostgreSQL run storage
already keeps its indexes' answers); a no is asked again, so an instance migrated while the
services run is seen at the next read. What that saves at idle: docs/operations.md#idle.

``deploy/postgres-storage.yaml`` names them, Dagster's way of choosing a storage class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagster_postgres import PostgresRunStorage, PostgresScheduleStorage


def _adopted(cls: type, storage: Any) -> Any:
    """The storage Dagster built from the configuration (its constructor's arguments differ
    between releases), made ``cls``: a subclass that adds methods only."""
    storage.__class__ = cls
    storage._yes = set()
    return storage


def _once(storage: Any, question: str, ask: Callable[[], bool]) -> bool:
    """``ask()``, unless ``storage`` had a yes to ``question`` already."""
    if question not in storage._yes and ask():
        storage._yes.add(question)
    return question in storage._yes


class RunStorage(PostgresRunStorage):
    """Dagster's PostgreSQL run storage, asking about the runs' columns once."""

    __slots__ = ()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> RunStorage:
        return _adopted(cls, super().from_config_value(inst_data, config_value))

    def has_run_stats_index_cols(self) -> bool:
        return _once(self, "runs.start_time", super().has_run_stats_index_cols)

    def has_bulk_actions_selector_cols(self) -> bool:
        return _once(self, "bulk_actions.selector_id", super().has_bulk_actions_selector_cols)

    def has_backfill_id_column(self) -> bool:
        return _once(self, "runs.backfill_id", super().has_backfill_id_column)

    def has_bulk_action_job_name_column(self) -> bool:
        return _once(self, "bulk_actions.job_name", super().has_bulk_action_job_name_column)

    def has_backfill_tags_table(self) -> bool:
        return _once(self, "backfill_tags", super().has_backfill_tags_table)


class ScheduleStorage(PostgresScheduleStorage):
    """Dagster's PostgreSQL schedule storage, asking about its tables and indexes once."""

    __slots__ = ()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> ScheduleStorage:
        return _adopted(cls, super().from_config_value(inst_data, config_value))

    def has_instigators_table(self) -> bool:
        return _once(self, "instigators", super().has_instigators_table)

    def has_secondary_index_table(self) -> bool:
        return _once(self, "secondary_indexes", super().has_secondary_index_table)

    def has_built_index(self, migration_name: str) -> bool:
        ask = super().has_built_index
        return _once(self, f"index {migration_name}", lambda: ask(migration_name))
