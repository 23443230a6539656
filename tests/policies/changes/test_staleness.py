"""Stale changes: the policy moved since an item was based on it; rebase; the three-way view."""

import pytest

from integrations import kubernetes as kube
from policies import selectors
from policies.approval import approval_status, item_is_stale
from policies.choices import ChangeState, DraftOperation, RevisionSource
from policies.cluster import cluster_config
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.models import ChangeRequest, Policy, PolicyRevision
from policies.normalize import content_hash, normalize_object
from policies.services.changes import change_rebase, change_schedule, change_submit
from policies.services.imports import environment_import
from policies.services.reviews import review_approve
from tests.policies.changes.helpers import RATINGS_NEW, REVIEWS_V2, make_change, submitted_change


def move_policy(policy: Policy, **spec) -> PolicyRevision:
    """A new current revision, as applying another change (or an import) leaves it."""
    current = policy.current_revision
    content = normalize_object({**current.content, "spec": {**current.content["spec"], **spec}})
    revision = PolicyRevision.objects.create(
        policy=policy,
        number=current.number + 1,
        content=content,
        content_hash=content_hash(content),
        parent=current,
        source=RevisionSource.DRAFT,
    )
    policy.current_revision = revision
    policy.save(update_fields=["current_revision"])
    return revision


def stale_items(change):
    return [item.name for item in selectors.change_items(change=change) if item_is_stale(item)]


def test_another_revision_makes_the_change_stale(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    assert stale_items(change) == []
    move_policy(org.policy_a, gateways=["mesh"])
    assert stale_items(change) == ["reviews"]
    assert ChangeRequest.objects.filter(selectors.stale_changes_q()).get() == change
    with pytest.raises(ConflictError, match="is stale") as refused:
        review_approve(reviewer=org.approver, change=change)
    assert refused.value.status == 409
    assert not change.reviews.exists()
    assert any("rebase it" in blocker for blocker in approval_status(change).blockers)


def test_a_new_policy_of_the_same_name_makes_a_creation_stale(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env, texts=[RATINGS_NEW])
    assert stale_items(change) == []
    from tests.factories import make_policy

    make_policy(environment=org.env, namespace="bookinfo", name="ratings")
    assert stale_items(change) == ["ratings"]
    with pytest.raises(ConflictError, match="rebase it before it can be submitted"):
        change_submit(actor=org.author, change=change)
    change = change_rebase(actor=org.author, change=change)
    item = change.items.get()
    assert item.operation == DraftOperation.UPDATE and item.policy.name == "ratings"
    assert stale_items(change) == []


def test_an_import_that_moves_the_current_revision_makes_changes_stale(cluster_org):
    org = cluster_org
    environment_import(environment=org.env)  # the catalog now holds what the cluster holds
    org.policy_a.refresh_from_db()
    change = submitted_change(org)
    assert stale_items(change) == []
    cfg = cluster_config(org.env)
    live = normalize_object(kube.get_object(cfg, "VirtualService", "bookinfo", "reviews"))
    live["spec"]["http"][0]["route"][0]["weight"], live["spec"]["http"][0]["route"][1]["weight"] = 70, 30
    kube.apply_object(cfg, live, force=True)  # someone changes the cluster by hand
    result = environment_import(environment=org.env)
    assert result.new_revisions == 1
    assert stale_items(change) == ["reviews"]


def test_stale_changes_cannot_be_scheduled(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    move_policy(org.policy_a, gateways=["mesh"])
    with pytest.raises(ConflictError, match="is stale"):
        change_schedule(actor=org.author, change=change)


def test_rebase_moves_the_base_voids_approvals_and_shows_three_ways(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    review = review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    old_base = org.policy_a.current_revision
    moved = move_policy(org.policy_a, gateways=["mesh"], hosts=["reviews.bookinfo.svc.cluster.local"])

    (item,) = selectors.change_items(change=change)
    three = selectors.change_item_three_way(item=item)
    assert {change.path for change in three.theirs.changes} >= {"spec.gateways", "spec.hosts[0]"}
    assert "spec.http[0].timeout" in {change.path for change in three.ours.changes}
    assert three.conflicts == []  # the item does not touch gateways or hosts
    assert three.base == old_base.content and three.current == moved.content

    with pytest.raises(PermissionDeniedError):
        change_rebase(actor=org.approver, change=change)
    change = change_rebase(actor=org.author, change=change)
    review.refresh_from_db()
    assert review.voided_at is not None and review.voided_reason.startswith("rebased by alice")
    assert change.state == ChangeState.IN_REVIEW
    assert change.items.get().base_revision == moved
    assert stale_items(change) == []
    with pytest.raises(ConflictError, match="not stale"):
        change_rebase(actor=org.author, change=change)


def test_three_way_names_conflicting_paths(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    move_policy(org.policy_a, http=[{"route": [{"destination": {"host": "reviews"}}], "timeout": "9s"}])
    (item,) = selectors.change_items(change=change)
    assert selectors.change_item_three_way(item=item).conflicts == ["spec.http[0].timeout"]


def test_open_changes_on_the_same_policy_see_each_other(cluster_org):
    org = cluster_org
    first = make_change(author=org.author, environment=org.env, title="first")
    second = make_change(
        author=org.approver, environment=org.env, texts=[REVIEWS_V2.replace("5s", "8s")], title="second"
    )
    items = list(selectors.change_items(change=first))
    assert selectors.change_overlaps(change=first, items=items) == {items[0].pk: [second]}
    ChangeRequest.objects.filter(pk=second.pk).update(state=ChangeState.REJECTED)
    assert selectors.change_overlaps(change=first, items=items) == {}


def test_the_author_hears_when_a_change_goes_stale(cluster_org):
    from policies.choices import NotificationChannelKind, NotificationEvent
    from policies.models import NotificationChannel, NotificationDelivery
    from policies.services.changes import changes_notify_stale

    org = cluster_org
    NotificationChannel.objects.create(
        name="alice mail", user=org.author, kind=NotificationChannelKind.EMAIL, target="alice@example.com"
    )
    change = submitted_change(org)
    assert changes_notify_stale(policies=[org.policy_a]) == []  # not stale yet
    assert not NotificationDelivery.objects.filter(event=NotificationEvent.CHANGE_STALE).exists()  # not stale yet
    move_policy(org.policy_a, gateways=["mesh"])
    assert changes_notify_stale(policies=[org.policy_a, org.policy_b]) == [change.pk]
    delivery = NotificationDelivery.objects.get(event=NotificationEvent.CHANGE_STALE)
    assert delivery.payload["data"]["stale_items"] == ["VirtualService bookinfo/reviews"]
