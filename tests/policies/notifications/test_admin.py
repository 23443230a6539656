from django.urls import reverse

from policies.models import AuditEvent, NotificationChannel
from tests.factories import UserFactory


def test_admin_never_shows_the_secret_and_a_blank_field_keeps_it(client, org):
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    channel = NotificationChannel.objects.create(
        name="hook", team=org.team_a, kind="webhook", target="https://x.example/hook", secret="very-secret-key"
    )
    url = reverse("admin:policies_notificationchannel_change", args=[channel.pk])
    assert "very-secret-key" not in client.get(url).content.decode()
    response = client.post(
        url,
        {
            "name": "hook2",
            "team": org.team_a.pk,
            "user": "",
            "kind": "webhook",
            "target": "https://x.example/hook",
            "secret": "",
            "events": "[]",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "hook2" and channel.secret == "very-secret-key"
    event = AuditEvent.objects.get(action="admin.notificationchannel.changed")
    assert "very-secret-key" not in str(event.before) + str(event.after)
