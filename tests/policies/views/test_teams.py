"""The team pages: everyone reads a team; its admins manage members there (CSRF-protected forms)."""

import pytest
from django.test import Client

from policies.choices import MembershipSource, Role
from policies.models import Membership
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture
def tara(org):
    user = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return user


def signed_in(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_the_team_list_links_every_team_and_marks_those_you_manage(org, tara):
    page = signed_in(tara).get("/teams/")
    body = page.content.decode()
    assert page.status_code == 200
    for slug in ("bookinfo", "shop", "security"):
        assert f'href="/teams/{slug}/"' in body
    assert body.count("you manage it") == 1
    assert 'href="/teams/"' in signed_in(org.author).get("/").content.decode()  # in the user menu


def test_members_read_a_team_without_the_forms(org):
    body = signed_in(org.other).get("/teams/bookinfo/").content.decode()
    assert 'data-member="alice"' in body and 'data-member="bob"' in body
    assert "Add a member" not in body and "Remove" not in body


def test_an_admin_adds_changes_and_removes_members(org, tara):
    client = signed_in(tara)
    body = client.get("/teams/bookinfo/").content.decode()
    assert "Add a member" in body and "csrfmiddlewaretoken" in body
    response = client.post("/teams/bookinfo/members/", {"username": "nobody", "role": "approver"})
    assert response.status_code == 302 and response["Location"] == "/teams/bookinfo/"
    assert client.post("/teams/bookinfo/members/", {"username": "alice", "role": "admin"}).status_code == 302
    assert client.post("/teams/bookinfo/members/remove/", {"username": "bob"}).status_code == 302
    assert dict(org.team_a.memberships.values_list("user__username", "role")) == {
        "alice": "admin",
        "tara": "admin",
        "nobody": "approver",
    }


def test_refusals_are_4xx_with_the_reason_and_change_nothing(org, tara):
    MembershipFactory(
        team=org.team_a, user=UserFactory(username="ssouser"), role=Role.AUTHOR, source=MembershipSource.SSO
    )
    client = signed_in(tara)
    response = client.post("/teams/bookinfo/members/", {"username": "ghost", "role": "author"})
    assert response.status_code == 400 and "no user is named &#x27;ghost&#x27;" in response.content.decode()
    response = client.post("/teams/bookinfo/members/", {"username": "nobody", "role": "owner"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    response = client.post("/teams/bookinfo/members/remove/", {"username": "tara"})
    assert response.status_code == 400 and "tara is the last admin of team Bookinfo" in response.content.decode()
    body = client.get("/teams/bookinfo/").content.decode()
    row = body[body.index('data-member="ssouser"') :]
    assert "From single sign-on groups" in row[: row.index("</tr>")] and "Remove" not in row[: row.index("</tr>")]
    assert client.post("/teams/shop/members/", {"username": "nobody", "role": "admin"}).status_code == 403
    assert client.post("/teams/nope/members/", {"username": "nobody", "role": "admin"}).status_code == 404
    assert Membership.objects.filter(user__username="nobody").count() == 0


def test_forms_need_the_csrf_token(org, tara):
    client = signed_in(tara, enforce_csrf_checks=True)
    assert client.post("/teams/bookinfo/members/", {"username": "nobody", "role": "author"}).status_code == 403
    assert client.post("/teams/bookinfo/members/remove/", {"username": "alice"}).status_code == 403
    assert org.team_a.memberships.count() == 3


def test_names_are_escaped(org, tara):
    UserFactory(username="<b>x</b>")  # usernames admit few characters; the page escapes whatever it shows
    client = signed_in(tara)
    client.post("/teams/bookinfo/members/", {"username": "<b>x</b>", "role": "author"})
    body = client.get("/teams/bookinfo/").content.decode()
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body


def test_the_approval_rules_page_for_a_team_admin(org, tara):
    from policies.models import ApprovalRule

    ApprovalRule.objects.create(environment=org.env, required_approvals=1)
    client = signed_in(tara)
    body = client.get("/approval-rules/").content.decode()
    assert f'<option value="{org.team_a.pk}">Bookinfo</option>' in body
    assert "Shop</option>" not in body and "Platform (every team)" not in body
    platform_rules = body[body.index('data-testid="platform-rules"') : body.index('data-testid="team-rules"')]
    assert "Delete" not in platform_rules  # the platform's rules are shown, not editable
    response = client.post(
        "/approval-rules/",
        {"team": org.team_a.pk, "environment": org.env.pk, "required_approvals": 2, "security_approval": "always"},
    )
    assert response.status_code == 302
    body = client.get("/approval-rules/").content.decode()
    team_rules = body[body.index('data-testid="team-rules"') :]
    assert "Bookinfo" in team_rules and "Delete" in team_rules
    assert signed_in(org.approver).get("/approval-rules/").status_code == 403  # not an admin of any team
