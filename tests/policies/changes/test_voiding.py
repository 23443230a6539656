"""An approval is bound to what it approved: item contents and the plan's view of the live state."""

import pytest

from integrations import kubernetes as kube
from policies.approval import approval_status
from policies.choices import ChangeAuditAction, ChangeState, PlanStatus
from policies.cluster import cluster_config
from policies.exceptions import ConflictError, DraftRejected, PermissionDeniedError
from policies.models import AuditEvent, Review
from policies.normalize import normalize_object
from policies.services.changes import change_item_update
from policies.services.plans import plan_compute
from policies.services.reviews import review_approve, review_request_changes
from tests.policies.changes.helpers import REVIEWS_V2, REVIEWS_V3, submitted_change


def approved(org):
    change = submitted_change(org)
    review = review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    return change, review


def live_reviews(org) -> dict:
    """The live object as a client would send it back (server-managed metadata dropped)."""
    return normalize_object(kube.get_object(cluster_config(org.env), "VirtualService", "bookinfo", "reviews"))


def test_editing_an_item_voids_the_approval_and_returns_to_review(cluster_org):
    org = cluster_org
    change, review = approved(org)
    item = change.items.get()
    change_item_update(author=org.author, item=item, text=REVIEWS_V3)
    change.refresh_from_db()
    review.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW and change.approved_at is None
    assert review.voided_at is not None
    assert review.voided_reason == "VirtualService bookinfo/reviews was edited by alice after this approval"
    status = approval_status(change)
    assert not status.satisfied and status.summary == "0 of 1 approval; missing: an approver of team Bookinfo"
    actions = list(
        AuditEvent.objects.filter(object_id=str(change.pk)).order_by("sequence").values_list("action", flat=True)
    )
    assert actions[-3:] == [
        ChangeAuditAction.CHANGE_ITEM_UPDATED,
        ChangeAuditAction.REVIEW_VOIDED,
        ChangeAuditAction.CHANGE_BACK_TO_REVIEW,
    ]
    # the reviewer approves the new content
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    assert Review.objects.filter(change=change).count() == 2


def test_a_comment_only_edit_keeps_the_approval(cluster_org):
    org = cluster_org
    change, review = approved(org)
    change_item_update(author=org.author, item=change.items.get(), text="# reworded comment\n" + REVIEWS_V2)
    change.refresh_from_db()
    review.refresh_from_db()
    assert change.state == ChangeState.APPROVED and review.voided_at is None
    assert change.items.get().source_text.startswith("# reworded comment")


def test_only_the_author_edits_and_only_the_same_object(cluster_org):
    org = cluster_org
    change, _ = approved(org)
    item = change.items.get()
    with pytest.raises(PermissionDeniedError):
        change_item_update(author=org.approver, item=item, text=REVIEWS_V3)
    with pytest.raises(DraftRejected, match="an item keeps its object"):
        change_item_update(author=org.author, item=item, text=REVIEWS_V3.replace("name: reviews", "name: other"))


def test_a_material_move_of_live_voids_the_approval(cluster_org):
    org = cluster_org
    change, review = approved(org)
    live = live_reviews(org)
    live["spec"]["http"][0]["route"][0]["weight"], live["spec"]["http"][0]["route"][1]["weight"] = 50, 50
    kube.apply_object(cluster_config(org.env), live, force=True)
    plan = plan_compute(change=change)
    assert plan.status == PlanStatus.OK
    change.refresh_from_db()
    review.refresh_from_db()
    assert review.voided_at is not None
    assert review.voided_reason.startswith("the live VirtualService bookinfo/reviews changed after this approval")
    assert change.state == ChangeState.IN_REVIEW


def test_a_resource_version_bump_alone_keeps_the_approval(cluster_org):
    org = cluster_org
    change, review = approved(org)
    before = change.plans.latest()
    live = live_reviews(org)
    live["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    kube.apply_object(cluster_config(org.env), live, force=True)
    plan = plan_compute(change=change)
    assert plan.fingerprint != before.fingerprint  # the resourceVersion moved
    assert plan.content_fingerprint == before.content_fingerprint  # the content did not
    review.refresh_from_db()
    change.refresh_from_db()
    assert review.voided_at is None and change.state == ChangeState.APPROVED


def test_approving_a_plan_that_moved_since_the_page_was_read_is_refused(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    seen = plan_compute(change=change)
    live = live_reviews(org)
    live["spec"]["http"][0]["timeout"] = "3s"
    kube.apply_object(cluster_config(org.env), live, force=True)
    with pytest.raises(ConflictError, match="the live state changed since you loaded the plan"):
        review_approve(reviewer=org.approver, change=change, plan_fingerprint=seen.content_fingerprint)
    assert not change.reviews.exists()


def test_an_unreachable_cluster_blocks_approval_but_voids_nothing(cluster_org):
    org = cluster_org
    change, review = approved(org)
    org.env.api_url = "http://127.0.0.1:9"
    org.env.save()
    plan = plan_compute(change=change)
    assert plan.status == PlanStatus.ERROR and "could not be read" in plan.error
    review.refresh_from_db()
    assert review.voided_at is None
    change.refresh_from_db()
    status = approval_status(change)
    assert status.satisfied and not status.approvable
    assert any(blocker.startswith("the plan has errors") for blocker in status.blockers)


def test_request_changes_voids_every_approval(cluster_org):
    org = cluster_org
    change, review = approved(org)
    with pytest.raises(PermissionDeniedError, match="own change"):
        review_request_changes(reviewer=org.author, change=change, body="hm")
    review_request_changes(reviewer=org.approver, change=change, body="use 10s")
    change.refresh_from_db()
    review.refresh_from_db()
    assert change.state == ChangeState.CHANGES_REQUESTED and review.voided_at is not None


def test_one_active_approval_per_reviewer_is_a_database_constraint(cluster_org):
    from django.db import IntegrityError, transaction

    org = cluster_org
    change, review = approved(org)
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(change=change, reviewer=org.approver, verdict="approve")
    Review.objects.create(change=change, reviewer=org.approver, verdict="request_changes")  # not an approval
