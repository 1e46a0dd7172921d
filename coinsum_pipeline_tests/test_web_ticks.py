"""uvicorn's server as web_ticks sets it (the board's and Dagster's webserver): a real server on
loopback wakes about once a second, still dates its answers, and stops within a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import requests
import uvicorn

from coinsum_pipeline.web_ticks import tick_once_a_second
from coinsum_pipeline_tests.browser import free_port
from coinsum_pipeline_tests.helpers import wait_for


async def hello(scope: dict, receive: object, send: Callable[[dict], Awaitable[None]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_server_wakes_once_a_second_dates_its_answers_and_stops_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uvicorn.Server, "main_loop", uvicorn.Server.main_loop)  # put back after
    tick_once_a_second()
    ticks: list[float] = []
    on_tick = uvicorn.Server.on_tick

    async def counted(self: uvicorn.Server, counter: int) -> bool:
        ticks.append(time.monotonic())
        return await on_tick(self, counter)

    monkeypatch.setattr(uvicorn.Server, "on_tick", counted)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hello, port=port, log_level="warning"))
    serving = threading.Thread(target=server.run)
    serving.start()
    try:
        wait_for("the server to listen", 10, lambda: server.started)
        watched = time.monotonic()
        time.sleep(3)
        answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert answer.text == "hello" and answer.headers["date"].endswith(" GMT")
        assert 2 <= sum(tick >= watched for tick in ticks) <= 5, "uvicorn's own: 30 in 3 s"
    finally:
        told = time.monotonic()
        server.should_exit = True
        serving.join(10)
    assert not serving.is_alive() and time.monotonic() - told < 2
