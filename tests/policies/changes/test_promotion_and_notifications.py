"""Promotion to the next environment, and who hears about a change."""

import pytest

from policies.choices import ChangeState, DraftOperation, NotificationChannelKind, NotificationEvent, Role
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.models import ChangeRequest, NamespaceOwnership, NotificationChannel, NotificationDelivery
from policies.selectors import change_promotion_chain
from policies.services.changes import (
    ChangeInvalid,
    IllegalTransition,
    change_item_update,
    change_submit,
    item_text,
)
from policies.services.imports import environment_import
from policies.services.promotion import change_promote
from policies.services.reviews import review_approve, review_comment
from tests.factories import EnvironmentFactory, MembershipFactory, UserFactory
from tests.policies.changes.helpers import submitted_change


@pytest.fixture
def prod(cluster_org, meshsim_prod):
    env = EnvironmentFactory(name="prod", order=100, is_production=True, api_url=meshsim_prod.url)
    NamespaceOwnership.objects.create(environment=env, namespace="bookinfo", team=cluster_org.team_a)
    environment_import(environment=env)
    return env


def completed(org) -> ChangeRequest:
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    ChangeRequest.objects.filter(pk=change.pk).update(state=ChangeState.COMPLETED)  # as the rollout engine leaves it
    change.refresh_from_db()
    return change


def test_promote_a_completed_change_to_prod(cluster_org, prod):
    org = cluster_org
    dave = UserFactory(username="dave")
    MembershipFactory(team=org.team_a, user=dave, role=Role.APPROVER)
    change = completed(org)
    promoted = change_promote(actor=org.author, change=change)
    assert promoted.environment == prod and promoted.promoted_from == change
    # prod's routes differ from staging's base where the change edits them: a conflict, kept a draft
    assert [c["path"] for c in promoted.promotion_conflicts] == ["spec.http"]
    assert promoted.state == ChangeState.DRAFT
    with pytest.raises(ChangeInvalid, match="promotion conflict"):
        change_submit(actor=org.author, change=promoted)
    # the author resolves it by editing the item to what prod should hold (the change's routes)
    change_item_update(author=org.author, item=promoted.items.get(), text=item_text(change.items.get()))
    promoted = change_submit(actor=org.author, change=ChangeRequest.objects.get(pk=promoted.pk))
    assert promoted.promotion_conflicts == []
    assert promoted.state == ChangeState.IN_REVIEW
    item = promoted.items.get()
    prod_reviews = prod.policies.get(namespace="bookinfo", name="reviews", kind="VirtualService")
    assert (item.operation, item.base_revision) == (DraftOperation.UPDATE, prod_reviews.current_revision)
    assert item.content_hash == change.items.get().content_hash
    assert change_promotion_chain(change=change) == [change, promoted]
    assert change_promotion_chain(change=promoted) == [change, promoted]
    # prod's approvals: one plus one for production, from Bookinfo's approvers, never the promoter
    with pytest.raises(PermissionDeniedError):
        review_approve(reviewer=org.author, change=promoted)
    review_approve(reviewer=org.approver, change=promoted)
    promoted.refresh_from_db()
    assert promoted.state == ChangeState.IN_REVIEW
    review_approve(reviewer=dave, change=promoted)
    promoted.refresh_from_db()
    assert promoted.state == ChangeState.APPROVED
    with pytest.raises(ConflictError, match="already promoted to prod"):
        change_promote(actor=org.author, change=change)


def test_only_completed_changes_are_promoted_and_not_past_the_last(cluster_org, prod):
    org = cluster_org
    change = submitted_change(org)
    with pytest.raises(IllegalTransition, match="cannot promote a change that is in state in_review"):
        change_promote(actor=org.author, change=change)
    last = completed(org)
    promoted = change_promote(actor=org.author, change=last)
    ChangeRequest.objects.filter(pk=promoted.pk).update(state=ChangeState.COMPLETED)
    promoted.refresh_from_db()
    with pytest.raises(ConflictError, match="prod is the last environment"):
        change_promote(actor=org.author, change=promoted)


def test_promoting_needs_an_author_role_in_the_target(cluster_org, prod):
    org = cluster_org
    change = completed(org)
    with pytest.raises(PermissionDeniedError, match="namespace bookinfo of prod"):
        change_promote(actor=org.other, change=change)


@pytest.fixture
def channels(cluster_org):
    org = cluster_org
    hook = NotificationChannel.objects.create(
        name="bookinfo hook",
        team=org.team_a,
        kind=NotificationChannelKind.WEBHOOK,
        target="https://hooks.example.com/b",
    )
    bob = NotificationChannel.objects.create(
        name="bob mail", user=org.approver, kind=NotificationChannelKind.EMAIL, target="bob@example.com"
    )
    alice = NotificationChannel.objects.create(
        name="alice mail", user=org.author, kind=NotificationChannelKind.EMAIL, target="alice@example.com"
    )
    return {"team": hook, "bob": bob, "alice": alice}


def deliveries() -> set[tuple[str, str]]:
    return set(NotificationDelivery.objects.values_list("event", "channel__name"))


def test_submit_tells_the_team_and_the_approvers_who_can_act(cluster_org, channels):
    org = cluster_org
    change = submitted_change(org)
    assert deliveries() == {
        (NotificationEvent.CHANGE_SUBMITTED, "bookinfo hook"),
        (NotificationEvent.CHANGE_REVIEW_REQUESTED, "bob mail"),
    }
    delivery = NotificationDelivery.objects.get(event=NotificationEvent.CHANGE_REVIEW_REQUESTED)
    assert delivery.payload["url"].endswith(f"/changes/{change.pk}/")
    assert delivery.payload["data"]["approvers"] == ["bob"]


def test_approval_tells_the_author_and_the_team(cluster_org, channels):
    org = cluster_org
    change = submitted_change(org)
    NotificationDelivery.objects.all().delete()
    review_approve(reviewer=org.approver, change=change)
    assert deliveries() == {
        (NotificationEvent.CHANGE_APPROVED, "bookinfo hook"),
        (NotificationEvent.CHANGE_APPROVED, "alice mail"),
    }


def test_a_comment_tells_the_author(cluster_org, channels):
    org = cluster_org
    change = submitted_change(org)
    NotificationDelivery.objects.all().delete()
    review_comment(author=org.approver, change=change, body="why?", item=change.items.get(), line=2)
    assert deliveries() == {(NotificationEvent.CHANGE_COMMENTED, "alice mail")}
