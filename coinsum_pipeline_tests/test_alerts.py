"""Alerts: the rules, the webhook bodies, and the sensor and its deliveries against a local
HTTP receiver, through a real Dagster instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.cli import main
from coinsum_pipeline.core.alerts import SlotSum, sum_alerts
from coinsum_pipeline.core.slots import epoch_ms
from coinsum_pipeline.definitions import build_defs
from coinsum_pipeline.defs.constants import ALERT_TAG
from coinsum_pipeline.defs.resources import resolved
from coinsum_pipeline.defs.sensors import alert_on_new_slots
from coinsum_pipeline.webhook import WebhookError, payload
from coinsum_pipeline_tests.helpers import Pipeline, beijing

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent and can be told to fail."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.attempts = 0
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts += 1
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"receiver down")
                    return
                receiver.bodies.append(body)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"errcode":0,"errmsg":"ok"}')  # as DingTalk answers

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    hook = Receiver()
    monkeypatch.setenv("COINSUM_ALERT_WEBHOOK", hook.url)
    monkeypatch.setenv("COINSUM_ALERT_RETRY_SECONDS", "1")
    yield hook
    hook.server.shutdown()


def tick(pipeline: Pipeline, cursor: str | None) -> SensorResult | SkipReason:
    with resolved("database") as database, resolved("alerts") as webhook:
        context = build_sensor_context(
            instance=pipeline.instance,
            cursor=cursor,
            resources={"database": database, "alerts": webhook},
        )
        return alert_on_new_slots(context)


def deliver(pipeline: Pipeline, result: SensorResult) -> list[str]:
    """Run each requested delivery as the daemon would launch it; returns the run ids."""
    job = build_defs().resolve_job_def("deliver_alert")
    return [
        job.execute_in_process(
            instance=pipeline.instance,
            run_config=request.run_config,
            tags=request.tags,
            raise_on_error=False,
        ).run_id
        for request in result.run_requests
    ]


def slots(*times: str) -> list[datetime]:
    return [beijing(f"2026-01-05 {t}") for t in times]


def stored_sum(pipeline: Pipeline, time: str) -> float:
    return pipeline.query("SELECT sum_pct FROM coin_sum WHERE slot_time = ?", [time])[0][0]


def test_rules_cross_levels_within_a_day_move_and_incomplete() -> None:
    def at(text: str, total: float | None, coins: int = 27) -> SlotSum:
        return SlotSum(datetime.fromisoformat(f"2026-01-05 {text}"), total, coins, 27)

    found = sum_alerts(
        [at("10:30", 21.0), at("11:00", 19.0), at("11:30", 12.0, coins=26)],
        at("10:00", 18.0),
        levels=[20, -20],
        move=5,
    )
    assert [(a.kind, a.slot, a.facts.get("direction")) for a in found] == [
        ("sum_crossed", "2026-01-05 10:30", "up"),
        ("sum_crossed", "2026-01-05 11:00", "down"),
        ("slot_incomplete", "2026-01-05 11:30", None),
        ("sum_moved", "2026-01-05 11:30", None),
    ]
    assert found[0].text.startswith("coinsum: 27币涨跌幅总和上穿 +20%：+21.00%")  # noqa: RUF001
    midnight = SlotSum(datetime(2026, 1, 6), 0.0, 27, 27)
    late = SlotSum(datetime(2026, 1, 5, 23, 30), 25.0, 27, 27)
    assert sum_alerts([midnight], late, levels=[20], move=5) == [], "00:00 is a new day, at 0"
    assert len({a.key for a in found}) == len(found), "every alert its own key"


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        ("slack", {"text"}),
        ("dingtalk", {"msgtype", "text"}),
        ("feishu", {"msg_type", "content"}),
        ("json", {"text", "kind", "slot", "key", "level", "direction", "sum_pct", "previous"}),
    ],
)
def test_each_format_is_what_its_webhook_takes(fmt: str, shape: set[str]) -> None:
    (alert,) = sum_alerts(
        [SlotSum(datetime(2026, 1, 5, 1), 21.0, 27, 27)],
        SlotSum(datetime(2026, 1, 5, 0, 30), 19.0, 27, 27),
        levels=[20],
        move=0,
    )
    body = payload(alert, fmt)
    assert set(body) == shape
    assert alert.text in json.dumps(body, ensure_ascii=False)
    with pytest.raises(WebhookError, match="use one of json, slack, dingtalk, feishu"):
        payload(alert, "teams")


def test_alerts_are_off_without_a_webhook(pipeline: Pipeline) -> None:
    result = tick(pipeline, None)
    assert isinstance(result, SkipReason) and "COINSUM_ALERT_WEBHOOK" in result.skip_message


@pytest.mark.parametrize(
    ("webhook", "status"), [("", "STOPPED"), ("http://127.0.0.1:9/hook", "RUNNING")]
)
def test_the_alert_sensor_runs_by_default_only_where_a_webhook_is_set(
    webhook: str, status: str
) -> None:
    """Decided when the definitions load, so in a process of its own, as the code server loads
    them: without a webhook, the sensor does not tick every 15 s to skip."""
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from coinsum_pipeline.definitions import defs; "
            "print(defs.resolve_sensor_def('alert_on_new_slots').default_status.value)",
        ],
        env={**os.environ, "COINSUM_ALERT_WEBHOOK": webhook},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == [status]


def test_a_sum_crossing_is_posted_exactly_once(
    pipeline: Pipeline,
    receiver: Receiver,
    clock_at: Callable[[str], datetime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock_at("2026-01-05 01:08")
    monkeypatch.setenv("COINSUM_ALERT_MOVE_PCT", "0")
    assert run_slots(slots("00:00", "00:30"), pipeline.instance).success
    first = tick(pipeline, None)
    assert not first.run_requests, "what is stored at the first look is not news"
    assert run_slots(slots("01:00"), pipeline.instance).success
    before, after = stored_sum(pipeline, "00:30"), stored_sum(pipeline, "01:00")
    level = round((before + after) / 2, 3)
    monkeypatch.setenv("COINSUM_ALERT_LEVELS", f"{level},{level + 500}")

    second = tick(pipeline, first.cursor)
    assert [r.tags[ALERT_TAG] for r in second.run_requests] == ["sum_crossed"]
    (run_id,) = deliver(pipeline, second)
    assert pipeline.instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    third = tick(pipeline, second.cursor)
    assert not third.run_requests, "a crossing is alerted once, not at every tick"

    (body,) = receiver.bodies
    assert body["kind"] == "sum_crossed" and body["slot"] == "2026-01-05 01:00"
    assert body["sum_pct"] == after and body["previous"] == before and body["level"] == level
    assert body["direction"] == ("up" if after > before else "down")


def test_late_and_incomplete_slots_are_alerted_once_each(
    pipeline: Pipeline, receiver: Receiver, clock_at: Callable[[str], datetime]
) -> None:
    clock_at("2026-01-05 01:25")
    hole = beijing("2026-01-05 00:30")
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(hole), epoch_ms(hole))]
    assert run_slots(slots("00:00"), pipeline.instance).success
    first = tick(pipeline, None)
    assert [r.tags[ALERT_TAG] for r in first.run_requests] == ["slot_late"], "01:00 is due"
    assert run_slots(slots("00:30"), pipeline.instance).success
    second = tick(pipeline, first.cursor)
    assert [r.tags[ALERT_TAG] for r in second.run_requests] == ["slot_incomplete"]
    assert not tick(pipeline, second.cursor).run_requests
    deliver(pipeline, first)
    deliver(pipeline, second)
    assert [b["kind"] for b in receiver.bodies] == ["slot_late", "slot_incomplete"]
    assert receiver.bodies[1]["coins_reported"] == 26


def test_a_failing_receiver_is_retried_and_a_failure_shows_on_the_run(
    pipeline: Pipeline, receiver: Receiver, clock_at: Callable[[str], datetime]
) -> None:
    clock_at("2026-01-05 01:25")
    assert run_slots(slots("00:00"), pipeline.instance).success
    late = tick(pipeline, None)  # 01:00 is late: one alert to deliver

    receiver.fail_next = 2
    (recovered,) = deliver(pipeline, late)
    assert pipeline.instance.get_run_by_id(recovered).status == DagsterRunStatus.SUCCESS
    assert receiver.attempts == 3 and len(receiver.bodies) == 1
    retries = pipeline.instance.get_records_for_run(
        recovered, of_type=DagsterEventType.STEP_UP_FOR_RETRY
    ).records
    assert len(retries) == 2

    receiver.fail_next = 99
    (failed,) = deliver(pipeline, late)
    assert pipeline.instance.get_run_by_id(failed).status == DagsterRunStatus.FAILURE
    assert receiver.attempts == 3 + 4, "4 tries in all"
    (failure,) = pipeline.instance.get_records_for_run(
        failed, of_type=DagsterEventType.STEP_FAILURE
    ).records
    error = failure.event_log_entry.dagster_event.step_failure_data.error
    shown = "".join(e.to_string() for e in (error, error.cause) if e)
    assert "answered HTTP 500: receiver down" in shown, shown


def test_a_test_alert_goes_through_the_configured_webhook_and_prints_its_answer(
    pipeline: Pipeline,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COINSUM_ALERT_FORMAT", "dingtalk")
    receiver.fail_next = 1  # the configured retries deliver it on the second try
    assert main(["alert", "--test"]) == 0
    answered = 'sent: the endpoint answered HTTP 200: {"errcode":0,"errmsg":"ok"}; run '
    assert answered in capsys.readouterr().out
    (body,) = receiver.bodies
    assert body["msgtype"] == "text" and body["text"]["content"].startswith("coinsum: 测试消息")
    (run,) = pipeline.instance.get_run_records()
    assert run.dagster_run.tags[ALERT_TAG] == "test" and receiver.attempts == 2

    receiver.fail_next = 99
    assert main(["alert", "--test"]) == 1
    assert "answered HTTP 500: receiver down" in capsys.readouterr().err
    assert receiver.attempts == 2 + 4

    monkeypatch.setenv("COINSUM_ALERT_WEBHOOK", "")
    assert main(["alert", "--test"]) == 2
    assert "COINSUM_ALERT_WEBHOOK is not set" in capsys.readouterr().err
