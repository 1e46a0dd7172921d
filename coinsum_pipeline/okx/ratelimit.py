"""Client-side rate limiting, so a backfill stays under OKX's per-IP limits instead of
finding them with 429s."""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindowLimiter:
    """At most ``limit`` calls in any ``window`` seconds, shared by all threads.

    A sliding log rather than a token bucket: it never lets a burst of ``limit`` calls straddle
    two windows, which is what a server counting a rolling window would reject. ``margin`` widens
    the window a little because the server counts arrival times, and arrivals jitter.
    """

    def __init__(self, limit: int, window: float, margin: float = 0.05) -> None:
        self.limit = limit
        self.window = window * (1 + margin)
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one more call fits in the window, then count it."""
        with self._lock:
            while True:
                now = time.monotonic()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                time.sleep(self._sent[0] + self.window - now)


_shared: dict[tuple[str, str], SlidingWindowLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(host: str, path: str, limit: int, window: float) -> SlidingWindowLimiter:
    """The one limiter for ``path`` on ``host`` in this process.

    OKX counts requests per IP, not per client object: consecutive runs in one process (the
    CLI's ranged runs) must share the window, or each new run would start with a full budget
    while the server still counts the last run's requests.
    """
    with _shared_lock:
        key = (host, path)
        if key not in _shared:
            _shared[key] = SlidingWindowLimiter(limit, window)
        return _shared[key]
