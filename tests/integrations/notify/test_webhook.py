import hashlib
import hmac
import json
import time

import pytest

from integrations.notify import NotifyError
from integrations.notify.webhook import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    send_webhook,
    verify_signature,
)

SECRET = "s3cret-key-for-tests"


def _receiver_check(seen, secret=SECRET) -> bool:
    """What a receiver written from the docs does: HMAC-SHA256 over "<timestamp>.<raw body>"."""
    timestamp = seen.headers[TIMESTAMP_HEADER]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + seen.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, seen.headers[SIGNATURE_HEADER])


def test_a_signed_webhook_verifies_at_the_receiver(receiver_factory):
    receiver = receiver_factory()
    receipt = send_webhook(
        url=receiver.url,
        secret=SECRET,
        event="change.approved",
        delivery_id="d-1",
        payload={"event": "change.approved", "data": {"change": 7}},
    )
    assert receipt.status_code == 200
    [seen] = receiver.requests
    assert seen.headers[EVENT_HEADER] == "change.approved"
    assert seen.headers[DELIVERY_HEADER] == "d-1"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body)["data"] == {"change": 7}
    assert _receiver_check(seen)
    assert verify_signature(
        secret=SECRET,
        body=seen.body,
        timestamp=seen.headers[TIMESTAMP_HEADER],
        signature=seen.headers[SIGNATURE_HEADER],
    )
    assert not _receiver_check(seen, secret="another-secret")


def test_the_timestamp_is_signed_so_a_replay_with_a_new_timestamp_fails():
    body = b'{"event":"change.approved"}'
    old = str(int(time.time()) - 3600)
    signature = compute_signature(secret=SECRET, timestamp=old, body=body)
    # The original, an hour later: too old.
    assert not verify_signature(secret=SECRET, body=body, timestamp=old, signature=signature)
    # A replay claiming a fresh timestamp: the signature no longer matches.
    assert not verify_signature(secret=SECRET, body=body, timestamp=str(int(time.time())), signature=signature)
    # Without the freshness check the signature itself is fine.
    assert verify_signature(secret=SECRET, body=body, timestamp=old, signature=signature, tolerance_seconds=None)
    # A tampered body fails.
    assert not verify_signature(
        secret=SECRET, body=body + b" ", timestamp=old, signature=signature, tolerance_seconds=None
    )


def test_a_channel_without_secret_sends_no_signature(receiver_factory):
    receiver = receiver_factory()
    send_webhook(url=receiver.url, secret="", event="drift.detected", delivery_id="d", payload={})
    assert SIGNATURE_HEADER not in receiver.requests[0].headers


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False)])
def test_non_2xx_answers_raise_and_say_whether_to_retry(receiver_factory, status, retryable):
    receiver = receiver_factory(default=status)
    with pytest.raises(NotifyError) as caught:
        send_webhook(url=receiver.url, secret=SECRET, event="change.approved", delivery_id="d", payload={})
    assert caught.value.status_code == status
    assert caught.value.retryable is retryable
    assert str(status) in caught.value.message


def test_an_unreachable_receiver_is_a_retryable_error():
    with pytest.raises(NotifyError) as caught:
        send_webhook(url="http://127.0.0.1:9/hook", secret=SECRET, event="e", delivery_id="d", payload={})
    assert caught.value.retryable and caught.value.status_code is None


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "not a url"])
def test_only_http_urls_are_accepted(url):
    with pytest.raises(NotifyError) as caught:
        send_webhook(url=url, secret=SECRET, event="e", delivery_id="d", payload={})
    assert not caught.value.retryable


def test_redirects_are_not_followed(receiver_factory):
    receiver = receiver_factory(default=302)
    with pytest.raises(NotifyError) as caught:
        send_webhook(url=receiver.url, secret=SECRET, event="e", delivery_id="d", payload={})
    assert caught.value.status_code == 302
    assert len(receiver.requests) == 1
