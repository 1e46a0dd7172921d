"""The jobs: what the schedule, the sensors, the CLI and the UI's launchpad run."""

import json

from dagster import (
    AssetSelection,
    Config,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryRequested,
    define_asset_job,
    job,
    op,
)

from coinsum_pipeline.core.alerts import Alert
from coinsum_pipeline.defs.assets import basket_slots, day_exports
from coinsum_pipeline.defs.constants import ALERT_TAG, ANYWHERE
from coinsum_pipeline.defs.resources import AlertWebhook
from coinsum_pipeline.webhook import WebhookError

collect_slots = define_asset_job(
    "collect_slots",
    selection=AssetSelection.assets(basket_slots),
    description="Fetch and store one slot or a range of slots, with their checks.",
)

export_days = define_asset_job(
    "export_days",
    selection=AssetSelection.assets(day_exports),
    description="Write the CSVs and charts of one Beijing day or a range of days.",
)


class AlertConfig(Config):
    """One alert, as the ``alerts`` sensor found it (``facts``: a JSON object)."""

    key: str
    kind: str
    slot: str
    text: str
    facts: str = "{}"


DELIVERY_TRIES = 4


def alert_run(alert: Alert) -> dict:
    """The ``run_config`` and ``tags`` of the ``deliver_alert`` run that sends ``alert``."""
    config = {
        "key": alert.key,
        "kind": alert.kind,
        "slot": alert.slot,
        "text": alert.text,
        "facts": json.dumps(alert.facts, ensure_ascii=False),
    }
    return {
        "run_config": {"ops": {"send_alert": {"config": config}}},
        "tags": {ALERT_TAG: alert.kind, "coinsum/slot": alert.slot},
    }


@op(
    description="POST one alert to COINSUM_ALERT_WEBHOOK; a failed delivery is tried again.",
    out=Out(Nothing),
)
def send_alert(context: OpExecutionContext, config: AlertConfig, alerts: AlertWebhook) -> Output:
    alert = Alert(config.key, config.kind, config.slot, config.text, json.loads(config.facts))
    try:
        answer = alerts.send(alert)
    except WebhookError as exc:  # shown on the run's page, with each retry
        raise RetryRequested(
            max_retries=DELIVERY_TRIES - 1, seconds_to_wait=alerts.retry_seconds
        ) from exc
    context.log.info(f"sent: {alert.text}")
    # What the endpoint said, on the step's output in the UI (and read by `coinsum alert --test`).
    return Output(None, metadata={"answer": answer})


@job(
    description="Deliver one alert: the alert_on_new_slots sensor starts one run per alert.",
    tags=ANYWHERE,
)
def deliver_alert() -> None:
    send_alert()
