"""The approval rules: counts, owning-team approvers, security approvers, production, never the author."""

import pytest
from django.core.exceptions import ValidationError

from policies.approval import approval_status, change_requirements, default_rule_problems
from policies.choices import ChangeState, PolicyKind, Role, SecurityApproval
from policies.exceptions import PermissionDeniedError
from policies.models import ApprovalRule
from policies.selectors import change_items, changes_waiting_for_review
from policies.services.reviews import approval_rule_save, review_approve
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin
from tests.policies.changes.helpers import AUTHZ_RATINGS, submitted_change


def status_of(change):
    change.refresh_from_db()
    return approval_status(change)


@pytest.fixture
def dave(cluster_org):
    """A second approver of team Bookinfo."""
    user = UserFactory(username="dave")
    MembershipFactory(team=cluster_org.team_a, user=user, role=Role.APPROVER)
    return user


def test_one_approval_by_default(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    assert status_of(change).summary == "0 of 1 approval; missing: an approver of team Bookinfo"
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED and change.approved_at is not None
    assert status_of(change).summary == "1 of 1 approval"


def test_two_approvals_when_the_rule_says_so(cluster_org, dave):
    org = cluster_org
    ApprovalRule.objects.create(environment=org.env, required_approvals=2)
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    status = status_of(change)
    assert (status.satisfied, status.required, len(status.counted)) == (False, 2, 1)
    assert status.summary == "1 of 2 approvals; missing: 1 more approval"
    review_approve(reviewer=dave, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def test_approving_twice_is_idempotent(cluster_org, dave):
    org = cluster_org
    ApprovalRule.objects.create(environment=org.env, required_approvals=2)
    change = submitted_change(org)
    first = review_approve(reviewer=org.approver, change=change)
    assert review_approve(reviewer=org.approver, change=change) == first
    assert status_of(change).summary == "1 of 2 approvals; missing: 1 more approval"


def test_only_approvers_of_the_owning_team(cluster_org):
    org = cluster_org
    org.other.memberships.update(role=Role.APPROVER)  # carol approves for Shop, not Bookinfo
    change = submitted_change(org)
    with pytest.raises(PermissionDeniedError, match="only approvers of team Bookinfo") as refused:
        review_approve(reviewer=org.other, change=change)
    assert refused.value.status == 403
    outsider_author = UserFactory(username="erin")
    MembershipFactory(team=org.team_a, user=outsider_author, role=Role.AUTHOR)  # an author, not an approver
    with pytest.raises(PermissionDeniedError):
        review_approve(reviewer=outsider_author, change=change)


def test_never_the_author_not_even_a_superuser_approver(cluster_org):
    org = cluster_org
    org.author.is_superuser = True
    org.author.save()
    org.author.memberships.update(role=Role.ADMIN)
    change = submitted_change(org)
    with pytest.raises(PermissionDeniedError, match="you cannot approve your own change"):
        review_approve(reviewer=org.author, change=change)
    assert not change.reviews.exists()


def test_security_kinds_need_a_security_approver(cluster_org):
    org = cluster_org
    change = submitted_change(org, texts=[AUTHZ_RATINGS], title="Ratings viewers")
    # two roles, two people: the count says 2 even though the rule's count is 1
    assert status_of(change).summary == ("0 of 2 approvals; missing: an approver of team Bookinfo, a Security approver")
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    assert status_of(change).summary == "1 of 2 approvals; missing: a Security approver"
    review_approve(reviewer=org.sec, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    assert status_of(change).summary == "2 of 2 approvals"


DATA_PATH_EXTENSIONS = {
    "EnvoyFilter": """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ratings-lua, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: ratings}}
  priority: 10
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.lua}}
""",
    "WasmPlugin": """\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ratings-auth, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  url: oci://registry.example.com/filters/auth:1.0
""",
    "TrafficExtension": """\
apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: {name: ratings-header, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  lua: {inlineCode: "function envoy_on_request(handle) end"}
""",
}
TELEMETRY = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ratings-logs, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  accessLogging: [{providers: [{name: envoy}]}]
"""


@pytest.mark.parametrize("kind", sorted(DATA_PATH_EXTENSIONS))
def test_data_path_extensions_need_a_security_approver(cluster_org, kind):
    """EnvoyFilter, WasmPlugin and TrafficExtension can rewrite the proxies' data path (and so bypass
    authentication, authorization or mTLS): by default they need a security approver too."""
    org = cluster_org
    change = submitted_change(org, texts=[DATA_PATH_EXTENSIONS[kind]], title=kind)
    assert [item.kind for item in change.items.all()] == [kind]
    assert status_of(change).summary == "0 of 2 approvals; missing: an approver of team Bookinfo, a Security approver"
    assert change in changes_waiting_for_review(user=org.sec)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    review_approve(reviewer=org.sec, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def test_telemetry_needs_no_security_approver(cluster_org):
    org = cluster_org
    change = submitted_change(org, texts=[TELEMETRY], title="Ratings logs")
    assert status_of(change).summary == "0 of 1 approval; missing: an approver of team Bookinfo"
    assert change not in changes_waiting_for_review(user=org.sec)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def test_a_rule_can_waive_the_security_approver_for_an_extension_kind(cluster_org):
    org = cluster_org
    ApprovalRule.objects.create(kind=PolicyKind.ENVOY_FILTER, security_approval=SecurityApproval.NEVER)
    change = submitted_change(org, texts=[DATA_PATH_EXTENSIONS["EnvoyFilter"]], title="lua")
    assert not change_requirements(change, items=list(change.items.all())).security
    assert status_of(change).summary == "0 of 1 approval; missing: an approver of team Bookinfo"


def test_a_rule_can_waive_or_demand_the_security_approver(cluster_org):
    org = cluster_org
    ApprovalRule.objects.create(kind=PolicyKind.AUTHORIZATION_POLICY, security_approval=SecurityApproval.NEVER)
    ApprovalRule.objects.create(
        environment=org.env, kind=PolicyKind.VIRTUAL_SERVICE, security_approval=SecurityApproval.ALWAYS
    )
    authz = submitted_change(org, texts=[AUTHZ_RATINGS], title="authz")
    assert not change_requirements(authz, items=list(authz.items.all())).security
    vs = submitted_change(org, title="vs")
    assert change_requirements(vs, items=list(vs.items.all())).security


def test_production_needs_one_more(cluster_org, dave):
    org = cluster_org
    org.env.is_production = True
    org.env.save()
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    assert status_of(change).summary == "1 of 2 approvals; missing: 1 more approval"
    review_approve(reviewer=dave, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def test_production_extra_can_be_switched_off(cluster_org):
    org = cluster_org
    org.env.is_production = True
    org.env.save()
    ApprovalRule.objects.create(environment=org.env, required_approvals=1, extra_production_approval=False)
    change = submitted_change(org)
    assert status_of(change).required == 1


def test_the_most_specific_rule_wins_and_the_largest_item_requirement_counts(cluster_org):
    org = cluster_org
    ApprovalRule.objects.create(required_approvals=3)  # catch-all
    ApprovalRule.objects.create(kind=PolicyKind.VIRTUAL_SERVICE, required_approvals=2)
    ApprovalRule.objects.create(environment=org.env, kind=PolicyKind.VIRTUAL_SERVICE, required_approvals=1)
    vs = submitted_change(org, title="vs")
    assert change_requirements(vs, items=list(vs.items.all())).required == 1
    mixed = submitted_change(org, texts=[AUTHZ_RATINGS], title="authz")  # only the catch-all matches
    assert change_requirements(mixed, items=list(change_items(change=mixed))).required == 3


def test_items_of_two_teams_need_both(cluster_org):
    org = cluster_org
    org.other.memberships.update(role=Role.APPROVER)
    from policies.services.changes import change_create, change_submit
    from policies.services.drafts import draft_delete_policy, draft_save
    from tests.policies.changes.helpers import REVIEWS_V2

    reviews = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    org.author.memberships.create(team=org.team_b, role=Role.AUTHOR)
    payments = draft_delete_policy(author=org.author, policy=org.policy_b)
    change = change_create(author=org.author, environment=org.env, drafts=[reviews, payments], title="both")
    change = change_submit(actor=org.author, change=change)
    review_approve(reviewer=org.approver, change=change)
    assert status_of(change).summary == "1 of 2 approvals; missing: an approver of team Shop"
    review_approve(reviewer=org.other, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def staff(org, approvers_per_team: int) -> None:
    """Enough approvers in both teams (and security) for rules asking for several approvals."""
    for team in (org.team_a, org.team_b, org.security):
        have = team.memberships.filter(role__in=(Role.APPROVER, Role.ADMIN)).count()
        for number in range(have, approvers_per_team):
            MembershipFactory(
                team=team, user=UserFactory(username=f"{team.slug}-approver-{number}"), role=Role.APPROVER
            )


def test_rules_are_edited_by_admins_only_and_audited(cluster_org):
    org = cluster_org
    staff(org, 3)
    with pytest.raises(PermissionDeniedError):
        approval_rule_save(actor=org.approver, environment=org.env, required_approvals=2)
    org.approver.memberships.update(role=Role.ADMIN)
    with pytest.raises(PermissionDeniedError):  # a team admin governs the team, not the platform
        approval_rule_save(actor=org.approver, environment=org.env, required_approvals=2)
    org.approver = grant_platform_admin(org.approver)
    rule = approval_rule_save(actor=org.approver, environment=org.env, required_approvals=2)
    rule = approval_rule_save(actor=org.approver, rule=rule, environment=org.env, required_approvals=3)
    assert ApprovalRule.objects.get().required_approvals == 3
    from policies.models import AuditEvent

    assert list(
        AuditEvent.objects.filter(object_type="policies.ApprovalRule")
        .order_by("sequence")
        .values_list("action", flat=True)
    ) == ["approval_rule.created", "approval_rule.updated"]


def test_a_rule_no_one_could_satisfy_is_refused_and_names_the_team(cluster_org):
    org = cluster_org
    org.approver.memberships.update(role=Role.ADMIN)
    org.approver = grant_platform_admin(org.approver)  # approval rules are platform governance
    staff(org, 2)
    with pytest.raises(ValidationError) as refused:
        approval_rule_save(actor=org.approver, environment=org.env, required_approvals=3)
    message = str(refused.value)
    assert "staging: changes of team Bookinfo need 3 approvals, but only 2 people may approve them" in message
    assert not ApprovalRule.objects.exists()
    approval_rule_save(actor=org.approver, environment=org.env, required_approvals=2)  # two people: fine


def test_production_counts_the_extra_approval_and_security_needs_a_security_approver(cluster_org):
    org = cluster_org
    org.env.is_production = True
    org.env.save(update_fields=["is_production"])
    # the built-in default: 1 + 1 in production, and each team has one approver
    problems = default_rule_problems()
    assert "staging: changes of team Bookinfo need 2 approvals, but only 1 person may approve them" in problems
    org.sec.memberships.all().delete()
    assert any("need a security approver, and no security team has one" in p for p in default_rule_problems())


def test_existing_rules_that_cannot_be_met_are_flagged_on_the_page(client, cluster_org):
    org = cluster_org
    ApprovalRule.objects.create(environment=org.env, required_approvals=4)  # written before the check existed
    org.approver.memberships.update(role=Role.ADMIN)
    client.force_login(grant_platform_admin(org.approver))
    page = client.get("/approval-rules/").content.decode()
    assert "Cannot be satisfied" in page and "need 4 approvals" in page
