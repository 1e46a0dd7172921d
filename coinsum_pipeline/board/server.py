"""``coinsum serve board``: the board as a process, on uvicorn (which Dagster's webserver
already runs on)."""

from __future__ import annotations

import errno
import socket

import uvicorn

from coinsum_pipeline.board.app import create_app
from coinsum_pipeline.settings import value
from coinsum_pipeline.web_ticks import tick_once_a_second


class BoardPortError(OSError):
    """The board's address cannot be listened on; the message says what to change."""


def _listen(host: str, port: int) -> socket.socket:
    """The board's listening socket, bound here (not by uvicorn) so that a taken port is one
    clear line, and the URL is printed only once connections are accepted."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        raise BoardPortError(
            f"the board cannot listen on {host}:{port}: "
            f"{'another process listens there' if taken else exc.strerror}. Give it another "
            "port with --port, or COINSUM_BOARD_PORT for scripts/start and the demo."
        ) from None


def serve_board(host: str, port: int) -> None:
    """Serve the board on ``host``:``port`` until SIGTERM or Ctrl-C."""
    listening = _listen(host, port)
    app = create_app(value("COINSUM_DB"), value("COINSUM_COLORS"), value("COINSUM_DAGSTER_URL"))
    print(f"coinsum board: http://{host}:{port}", flush=True)
    tick_once_a_second()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[listening])
