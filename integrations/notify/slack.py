"""Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat): `text` plus Block Kit `blocks`."""

from __future__ import annotations

from typing import Any

from integrations.notify import DeliveryReceipt
from integrations.notify.webhook import encode_body, post_json

MAX_TEXT = 2900  # Slack cuts section text at 3000 characters


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(
    *, event: str, subject: str, body: str, url: str = "", fields: dict[str, str] | None = None
) -> dict[str, Any]:
    """The message: a plain `text` fallback (notifications, old clients) and blocks for the channel."""
    title = _escape(subject)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject[:150], "emoji": False}},
    ]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(body)[:MAX_TEXT]}})
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_escape(name)}*\n{_escape(str(value))}"[:2000]}
                    for name, value in list(fields.items())[:10]
                ],
            }
        )
    if url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in Meshgate"}, "url": url}
                ],
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Meshgate · `{_escape(event)}`"}]})
    text = f"<{url}|{title}>" if url else title
    return {"text": text, "blocks": blocks}


def send_slack(*, url: str, message: dict[str, Any]) -> DeliveryReceipt:
    """POSTs the message to the incoming-webhook URL (Slack answers 200 "ok")."""
    return post_json(url=url, body=encode_body(message), headers={})
