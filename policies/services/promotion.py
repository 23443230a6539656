"""Promotion: a completed change becomes a new change with the same contents in the next environment.

The next environment is the one with the next higher `order`. The new change (`promoted_from` =
the completed one) is authored by whoever promotes it, re-based on that environment's current
revisions, re-validated against it, and submitted at once when valid (else it stays a draft with
its findings). It needs that environment's approvals like any other change.
"""
from __future__ import annotations

import copy

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from policies import selectors
from policies.choices import ChangeAuditAction, ChangeState, DraftOperation
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.models import ChangeItem, ChangeRequest, Environment
from policies.services.changes import (
    ChangeInvalid,
    _item_snapshot,
    audit_change,
    change_guardrails_refresh,
    change_submit,
    lock_change,
    require_state,
)

# A promotion in one of these states does not block promoting again (it went nowhere).
_DEAD_STATES = {ChangeState.REJECTED, ChangeState.ABORTED, ChangeState.FAILED, ChangeState.ROLLED_BACK}


def next_environment(environment: Environment) -> Environment | None:
    return (
        Environment.objects.filter(order__gt=environment.order).order_by("order", "name").first()
    )


def change_promote(*, actor: AbstractBaseUser, change: ChangeRequest) -> ChangeRequest:
    """completed change → a linked new change in the next environment (see the module docstring)."""
    require_state(change, {ChangeState.COMPLETED}, "promote")
    target = next_environment(change.environment)
    if target is None:
        raise ConflictError(f"{change.environment.name} is the last environment: there is nowhere to promote to",
                            extra={"state": change.state})
    existing = change.promotions.exclude(state__in=_DEAD_STATES).first()
    if existing is not None:
        raise ConflictError(f"change #{change.pk} was already promoted to {existing.environment.name} as "
                            f"#{existing.pk}", extra={"state": change.state, "promotion": existing.pk})
    source_items = list(change.items.order_by("position", "pk"))
    for namespace in sorted({item.namespace for item in source_items}):
        if not selectors.user_may_author(user=actor, environment=target, namespace=namespace):
            raise PermissionDeniedError(f"you may not author changes in namespace {namespace} of {target.name}")

    with transaction.atomic():
        change = lock_change(change)
        require_state(change, {ChangeState.COMPLETED}, "promote")
        now = timezone.now()
        promoted = ChangeRequest.objects.create(
            environment=target, title=change.title, description=change.description, link=change.link,
            repository=change.repository, commit_sha=change.commit_sha, pull_request=change.pull_request,
            author=actor, promoted_from=change, created_at=now, updated_at=now, content_updated_at=now,
            rollout_options=copy.deepcopy(change.rollout_options or {}),
        )
        new_items = []
        for position, item in enumerate(source_items):
            policy = selectors.policy_for_identity(
                environment=target, kind=item.kind, namespace=item.namespace, name=item.name
            )
            current = policy.current_revision if policy is not None else None
            if item.operation == DraftOperation.DELETE:
                if current is None:
                    raise ConflictError(f"{item.label} does not exist in {target.name}: its deletion cannot be "
                                        "promoted", extra={"state": change.state})
                operation = DraftOperation.DELETE
            else:
                operation = DraftOperation.UPDATE if current is not None else DraftOperation.CREATE
            new_items.append(ChangeItem(
                change=promoted, position=position, kind=item.kind, namespace=item.namespace, name=item.name,
                policy=policy, operation=operation, base_revision=current, content=item.content,
                content_hash=item.content_hash, source_text=item.source_text, message=item.message, updated_at=now,
            ))
        ChangeItem.objects.bulk_create(new_items)
        items = list(selectors.change_items(change=promoted))
        change_guardrails_refresh(change=promoted, items=items)
        audit_change(action=ChangeAuditAction.CHANGE_CREATED, actor=actor, change=promoted,
                     after={"state": promoted.state, "title": promoted.title, "promoted_from": change.pk,
                            "items": [_item_snapshot(item) for item in items]})
        audit_change(action=ChangeAuditAction.CHANGE_PROMOTED, actor=actor, change=change,
                     after={"promoted_to": promoted.pk, "environment": target.name})

    try:  # submitting re-validates against the target environment and stores the findings
        promoted = change_submit(actor=actor, change=promoted)
    except ChangeInvalid:
        promoted.refresh_from_db()  # stays a draft; the page shows its findings
    return promoted
