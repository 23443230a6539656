"""Notification channels through the API: a pipeline (or a person) subscribes a webhook to events."""

from policies.choices import AuditAction, Role
from policies.models import AuditEvent, NotificationChannel, NotificationDelivery
from portal.choices import TokenScope
from tests.api_testing import assert_error, bearer_client, session_client, token_for
from tests.factories import MembershipFactory

LIST = "/api/v1/channels/"
HOOK = {
    "name": "pipeline",
    "kind": "webhook",
    "target": "https://ci.example.com/hooks/meshgate",
    "events": ["rollout.promoted", "rollout.rolled_back"],
}


def test_a_channel_of_your_own_with_its_secret_shown_once(org):
    client = bearer_client(token_for(org.author, [TokenScope.WRITE]))
    response = client.post(LIST, HOOK, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["user"] == "alice" and body["team"] is None and len(body["secret"]) > 20
    channel = NotificationChannel.objects.get()
    assert channel.secret == body["secret"]  # stored encrypted; the answer is the only place it is shown
    shown = client.get(f"{LIST}{channel.pk}/").json()
    assert "secret" not in shown and shown["events"] == HOOK["events"]
    assert AuditEvent.objects.filter(action=AuditAction.CHANNEL_CREATED).count() == 1


def test_team_channels_need_the_team_s_admin(org):
    refused = session_client(org.author).post(LIST, {**HOOK, "team": "bookinfo"}, format="json")
    assert_error(refused, 403)
    MembershipFactory(team=org.team_a, user=org.other, role=Role.ADMIN)
    created = session_client(org.other).post(LIST, {**HOOK, "team": "bookinfo"}, format="json")
    assert created.status_code == 201
    # members of the team see it, others do not
    assert [c["name"] for c in session_client(org.author).get(LIST).json()["results"]] == ["pipeline"]
    assert session_client(org.outsider).get(LIST).json()["results"] == []


def test_bad_targets_and_events_are_refused_with_the_field(org):
    client = session_client(org.author)
    assert_error(client.post(LIST, {**HOOK, "target": "ftp://x"}, format="json"), 400)
    assert_error(client.post(LIST, {**HOOK, "events": ["no.such"]}, format="json"), 400)
    assert not NotificationChannel.objects.exists()


def test_test_and_deliveries_and_delete(org):
    client = session_client(org.author)
    channel_id = client.post(LIST, HOOK, format="json").json()["id"]
    queued = client.post(f"{LIST}{channel_id}/test/")
    assert queued.status_code == 202 and queued.json()["event"] == "notification.test"
    assert [d["event"] for d in client.get(f"{LIST}{channel_id}/deliveries/").json()] == ["notification.test"]
    assert_error(session_client(org.other).post(f"{LIST}{channel_id}/test/"), 404)  # not visible to others
    assert client.delete(f"{LIST}{channel_id}/").status_code == 204
    assert not NotificationChannel.objects.exists() and not NotificationDelivery.objects.exists()
