"""Names the definitions share with each other and with the code above them (the command line's
backfill, the tests): run sizes, deadlines and run tags. Plain values, no Dagster objects."""

from datetime import timedelta

# 288 slots = 6 days: one 300-row candle page per coin per run, the fewest requests possible.
SLOTS_PER_RUN = 288

# Live collection stores the slot that started at :00 or :30 seconds in; this long after it
# starts (:20 or :50) it is overdue (the step's retries and a re-run fit in between).
OVERDUE_AFTER = timedelta(minutes=20)

# A run tagged with this reports fetch failures at once instead of retrying the step.
FAIL_FAST_TAG = "coinsum/fail_fast"
# The kind of alert a deliver_alert run sends.
ALERT_TAG = "coinsum/alert"
# Which re-collection (today, yesterday) a collect_slots run is.
RECOLLECT_TAG = "coinsum/recollect"

# Where Dagster's Celery run launcher sends a run (docs/operations.md#workers): by default to
# the workers on the host that holds the DuckDB file, since nearly every run reads or writes it
# and DuckDB's one writer is kept by a file lock that holds on one host only; a job tagged with
# ANYWHERE (it touches neither the file nor the exports) to any worker.
DUCKDB_QUEUE = "coinsum-duckdb"
ANYWHERE_QUEUE = "coinsum-anywhere"
ANYWHERE = {"dagster-celery/queue": ANYWHERE_QUEUE}
# What ``coinsum serve worker --runs`` listens to.
WORKER_QUEUES = {"duckdb": (DUCKDB_QUEUE, ANYWHERE_QUEUE), "anywhere": (ANYWHERE_QUEUE,)}
