from django.urls import reverse

from policies.models import AuditEvent, ChangeWindow, Guardrail
from tests.factories import UserFactory


def _superuser_client(client):
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    return client


def test_admin_site_refuses_invalid_cel_naming_the_position(client, no_guardrails):
    _superuser_client(client)
    response = client.post(
        reverse("admin:policies_guardrail_add"),
        {
            "name": "x",
            "enforcement": "advisory",
            "expression": "object.kind ==",
            "message": "m",
            "parameters": "{}",
            "kinds": "[]",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "invalid CEL at line 1, column 13" in response.content.decode()
    assert not Guardrail.objects.exists()
    response = client.post(
        reverse("admin:policies_guardrail_add"),
        {
            "name": "x",
            "enforcement": "advisory",
            "expression": "true",
            "message": "m",
            "parameters": "{}",
            "kinds": '["VirtualService"]',
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="admin.guardrail.created").count() == 1


def test_admin_site_creates_change_windows(client, prod):
    _superuser_client(client)
    response = client.post(
        reverse("admin:policies_changewindow_add"),
        {
            "environment": prod.pk,
            "name": "Weekend freeze",
            "kind": "freeze",
            "enabled": "on",
            "weekdays": "[4]",
            "start_time": "16:00",
            "end_time": "08:00",
            "end_weekday": "0",
            "timezone": "Europe/Berlin",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ChangeWindow.objects.get(name="Weekend freeze").end_weekday == 0
    response = client.post(
        reverse("admin:policies_changewindow_add"),
        {
            "environment": prod.pk,
            "name": "Broken",
            "kind": "freeze",
            "weekdays": "[4]",
            "start_time": "16:00",
            "end_time": "08:00",
            "timezone": "Berlin/Nowhere",
        },
    )
    assert response.status_code == 200 and "is not an IANA time zone name" in response.content.decode()
