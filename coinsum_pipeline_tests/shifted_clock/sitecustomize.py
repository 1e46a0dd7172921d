"""Every Python process started with this folder on ``PYTHONPATH`` sees the wall clock moved by
``COINSUM_CLOCK_SHIFT_SECONDS`` (and ticking): the demo, the stand-in OKX, Dagster's webserver,
daemon, code servers and run workers all agree on the shifted time. A test uses it to start the
demo a minute before a live tick instead of waiting up to 30 minutes for one.

Only Python's wall clock moves (``time.time``, ``datetime.now``); monotonic clocks, sleeps and
waits stay real. gRPC keeps the real wall clock: it turns timeouts into wall-clock deadlines
that its C core compares with the machine's own clock.
"""

import os
import time
from types import SimpleNamespace

import time_machine

_shift = float(os.environ.get("COINSUM_CLOCK_SHIFT_SECONDS", "0"))
if _shift:
    import grpc._channel
    import grpc._common
    import grpc._cython.cygrpc
    import grpc._server
    import grpc._utilities

    real = time_machine.escape_hatch.time
    real_time = SimpleNamespace(
        time=real.time, monotonic=time.monotonic, perf_counter=time.perf_counter, sleep=time.sleep
    )
    grpc_modules = (grpc._channel, grpc._common, grpc._cython.cygrpc, grpc._server, grpc._utilities)
    for module in grpc_modules:
        module.time = real_time
    time_machine.travel(time.time() + _shift, tick=True).start()
