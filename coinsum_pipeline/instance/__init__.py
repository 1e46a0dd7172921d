"""The code that operates Dagster itself, above the definitions: the instance's home and the
commands that start its services, runs whose process died, the hourly tidy (a job and schedule
of its own), and the daemon's turns in one process."""
