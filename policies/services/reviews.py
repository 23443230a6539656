"""Reviews of a change: approve, request changes, comment (on the change, an item or a line), resolve;
and the approval rules admins edit.

An approval is bound to what it approved (as Wagtail's "require reapproval on edit"): the items'
content hashes and the content fingerprint of the plan computed right before it is recorded (the
cluster is read again, as Atlantis plans before apply). A reviewer holds at most one active
approval per change (a conditional unique constraint). The rules deciding whether approvals
suffice are in `policies.approval`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from policies import approval, selectors
from policies.choices import (
    REVIEWABLE_CHANGE_STATES,
    ChangeAuditAction,
    ChangeState,
    NotificationEvent,
    PlanStatus,
    ReviewVerdict,
    SecurityApproval,
)
from policies.diff import to_yaml
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.models import ApprovalRule, ChangeItem, ChangeRequest, Environment, Review, ReviewComment, Team
from policies.services.audit import audit_record
from policies.services.changes import (
    _notify,
    _raise_if_stale,
    advance,
    approvals_void,
    audit_change,
    change_guardrails_refresh,
    items_fingerprint,
    lock_change,
    require_state,
    set_state,
)
from policies.services.plans import plan_compute

MAX_COMMENT = 10_000


def _require_reviewer(
    *, reviewer: User, change: ChangeRequest, items: list[ChangeItem], own: str
) -> approval.Requirements:
    requirements = approval.change_requirements(change, items=items)
    if reviewer.pk == change.author_id:
        raise PermissionDeniedError(own)
    if not approval.user_may_approve(user=reviewer, change=change, requirements=requirements):
        raise PermissionDeniedError(
            approval.why_may_not_approve(user=reviewer, change=change, requirements=requirements)
        )
    return requirements


def review_approve(
    *,
    reviewer: User,
    change: ChangeRequest,
    body: str = "",
    plan_fingerprint: str | None = None,
) -> Review:
    """Approves the change's current items against a freshly computed plan.

    Only an approver of a team the change needs (never its author); refused while the change is
    stale or its plan has errors. With `plan_fingerprint` (the content fingerprint of the plan the
    reviewer read), refused when the live state has moved since. The change becomes approved when
    the approvals suffice and nothing blocks it. Approving again is idempotent.
    """
    require_state(change, REVIEWABLE_CHANGE_STATES, "approve")
    items = list(selectors.change_items(change=change))
    _require_reviewer(reviewer=reviewer, change=change, items=items, own="you cannot approve your own change")
    _raise_if_stale(change, items, "approved")
    change_guardrails_refresh(change=change, items=items)
    plan = plan_compute(change=change)
    if plan_fingerprint and plan_fingerprint != plan.content_fingerprint:
        raise ConflictError(
            "the live state changed since you loaded the plan: read the refreshed plan and approve again",
            extra={"state": change.state, "plan_fingerprint": plan.content_fingerprint},
        )
    if plan.status == PlanStatus.ERROR:
        raise ConflictError(
            f"the plan has errors, so change #{change.pk} cannot be approved: {plan.error}",
            extra={"state": change.state},
        )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, REVIEWABLE_CHANGE_STATES, "approve")
        current = list(selectors.change_items(change=change))
        if items_fingerprint(current) != plan.items_fingerprint:
            raise ConflictError(
                "the change's items changed while its plan was computed: read them and approve again",
                extra={"state": change.state},
            )
        hashes = approval.current_hashes(current)
        existing = Review.objects.filter(
            change=change, reviewer=reviewer, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True
        ).first()
        if existing is not None:
            if existing.item_content_hashes == hashes and existing.plan_content_fingerprint == plan.content_fingerprint:
                return existing
            approvals_void(
                change=change,
                reason="superseded by a new approval of the same reviewer",
                actor=reviewer,
                reviews=[existing],
            )
        try:
            with transaction.atomic():
                review = Review.objects.create(
                    change=change,
                    reviewer=reviewer,
                    verdict=ReviewVerdict.APPROVE,
                    body=body.strip(),
                    item_content_hashes=hashes,
                    plan=plan,
                    plan_fingerprint=plan.fingerprint,
                    plan_content_fingerprint=plan.content_fingerprint,
                )
        except IntegrityError as exc:  # a concurrent approval of the same reviewer won
            raise ConflictError("you approved this change a moment ago in another request") from exc
        audit_change(
            action=ChangeAuditAction.REVIEW_APPROVED,
            actor=reviewer,
            change=change,
            after={"review": review.pk, "plan": plan.pk, "plan_fingerprint": plan.content_fingerprint, "items": hashes},
        )
        advance(change, actor=reviewer)
    review.change = change
    return review


def review_request_changes(*, reviewer: User, change: ChangeRequest, body: str) -> Review:
    """in_review | approved → changes_requested, by an approver, with a reason. Every approval is
    voided: the change is reviewed again after the author resubmits it."""
    require_state(change, REVIEWABLE_CHANGE_STATES, "request changes on")
    body = (body or "").strip()
    if not body:
        raise ValidationError({"body": "say what should change"})
    items = list(selectors.change_items(change=change))
    _require_reviewer(
        reviewer=reviewer, change=change, items=items, own="you cannot request changes on your own change"
    )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, REVIEWABLE_CHANGE_STATES, "request changes on")
        review = Review.objects.create(
            change=change,
            reviewer=reviewer,
            verdict=ReviewVerdict.REQUEST_CHANGES,
            body=body,
            item_content_hashes=approval.current_hashes(items),
        )
        approvals_void(change=change, reason=f"changes requested by {reviewer.get_username()}", actor=reviewer)
        set_state(
            change,
            ChangeState.CHANGES_REQUESTED,
            actor=reviewer,
            action=ChangeAuditAction.CHANGE_CHANGES_REQUESTED,
            extra_fields={"approved_at": None, "scheduled_for": None, "scheduled_at": None},
            after={"review": review.pk, "body": body},
        )
        _notify(
            event=NotificationEvent.CHANGE_CHANGES_REQUESTED,
            change=change,
            subject=f"Changes requested on change #{change.pk} “{change.title}” by {reviewer.get_username()}",
            body=body,
            users=[change.author],
        )
    return review


# --- comments ----------------------------------------------------------------------------------------


def item_lines(item: ChangeItem) -> int:
    """How many lines the item's YAML (the diff's right side) has."""
    return len(to_yaml(item.content).splitlines()) if item.content is not None else 0


def review_comment(
    *,
    author: User,
    change: ChangeRequest,
    body: str,
    item: ChangeItem | None = None,
    line: int | None = None,
    parent: ReviewComment | None = None,
) -> ReviewComment:
    """A comment on the change, one of its items, or a line of an item's YAML; or a reply in a thread
    (which takes its thread's item and line). Anyone who may read the change may comment."""
    body = (body or "").strip()
    if not body:
        raise ValidationError({"body": "write a comment"})
    if len(body) > MAX_COMMENT:
        raise ValidationError({"body": f"at most {MAX_COMMENT} characters"})
    if not selectors.change_list(user=author).filter(pk=change.pk).exists():
        raise PermissionDeniedError("you may not read this change")
    if parent is not None:
        if parent.change_id != change.pk:
            raise ValidationError({"parent": "the comment replied to is on another change"})
        if parent.parent_id is not None:
            parent = parent.parent
            assert parent is not None
        item, line = parent.item, parent.line
    if item is not None and item.change_id != change.pk:
        raise ValidationError({"item": "the item is not part of this change"})
    if line is not None:
        if item is None:
            raise ValidationError({"line": "a line comment names its item"})
        lines = item_lines(item)
        if not 1 <= line <= lines:
            raise ValidationError(
                {
                    "line": f"{item.label} has lines 1 to {lines}"
                    if lines
                    else f"{item.label} is a deletion: it has no lines to comment on"
                }
            )
    with transaction.atomic():
        comment = ReviewComment.objects.create(
            change=change,
            item=item,
            line=line,
            parent=parent,
            body=body,
            author=author,
        )
        audit_change(
            action=ChangeAuditAction.COMMENT_CREATED,
            actor=author,
            change=change,
            after={
                "comment": comment.pk,
                "item": item.identity if item else None,
                "line": line,
                "parent": parent.pk if parent else None,
            },
        )
        recipients: dict[int, Any] = {}
        if change.author_id != author.pk:
            recipients[change.author_id] = change.author
        if parent is not None:
            for participant in [parent.author, *(reply.author for reply in parent.replies.select_related("author"))]:
                if participant.pk != author.pk:
                    recipients.setdefault(participant.pk, participant)
        if recipients:
            where = f" on {item.label}" + (f" line {line}" if line else "") if item is not None else ""
            _notify(
                event=NotificationEvent.CHANGE_COMMENTED,
                change=change,
                subject=f"{author.get_username()} commented{where} on change #{change.pk} “{change.title}”",
                body=body,
                users=list(recipients.values()),
                payload={"comment": comment.pk},
            )
    return comment


def comment_may_resolve(*, user: User, comment: ReviewComment) -> bool:
    change = comment.change
    if user.pk in (change.author_id, comment.author_id):
        return True
    items = list(selectors.change_items(change=change))
    return approval.user_may_approve(
        user=user, change=change, requirements=approval.change_requirements(change, items=items)
    )


def comment_resolve(*, actor: User, comment: ReviewComment) -> ReviewComment:
    """Marks a thread resolved (a reply resolves its thread): the change's author, the thread's
    author or an approver of the change. Idempotent."""
    if comment.parent is not None:
        comment = comment.parent
    if not comment_may_resolve(user=actor, comment=comment):
        raise PermissionDeniedError("only the change's author, the comment's author or an approver can resolve it")
    with transaction.atomic():
        comment = (
            ReviewComment.objects.select_for_update(of=("self",))
            .select_related("change__environment")
            .get(pk=comment.pk)
        )
        if comment.resolved_at is not None:
            return comment
        comment.resolved_at = timezone.now()
        comment.resolved_by = actor
        comment.save(update_fields=["resolved_at", "resolved_by"])
        audit_change(
            action=ChangeAuditAction.COMMENT_RESOLVED, actor=actor, change=comment.change, after={"comment": comment.pk}
        )
    return comment


# --- approval rules ------------------------------------------------------------------------------------


def user_may_edit_rule_scope(*, user: User, team: Team | None) -> bool:
    """Platform rules: platform admins. A team's own rules: that team's admins and platform admins."""
    if team is None:
        return selectors.user_is_admin(user)
    return selectors.user_is_team_admin(user, team.pk)


def _require_rule_scope(actor: User, team: Team | None) -> None:
    if not user_may_edit_rule_scope(user=actor, team=team):
        if team is None:
            raise PermissionDeniedError("only platform admins may edit platform approval rules")
        raise PermissionDeniedError(f"only admins of team {team.name} (or platform admins) may edit its approval rules")


def _rule_snapshot(rule: ApprovalRule) -> dict[str, Any]:
    return {
        "team": rule.team.slug if rule.team is not None else None,
        "environment": rule.environment.name if rule.environment is not None else None,
        "kind": rule.kind,
        "required_approvals": rule.required_approvals,
        "security_approval": rule.security_approval,
        "extra_production_approval": rule.extra_production_approval,
    }


def approval_rule_save(
    *,
    actor: User,
    rule: ApprovalRule | None = None,
    team: Team | None = None,
    environment: Environment | None,
    kind: str = "",
    required_approvals: int = 1,
    security_approval: str = SecurityApproval.DEFAULT,
    extra_production_approval: bool = True,
) -> ApprovalRule:
    """Creates or updates a rule (one per team or platform, environment and kind). Platform rules:
    platform admins. A team's own rule (for that team's namespaces): its admins or platform admins,
    and only stricter than the platform rule it stands on (`approval.team_rule_problems`)."""
    _require_rule_scope(actor, team)
    with transaction.atomic():
        if rule is not None:
            rule = (
                ApprovalRule.objects.select_for_update(of=("self",))
                .select_related("team", "environment")
                .get(pk=rule.pk)
            )
            _require_rule_scope(actor, rule.team)  # neither another team's rule nor a platform one
            before = _rule_snapshot(rule)
        else:
            rule, before = ApprovalRule(), None
        rule.team, rule.environment, rule.kind = team, environment, kind or ""
        rule.required_approvals = required_approvals
        rule.security_approval = security_approval
        rule.extra_production_approval = extra_production_approval
        rule.updated_at = timezone.now()
        duplicate = ApprovalRule.objects.filter(team=team, environment=environment, kind=rule.kind).exclude(pk=rule.pk)
        if duplicate.exists():
            raise ValidationError({"kind": "a rule for this scope, environment and kind exists already: edit it"})
        rule.full_clean(validate_constraints=False)
        scope: dict[str, Any] = {
            "environment": environment,
            "kind": rule.kind,
            "required_approvals": required_approvals,
            "security_approval": security_approval,
            "extra_production_approval": extra_production_approval,
        }
        if team is not None:
            limits = approval.team_rule_problems(**scope)
            if limits:
                raise ValidationError(
                    {"required_approvals": ["outside what the platform allows: " + "; ".join(limits)]}
                )
        problems = approval.rule_problems(**scope, team_id=team.pk if team is not None else None)
        if problems:
            raise ValidationError(
                {"required_approvals": ["no change could ever be approved under this rule: " + "; ".join(problems)]}
            )
        rule.save()
        audit_record(
            action=ChangeAuditAction.APPROVAL_RULE_UPDATED if before else ChangeAuditAction.APPROVAL_RULE_CREATED,
            actor=actor,
            obj=rule,
            environment=environment.name if environment else "",
            before=before,
            after=_rule_snapshot(rule),
        )
    return rule


def approval_rule_delete(*, actor: User, rule: ApprovalRule) -> None:
    """Platform rules: platform admins; a team's own rule: its admins or platform admins. Deleting a
    team rule only ever relaxes approval back to the platform rule."""
    _require_rule_scope(actor, rule.team)
    with transaction.atomic():
        audit_record(
            action=ChangeAuditAction.APPROVAL_RULE_DELETED,
            actor=actor,
            obj=rule,
            environment=rule.environment.name if rule.environment is not None else "",
            before=_rule_snapshot(rule),
        )
        rule.delete()
