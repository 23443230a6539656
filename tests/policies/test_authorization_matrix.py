"""The authorization matrix: every actor against every governance action, through the UI forms and
the API, expected against actual. A team's admin governs that team (its members, its channels, its
drafts, its own approval rules within the platform's limits); the platform (platform approval
rules, guardrails, imports, every delivery, the whole audit log) belongs to platform admins:
superusers and holders of `policies.govern_platform`."""

import pytest
from django.test import Client

from policies.choices import Role
from policies.models import ApprovalRule, Guardrail, Membership, NotificationChannel
from policies.services.guardrails import guardrails_seed_builtins
from portal.choices import TokenScope
from tests.api_testing import bearer_client, token_for
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin

ACTORS = ["anonymous", "outsider", "author_a", "approver_a", "admin_a", "admin_b", "security", "platform", "superuser"]
PLATFORM = {"platform", "superuser"}


def _actors(org) -> dict:
    admin_a = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=admin_a, role=Role.ADMIN)
    admin_b = UserFactory(username="sven")
    MembershipFactory(team=org.team_b, user=admin_b, role=Role.ADMIN)
    platform = UserFactory(username="pia")
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    return {
        "anonymous": None,
        "outsider": org.outsider,
        "author_a": org.author,
        "approver_a": org.approver,
        "admin_a": admin_a,
        "admin_b": admin_b,
        "security": org.sec,
        "platform": grant_platform_admin(platform),
        "superuser": superuser,
    }


def _allowed(response) -> bool:
    if response.status_code in (401, 403, 404, 400, 405):
        return False
    if response.status_code == 302 and "/login" in response["Location"]:
        return False
    assert response.status_code < 500, response.content[:500]
    return True


def _builtin():
    guardrails_seed_builtins()
    return Guardrail.objects.exclude(builtin_key="").first()


# action: (how to perform it, who may, what the effect is when it happened)
def approval_rule_create(client, org):
    response = client.post(
        "/approval-rules/",
        {"environment": org.env.pk, "kind": "", "required_approvals": 1, "security_approval": "never"},
    )
    return response, ApprovalRule.objects.filter(security_approval="never").exists()


def guardrail_create(client, org):
    response = client.post(
        "/governance/guardrails/new/",
        {
            "name": "hard one",
            "enforcement": "hard_mandatory",
            "expression": "true",
            "message": "no",
            "parameters": "{}",
            "enabled": "on",
        },
    )
    return response, Guardrail.objects.filter(name="hard one").exists()


def guardrail_edit_builtin(client, org):
    builtin = _builtin()
    response = client.post(
        f"/governance/guardrails/{builtin.pk}/",
        {
            "name": builtin.name,
            "enforcement": "advisory",
            "message": builtin.message,
            "parameters": "{}",
            "enabled": "",
        },
    )
    builtin.refresh_from_db()
    return response, not builtin.enabled


def audit_log(client, org):
    response = client.get("/audit/")
    return response, response.status_code == 200


def audit_export(client, org):
    response = client.get("/audit/export.csv")
    return response, response.status_code == 200


def environment_import(client, org):
    response = client.post(f"/environments/{org.env.pk}/import/")
    return response, response.status_code == 302 and "/login" not in response["Location"]


def team_a_channel_create(client, org):
    response = client.post(
        "/governance/notifications/channels/new/",
        {
            "name": "bookinfo-mail",
            "owner": f"team:{org.team_a.pk}",
            "kind": "email",
            "target": "ops@example.com",
            "enabled": "on",
        },
    )
    return response, NotificationChannel.objects.filter(team=org.team_a).exists()


def team_a_channel_edit(client, org):
    channel = NotificationChannel.objects.create(name="a-mail", team=org.team_a, kind="email", target="a@example.com")
    response = client.post(
        f"/governance/notifications/channels/{channel.pk}/",
        {"name": "renamed", "kind": "email", "target": "a@example.com", "enabled": "on"},
    )
    return response, NotificationChannel.objects.filter(name="renamed").exists()


def policy_a_override_create(client, org):
    response = client.post(
        f"/policies/{org.policy_a.pk}/overrides/save/",
        {"mode": "create", "environment": org.env.name, "patch": "metadata:\n  labels:\n    tier: gold\n"},
    )
    org.env.refresh_from_db()
    return response, bool(org.env.promotion_overrides)


def team_a_rule_create(client, org):
    response = client.post(
        "/approval-rules/",
        {
            "team": org.team_a.pk,
            "environment": org.env.pk,
            "kind": "",
            "required_approvals": 2,
            "security_approval": "default",
            "extra_production_approval": "on",
        },
    )
    return response, ApprovalRule.objects.filter(team=org.team_a, required_approvals=2).exists()


def team_a_rule_below_platform(client, org):
    """Exceeding the limits: Bookinfo's rule asking for fewer approvals than the platform's."""
    ApprovalRule.objects.create(environment=org.env, required_approvals=2)
    response = client.post(
        "/approval-rules/",
        {
            "team": org.team_a.pk,
            "environment": org.env.pk,
            "kind": "",
            "required_approvals": 1,
            "security_approval": "default",
        },
    )
    return response, ApprovalRule.objects.filter(team=org.team_a).exists()


def team_a_rule_waives_security(client, org):
    response = client.post(
        "/approval-rules/",
        {
            "team": org.team_a.pk,
            "environment": "",
            "kind": "AuthorizationPolicy",
            "required_approvals": 2,
            "security_approval": "never",
        },
    )
    return response, ApprovalRule.objects.filter(team=org.team_a).exists()


def team_a_rule_delete(client, org):
    rule = ApprovalRule.objects.create(team=org.team_a, environment=org.env, required_approvals=2)
    response = client.post(f"/approval-rules/{rule.pk}/delete/")
    return response, not ApprovalRule.objects.filter(pk=rule.pk).exists()


def team_a_member_add(client, org):
    response = client.post("/teams/bookinfo/members/", {"username": org.outsider.username, "role": "author"})
    return response, Membership.objects.filter(team=org.team_a, user=org.outsider).exists()


def team_a_member_role(client, org):
    response = client.post("/teams/bookinfo/members/", {"username": org.author.username, "role": "approver"})
    return response, Membership.objects.filter(team=org.team_a, user=org.author, role="approver").exists()


def team_a_member_remove(client, org):
    response = client.post("/teams/bookinfo/members/remove/", {"username": org.author.username})
    return response, not Membership.objects.filter(team=org.team_a, user=org.author).exists()


UI_ACTIONS = {
    approval_rule_create: PLATFORM,
    guardrail_create: PLATFORM,
    guardrail_edit_builtin: PLATFORM,
    audit_log: PLATFORM | {"security"},
    audit_export: PLATFORM | {"security"},
    environment_import: PLATFORM,
    team_a_channel_create: PLATFORM | {"admin_a"},
    team_a_channel_edit: PLATFORM | {"admin_a"},
    policy_a_override_create: PLATFORM | {"approver_a", "admin_a"},
    team_a_rule_create: PLATFORM | {"admin_a"},
    team_a_rule_below_platform: set(),
    team_a_rule_waives_security: set(),
    team_a_rule_delete: PLATFORM | {"admin_a"},
    team_a_member_add: PLATFORM | {"admin_a"},
    team_a_member_role: PLATFORM | {"admin_a"},
    team_a_member_remove: PLATFORM | {"admin_a"},
}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("action", list(UI_ACTIONS), ids=lambda action: action.__name__)
def test_ui_matrix(org, actor, action):
    user = _actors(org)[actor]
    client = Client()
    if user is not None:
        client.force_login(user)
    response, happened = action(client, org)
    expected = actor in UI_ACTIONS[action]
    assert (_allowed(response), happened) == (expected, expected), (
        f"{actor} × {action.__name__}: expected {'allowed' if expected else 'refused'}, got {response.status_code}"
    )


def read_team_b_policy(client, org):
    response = client.get(f"/api/v1/policies/{org.policy_b.pk}/")
    return response, response.status_code == 200


def list_policies_sees_team_b(client, org):
    response = client.get("/api/v1/policies/?limit=100")
    names = {row["name"] for row in response.json().get("results", [])} if response.status_code == 200 else set()
    return response, "payments" in names


def api_team_a_rule_create(client, org):
    response = client.post(
        "/api/v1/approval-rules/",
        {"team": "bookinfo", "environment": "staging", "required_approvals": 2},
        format="json",
    )
    return response, ApprovalRule.objects.filter(team=org.team_a, required_approvals=2).exists()


def api_team_a_rule_below_platform(client, org):
    ApprovalRule.objects.create(environment=org.env, required_approvals=2)
    response = client.post(
        "/api/v1/approval-rules/",
        {"team": "bookinfo", "environment": "staging", "required_approvals": 1},
        format="json",
    )
    return response, ApprovalRule.objects.filter(team=org.team_a).exists()


def api_team_a_rule_edit(client, org):
    rule = ApprovalRule.objects.create(team=org.team_a, environment=org.env, required_approvals=2)
    response = client.patch(f"/api/v1/approval-rules/{rule.pk}/", {"security_approval": "always"}, format="json")
    rule.refresh_from_db()
    return response, rule.security_approval == "always"


def api_team_a_rule_delete(client, org):
    rule = ApprovalRule.objects.create(team=org.team_a, environment=org.env, required_approvals=2)
    response = client.delete(f"/api/v1/approval-rules/{rule.pk}/")
    return response, not ApprovalRule.objects.filter(pk=rule.pk).exists()


def api_platform_rule_create(client, org):
    response = client.post(
        "/api/v1/approval-rules/", {"environment": "staging", "required_approvals": 1}, format="json"
    )
    return response, ApprovalRule.objects.filter(team__isnull=True).exists()


def api_team_a_member_add(client, org):
    response = client.post(
        "/api/v1/teams/bookinfo/members/", {"username": org.outsider.username, "role": "author"}, format="json"
    )
    return response, Membership.objects.filter(team=org.team_a, user=org.outsider).exists()


def api_team_a_member_role(client, org):
    response = client.patch(f"/api/v1/teams/bookinfo/members/{org.author.username}/", {"role": "admin"}, format="json")
    return response, Membership.objects.filter(team=org.team_a, user=org.author, role="admin").exists()


def api_team_a_member_remove(client, org):
    response = client.delete(f"/api/v1/teams/bookinfo/members/{org.author.username}/")
    return response, not Membership.objects.filter(team=org.team_a, user=org.author).exists()


API_ACTIONS = {
    read_team_b_policy: PLATFORM | {"admin_b", "security"},
    list_policies_sees_team_b: PLATFORM | {"admin_b", "security"},
    api_team_a_rule_create: PLATFORM | {"admin_a"},
    api_team_a_rule_below_platform: set(),
    api_team_a_rule_edit: PLATFORM | {"admin_a"},
    api_team_a_rule_delete: PLATFORM | {"admin_a"},
    api_platform_rule_create: PLATFORM,
    api_team_a_member_add: PLATFORM | {"admin_a"},
    api_team_a_member_role: PLATFORM | {"admin_a"},
    api_team_a_member_remove: PLATFORM | {"admin_a"},
}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("action", list(API_ACTIONS), ids=lambda action: action.__name__)
def test_api_matrix(org, actor, action):
    user = _actors(org)[actor]
    from rest_framework.test import APIClient

    client = APIClient() if user is None else bearer_client(token_for(user, scopes=[TokenScope.WRITE]))
    response, happened = action(client, org)
    expected = actor in API_ACTIONS[action]
    assert happened == expected, f"{actor} × {action.__name__}: expected {expected}, got {response.status_code}"


# Refusals say why: a team admin going beyond the platform's limits gets a 400 naming the limit;
# reaching into another team is a 403 naming the team.


def test_a_team_rule_below_the_platform_is_a_400_with_the_reason(org):
    client = Client()
    client.force_login(_actors(org)["admin_a"])
    response, happened = team_a_rule_below_platform(client, org)
    assert (response.status_code, happened) == (400, False)
    assert "staging: the platform asks for 2 approvals for every kind; a team rule may ask for more, never fewer" in (
        response.content.decode()
    )
    response, happened = team_a_rule_waives_security(client, org)
    assert (response.status_code, happened) == (400, False)
    assert "requires a security-team approver for AuthorizationPolicy; a team rule cannot waive it" in (
        response.content.decode()
    )


def test_another_teams_admin_is_refused_with_403_naming_the_team(org):
    actors = _actors(org)
    client = Client()
    client.force_login(actors["admin_b"])
    response, happened = team_a_rule_create(client, org)
    assert (response.status_code, happened) == (403, False)
    assert "nly admins of team Bookinfo (or platform admins) may edit its approval rules" in response.content.decode()
    response, happened = team_a_member_add(client, org)
    assert (response.status_code, happened) == (403, False)
    api = bearer_client(token_for(actors["admin_b"], scopes=[TokenScope.WRITE]))
    response, happened = api_team_a_rule_create(api, org)
    assert (response.status_code, happened) == (403, False)
    assert response.json()["message"] == "only admins of team Bookinfo (or platform admins) may edit its approval rules"
    response, happened = api_team_a_rule_below_platform(
        bearer_client(token_for(actors["admin_a"], scopes=[TokenScope.WRITE])), org
    )
    assert (response.status_code, happened) == (400, False)
    assert "a team rule may ask for more, never fewer" in response.json()["details"]["required_approvals"][0]
