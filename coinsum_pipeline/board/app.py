"""The board's web application: the page, its JSON API and the CSV downloads, read-only over the
readers' snapshot.

Starlette and uvicorn, because Dagster's webserver already installs and runs on them: the board
adds no web framework to the install and is served the same way as the UI beside it. Bad input
answers 400 and a slot that is not stored 404, each with ``{"error": "…what to change…"}``; a
missing snapshot answers 503 saying how to make one. No answer carries a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from coinsum_pipeline import clock
from coinsum_pipeline.board import queries
from coinsum_pipeline.core.slots import SLOT, DateError, epoch_ms, parse_day
from coinsum_pipeline.warehouse.charts import colour_scale, palette_named
from coinsum_pipeline.warehouse.database import Snapshot, StorageError
from coinsum_pipeline.warehouse.exports import CSV_KINDS, csv_bytes, export_stem, read_csv

STATIC = Path(__file__).with_name("static")
# Two years of slots (35,088): more than the page can show well, far less than a slow answer.
MAX_DAYS = 731
# Every answer is of the snapshot now: a browser or proxy must not keep one.
NO_STORE = {"Cache-Control": "no-store"}
# The page flags the newest slot as late once the slot due by now is this old and not stored.
LATE_AFTER_SECONDS = 180


class BadRequest(ValueError):
    """Input the API cannot answer; the message says what to send instead (HTTP 400)."""


class NotStored(LookupError):
    """What was asked for is not in the snapshot (HTTP 404)."""


def _day(request: Request, name: str) -> date:
    text = request.query_params.get(name)
    if not text:
        raise BadRequest(f"give {name}=YYYY-MM-DD (a Beijing day), e.g. {name}=2026-01-05")
    try:
        return parse_day(text, name)
    except DateError as exc:
        raise BadRequest(str(exc)) from None


def _days(request: Request) -> tuple[date, date]:
    first = _day(request, "from")
    last = _day(request, "to") if "to" in request.query_params else first
    if first > last:
        raise BadRequest(f"from {first} is after to {last}: give the earlier day as from")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest(
            f"{first}..{last} is {(last - first).days + 1} days; ask for at most {MAX_DAYS} at "
            "a time (for more, use `coinsum export` or SQL on the snapshot)"
        )
    return first, last


def _slot_start(request: Request) -> datetime:
    text = request.query_params.get("at", "")
    try:
        start = datetime.strptime(text.strip().replace(" ", "T"), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise BadRequest(
            f"at={text!r} is not a slot: give at=YYYY-MM-DDTHH:MM (Beijing), e.g. "
            "at=2026-01-05T10:30"
        ) from None
    if start.minute % 30:
        raise BadRequest(
            f"at={text!r}: slots start at :00 and :30 Beijing time, e.g. "
            f"at={start:%Y-%m-%dT%H}:00 or at={start:%Y-%m-%dT%H}:30"
        )
    return start


class Board:
    """The answers of one board process: its snapshot, its colours and where its links go."""

    def __init__(self, database: str, colors: str, dagster_url: str) -> None:
        self.snapshot = Snapshot(database)
        self.palette = palette_named(colors)
        self.dagster_url = dagster_url.rstrip("/")

    def read(self, answer: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        with self.snapshot.cursor() as conn:
            return answer(conn)

    def meta(self, _request: Request) -> dict[str, Any]:
        now = clock.now()

        def facts(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            days, newest = queries.stored_days(conn), queries.newest_slot(conn)
            return {
                "first_day": days and days[0].isoformat(),
                "last_day": days and days[1].isoformat(),
                "newest_slot": newest and f"{newest:%Y-%m-%d %H:%M}",
            }

        return {
            **self.read(facts),
            "today": now.date().isoformat(),
            "now_ms": epoch_ms(now),
            "slot_ms": int(SLOT.total_seconds() * 1000),
            "late_after_seconds": LATE_AFTER_SECONDS,
            "max_days": MAX_DAYS,
            "colors": {
                "up": self.palette.up,
                "down": self.palette.down,
                "scale": colour_scale(self.palette),
            },
            "dagster_url": self.dagster_url,
        }

    def sums(self, request: Request) -> Response:
        first, last = _days(request)
        body = self.read(lambda conn: queries.sums_json(conn, first, last))
        return Response(body, media_type="application/json", headers=NO_STORE)

    def slot(self, request: Request) -> dict[str, Any]:
        start = _slot_start(request)
        found = self.read(lambda conn: queries.slot(conn, start))
        if found is None:
            raise NotStored(
                f"slot {start:%Y-%m-%d %H:%M} (Beijing) is not stored: collect it with "
                f"`coinsum backfill --from {start:%Y-%m-%d} --to {start:%Y-%m-%d}`"
            )
        return found

    def latest(self, _request: Request) -> dict[str, Any]:
        def newest(conn: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
            start = queries.newest_slot(conn)
            return None if start is None else queries.slot(conn, start)

        found = self.read(newest)
        if found is None:
            raise NotStored("no slot is stored yet: run `coinsum backfill` first")
        return found

    def day(self, request: Request) -> dict[str, Any]:
        day = _day(request, "date")
        return self.read(lambda conn: queries.day_table(conn, day))

    def download(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in CSV_KINDS:
            raise NotStored(f"no CSV called {kind}.csv: the CSVs are {', '.join(CSV_KINDS)}")
        first, last = _days(request)
        frame = self.read(lambda conn: read_csv(conn, kind, first, last))
        name = f"{kind}_{export_stem(first, last)}.csv"
        return Response(
            csv_bytes(frame),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _answer(handler: Callable[[Request], Any]) -> Callable[[Request], Response]:
    """An endpoint: its answer as JSON at full float precision (or the response it made), its
    refusals as HTTP errors with a message."""

    def endpoint(request: Request) -> Response:
        try:
            answer = handler(request)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except NotStored as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except StorageError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        except duckdb.Error as exc:
            return JSONResponse(
                {"error": f"the snapshot could not be read ({exc}); try again in a moment"},
                status_code=503,
            )
        if isinstance(answer, Response):
            return answer
        body = json.dumps(answer, default=str, separators=(",", ":"))
        return Response(body, media_type="application/json", headers=NO_STORE)

    return endpoint


def _not_found(request: Request, exc: HTTPException) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse(
            {
                "error": f"no such address {request.url.path}: the API is /api/sums, /api/slot, "
                "/api/latest, /api/day and /api/meta"
            },
            status_code=exc.status_code,
        )
    return Response(exc.detail, status_code=exc.status_code)


def create_app(database: str, colors: str, dagster_url: str) -> Starlette:
    """The board over the snapshot of ``database``."""
    board = Board(database, colors, dagster_url)
    routes = [
        Route("/", lambda _request: FileResponse(STATIC / "index.html")),
        Route("/api/meta", _answer(board.meta)),
        Route("/api/sums", _answer(board.sums)),
        Route("/api/slot", _answer(board.slot)),
        Route("/api/latest", _answer(board.latest)),
        Route("/api/day", _answer(board.day)),
        Route("/download/{kind}.csv", _answer(board.download)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        # Level 5: most of level 9's saving on a year of sums, in far less of its time.
        middleware=[Middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)],
        exception_handlers={HTTPException: _not_found},
    )
