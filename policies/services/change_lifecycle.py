"""A change's life as a pull request's: new commits, withdrawal, retry; and "no changes".

- `change_items_replace`: the author replaces the items of an open change with a new bundle (a new
  commit). Items of the same object keep their id (and their comments); approvals are voided, an
  approved or scheduled change goes back to review, the plan is recomputed and the reviewers told.
- `change_withdraw`: the author withdraws an open change that has not started rolling out; the state
  `withdrawn` is terminal: nothing approves or rolls it out afterwards.
- `change_retry`: a rolled-back or failed change is rolled out again by an approver of the owning
  team (Argo Rollouts' retry) when neither its content nor the live state moved since the approved
  plan: a new attempt of its rollout starts now (a fresh analysis window). Otherwise it goes back to
  review with its approvals voided.
(`policies.services.no_changes` answers "no changes" for a bundle equal to live.)
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policies import approval, selectors
from policies.choices import (
    EDITABLE_CHANGE_STATES,
    RETRYABLE_CHANGE_STATES,
    WITHDRAWABLE_CHANGE_STATES,
    ChangeAuditAction,
    ChangeState,
    DraftOperation,
    NotificationEvent,
    ReviewVerdict,
    RolloutEventKind,
    RolloutState,
)
from policies.exceptions import (
    ConflictError,
    DraftRejected,
    PermissionDeniedError,
)
from policies.models import (
    ChangeItem,
    ChangeRequest,
    Environment,
    Review,
    Rollout,
    RolloutEvent,
)
from policies.normalize import content_hash, normalize_object
from policies.services.changes import (
    _item_snapshot,
    _notify,
    approvals_void,
    approvers_of,
    audit_change,
    back_to_review,
    change_guardrails_refresh,
    enqueue_plan,
    items_fingerprint,
    lock_change,
    plan_asked,
    require_state,
    set_state,
)
from policies.services.drafts import SourceText, bundle_objects
from policies.validation.parse import ParsedDocument

# --- new commit ----------------------------------------------------------------------------------------


def _documents(
    author: User, environment: Environment, files: list[tuple[str, bytes]]
) -> list[tuple[ParsedDocument, SourceText]]:
    """Every object of the bundle with its text and place in the uploaded file, refused as a whole
    on any blocking finding (a namespace the author may not draft in included)."""
    _, documents = bundle_objects(author=author, environment=environment, files=files)
    if not documents:
        raise DraftRejected("the bundle holds no object", findings=[])
    seen: set[tuple[str, str, str]] = set()
    for doc, _ in documents:
        if doc.identity in seen:
            raise DraftRejected(f"{doc.label} appears twice in the bundle", findings=[])
        seen.add(doc.identity)
    return documents


def change_items_replace(
    *, author: User, change: ChangeRequest, files: list[tuple[str, bytes]], message: str = "", commit_sha: str = ""
) -> ChangeRequest:
    """The items of ``change`` become the bundle's objects (see the module docstring)."""
    if author.pk != change.author_id:
        raise PermissionDeniedError("only the author of a change can replace its items")
    require_state(change, EDITABLE_CHANGE_STATES, "replace the items of")
    documents = _documents(author, change.environment, files)
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, EDITABLE_CHANGE_STATES, "replace the items of")
        old = {(i.kind, i.namespace, i.name): i for i in ChangeItem.objects.filter(change=change)}
        before = {
            "items": [_item_snapshot(item) for item in old.values()],
            "fingerprint": items_fingerprint(old.values()),
        }
        now = timezone.now()
        kept: list[ChangeItem] = []
        for position, (doc, source) in enumerate(documents):
            kind, namespace, name = doc.identity
            content = normalize_object(doc.obj)
            policy = selectors.policy_for_identity(
                environment=change.environment, kind=kind, namespace=namespace, name=name
            )
            item = old.pop(doc.identity, None) or ChangeItem(change=change, kind=kind, namespace=namespace, name=name)
            if item.pk is None or item.content_hash != content_hash(content):
                current = policy.current_revision if policy is not None else None
                item.policy, item.base_revision = policy, current
                item.operation = DraftOperation.UPDATE if current is not None else DraftOperation.CREATE
            item.position, item.content, item.content_hash = position, content, content_hash(content)
            item.source_text, item.updated_at = source.text, now
            item.source_file, item.source_line = source.file, source.line
            item.message = (message or item.message)[:500]
            item.findings, item.error_count, item.warning_count = [], 0, 0
            item.save()
            kept.append(item)
        for gone in old.values():
            gone.delete()
        items = list(selectors.change_items(change=change))
        if items_fingerprint(items) == before["fingerprint"] and not old:
            return change  # the same commit again
        change_guardrails_refresh(change=change, items=items)
        change.content_updated_at = change.updated_at = now
        if commit_sha:
            change.commit_sha = commit_sha
        # A new commit resolves the promotion conflicts of the objects it touches.
        change.promotion_conflicts = [
            c
            for c in change.promotion_conflicts or []
            if c.get("identity") not in {(f"{i.kind}/{i.namespace}/{i.name}") for i in items}
        ]
        change.save(
            update_fields=["content_updated_at", "updated_at", "promotion_conflicts", "commit_sha", *plan_asked(change)]
        )
        audit_change(
            action=ChangeAuditAction.CHANGE_ITEMS_REPLACED,
            actor=author,
            change=change,
            before=before,
            after={"items": [_item_snapshot(item) for item in items], "commit_sha": change.commit_sha},
        )
        reason = f"the items were replaced by {author.get_username()} (a new commit) after this approval"
        approvals_void(change=change, reason=reason, actor=author)
        back_to_review(change, actor=author, reason=reason)
        if change.state == ChangeState.IN_REVIEW:
            requirements = approval.change_requirements(change, items=items)
            approvers = approvers_of(change, requirements)
            if approvers:
                _notify(
                    event=NotificationEvent.CHANGE_REVIEW_REQUESTED,
                    change=change,
                    subject=f"New commit on change #{change.pk} “{change.title}” ({change.environment.name})",
                    body=f"{author.get_username()} replaced the items ({len(items)}): review again.",
                    users=approvers,
                    payload={"approvers": [user.get_username() for user in approvers]},
                )
            enqueue_plan(change)
    return change


# --- withdrawal ----------------------------------------------------------------------------------------


def change_withdraw(*, actor: User, change: ChangeRequest, reason: str = "") -> ChangeRequest:
    """open (before its rollout) → withdrawn, by the author; approvals are voided."""
    if actor.pk != change.author_id:
        raise PermissionDeniedError("only the author of a change can withdraw it")
    require_state(change, WITHDRAWABLE_CHANGE_STATES, "withdraw")
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, WITHDRAWABLE_CHANGE_STATES, "withdraw")
        approvals_void(change=change, reason="the change was withdrawn by its author", actor=actor)
        set_state(
            change,
            ChangeState.WITHDRAWN,
            actor=actor,
            action=ChangeAuditAction.CHANGE_WITHDRAWN,
            extra_fields={"withdrawn_at": timezone.now(), "scheduled_for": None},
            after={"reason": reason[:500]},
        )
    return change


# --- retry ---------------------------------------------------------------------------------------------


def _approved_plan_fingerprint(change: ChangeRequest) -> tuple[str, dict[str, str]] | None:
    review = (
        Review.objects.filter(change=change, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True)
        .order_by("-created_at", "-pk")
        .first()
    )
    if review is None:
        return None
    return review.plan_content_fingerprint, review.item_content_hashes


def _new_attempt(rollout: Rollout, *, actor: User) -> Rollout:
    """The rollout row starts over as a new attempt now: the keyed steps of the previous attempt stay in
    the timeline with their keys released, so every step (and analysis window) runs again."""
    now = timezone.now()
    attempt = RolloutEvent.objects.filter(rollout=rollout, kind=RolloutEventKind.STARTED).count() + 1
    previous = {"state": rollout.state, "rollback_reason": rollout.rollback_reason, "error": rollout.error}
    RolloutEvent.objects.filter(rollout=rollout, step_key__isnull=False).update(step_key=None)
    rollout.state, rollout.step_index, rollout.step_stage, rollout.current_weight = RolloutState.PENDING, 0, "apply", 0
    rollout.next_action_at, rollout.started_at, rollout.finished_at, rollout.updated_at = now, now, None, now
    rollout.snapshot, rollout.observed, rollout.expected, rollout.owned, rollout.phases = {}, {}, {}, [], []
    rollout.analysis_runs, rollout.analysis_failures, rollout.attempts = 0, 0, 0
    rollout.pause_reason, rollout.resume_state, rollout.rollback_reason, rollout.error = "", "", None, ""
    rollout.others, rollout.lease_token, rollout.lease_expires_at = {}, "", None
    # the judge's evidence of the previous attempt does not carry over (windows start with this attempt)
    rollout.analysis = {key: value for key, value in (rollout.analysis or {}).items() if key != "state"}
    rollout.save()
    RolloutEvent.objects.create(
        rollout=rollout,
        kind=RolloutEventKind.STARTED,
        step_key="start",
        message=f"retried by {actor.get_username()}: attempt {attempt} starts now",
        data={"attempt": attempt, "previous": previous},
    )
    return rollout


def user_may_retry(*, user: User, change: ChangeRequest) -> bool:
    """Approvers and admins of the owning teams (who may start its rollout)."""
    from policies.services.rollouts import _may_control_change

    return _may_control_change(user, change)


def change_retry(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """rolled_back | failed → rolling_out (a new attempt) when nothing moved, else → in_review."""
    from policies.services.plans import plan_compute
    from policies.services.rollouts import _enqueue
    from policies.services.windows import window_explain, window_is_open

    require_state(change, RETRYABLE_CHANGE_STATES, "retry")
    if not user_may_retry(user=actor, change=change):
        raise PermissionDeniedError("only approvers of the owning team can retry this change")
    if not window_is_open(environment=change.environment, at=timezone.now()):
        raise ConflictError(
            f"the change window of {change.environment.name} is closed: "
            f"{window_explain(environment=change.environment, at=timezone.now())}",
            extra={"state": change.state},
        )
    rollout = Rollout.objects.filter(change=change).first()
    if rollout is None:
        raise ConflictError(f"change #{change.pk} has no rollout to retry", extra={"state": change.state})
    approved = _approved_plan_fingerprint(change)
    plan = plan_compute(change=change)  # reads live now; in this state it voids nothing
    items = list(selectors.change_items(change=change))
    unchanged = (
        approved is not None
        and plan.content_fingerprint
        and plan.content_fingerprint == approved[0]
        and approval.current_hashes(items) == approved[1]
        and not any(approval.item_is_stale(i) for i in items)
    )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, RETRYABLE_CHANGE_STATES, "retry")
        if not unchanged:
            reason = "the content or the live state changed since the approved plan, so the retry needs a new review"
            approvals_void(change=change, reason=reason, actor=actor)
            set_state(
                change,
                ChangeState.IN_REVIEW,
                actor=actor,
                action=ChangeAuditAction.CHANGE_BACK_TO_REVIEW,
                extra_fields={"approved_at": None, "scheduled_for": None, "scheduled_at": None},
                after={"reason": reason, "retry": True},
            )
            enqueue_plan(change)
            return change
        rollout = Rollout.objects.select_for_update().get(pk=rollout.pk)
        _new_attempt(rollout, actor=actor)
        set_state(
            change,
            ChangeState.ROLLING_OUT,
            actor=actor,
            action=ChangeAuditAction.CHANGE_RETRIED,
            after={"rollout": rollout.pk, "plan": plan.pk},
        )
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return change
