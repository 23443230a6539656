"""A team's own approval rules: written by its admins for its namespaces, only ever stricter than
the platform rule under them, and applied on top of it."""

import pytest
from django.core.exceptions import ValidationError

from policies.approval import change_requirements
from policies.choices import PolicyKind, Role, SecurityApproval
from policies.exceptions import PermissionDeniedError
from policies.models import ApprovalRule, AuditEvent
from policies.services.reviews import approval_rule_delete, approval_rule_save
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin
from tests.policies.changes.helpers import AUTHZ_RATINGS, submitted_change


@pytest.fixture
def tara(org):
    """The admin of team Bookinfo (an approver of it too, so rules of two approvals can be met)."""
    user = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return user


def test_a_team_admin_writes_their_teams_rule_audited(org, tara):
    rule = approval_rule_save(actor=tara, team=org.team_a, environment=org.env, required_approvals=2)
    rule = approval_rule_save(
        actor=tara,
        rule=rule,
        team=org.team_a,
        environment=org.env,
        required_approvals=2,
        security_approval=SecurityApproval.ALWAYS,
    )
    events = list(AuditEvent.objects.filter(object_type="policies.ApprovalRule").order_by("sequence"))
    assert [(e.action, e.actor_name) for e in events] == [
        ("approval_rule.created", "tara"),
        ("approval_rule.updated", "tara"),
    ]
    assert events[1].before["security_approval"] == "default" and events[1].after["team"] == "bookinfo"
    approval_rule_delete(actor=tara, rule=rule)
    assert not ApprovalRule.objects.exists()
    assert AuditEvent.objects.filter(action="approval_rule.deleted", actor_name="tara").exists()


def test_a_team_admin_touches_neither_another_team_nor_the_platform(org, tara):
    shop_rule = ApprovalRule.objects.create(team=org.team_b, environment=org.env, required_approvals=2)
    platform_rule = ApprovalRule.objects.create(environment=org.env, required_approvals=1)
    own = ApprovalRule.objects.create(team=org.team_a, environment=org.env, required_approvals=2)
    attempts = [
        lambda: approval_rule_save(actor=tara, team=org.team_b, environment=org.env, required_approvals=3),
        lambda: approval_rule_save(actor=tara, environment=org.env, required_approvals=3),
        lambda: approval_rule_save(
            actor=tara, rule=shop_rule, team=org.team_a, environment=org.env, required_approvals=2
        ),
        lambda: approval_rule_save(
            actor=tara, rule=platform_rule, team=org.team_a, environment=org.env, required_approvals=2
        ),
        lambda: approval_rule_save(actor=tara, rule=own, team=org.team_b, environment=org.env, required_approvals=2),
        lambda: approval_rule_delete(actor=tara, rule=shop_rule),
        lambda: approval_rule_delete(actor=tara, rule=platform_rule),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDeniedError) as refused:
            attempt()
        assert refused.value.status == 403
    assert set(ApprovalRule.objects.values_list("team__slug", "required_approvals")) == {
        ("shop", 2),
        (None, 1),
        ("bookinfo", 2),
    }
    assert not AuditEvent.objects.filter(object_type="policies.ApprovalRule").exists()
    approver = org.approver  # an approver of Bookinfo, not its admin
    with pytest.raises(PermissionDeniedError):
        approval_rule_save(actor=approver, team=org.team_a, environment=org.env, required_approvals=2)


@pytest.mark.parametrize(
    ("platform", "team_rule", "reason"),
    [
        (
            {"required_approvals": 2},
            {"required_approvals": 1},
            "staging: the platform asks for 2 approvals for every kind; a team rule may ask for more, never fewer",
        ),
        (
            {},
            {"kind": PolicyKind.PEER_AUTHENTICATION, "security_approval": SecurityApproval.NEVER},
            "staging: the platform requires a security-team approver for PeerAuthentication; a team rule cannot "
            "waive it",
        ),
        (
            {"security_approval": SecurityApproval.ALWAYS},
            {"kind": PolicyKind.VIRTUAL_SERVICE, "security_approval": SecurityApproval.DEFAULT},
            "staging: the platform requires a security-team approver for VirtualService",
        ),
        (
            {},
            {"security_approval": SecurityApproval.NEVER},
            # the security-review kinds: security.istio.io's three, then EnvoyFilter, WasmPlugin, TrafficExtension
            "staging: the platform requires a security-team approver for AuthorizationPolicy, PeerAuthentication, "
            "RequestAuthentication and 3 more; a team rule cannot waive it",
        ),
    ],
    ids=["fewer-approvals", "waives-security", "drops-always-security", "waives-security-for-every-kind"],
)
def test_a_team_rule_less_strict_than_the_platform_is_refused_with_the_reason(org, tara, platform, team_rule, reason):
    if platform:
        ApprovalRule.objects.create(environment=org.env, **platform)
    with pytest.raises(ValidationError) as refused:
        approval_rule_save(actor=tara, team=org.team_a, environment=org.env, **team_rule)
    assert reason in str(refused.value)
    assert not ApprovalRule.objects.filter(team__isnull=False).exists()
    assert not AuditEvent.objects.filter(object_type="policies.ApprovalRule").exists()


def test_production_minimum_counts_the_extra_approval(org, tara):
    org.env.is_production = True
    org.env.save(update_fields=["is_production"])
    # the platform default in production: 1 + 1
    with pytest.raises(ValidationError, match="the platform asks for 2 approvals for every kind"):
        approval_rule_save(
            actor=tara, team=org.team_a, environment=org.env, required_approvals=1, extra_production_approval=False
        )
    rule = approval_rule_save(
        actor=tara, team=org.team_a, environment=org.env, required_approvals=2, extra_production_approval=False
    )
    assert rule.team == org.team_a


def test_platform_admins_write_any_teams_rule_within_the_same_limits(org):
    pia = grant_platform_admin(UserFactory(username="pia"))
    for name in ("shop-approver-1", "shop-approver-2"):
        MembershipFactory(team=org.team_b, user=UserFactory(username=name), role=Role.APPROVER)
    ApprovalRule.objects.create(environment=org.env, required_approvals=2)
    rule = approval_rule_save(actor=pia, team=org.team_b, environment=org.env, required_approvals=2)
    assert rule.team == org.team_b
    with pytest.raises(ValidationError, match="the platform asks for 2 approvals for every kind"):
        approval_rule_save(actor=pia, rule=rule, team=org.team_b, environment=org.env, required_approvals=1)
    rule.refresh_from_db()
    assert rule.required_approvals == 2


def test_a_team_rule_no_one_of_the_team_could_meet_is_refused(org, tara):
    with pytest.raises(ValidationError, match="staging: changes of team Bookinfo need 3 approvals, but only 2"):
        approval_rule_save(actor=tara, team=org.team_a, environment=org.env, required_approvals=3)


def test_a_team_rule_applies_to_its_namespaces_only_and_on_top_of_the_platform(cluster_org):
    org = cluster_org
    MembershipFactory(team=org.team_a, user=UserFactory(username="tara"), role=Role.ADMIN)
    ApprovalRule.objects.create(team=org.team_a, environment=org.env, required_approvals=2)
    change = submitted_change(org)  # a VirtualService in bookinfo
    assert change_requirements(change, items=list(change.items.all())).required == 2
    # the platform raised above the team's rule: the larger wins
    ApprovalRule.objects.create(environment=org.env, required_approvals=3)
    assert change_requirements(change, items=list(change.items.all())).required == 3
    # a team rule can never waive what the platform asks, even one written around the service
    ApprovalRule.objects.filter(team=org.team_a).update(security_approval=SecurityApproval.NEVER)
    authz = submitted_change(org, texts=[AUTHZ_RATINGS], title="authz")
    assert change_requirements(authz, items=list(authz.items.all())).security


def test_another_teams_rule_does_not_apply(cluster_org):
    org = cluster_org
    ApprovalRule.objects.create(team=org.team_b, environment=org.env, required_approvals=3)
    change = submitted_change(org)  # bookinfo's, not shop's
    assert change_requirements(change, items=list(change.items.all())).required == 1
