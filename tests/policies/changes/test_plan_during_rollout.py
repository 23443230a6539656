"""A plan computed once the change is rolling out (a late task, a refresh) leaves its approvals alone:
the rollout itself moves the live objects. Before the rollout starts a material move still voids."""

import pytest
from django.utils import timezone

from integrations import kubernetes as kube
from policies.choices import ChangeAuditAction, ChangeState, PlanStatus
from policies.cluster import cluster_config
from policies.models import AuditEvent, ChangeRequest
from policies.normalize import normalize_object
from policies.services.changes import change_schedule
from policies.services.plans import plan_compute
from policies.services.reviews import review_approve
from policies.services.rollouts import rollout_start
from tests.policies.changes.helpers import submitted_change


def approved(org):
    change = submitted_change(org)
    review = review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    return change, review


def move_live_reviews(org, timeout: str) -> None:
    cfg = cluster_config(org.env)
    live = normalize_object(kube.get_object(cfg, "VirtualService", "bookinfo", "reviews"))
    live["spec"]["http"][0]["timeout"] = timeout
    kube.apply_object(cfg, live, force=True)


def audit_actions(change) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_id=str(change.pk)).order_by("sequence").values_list("action", flat=True)
    )


def test_a_plan_computed_while_rolling_out_voids_nothing(cluster_org):
    org = cluster_org
    change, review = approved(org)
    change_schedule(actor=org.approver, change=change)
    rollout_start(change=change, now=timezone.now())
    change.refresh_from_db()
    assert change.state == ChangeState.ROLLING_OUT
    before = audit_actions(change)

    move_live_reviews(org, "9s")  # what a rollout step does to the live object
    plan = plan_compute(change=change)  # e.g. a compute_plan task that ran late

    assert plan.status == PlanStatus.OK  # stored for the record
    review.refresh_from_db()
    change.refresh_from_db()
    assert review.voided_at is None
    assert change.state == ChangeState.ROLLING_OUT
    assert audit_actions(change) == before


@pytest.mark.parametrize(
    "state", [ChangeState.COMPLETED, ChangeState.ROLLED_BACK, ChangeState.FAILED, ChangeState.ABORTED]
)
def test_a_plan_computed_after_the_rollout_ended_voids_nothing(cluster_org, state):
    org = cluster_org
    change, review = approved(org)
    ChangeRequest.objects.filter(pk=change.pk).update(state=state)
    move_live_reviews(org, "9s")
    plan_compute(change=change)
    review.refresh_from_db()
    change.refresh_from_db()
    assert review.voided_at is None and change.state == state


def test_a_material_move_before_the_scheduled_rollout_starts_still_voids(cluster_org):
    org = cluster_org
    change, review = approved(org)
    change_schedule(actor=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.SCHEDULED

    move_live_reviews(org, "9s")
    plan_compute(change=change)

    review.refresh_from_db()
    change.refresh_from_db()
    assert review.voided_at is not None
    assert change.state == ChangeState.IN_REVIEW and change.scheduled_for is None
    assert audit_actions(change)[-2:] == [ChangeAuditAction.REVIEW_VOIDED, ChangeAuditAction.CHANGE_BACK_TO_REVIEW]
