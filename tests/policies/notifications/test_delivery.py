"""Delivery attempts in this process against a real HTTP receiver on 127.0.0.1."""

import datetime as dt
import json

import pytest
from django.core import mail
from django.utils import timezone

from integrations.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from policies.choices import DeliveryStatus, NotificationChannelKind, NotificationEvent
from policies.models import NotificationChannel, NotificationDelivery
from policies.services.notifications import notification_deliver, notifications_due, notify
from policies.tasks import retry_due_notifications


@pytest.fixture
def hook(org, receiver_factory):
    def make(script=None, default=200, kind=NotificationChannelKind.WEBHOOK):
        receiver = receiver_factory(script, default)
        channel = NotificationChannel.objects.create(
            name="hook", team=org.team_a, kind=kind, target=receiver.url, secret="hook-secret"
        )
        return receiver, channel

    return make


def queue(org, event=NotificationEvent.CHANGE_APPROVED):
    [delivery] = notify(
        event=event,
        subject="Change #9 approved",
        body="bob approved bookinfo/reviews",
        url="https://meshgate.example/changes/9/",
        payload={"change": 9, "environment": "staging"},
        teams=[org.team_a],
    )
    return delivery


def make_due(delivery):
    NotificationDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


def test_a_webhook_delivery_is_signed_and_recorded(org, hook, enqueued, fast_retries):
    receiver, _ = hook()
    delivery = queue(org)
    assert notification_deliver(delivery_id=delivery.pk).status == DeliveryStatus.DELIVERED
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    [seen] = receiver.requests
    assert verify_signature(
        secret="hook-secret",
        body=seen.body,
        timestamp=seen.headers[TIMESTAMP_HEADER],
        signature=seen.headers[SIGNATURE_HEADER],
    )
    body = json.loads(seen.body)
    assert body["event"] == "change.approved" and body["delivery"] == str(delivery.uuid)
    assert body["data"] == {"change": 9, "environment": "staging"}
    # Delivered rows are never sent again.
    assert notification_deliver(delivery_id=delivery.pk).status == "skipped"
    assert len(receiver.requests) == 1


def test_a_failing_receiver_is_retried_with_backoff_then_delivered(org, hook, enqueued, fast_retries):
    receiver, _ = hook(script=[500, 503])
    delivery = queue(org)
    first = notification_deliver(delivery_id=delivery.pk)
    assert first.status == DeliveryStatus.RETRYING and first.retry_in == pytest.approx(0.2)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_status_code == 500 and "500" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()
    # Not due yet: a second task (say, from the periodic job) does nothing.
    assert notification_deliver(delivery_id=delivery.pk).status == "skipped"
    make_due(delivery)
    second = notification_deliver(delivery_id=delivery.pk)
    assert second.retry_in == pytest.approx(0.4)  # doubled
    make_due(delivery)
    assert notification_deliver(delivery_id=delivery.pk).status == DeliveryStatus.DELIVERED
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 3, "")
    assert len(receiver.requests) == 3
    # The same delivery id on every attempt, so the receiver can deduplicate.
    assert len({seen.headers["X-Meshgate-Delivery"] for seen in receiver.requests}) == 1


def test_it_gives_up_after_the_last_attempt(org, hook, enqueued, fast_retries):
    receiver, _ = hook(default=500)
    delivery = queue(org)
    for _ in range(3):
        make_due(delivery)
        outcome = notification_deliver(delivery_id=delivery.pk)
    assert outcome.status == DeliveryStatus.FAILED and outcome.retry_in is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    make_due(delivery)
    assert notification_deliver(delivery_id=delivery.pk).status == "skipped"
    assert len(receiver.requests) == 3


def test_a_404_is_not_retried(org, hook, enqueued, fast_retries):
    _, _ = hook(default=404)
    delivery = queue(org)
    assert notification_deliver(delivery_id=delivery.pk).status == DeliveryStatus.FAILED
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_status_code == 404


def test_slack_channels_get_blocks(org, hook, enqueued):
    receiver, _ = hook(kind=NotificationChannelKind.SLACK)
    notification_deliver(delivery_id=queue(org).pk)
    body = json.loads(receiver.requests[0].body)
    assert body["text"] == "<https://meshgate.example/changes/9/|Change #9 approved>"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Change #9 approved", "emoji": False},
    }
    assert {"type": "mrkdwn", "text": "*environment*\nstaging"} in body["blocks"][2]["fields"]
    assert SIGNATURE_HEADER not in receiver.requests[0].headers


def test_email_channels_send_mail(org, enqueued):
    NotificationChannel.objects.create(
        name="mail", user=org.author, kind=NotificationChannelKind.EMAIL, target="alice@example.com"
    )
    [delivery] = notify(
        event=NotificationEvent.CHANGE_REJECTED,
        subject="Change #9 rejected",
        body="see comments",
        url="https://meshgate.example/changes/9/",
        users=[org.author],
    )
    assert notification_deliver(delivery_id=delivery.pk).status == DeliveryStatus.DELIVERED
    [message] = mail.outbox
    assert message.to == ["alice@example.com"] and message.subject == "[Meshgate] Change #9 rejected"
    assert "https://meshgate.example/changes/9/" in message.body


def test_a_disabled_channel_fails_the_delivery(org, hook, enqueued):
    receiver, channel = hook()
    delivery = queue(org)
    NotificationChannel.objects.filter(pk=channel.pk).update(enabled=False)
    assert notification_deliver(delivery_id=delivery.pk).status == DeliveryStatus.FAILED
    assert receiver.requests == []


def test_overdue_deliveries_are_picked_up_again(org, hook, enqueued, fast_retries):
    hook(script=[500])
    delivery = queue(org)
    notification_deliver(delivery_id=delivery.pk)  # now retrying, due in 0.2 s
    assert notifications_due() == []
    NotificationDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - dt.timedelta(minutes=5))
    assert notifications_due() == [delivery.pk]
    enqueued.clear()
    assert retry_due_notifications() == 1
    assert enqueued == [delivery.pk]
    notification_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2


def test_an_attempt_in_progress_holds_a_lease(org, hook, enqueued):
    hook()
    delivery = queue(org)
    # Another worker claimed it a moment ago (its lease lies in the future).
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=timezone.now() + dt.timedelta(seconds=40)
    )
    assert notification_deliver(delivery_id=delivery.pk).status == "skipped"
    assert notifications_due() == []
