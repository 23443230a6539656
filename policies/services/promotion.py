"""Promotion: a completed change carries its own edit into the next environment.

The next environment is the one with the next higher `order`. The new change (`promoted_from` =
the completed one) is authored by whoever promotes it. Each item is the source item's edit (its
base revision → its new content) applied onto the target environment's current revision as a
three-way merge (`policies.merge.three_way`): what the target has that the edit does not touch is
kept; where the target's value differs from the source's base on a field the edit changes, the
target's value is kept and the field is a conflict, recorded on the promoted change
(`promotion_conflicts`) and shown on its page; it blocks submission until the author resolves it
by editing (or replacing) the item. An environment's per-policy override (a JSON merge patch in
`Environment.promotion_overrides`, keyed `Kind/namespace/name`) is applied last, and so shows in
the diff. The change is re-validated and submitted at once when valid and conflict-free (else it
stays a draft with its findings). It needs that environment's approvals like any other change.
"""

from __future__ import annotations

import copy

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policies import selectors
from policies.choices import ChangeAuditAction, ChangeState, DraftOperation
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.merge import MergeConflict, merge_patch, three_way
from policies.models import ChangeItem, ChangeRequest, Environment
from policies.normalize import content_hash, normalize_object
from policies.services.changes import (
    ChangeInvalid,
    _item_snapshot,
    audit_change,
    change_guardrails_refresh,
    change_submit,
    lock_change,
    promotion_conflict_findings,
    require_state,
)

# A promotion in one of these states does not block promoting again (it went nowhere).
_DEAD_STATES = {
    ChangeState.REJECTED,
    ChangeState.ABORTED,
    ChangeState.FAILED,
    ChangeState.ROLLED_BACK,
    ChangeState.WITHDRAWN,
}


def next_environment(environment: Environment) -> Environment | None:
    return Environment.objects.filter(order__gt=environment.order).order_by("order", "name").first()


def change_promote(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """completed change → a linked new change in the next environment (see the module docstring)."""
    source_items = list(change.items.select_related("base_revision").order_by("position", "pk"))
    target = next_environment(change.environment)
    # Who may promote is answered first: an outsider learns nothing about the change's state.
    for namespace in sorted({item.namespace for item in source_items}):
        if not selectors.user_may_author(user=actor, environment=target or change.environment, namespace=namespace):
            where = (target or change.environment).name
            raise PermissionDeniedError(f"you may not author changes in namespace {namespace} of {where}")
    require_state(change, {ChangeState.COMPLETED}, "promote")
    if target is None:
        raise ConflictError(
            f"{change.environment.name} is the last environment: there is nowhere to promote to",
            extra={"state": change.state},
        )
    existing = change.promotions.exclude(state__in=_DEAD_STATES).first()
    if existing is not None:
        raise ConflictError(
            f"change #{change.pk} was already promoted to {existing.environment.name} as #{existing.pk}",
            extra={"state": change.state, "promotion": existing.pk},
        )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, {ChangeState.COMPLETED}, "promote")
        now = timezone.now()
        promoted = ChangeRequest.objects.create(
            environment=target,
            title=change.title,
            description=change.description,
            link=change.link,
            repository=change.repository,
            commit_sha=change.commit_sha,
            pull_request=change.pull_request,
            author=actor,
            promoted_from=change,
            created_at=now,
            updated_at=now,
            content_updated_at=now,
            rollout_options=copy.deepcopy(change.rollout_options or {}),
        )
        new_items: list[ChangeItem] = []
        conflicts: list[dict] = []
        for position, item in enumerate(source_items):
            policy = selectors.policy_for_identity(
                environment=target, kind=item.kind, namespace=item.namespace, name=item.name
            )
            current = policy.current_revision if policy is not None else None
            if item.operation == DraftOperation.DELETE:
                if current is None:
                    raise ConflictError(
                        f"{item.label} does not exist in {target.name}: its deletion cannot be promoted",
                        extra={"state": change.state},
                    )
                operation = DraftOperation.DELETE
            else:
                operation = DraftOperation.UPDATE if current is not None else DraftOperation.CREATE
            content, source_text, message = item.content, item.source_text, item.message
            if operation != DraftOperation.DELETE:
                content, found, override = carried_content(source=item, target=current, environment=target)
                conflicts += [
                    {"identity": f"{item.kind}/{item.namespace}/{item.name}", "item": item.label, **conflict.as_dict()}
                    for conflict in found
                ]
                if content != item.content:
                    source_text = ""  # the item's YAML is rendered from the merged content
                if override:
                    message = (f"{message}; " if message else "") + f"{target.name} override applied"
            new_items.append(
                ChangeItem(
                    change=promoted,
                    position=position,
                    kind=item.kind,
                    namespace=item.namespace,
                    name=item.name,
                    policy=policy,
                    operation=operation,
                    base_revision=current,
                    content=content,
                    content_hash=content_hash(content) if content is not None else "",
                    source_text=source_text,
                    message=message[:500],
                    updated_at=now,
                )
            )
        for new_item in new_items:  # the conflicts are the items' MG0908 errors until resolved
            new_item.findings = promotion_conflict_findings(environment=target, item=new_item, conflicts=conflicts)
            new_item.error_count = len(new_item.findings)
        ChangeItem.objects.bulk_create(new_items)
        if conflicts:
            promoted.promotion_conflicts = conflicts
            promoted.save(update_fields=["promotion_conflicts"])
        items = list(selectors.change_items(change=promoted))
        change_guardrails_refresh(change=promoted, items=items)
        audit_change(
            action=ChangeAuditAction.CHANGE_CREATED,
            actor=actor,
            change=promoted,
            after={
                "state": promoted.state,
                "title": promoted.title,
                "promoted_from": change.pk,
                "items": [_item_snapshot(item) for item in items],
                "conflicts": conflicts,
            },
        )
        audit_change(
            action=ChangeAuditAction.CHANGE_PROMOTED,
            actor=actor,
            change=change,
            after={"promoted_to": promoted.pk, "environment": target.name},
        )

    if promoted.promotion_conflicts:
        return promoted  # the author resolves the conflicts first; it stays a draft
    try:  # submitting re-validates against the target environment and stores the findings
        promoted = change_submit(actor=actor, change=promoted)
    except ChangeInvalid:
        promoted.refresh_from_db()  # stays a draft; the page shows its findings
    return promoted


def carried_content(*, source: ChangeItem, target: object | None, environment: Environment) -> tuple[dict, list, bool]:
    """The source item's edit onto the target's current revision, then the environment's override:
    (content, conflicts, whether an override applied)."""
    assert source.content is not None  # only creations and updates are carried
    base = source.base_revision.content if source.base_revision is not None else None
    target_content = getattr(target, "content", None)
    conflicts: list[MergeConflict]
    if target_content is None:
        content, conflicts = copy.deepcopy(source.content), []
    else:
        content, conflicts = three_way(base=base, new=source.content, target=target_content)
    override = (environment.promotion_overrides or {}).get(f"{source.kind}/{source.namespace}/{source.name}")
    if override:
        content = merge_patch(content, override)
    return normalize_object(content), conflicts, bool(override)
