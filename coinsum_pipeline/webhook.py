"""Alerts out to a chat or any HTTP endpoint: one JSON POST per alert.

``COINSUM_ALERT_FORMAT`` picks the body: ``json`` (the text and the alert's facts, for your own
endpoint), or what the incoming webhooks of ``slack``, ``dingtalk`` (钉钉) and ``feishu`` (飞书)
accept as a text message.
"""

from __future__ import annotations

import requests

from coinsum_pipeline.core.alerts import Alert

FORMATS = ("json", "slack", "dingtalk", "feishu")


class WebhookError(RuntimeError):
    """A delivery that failed; the message says what the endpoint answered."""


def unknown_format(fmt: str) -> str:
    """What to tell a user whose ``COINSUM_ALERT_FORMAT`` is not one of ``FORMATS``."""
    return f"COINSUM_ALERT_FORMAT is {fmt!r}: use one of {', '.join(FORMATS)}."


def payload(alert: Alert, fmt: str) -> dict:
    """The body of ``alert`` in format ``fmt`` (one of ``FORMATS``)."""
    if fmt == "slack":
        return {"text": alert.text}
    if fmt == "dingtalk":
        return {"msgtype": "text", "text": {"content": alert.text}}
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": alert.text}}
    if fmt == "json":
        return {
            "text": alert.text,
            "kind": alert.kind,
            "slot": alert.slot,
            "key": alert.key,
            **alert.facts,
        }
    raise WebhookError(unknown_format(fmt))


def deliver(alert: Alert, url: str, fmt: str, timeout: float) -> str:
    """POST the alert and return what the endpoint answered; raises ``WebhookError`` unless it
    accepted it (2xx and, for DingTalk and Feishu, which answer 200 with an error code, a zero
    code)."""
    try:
        answer = requests.post(url, json=payload(alert, fmt), timeout=timeout)
    except requests.RequestException as exc:
        raise WebhookError(f"cannot reach the alert webhook {url}: {exc}") from exc
    said = f"HTTP {answer.status_code}" + (f": {answer.text[:200]}" if answer.text else "")
    if not answer.ok:
        raise WebhookError(f"the alert webhook {url} answered {said}")
    if fmt in ("dingtalk", "feishu"):
        try:
            body = answer.json() if answer.content else {}
            code = body.get("errcode", body.get("code", 0))
        except (ValueError, AttributeError):
            raise WebhookError(
                f"the alert webhook {url} answered {said}, not a {fmt} answer: check "
                "COINSUM_ALERT_WEBHOOK and COINSUM_ALERT_FORMAT"
            ) from None
        if code:
            raise WebhookError(f"the {fmt} webhook refused the message: {answer.text[:200]}")
    return said
