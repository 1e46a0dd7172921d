"""What coinsum uses of Dagster beyond its stable API (``defs/dagster_compat.py`` for the
definitions, ``instance/storage.py`` for tidying, ``instance/code_watch.py`` for the services),
checked against the installed Dagster: after an upgrade, a failure here names what moved. The
daemon's turns (``instance/daemon.py``) are checked by every test that takes them."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.core.slots import slot_key, slots_in
from coinsum_pipeline.definitions import build_defs
from coinsum_pipeline.defs import dagster_compat
from coinsum_pipeline.instance import code_watch, storage
from coinsum_pipeline_tests.helpers import Pipeline, beijing


@pytest.mark.slow
def test_partition_range_tags_make_a_run_of_exactly_that_range(pipeline: Pipeline) -> None:
    slots = list(slots_in(beijing("2026-01-05 10:00"), beijing("2026-01-05 12:00")))
    outcome = run_slots(slots, pipeline.instance)  # launched with partition_tags(first, last)
    assert outcome.success
    materialized = pipeline.instance.get_materialized_partitions(AssetKey("basket_slots"))
    assert materialized == {slot_key(s) for s in slots}, (
        "Dagster no longer reads the partition-range run tags "
        f"{list(dagster_compat.partition_tags('a', 'b'))}"
    )


@pytest.mark.slow
def test_the_planned_events_switch_is_still_read_and_only_where_it_is_set(
    pipeline: Pipeline,
) -> None:
    slots = list(slots_in(beijing("2026-01-05 10:00"), beijing("2026-01-05 12:00")))
    switched = run_slots(slots, pipeline.instance)  # within planned_events_per_run()
    after = (  # the same run, launched after it in the same process
        build_defs()
        .resolve_job_def("collect_slots")
        .execute_in_process(
            instance=pipeline.instance,
            tags=dagster_compat.partition_tags(slot_key(slots[0]), slot_key(slots[-1])),
        )
    )
    planned = [
        len(
            pipeline.instance.all_logs(
                run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            )
        )
        for run_id in (switched.run_id, after.run_id)
    ]
    assert planned == [1, 4], (
        f"Dagster no longer reads {dagster_compat.PLANNED_EVENTS_AS_SUBSET}, or it outlives the "
        f"block: {planned} planned events for 4 slots"
    )


def test_a_dead_runs_pool_slot_can_be_freed(pipeline: Pipeline) -> None:
    events = pipeline.instance.event_log_storage
    events.set_concurrency_slots("okx", 1)
    claim = events.claim_concurrency_slot("okx", "dead-run", "basket_slots")
    assert claim.is_claimed
    storage.free_pool_slots(pipeline.instance, "dead-run")
    assert not events.get_concurrency_info("okx").claimed_slots, (
        "event_log_storage.free_concurrency_slots_for_run no longer frees a run's slots"
    )


def test_the_definitions_load_without_notices_and_leave_the_filters_alone() -> None:
    """Dagster's beta, preview and supersession notices are silenced where the definitions are
    declared (``defs/__init__.py``), without changing the process's warning filters."""
    probe = (
        "import warnings; from dagster import BetaWarning, PreviewWarning, SupersessionWarning\n"
        "for notice in (BetaWarning, PreviewWarning, SupersessionWarning):\n"
        "    warnings.simplefilter('error', notice)\n"
        "before = list(warnings.filters)\n"
        "import coinsum_pipeline.definitions\n"
        "assert warnings.filters == before, 'the warning filters changed'\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def test_what_a_deleted_run_leaves_can_be_removed(pipeline: Pipeline) -> None:
    instance = pipeline.instance
    outcome = run_slots([beijing("2026-01-05 00:00")], instance)
    path = Path(instance.event_log_storage.path_for_shard(outcome.run_id))
    completeness = AssetCheckKey(AssetKey("basket_slots"), "slot_completeness")
    key = slot_key(beijing("2026-01-05 00:00"))
    assert storage.latest_check_run(instance, completeness, key) == outcome.run_id
    assert storage.latest_check_run(instance, completeness, "2026-01-05-00:30") is None
    instance.delete_run(outcome.run_id)
    assert path.exists(), "Dagster leaves the file (if it stops, this part can go)"
    assert storage.latest_check_run(instance, completeness, key) == outcome.run_id, (
        "Dagster leaves the run's check results (if it stops, this part can go)"
    )
    storage.delete_run_leftovers(instance, outcome.run_id)
    assert not path.exists()
    assert storage.latest_check_run(instance, completeness, key) is None


@pytest.mark.slow
def test_a_partitions_latest_materialization_is_found_for_a_check_result(
    pipeline: Pipeline,
) -> None:
    slots = list(slots_in(beijing("2026-01-05 10:00"), beijing("2026-01-05 11:00")))
    first = run_slots(slots, pipeline.instance)
    again = run_slots(slots[1:2], pipeline.instance)
    keys = [slot_key(s) for s in slots]
    found = dagster_compat.latest_materializations(
        pipeline.instance, AssetKey("basket_slots"), keys
    )
    assert {key: target.run_id for key, target in found.items()} == {
        keys[0]: first.run_id,
        keys[1]: again.run_id,
    }
    assert dagster_compat.latest_materializations(pipeline.instance, AssetKey("x"), []) == {}


def test_the_code_server_watch_waits_as_long_as_code_watch_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watch the webserver and the daemon start on a gRPC code location asks the server for
    its id, then waits: a second as Dagster ships it, ``WATCH_SECONDS`` once ``code_watch`` has
    set it. Its wait is recorded and ends the watch, so no clock is waited on."""
    from dagster._grpc import server_watcher
    from dagster._grpc.client import DagsterGrpcClient

    waited: list[float] = []

    class Server(DagsterGrpcClient):  # the same server all along: nothing to reload
        def get_server_id(self, timeout: int | None = None) -> str:
            return "the-server"

    class Shutdown(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waited.append(timeout)
            self.set()
            return True

    monkeypatch.setattr(  # the watch's own shutdown event only
        server_watcher, "threading", SimpleNamespace(Event=Shutdown, Thread=threading.Thread)
    )

    def wait_of_a_watch() -> float:
        waited.clear()
        _, watch = server_watcher.create_grpc_watch_thread(
            "coinsum",
            Server(port=1),
            get_location_entry=lambda _: None,
            refresh_code_location=lambda _: None,
            on_disconnect=lambda _: None,
            on_reconnected=lambda _: None,
            on_updated=lambda *_: None,
            on_error=lambda _: None,
        )
        watch.start()
        watch.join()
        (seconds,) = waited
        return seconds

    assert wait_of_a_watch() == 1
    monkeypatch.setattr(server_watcher, "WATCH_INTERVAL", server_watcher.WATCH_INTERVAL)
    code_watch.watch_less_often()
    assert wait_of_a_watch() == code_watch.WATCH_SECONDS
