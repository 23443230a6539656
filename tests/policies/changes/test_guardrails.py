"""Guardrails on a change: advisory shows, soft-mandatory blocks unless an admin overrides it (for that
content), hard-mandatory always blocks."""

import pytest
from django.core.exceptions import ValidationError

from policies.approval import approval_status
from policies.choices import ChangeState, GuardrailEnforcement, PolicyKind, Role
from policies.exceptions import PermissionDeniedError
from policies.models import Guardrail
from policies.services.changes import change_guardrail_override, change_item_update
from policies.services.guardrails import guardrail_create, guardrails_seed_builtins
from policies.services.plans import plan_compute
from policies.services.reviews import review_approve
from tests.factories import MembershipFactory, TeamFactory, UserFactory, grant_platform_admin
from tests.policies.changes.helpers import REVIEWS_V2, submitted_change

SLOW = REVIEWS_V2.replace("timeout: 5s", "timeout: 120s")  # over the 60 s bound: soft-mandatory


@pytest.fixture
def ada(cluster_org):
    guardrails_seed_builtins()
    user = UserFactory(username="ada")
    MembershipFactory(team=TeamFactory(slug="platform"), user=user, role=Role.ADMIN)
    user = grant_platform_admin(user)
    return user


def cel(ada, name, enforcement, expression="has(object.spec.http[0].retries)"):
    return guardrail_create(
        actor=ada,
        name=name,
        enforcement=enforcement,
        expression=expression,
        message="{object}: set retries",
        kinds=[PolicyKind.VIRTUAL_SERVICE],
    )


def results(change):
    return {result["name"]: result for result in change.items.get().guardrail_results}


def test_advisory_failures_show_but_do_not_block(cluster_org, ada):
    org = cluster_org
    cel(ada, "Retries are set", GuardrailEnforcement.ADVISORY)
    change = submitted_change(org)
    assert results(change)["Retries are set"]["passed"] is False
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED


def test_hard_mandatory_failures_always_block(cluster_org, ada):
    org = cluster_org
    guardrail = cel(ada, "Retries are required", GuardrailEnforcement.HARD_MANDATORY)
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    status = approval_status(change)
    assert status.satisfied and not status.approvable
    assert status.blockers == [
        "hard mandatory guardrail “Retries are required” fails on VirtualService bookinfo/reviews"
    ]
    with pytest.raises(ValidationError, match="only soft-mandatory"):
        change_guardrail_override(
            admin=ada, change=change, item=change.items.get(), guardrail=guardrail, reason="we really need this now"
        )


def test_soft_mandatory_blocks_until_an_admin_overrides_it(cluster_org, ada):
    org = cluster_org
    change = submitted_change(org, texts=[SLOW])
    timeouts = Guardrail.objects.get(builtin_key="timeouts-within-bounds")
    assert results(change)[timeouts.name]["passed"] is False
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    assert approval_status(change).blockers == [
        "soft mandatory guardrail “Timeouts and retries within bounds” fails on VirtualService bookinfo/reviews "
        "(an admin may override it)"
    ]
    item = change.items.get()
    with pytest.raises(PermissionDeniedError):
        change_guardrail_override(
            admin=org.approver, change=change, item=item, guardrail=timeouts, reason="batch endpoint, slow by design"
        )
    with pytest.raises(ValidationError, match="10 characters"):
        change_guardrail_override(admin=ada, change=change, item=item, guardrail=timeouts, reason="ok")
    change_guardrail_override(
        admin=ada, change=change, item=item, guardrail=timeouts, reason="batch endpoint, slow by design"
    )
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED  # the approvals were in; the override removed the last blocker
    assert approval_status(change).approvable


def test_an_override_holds_only_for_the_content_it_was_given_for(cluster_org, ada):
    org = cluster_org
    change = submitted_change(org, texts=[SLOW])
    plan_compute(change=change)
    timeouts = Guardrail.objects.get(builtin_key="timeouts-within-bounds")
    change_guardrail_override(
        admin=ada, change=change, item=change.items.get(), guardrail=timeouts, reason="batch endpoint, slow by design"
    )
    assert approval_status(change).blockers == []
    change_item_update(author=org.author, item=change.items.get(), text=SLOW.replace("120s", "90s"))
    change.refresh_from_db()
    assert len(approval_status(change).blockers) == 1
