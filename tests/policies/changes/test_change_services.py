"""The change state machine: creating, submitting, rejecting, scheduling; illegal transitions refused."""

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from policies.choices import ChangeAuditAction, ChangeState, DraftOperation, WindowKind
from policies.exceptions import DraftRejected, PermissionDeniedError
from policies.models import AuditEvent, ChangeItem, Draft
from policies.services.changes import (
    ChangeInvalid,
    IllegalTransition,
    change_create,
    change_create_from_bundle,
    change_refresh_plan,
    change_reject,
    change_schedule,
    change_submit,
)
from policies.services.drafts import draft_save
from policies.services.reviews import review_approve
from policies.services.windows import WEEKEND_FREEZE, change_window_upsert
from tests.factories import EnvironmentFactory
from tests.policies.changes.helpers import REVIEWS_V2, make_change, submitted_change
from tests.policies.drafts.helpers import RATINGS_NEW, REVIEWS_MISSING_SUBSET

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def change_events(change) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="policies.ChangeRequest", object_id=str(change.pk))
        .order_by("sequence")
        .values_list("action", flat=True)
    )


def test_create_moves_the_drafts_into_items(cluster_org):
    org = cluster_org
    update = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2, message="timeout").draft
    create = draft_save(author=org.author, environment=org.env, text=RATINGS_NEW).draft
    change = change_create(
        author=org.author,
        environment=org.env,
        drafts=[update, create],
        title="Reviews timeout",
        link="https://tickets.example.com/OPS-1",
    )
    assert change.state == ChangeState.DRAFT
    items = {item.name: item for item in change.items.all()}
    assert items["reviews"].operation == DraftOperation.UPDATE
    assert items["reviews"].base_revision == org.policy_a.current_revision
    assert items["reviews"].content_hash == update.content_hash and items["reviews"].source_text == REVIEWS_V2
    assert items["reviews"].message == "timeout"
    assert items["ratings"].operation == DraftOperation.CREATE and items["ratings"].base_revision is None
    assert not Draft.objects.exists()  # moved: the author may start new drafts of the same objects
    assert change_events(change) == [ChangeAuditAction.CHANGE_CREATED]
    assert AuditEvent.objects.filter(action=ChangeAuditAction.DRAFT_MOVED_TO_CHANGE).count() == 2


def test_create_refuses_foreign_drafts_mixed_environments_and_no_title(cluster_org):
    org = cluster_org
    mine = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    bobs = draft_save(author=org.approver, environment=org.env, text=REVIEWS_V2).draft
    with pytest.raises(PermissionDeniedError):
        change_create(author=org.author, environment=org.env, drafts=[mine, bobs], title="x")
    with pytest.raises(ValidationError, match="one environment"):
        change_create(author=org.author, environment=EnvironmentFactory(name="dev", order=1), drafts=[mine], title="x")
    with pytest.raises(ValidationError, match="title"):
        change_create(author=org.author, environment=org.env, drafts=[mine], title="  ")
    with pytest.raises(ValidationError, match="draft"):
        change_create(author=org.author, environment=org.env, drafts=[], title="x")
    assert Draft.objects.count() == 2


def test_create_from_a_bundle_is_one_transaction(cluster_org):
    org = cluster_org
    bundle = f"{REVIEWS_V2}---\n{RATINGS_NEW}"
    change = change_create_from_bundle(
        author=org.author, environment=org.env, files=[("b.yaml", bundle.encode())], title="From CI"
    )
    assert sorted(change.items.values_list("name", flat=True)) == ["ratings", "reviews"]
    assert not Draft.objects.exists()
    with pytest.raises(DraftRejected):
        change_create_from_bundle(
            author=org.author, environment=org.env, files=[("b.yaml", b"kind: [")], title="Broken"
        )
    assert ChangeItem.objects.count() == 2


def test_submit_moves_to_review_and_computes_the_plan_on_commit(cluster_org, django_capture_on_commit_callbacks):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    with django_capture_on_commit_callbacks() as callbacks:
        change = change_submit(actor=org.author, change=change)
    assert change.state == ChangeState.IN_REVIEW and change.submitted_at is not None
    assert change.plans.count() == 0  # the worker computes it; here the queue has the task
    assert len(callbacks) >= 1
    assert change_events(change)[-1] == ChangeAuditAction.CHANGE_SUBMITTED


def test_submit_refuses_validation_errors_and_stores_them(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env, texts=[REVIEWS_MISSING_SUBSET])
    with pytest.raises(ChangeInvalid, match="validation error") as refused:
        change_submit(actor=org.author, change=change)
    assert refused.value.status == 400 and refused.value.extra["findings"][0]["code"] == "MG0302"
    change.refresh_from_db()
    assert change.state == ChangeState.DRAFT
    assert change.items.get().error_count == 1


def test_only_the_author_submits(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    with pytest.raises(PermissionDeniedError):
        change_submit(actor=org.approver, change=change)


@pytest.mark.parametrize(
    ("state", "verb", "call"),
    [
        (ChangeState.DRAFT, "approve", lambda org, change: review_approve(reviewer=org.approver, change=change)),
        (ChangeState.IN_REVIEW, "submit", lambda org, change: change_submit(actor=org.author, change=change)),
        (ChangeState.IN_REVIEW, "schedule", lambda org, change: change_schedule(actor=org.author, change=change)),
        (ChangeState.REJECTED, "reject", lambda org, change: change_reject(actor=org.approver, change=change)),
        (
            ChangeState.COMPLETED,
            "refresh the plan of",
            lambda org, change: change_refresh_plan(actor=org.author, change=change),
        ),
    ],
)
def test_illegal_transitions_are_refused_with_the_state(cluster_org, state, verb, call):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    type(change).objects.filter(pk=change.pk).update(state=state)
    change.refresh_from_db()
    with pytest.raises(IllegalTransition) as refused:
        call(org, change)
    assert refused.value.status == 409
    assert refused.value.message == f"cannot {verb} a change that is in state {state}"
    assert refused.value.extra["state"] == state


def test_reject_is_for_approvers_and_final(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    with pytest.raises(PermissionDeniedError, match="own change"):
        change_reject(actor=org.author, change=change)
    with pytest.raises(PermissionDeniedError):
        change_reject(actor=org.other, change=change)
    change = change_reject(actor=org.approver, change=change, reason="not needed")
    assert change.state == ChangeState.REJECTED
    with pytest.raises(IllegalTransition):
        change_submit(actor=org.author, change=change)


def approved_change(org):
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    return change


def test_schedule_now_when_no_window_restricts(cluster_org):
    org = cluster_org
    change = approved_change(org)
    moment = dt.datetime(2027, 1, 13, 12, 0, tzinfo=BERLIN)  # a Wednesday
    with time_machine.travel(moment, tick=False):
        change = change_schedule(actor=org.author, change=change)
    assert change.state == ChangeState.SCHEDULED
    assert change.scheduled_for == moment and change.scheduled_at == moment


def test_schedule_in_a_freeze_waits_for_the_next_opening(cluster_org):
    org = cluster_org
    change_window_upsert(environment=org.env, **WEEKEND_FREEZE)
    change = approved_change(org)
    with time_machine.travel(dt.datetime(2027, 1, 9, 12, 0, tzinfo=BERLIN), tick=False):  # Saturday
        change = change_schedule(actor=org.approver, change=change)
    assert change.state == ChangeState.SCHEDULED
    assert change.scheduled_for == dt.datetime(2027, 1, 11, 8, 0, tzinfo=BERLIN)  # Monday 08:00 Berlin
    event = AuditEvent.objects.filter(action=ChangeAuditAction.CHANGE_SCHEDULED).get()
    assert event.after["window"].startswith("frozen by 'Weekend freeze'")


def test_schedule_inside_an_allow_window_is_now(cluster_org):
    org = cluster_org
    change_window_upsert(
        environment=org.env,
        name="Business hours",
        kind=WindowKind.ALLOW,
        weekdays=[0, 1, 2, 3, 4],
        start_time=dt.time(9),
        end_time=dt.time(17),
        timezone="Europe/Berlin",
    )
    change = approved_change(org)
    with time_machine.travel(dt.datetime(2027, 1, 12, 20, 0, tzinfo=BERLIN), tick=False):  # Tuesday evening
        change = change_schedule(actor=org.author, change=change)
    assert change.scheduled_for == dt.datetime(2027, 1, 13, 9, 0, tzinfo=BERLIN)


def test_schedule_is_refused_to_others(cluster_org):
    org = cluster_org
    change = approved_change(org)
    with pytest.raises(PermissionDeniedError):
        change_schedule(actor=org.other, change=change)


def test_refresh_plan_marks_the_plan_out_of_date(cluster_org, django_capture_on_commit_callbacks):
    org = cluster_org
    change = submitted_change(org)
    before = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        change = change_refresh_plan(actor=org.approver, change=change)
    assert change.plan_requested_at >= before and len(callbacks) == 1
