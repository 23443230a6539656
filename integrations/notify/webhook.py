"""Generic webhooks: a JSON body POSTed with an HMAC-SHA256 signature the receiver can verify.

Headers sent with every request:

    X-Meshgate-Event:      the event name, e.g. "change.approved"
    X-Meshgate-Delivery:   the delivery id (a UUID; the same on every retry of one delivery)
    X-Meshgate-Timestamp:  Unix seconds when this attempt was signed
    X-Meshgate-Signature:  "sha256=" + hex(HMAC-SHA256(secret, f"{timestamp}." + raw body))

The timestamp is inside the signed bytes, so a receiver that rejects timestamps older than a few
minutes (`verify_signature(..., tolerance_seconds=300)`) cannot be fed a recorded request again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

from integrations.http import egress
from integrations.notify import DeliveryReceipt, NotifyError, is_retryable_status, notify_settings

SIGNATURE_HEADER = "X-Meshgate-Signature"
TIMESTAMP_HEADER = "X-Meshgate-Timestamp"
EVENT_HEADER = "X-Meshgate-Event"
DELIVERY_HEADER = "X-Meshgate-Delivery"
SIGNATURE_PREFIX = "sha256="
MAX_RESPONSE_BYTES = 64 * 1024


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: compact, key-sorted UTF-8 JSON."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>` with the channel secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    *,
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    tolerance_seconds: float | None = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the signature (constant time) and refuse stale timestamps."""
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if tolerance_seconds is not None and abs((now if now is not None else time.time()) - signed_at) > tolerance_seconds:
        return False
    expected = compute_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, signature or "")


def check_url(url: str) -> None:
    """Raises a non-retryable NotifyError unless `url` is an absolute http(s) URL the egress policy
    allows (a name that does not resolve here passes: the worker may resolve it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError(f"{url!r} is not an http(s) URL", retryable=False)
    try:
        egress.vet(url, resolve=False)
    except egress.EgressError as exc:
        raise NotifyError(exc.message, retryable=False) from exc


def post_json(*, url: str, body: bytes, headers: dict[str, str]) -> DeliveryReceipt:
    """POSTs `body` as JSON through the egress policy (`integrations.http.egress`): a total deadline of
    `timeout_seconds`, at most `MAX_RESPONSE_BYTES` of the answer read, redirects not followed (a signed
    request must reach the URL the owner configured, nowhere else), internal addresses refused.
    2xx → receipt; anything else → NotifyError, whose text shows at most 300 characters of the answer."""
    config = notify_settings()
    all_headers = {"Content-Type": "application/json", "User-Agent": config.user_agent, **headers}
    try:
        response = egress.post(
            url, body=body, headers=all_headers, deadline_seconds=config.timeout_seconds, max_bytes=MAX_RESPONSE_BYTES
        )
    except egress.EgressError as exc:
        raise NotifyError(exc.message, retryable=not exc.refused) from exc
    if response.ok:
        return DeliveryReceipt(status_code=response.status)
    text = response.text()
    raise NotifyError(
        f"the receiver answered {response.status}" + (f": {text}" if text else ""),
        status_code=response.status,
        retryable=is_retryable_status(response.status),
    )


def send_webhook(
    *, url: str, secret: str, event: str, delivery_id: str, payload: dict[str, Any], timestamp: int | None = None
) -> DeliveryReceipt:
    """Signs and POSTs one event. A channel without a secret sends no signature header."""
    body = encode_body(payload)
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    headers = {EVENT_HEADER: event, DELIVERY_HEADER: delivery_id, TIMESTAMP_HEADER: stamp}
    if secret:
        headers[SIGNATURE_HEADER] = compute_signature(secret=secret, timestamp=stamp, body=body)
    return post_json(url=url, body=body, headers=headers)
