import pytest
from django.test import override_settings

from policies.choices import DeliveryStatus, NotificationChannelKind, NotificationEvent
from policies.models import NotificationChannel, NotificationDelivery
from policies.services.notifications import notification_preference_set, notify


def channel(
    name,
    *,
    team=None,
    user=None,
    kind=NotificationChannelKind.WEBHOOK,
    events=(),
    enabled=True,
    target="http://127.0.0.1:9/hook",
):
    if kind == NotificationChannelKind.EMAIL:
        target = f"{name}@example.com"
    return NotificationChannel.objects.create(
        name=name, team=team, user=user, kind=kind, target=target, events=list(events), enabled=enabled, secret="k"
    )


def test_notify_reaches_subscribed_enabled_channels_of_the_given_teams_and_users(
    org, enqueued, django_capture_on_commit_callbacks
):
    team_hook = channel("bookinfo-hook", team=org.team_a)
    team_slack = channel(
        "bookinfo-slack",
        team=org.team_a,
        kind=NotificationChannelKind.SLACK,
        events=[NotificationEvent.CHANGE_APPROVED],
    )
    channel("bookinfo-rollouts", team=org.team_a, events=[NotificationEvent.ROLLOUT_FAILED])
    channel("disabled", team=org.team_a, enabled=False)
    channel("shop-hook", team=org.team_b)
    alice_mail = channel("alice", user=org.author, kind=NotificationChannelKind.EMAIL)
    channel("carol", user=org.other, kind=NotificationChannelKind.EMAIL)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        deliveries = notify(
            event=NotificationEvent.CHANGE_APPROVED,
            subject="Change #4 approved",
            body="bob approved it",
            url="/changes/4/",
            payload={"change": 4},
            teams=[org.team_a],
            users=[org.author],
        )
        assert enqueued == []  # nothing is sent before the transaction commits
    assert {d.channel for d in deliveries} == {team_hook, team_slack, alice_mail}
    assert len(callbacks) == 3
    assert sorted(enqueued) == sorted(d.pk for d in deliveries)
    delivery = NotificationDelivery.objects.get(channel=team_hook)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    assert delivery.payload["data"] == {"change": 4} and delivery.payload["url"] == "/changes/4/"
    assert delivery.subject == "Change #4 approved"


def test_a_muted_event_skips_the_users_own_channels_only(org, enqueued):
    team_hook = channel("bookinfo-hook", team=org.team_a)
    channel("alice", user=org.author, kind=NotificationChannelKind.EMAIL)
    bob = channel("bob", user=org.approver, kind=NotificationChannelKind.EMAIL)
    notification_preference_set(user=org.author, event=NotificationEvent.CHANGE_COMMENTED, muted=True)
    deliveries = notify(
        event=NotificationEvent.CHANGE_COMMENTED,
        subject="s",
        body="b",
        teams=[org.team_a],
        users=[org.author, org.approver],
    )
    assert {d.channel for d in deliveries} == {team_hook, bob}
    # Other events still reach alice; unmuting restores this one.
    assert len(notify(event=NotificationEvent.CHANGE_APPROVED, subject="s", body="b", users=[org.author])) == 1
    notification_preference_set(user=org.author, event=NotificationEvent.CHANGE_COMMENTED, muted=False)
    assert len(notify(event=NotificationEvent.CHANGE_COMMENTED, subject="s", body="b", users=[org.author])) == 1


def test_unknown_events_and_no_recipients(org):
    with pytest.raises(ValueError):
        notify(event="change.exploded", subject="s", body="b", teams=[org.team_a])
    assert notify(event=NotificationEvent.DRIFT_DETECTED, subject="s", body="b") == []


@override_settings(MESHGATE_PUBLIC_URL="https://meshgate.example/")
def test_relative_urls_become_absolute_when_the_public_url_is_known(org, enqueued):
    channel("hook", team=org.team_a)
    [delivery] = notify(
        event=NotificationEvent.DRIFT_DETECTED, subject="s", body="b", url="/policies/3/", teams=[org.team_a]
    )
    assert delivery.payload["url"] == "https://meshgate.example/policies/3/"


def test_channel_owned_by_both_a_team_and_a_user_is_refused_by_the_database(org):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        NotificationChannel.objects.create(name="x", team=org.team_a, user=org.author, kind="email", target="a@b.c")
    with pytest.raises(IntegrityError), transaction.atomic():
        NotificationChannel.objects.create(name="x", kind="email", target="a@b.c")
