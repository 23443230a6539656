"""The audit log page: who may read it, filters, pagination, streaming export, the chain banner."""

import csv
import datetime as dt
import io
import json

import pytest
from django.core.cache import cache
from django.http import StreamingHttpResponse
from django.utils import timezone

from policies.choices import Role
from policies.models import AuditEvent
from policies.services.audit import audit_record
from tests.factories import (
    MembershipFactory,
    TeamFactory,
    UserFactory,
    grant_platform_admin,
    restart_audit_numbers,
)
from tests.policies.changes.helpers import make_change
from tests.policies.services.test_audit import _tamper

URL = "/audit/"


@pytest.fixture
def admin(org):
    user = UserFactory(username="ada")
    MembershipFactory(team=TeamFactory(slug="platform"), user=user, role=Role.ADMIN)
    return grant_platform_admin(user)


@pytest.fixture
def events(org, admin):
    restart_audit_numbers()
    cache.clear()
    audit_record(action="team.created", actor=admin, obj=org.team_a)
    audit_record(action="change.created", actor=org.author, obj=org.policy_a, environment="staging")
    audit_record(action="change.submitted", actor=org.author, obj=org.policy_b, environment="staging")
    return list(AuditEvent.objects.order_by("sequence"))


def rows(response) -> list[str]:
    body = response.content.decode()
    table = body.split('class="table table-sm table-hover align-middle mb-0 mg-table mg-audit-table"')[1]
    return [cell.split("</code>")[0] for cell in table.split("<code>")[1:]]


@pytest.mark.parametrize(("who", "status"), [("author", 403), ("approver", 403), ("sec", 200), ("admin", 200)])
def test_admins_and_the_security_team_only(client, org, admin, events, who, status):
    client.force_login(admin if who == "admin" else getattr(org, who))
    assert client.get(URL).status_code == status
    assert client.get(URL + "export.csv").status_code == status


def test_filters(client, org, admin, events):
    client.force_login(admin)
    assert rows(client.get(URL)) == ["change.submitted", "change.created", "team.created"]
    assert rows(client.get(URL, {"actor": "ali"})) == ["change.submitted", "change.created"]
    assert rows(client.get(URL, {"action": "change."})) == ["change.submitted", "change.created"]
    assert rows(client.get(URL, {"action": "change.created"})) == ["change.created"]
    assert rows(client.get(URL, {"obj": "payments"})) == ["change.submitted"]
    assert rows(client.get(URL, {"obj": "policies.Team"})) == ["team.created"]
    assert rows(client.get(URL, {"environment": "staging"})) == ["change.submitted", "change.created"]
    later = (timezone.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert rows(client.get(URL, {"since": later})) == []
    assert rows(client.get(URL, {"until": later})) == ["change.submitted", "change.created", "team.created"]
    assert rows(client.get(URL, {"object_type": "policies.Policy", "object_id": str(org.policy_b.pk)})) == [
        "change.submitted"
    ]
    assert client.get(URL, {"since": "not a time"}).status_code == 400


def test_pagination(client, org, admin, events):
    for number in range(60):
        audit_record(action="team.member_set", actor=admin, obj=org.team_a, after={"n": number})
    client.force_login(admin)
    first = client.get(URL)
    assert len(rows(first)) == 50 and "page 1 of 2" in first.content.decode()
    assert len(rows(client.get(URL, {"page": 2}))) == 13


def test_export_csv_and_json_of_the_filtered_set_streamed(client, org, admin, events):
    client.force_login(admin)
    response = client.get(URL + "export.csv", {"actor": "alice"})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].startswith('attachment; filename="meshgate-audit-')
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in table] == ["change.created", "change.submitted"]  # oldest first
    assert table[0]["hash"] == events[1].hash and table[0]["object_repr"] == str(org.policy_a)

    response = client.get(URL + "export.json", {"action": "team."})
    data = json.loads(b"".join(response.streaming_content))
    assert [event["action"] for event in data] == ["team.created"]
    assert data[0]["sequence"] == 1 and data[0]["hash_version"] == 2 and len(data[0]["hash"]) == 64
    assert json.loads(b"".join(client.get(URL + "export.json", {"actor": "nobody"}).streaming_content)) == []
    assert client.get(URL + "export.xml").status_code == 404


def test_the_banner_says_whether_the_chain_verifies(client, org, admin, events):
    client.force_login(admin)
    page = client.get(URL).content.decode()
    assert 'data-chain="ok"' in page and "3 events checked" in page
    _tamper(("UPDATE policies_auditevent SET actor_name = %s WHERE sequence = %s", ["mallory", 2]))
    page = client.get(URL, {"verify": "1"}).content.decode()
    assert 'data-chain="broken"' in page and "#2" in page and "does not match its hash" in page


def test_a_change_links_to_its_audit_events(client, cluster_org, admin):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client.force_login(admin)
    response = client.get(URL, {"object_type": "policies.ChangeRequest", "object_id": str(change.pk)})
    assert rows(response) == ["change.created"]


def test_the_audit_log_nav_item_only_for_those_who_may_read_it(client, org, admin):
    """Admins and the security team see the item; others see none (the page would answer 403)."""
    link = f'href="{URL}"'
    for user in (admin, org.sec):
        client.force_login(user)
        assert link in client.get("/").content.decode(), user
        assert client.get(URL).status_code == 200
    for user in (org.author, org.approver, org.outsider):
        client.force_login(user)
        assert link not in client.get("/").content.decode(), user
        assert client.get(URL).status_code == 403
