"""Notification channels as an SSRF lever, and as a way to stall the worker: refused."""

import socket
import threading
import time

import pytest
from django.urls import reverse

from policies.choices import DeliveryStatus, NotificationEvent
from policies.exceptions import Throttled
from policies.models import NotificationChannel, NotificationDelivery
from policies.services.notifications import (
    TEST_SENDS_PER_WINDOW,
    notification_deliver,
    notification_send_test,
)

INTERNAL_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://localhost/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://[::1]/hook",
]


@pytest.mark.parametrize("target", INTERNAL_TARGETS)
def test_a_channel_pointing_inside_the_network_is_refused_on_the_form(client, org, settings, target):
    settings.MESHGATE_EGRESS_ALLOW = []  # production's default
    client.force_login(org.other)
    response = client.post(
        reverse("governance:channel-create"),
        {"name": "x", "owner": "user", "kind": "webhook", "target": target, "enabled": "on"},
    )
    assert response.status_code == 400, target
    page = response.content.decode()
    assert "is not an allowed destination" in page or "http(s) URL" in page
    assert not NotificationChannel.objects.exists()


def test_a_delivery_to_a_refused_target_fails_without_showing_any_body(
    org, settings, receiver_factory, enqueued, django_capture_on_commit_callbacks
):
    receiver = receiver_factory(default=500)  # would answer "receiver says no"
    channel = NotificationChannel.objects.create(
        name="inside", user=org.author, kind="webhook", target=receiver.url.replace("127.0.0.1", "2130706433")
    )
    settings.MESHGATE_EGRESS_ALLOW = []
    with django_capture_on_commit_callbacks(execute=True):
        delivery = notification_send_test(actor=org.author, channel=channel)
    outcome = notification_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert outcome.status == DeliveryStatus.FAILED  # never retried: the same URL is refused again
    assert "is not an allowed destination" in delivery.last_error and "a loopback address" in delivery.last_error
    assert "receiver says no" not in delivery.last_error and receiver.requests == []


def test_a_trickling_receiver_costs_one_timeout_not_minutes(org, monkeypatch, enqueued):
    monkeypatch.setenv("MESHGATE_NOTIFY_TIMEOUT_SECONDS", "1")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 50
    sent = []

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        try:
            for byte in answer:
                conn.sendall(bytes([byte]))
                sent.append(byte)
                time.sleep(0.5)  # one byte every 0.5 s: 45 s for the whole answer
        except OSError:
            pass
        conn.close()

    receiver = threading.Thread(target=trickle, daemon=True)
    receiver.start()
    channel = NotificationChannel.objects.create(
        name="slow", user=org.author, kind="webhook", target=f"http://127.0.0.1:{server.getsockname()[1]}/"
    )
    delivery = notification_send_test(actor=org.author, channel=channel)
    notification_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert "no complete answer within 1 s" in delivery.last_error
    receiver.join(60)  # the receiver sees the hang-up at its next byte
    assert not receiver.is_alive() and len(sent) < len(answer), "the delivery waited for the whole answer"
    server.close()


def test_channel_tests_are_throttled_per_user(client, org, enqueued):
    channel = NotificationChannel.objects.create(name="mine", user=org.author, kind="email", target="alice@example.com")
    for _ in range(TEST_SENDS_PER_WINDOW):
        notification_send_test(actor=org.author, channel=channel)
    with pytest.raises(Throttled):
        notification_send_test(actor=org.author, channel=channel)
    client.force_login(org.author)
    response = client.post(reverse("governance:channel-test", args=[channel.pk]), follow=True)
    assert "wait before sending another" in response.content.decode()
    assert NotificationDelivery.objects.filter(event=NotificationEvent.TEST).count() == TEST_SENDS_PER_WINDOW
