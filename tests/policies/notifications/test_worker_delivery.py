"""Deliveries through a REAL Celery worker process (the configured broker) to a REAL HTTP receiver."""

import time

import pytest

from integrations.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from policies.choices import DeliveryStatus, NotificationChannelKind, NotificationEvent
from policies.models import NotificationChannel, NotificationDelivery
from policies.services.notifications import notify
from tests.factories import TeamFactory
from tests.fixtures.worker import wait_worker_idle

SECRET = "worker-test-secret"


@pytest.fixture
def notify_worker(fast_retries, transactional_db, request):
    """A worker started after the fast-retry environment is set, so that it inherits it."""
    return request.getfixturevalue("celery_worker_process")


def _wait_for(delivery_id, statuses, timeout=60.0) -> NotificationDelivery:
    deadline = time.monotonic() + timeout
    while True:
        delivery = NotificationDelivery.objects.get(pk=delivery_id)
        if delivery.status in statuses:
            return delivery
        if time.monotonic() > deadline:
            pytest.fail(f"delivery still {delivery.status} after {timeout}s (attempts {delivery.attempts})")
        time.sleep(0.1)


def _queue(receiver_url) -> NotificationDelivery:
    team = TeamFactory(slug="bookinfo")
    NotificationChannel.objects.create(
        name="hook", team=team, kind=NotificationChannelKind.WEBHOOK, target=receiver_url, secret=SECRET
    )
    [delivery] = notify(
        event=NotificationEvent.ROLLOUT_FAILED,
        subject="Rollout #3 failed",
        body="p99 too high",
        url="https://meshgate.example/rollouts/3/",
        payload={"rollout": 3},
        teams=[team],
    )
    return delivery


def _signed(seen) -> bool:
    return verify_signature(
        secret=SECRET,
        body=seen.body,
        timestamp=seen.headers[TIMESTAMP_HEADER],
        signature=seen.headers[SIGNATURE_HEADER],
    )


@pytest.mark.worker
def test_the_worker_retries_until_the_receiver_accepts(notify_worker, receiver_factory):
    receiver = receiver_factory(script=[500, 500], default=200)
    delivery = _queue(receiver.url)

    delivery = _wait_for(delivery.pk, {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    assert delivery.last_status_code == 200 and delivery.last_error == ""
    assert len(receiver.requests) == 3
    assert all(_signed(seen) for seen in receiver.requests)
    assert {seen.headers["X-Meshgate-Event"] for seen in receiver.requests} == {"rollout.failed"}


@pytest.mark.worker
def test_the_worker_gives_up_after_max_attempts(notify_worker, receiver_factory):
    receiver = receiver_factory(default=500)
    delivery = _queue(receiver.url)

    delivery = _wait_for(delivery.pk, {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3 and delivery.last_status_code == 500
    wait_worker_idle()  # no attempt left anywhere: none running, none waiting for its countdown, none queued
    assert len(receiver.requests) == 3
    assert all(_signed(seen) for seen in receiver.requests)
