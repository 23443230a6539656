"""API for a team's members and for approval rules, through tokens as pipelines use them."""

from django.urls import reverse

from policies.choices import Role
from policies.models import ApprovalRule, AuditEvent
from portal.choices import TokenScope
from tests.api_testing import EndpointContract, assert_error, bearer_client, token_for
from tests.factories import MembershipFactory, UserFactory


def admin_of_bookinfo(org):
    user = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return user


class TestMemberList(EndpointContract):
    def url(self, org):
        return reverse("api:team-members", kwargs={"slug": "bookinfo"})

    def check_response(self, response, org):
        assert sorted(response.json(), key=lambda m: m["username"]) == [
            {"username": "alice", "role": "author", "source": "local"},
            {"username": "bob", "role": "approver", "source": "local"},
        ]


class TestMemberAdd(EndpointContract):
    method = "post"
    scope = TokenScope.WRITE

    def url(self, org):
        return reverse("api:team-members", kwargs={"slug": "bookinfo"})

    def payload(self, org):
        return {"username": "nobody", "role": "approver"}

    def permitted_user(self, org):
        if not hasattr(org, "tara"):
            org.tara = admin_of_bookinfo(org)
        return org.tara

    def check_response(self, response, org):
        assert response.json() == {"username": "nobody", "role": "approver", "source": "local"}
        assert AuditEvent.objects.filter(action="team.member_set", actor_name="tara").exists()


def write_client(user):
    return bearer_client(token_for(user, scopes=[TokenScope.WRITE]))


def test_role_change_and_removal(org):
    client = write_client(admin_of_bookinfo(org))
    url = reverse("api:team-member", kwargs={"slug": "bookinfo", "username": "alice"})
    response = client.patch(url, {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert_error(client.patch(url, {"role": "admin"}, format="json"), 404, code="not_found")
    details = assert_error(client.patch(url, {"role": "owner"}, format="json"), 400, code="invalid")
    assert "role" in details


def test_another_teams_admin_gets_403_and_learns_nothing(org):
    sven = UserFactory(username="sven")
    MembershipFactory(team=org.team_b, user=sven, role=Role.ADMIN)
    client = write_client(sven)
    message = "only admins of team Bookinfo (or platform admins) may manage its members"
    members = reverse("api:team-members", kwargs={"slug": "bookinfo"})
    assert_error(client.post(members, {"username": "sven", "role": "admin"}, format="json"), 403, message=message)
    for username in ("alice", "no-such-user"):  # a member or not: the same answer
        url = reverse("api:team-member", kwargs={"slug": "bookinfo", "username": username})
        assert_error(client.patch(url, {"role": "admin"}, format="json"), 403, message=message)
        assert_error(client.delete(url), 403, message=message)
    assert sorted(org.team_a.memberships.values_list("user__username", flat=True)) == ["alice", "bob"]


def test_the_last_admin_stays(org):
    client = write_client(admin_of_bookinfo(org))
    url = reverse("api:team-member", kwargs={"slug": "bookinfo", "username": "tara"})
    details = assert_error(client.delete(url), 400, code="invalid")
    assert details == {"role": ["tara is the last admin of team Bookinfo: make someone else admin first"]}


def test_approval_rules_crud_for_a_team_admin(org):
    client = write_client(admin_of_bookinfo(org))
    response = client.post(
        reverse("api:approval-rule-list"),
        {"team": "bookinfo", "environment": "staging", "kind": "AuthorizationPolicy", "required_approvals": 2},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["team"], body["environment"], body["kind"], body["required_approvals"]) == (
        "bookinfo",
        "staging",
        "AuthorizationPolicy",
        2,
    )
    url = reverse("api:approval-rule-detail", kwargs={"pk": body["id"]})
    response = client.patch(url, {"security_approval": "always"}, format="json")
    assert response.status_code == 200 and response.json()["security_approval"] == "always"
    assert response.json()["required_approvals"] == 2  # what PATCH did not send stays
    details = assert_error(client.patch(url, {"security_approval": "never"}, format="json"), 400, code="invalid")
    assert "cannot waive it" in details["required_approvals"][0]
    details = assert_error(
        client.post(reverse("api:approval-rule-list"), {"team": "bookinfo", "kind": "Nope"}, format="json"),
        400,
        code="invalid",
    )
    assert "kind" in details
    listed = client.get(reverse("api:approval-rule-list")).json()
    assert [rule["id"] for rule in listed["results"]] == [body["id"]]
    assert client.delete(url).status_code == 204
    assert not ApprovalRule.objects.exists()
    assert list(
        AuditEvent.objects.filter(object_type="policies.ApprovalRule")
        .order_by("sequence")
        .values_list("action", flat=True)
    ) == ["approval_rule.created", "approval_rule.updated", "approval_rule.deleted"]


def test_nul_bytes_are_refused_not_looked_up(org):
    """PostgreSQL text refuses NUL: a name holding one is a 400 (or a 404 in a path), never a 500."""
    client = write_client(admin_of_bookinfo(org))
    details = assert_error(
        client.post(
            reverse("api:approval-rule-list"), {"team": "book\x00info", "required_approvals": 2}, format="json"
        ),
        400,
        code="invalid",
    )
    assert "team" in details
    details = assert_error(
        client.post(
            reverse("api:approval-rule-list"),
            {"team": "bookinfo", "environment": "stag\x00ing", "required_approvals": 2},
            format="json",
        ),
        400,
        code="invalid",
    )
    assert "environment" in details
    members = reverse("api:team-members", kwargs={"slug": "bookinfo"})
    details = assert_error(client.post(members, {"username": "no\x00body"}, format="json"), 400, code="invalid")
    assert "username" in details
    assert_error(client.delete(f"{members}no%00body/"), 404, code="not_found")
    assert_error(client.patch(f"{members}no%00body/", {"role": "admin"}, format="json"), 404, code="not_found")
