import pytest
from django.urls import reverse

from policies.choices import AuditAction, NotificationChannelKind, NotificationEvent, Role
from policies.models import AuditEvent, NotificationChannel, NotificationDelivery, NotificationPreference
from policies.services.notifications import notify
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def channels(org):
    return {
        "team_a": NotificationChannel.objects.create(
            name="bookinfo-slack",
            team=org.team_a,
            kind="slack",
            target="https://hooks.slack.example/services/T0/B0/SECRET",
        ),
        "team_b": NotificationChannel.objects.create(
            name="shop-hook", team=org.team_b, kind="webhook", target="https://shop.example/hook", secret="k"
        ),
        "alice": NotificationChannel.objects.create(
            name="alice-mail", user=org.author, kind="email", target="alice@example.com"
        ),
    }


@pytest.fixture
def team_admin(org):
    user = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return user


def test_the_page_lists_own_and_team_channels_only(client, org, channels):
    client.force_login(org.author)
    html = client.get(reverse("governance:notifications")).content.decode()
    assert "bookinfo-slack" in html and "alice-mail" in html and "shop-hook" not in html
    # A member who does not manage the team channel sees its URL without the token.
    assert "SECRET" not in html and "https://hooks.slack.example/…" in html


@pytest.mark.parametrize("name", ["channel-edit", "channel-delete", "channel-test"])
def test_another_teams_channel_is_404(client, org, channels, name):
    client.force_login(org.author)
    method = client.get if name == "channel-edit" else client.post
    assert method(reverse(f"governance:{name}", args=[channels["team_b"].pk])).status_code == 404
    assert NotificationChannel.objects.filter(pk=channels["team_b"].pk).exists()


@pytest.mark.parametrize("name", ["channel-edit", "channel-delete", "channel-test"])
def test_team_members_who_are_not_admins_get_403_on_team_channels(client, org, channels, name):
    client.force_login(org.approver)
    method = client.get if name == "channel-edit" else client.post
    assert method(reverse(f"governance:{name}", args=[channels["team_a"].pk])).status_code == 403


def test_team_admins_manage_team_channels(
    client, org, channels, team_admin, enqueued, django_capture_on_commit_callbacks
):
    client.force_login(team_admin)
    url = reverse("governance:channel-edit", args=[channels["team_a"].pk])
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "name": "bookinfo-alerts",
            "kind": "slack",
            "target": channels["team_a"].target,
            "events": ["rollout.failed", "rollout.rolled_back"],
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    channel = NotificationChannel.objects.get(pk=channels["team_a"].pk)
    assert channel.name == "bookinfo-alerts" and channel.events == ["rollout.failed", "rollout.rolled_back"]
    event = AuditEvent.objects.get(action=AuditAction.CHANNEL_UPDATED)
    assert "SECRET" not in str(event.before) + str(event.after)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("governance:channel-test", args=[channel.pk])).status_code == 302
    delivery = NotificationDelivery.objects.get(channel=channel)
    assert delivery.event == NotificationEvent.TEST and enqueued == [delivery.pk]


def test_team_admins_create_team_channels_and_others_cannot(client, org, team_admin, enqueued):
    client.force_login(team_admin)
    form = {
        "name": "team-mail",
        "owner": f"team:{org.team_a.pk}",
        "kind": "email",
        "target": "bookinfo@example.com",
        "enabled": "on",
    }
    assert client.post(reverse("governance:channel-create"), form).status_code == 302
    assert NotificationChannel.objects.get(name="team-mail").team == org.team_a
    client.force_login(org.author)  # an author of the same team, not an admin
    response = client.post(reverse("governance:channel-create"), {**form, "name": "sneaky"})
    assert response.status_code == 400
    assert not NotificationChannel.objects.filter(name="sneaky").exists()


def test_a_new_webhook_shows_its_generated_secret_once(client, org):
    client.force_login(org.other)
    response = client.post(
        reverse("governance:channel-create"),
        {
            "name": "my-hook",
            "owner": "user",
            "kind": "webhook",
            "target": "https://carol.example/hook",
            "enabled": "on",
        },
    )
    channel = NotificationChannel.objects.get(name="my-hook")
    assert channel.user == org.other and len(channel.secret) >= 32
    assert channel.secret in response.content.decode()
    assert channel.secret not in client.get(reverse("governance:notifications")).content.decode()
    assert AuditEvent.objects.get(action=AuditAction.CHANNEL_CREATED).after["has_secret"] is True


def test_bad_targets_are_refused_on_the_form(client, org):
    client.force_login(org.other)
    response = client.post(
        reverse("governance:channel-create"),
        {"name": "x", "owner": "user", "kind": "webhook", "target": "javascript:alert(1)", "enabled": "on"},
    )
    assert response.status_code == 400 and "http(s) URL" in response.content.decode()


def test_users_delete_their_own_channels(client, org, channels):
    client.force_login(org.author)
    assert client.post(reverse("governance:channel-delete", args=[channels["alice"].pk])).status_code == 302
    assert not NotificationChannel.objects.filter(pk=channels["alice"].pk).exists()
    assert AuditEvent.objects.filter(action=AuditAction.CHANNEL_DELETED).count() == 1


def test_the_delivery_log_is_scoped(client, org, channels, enqueued):
    notify(event=NotificationEvent.CHANGE_APPROVED, subject="for-bookinfo", body="b", teams=[org.team_a])
    notify(event=NotificationEvent.CHANGE_APPROVED, subject="for-shop", body="b", teams=[org.team_b])
    client.force_login(org.approver)
    html = client.get(reverse("governance:notifications")).content.decode()
    assert "for-bookinfo" in html and "for-shop" not in html
    admin = UserFactory(username="root", is_superuser=True)
    client.force_login(admin)
    html = client.get(reverse("governance:notifications")).content.decode()
    assert "for-bookinfo" in html and "for-shop" in html
    assert "for-shop" not in client.get(reverse("governance:notifications") + "?status=delivered").content.decode()


def test_preferences_mute_and_unmute(client, org):
    client.force_login(org.author)
    url = reverse("governance:preferences")
    client.post(url, {"muted": ["change.commented", "rollout.step"]})
    assert set(NotificationPreference.objects.filter(user=org.author, muted=True).values_list("event", flat=True)) == {
        "change.commented",
        "rollout.step",
    }
    client.post(url, {"muted": ["rollout.step"]})
    assert set(NotificationPreference.objects.filter(user=org.author, muted=True).values_list("event", flat=True)) == {
        "rollout.step"
    }
    page = client.get(reverse("governance:notifications")).content.decode()
    assert 'value="rollout.step" id="mute-' in page


def test_channel_secret_is_encrypted_at_rest(org):
    from django.db import connection

    channel = NotificationChannel.objects.create(
        name="h",
        team=org.team_a,
        kind=NotificationChannelKind.WEBHOOK,
        target="https://x.example/",
        secret="plain-secret-value",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM policies_notificationchannel WHERE id = %s", [channel.pk])
        stored = cursor.fetchone()[0]
    assert stored and "plain-secret-value" not in stored
