"""The Dagster definitions, one kind per module: partitions, resources, assets, checks, jobs,
schedules, sensors; assembled in ``coinsum_pipeline/definitions.py``.

Some Dagster features coinsum relies on give notices when declared: backfill policies (beta),
partitioned asset checks (preview), the time-partition freshness check (superseded, yet the one
that knows which slot should be there). Users cannot act on them, so they are silenced here,
once: importing any module of this package runs this first, and it imports every module that
declares definitions under the filter, so each declaration is made here. The process's own
warning filters are left as they were.
"""

import warnings

from dagster import BetaWarning, PreviewWarning, SupersessionWarning

with warnings.catch_warnings():
    for _notice in (BetaWarning, PreviewWarning, SupersessionWarning):
        warnings.simplefilter("ignore", _notice)
    from coinsum_pipeline.defs import assets, checks, jobs, schedules, sensors  # noqa: F401
