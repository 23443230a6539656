"""Change requests: created from an author's drafts, submitted, edited, rebased, rejected, scheduled.

The state machine (`ChangeState`):

    draft -> in_review -> (changes_requested | approved | rejected) -> scheduled -> rolling_out ->
    (completed | rolled_back | failed | aborted)

Every transition here locks the change, checks its current state (an illegal one raises
`IllegalTransition`, a 409 naming the state), sets the new state with its time, writes its audit
row (`obj=change`, so the change's timeline is one query) and sends notifications and tasks on
commit. Reviews (approve, request changes, comments) are in `policies.services.reviews`, plans in
`policies.services.plans`, promotion in `policies.services.promotion`; the approval rules are in
`policies.approval`.

Drafts become items: `change_create` copies each draft (content, text, findings, base revision)
into a `ChangeItem` and deletes the draft, so the author can start a new draft for the same object
while the change is open. An item's content then changes only through `change_item_update`, which
voids the approvals given to the old content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Count, Max
from django.urls import reverse
from django.utils import timezone

from policies import approval, jobs, selectors
from policies.choices import (
    EDITABLE_CHANGE_STATES,
    OPEN_CHANGE_STATES,
    REVIEWABLE_CHANGE_STATES,
    ChangeAuditAction,
    ChangeState,
    DraftOperation,
    NotificationEvent,
    ReviewVerdict,
)
from policies.exceptions import ApplicationError, ConflictError, DraftRejected, PermissionDeniedError
from policies.models import (
    ChangeItem,
    ChangeRequest,
    Draft,
    Environment,
    Guardrail,
    GuardrailOverride,
    Membership,
    Policy,
    Review,
    Team,
)
from policies.normalize import content_hash, normalize_object
from policies.services.audit import audit_record
from policies.services.drafts import blocking_findings, drafts_from_bundle
from policies.services.guardrails import guardrail_override, guardrails_evaluate
from policies.services.notifications import notify
from policies.services.windows import window_explain, window_next_opening
from policies.validation import Level
from policies.validation.codes import finding as catalogued
from policies.validation.service import validate_bundle, validate_text

MAX_TITLE = 200


class IllegalTransition(ConflictError):
    """The change is not in a state that allows the action (409; `details.state` says which it is)."""

    code = "illegal_transition"


class ChangeInvalid(ApplicationError):
    """The change's items have validation errors (400; `details.findings`)."""

    code = "change_invalid"


# --- shared helpers -------------------------------------------------------------------------------


def require_state(change: ChangeRequest, allowed: Iterable[str], verb: str) -> None:
    allowed = set(allowed)
    if change.state not in allowed:
        raise IllegalTransition(
            f"cannot {verb} a change that is in state {change.state}",
            extra={"state": change.state, "allowed_states": sorted(allowed)},
        )


def lock_change(change: ChangeRequest) -> ChangeRequest:
    """The change re-read under a row lock: a transition checks the state it really has."""
    return (
        ChangeRequest.objects.select_for_update(of=("self",)).select_related("environment", "author").get(pk=change.pk)
    )


def change_url(change: ChangeRequest) -> str:
    return reverse("changes:detail", args=[change.pk])


def audit_change(
    *,
    action: str,
    actor: User | None,
    change: ChangeRequest,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    audit_record(
        action=action, actor=actor, obj=change, environment=change.environment.name, before=before, after=after
    )


def plan_asked(change: ChangeRequest) -> list[str]:
    """A person asked for a plan (an edit, a rebase, a submit, a refresh): the reconciler's count of
    lost-plan rescues starts over. Returns the fields to save."""
    change.plan_rescues = 0
    change.plan_given_up_at = None
    return ["plan_rescues", "plan_given_up_at"]


def set_state(
    change: ChangeRequest,
    state: str,
    *,
    actor: User | None,
    action: str,
    extra_fields: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Moves a locked change to `state`, saves the given fields with it, writes the audit row."""
    before = {"state": change.state}
    now = timezone.now()
    fields = {"state": state, "updated_at": now, **(extra_fields or {})}
    for name, value in fields.items():
        setattr(change, name, value)
    change.save(update_fields=list(fields))
    audit_change(
        action=action, actor=actor, change=change, before=before, after={"state": state, **_plain(after or {})}
    )


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


def items_fingerprint(items: Iterable[ChangeItem]) -> str:
    canonical = json.dumps(sorted([item.pk, item.content_hash] for item in items), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def approvals_void(
    *, change: ChangeRequest, reason: str, actor: User | None = None, reviews: Iterable[Review] | None = None
) -> list[int]:
    """Voids the change's active approvals (all, or `reviews`), records why, and returns their ids.
    The caller holds the change's lock."""
    active = Review.objects.filter(change=change, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True)
    if reviews is not None:
        active = active.filter(pk__in=[review.pk for review in reviews])
    voided = list(active.select_related("reviewer"))
    if not voided:
        return []
    now = timezone.now()
    Review.objects.filter(pk__in=[review.pk for review in voided]).update(voided_at=now, voided_reason=reason[:300])
    audit_change(
        action=ChangeAuditAction.REVIEW_VOIDED,
        actor=actor,
        change=change,
        after={
            "reviews": [review.pk for review in voided],
            "reviewers": [review.reviewer.get_username() for review in voided],
            "reason": reason,
        },
    )
    return [review.pk for review in voided]


def back_to_review(change: ChangeRequest, *, actor: User | None, reason: str) -> None:
    """An approved or scheduled change whose approvals no longer hold goes back to review."""
    if change.state in (ChangeState.APPROVED, ChangeState.SCHEDULED):
        set_state(
            change,
            ChangeState.IN_REVIEW,
            actor=actor,
            action=ChangeAuditAction.CHANGE_BACK_TO_REVIEW,
            extra_fields={"approved_at": None, "scheduled_for": None, "scheduled_at": None},
            after={"reason": reason},
        )


def enqueue_plan(change: ChangeRequest) -> None:
    jobs.compute_plan.on_commit(change.pk)


def approvers_of(change: ChangeRequest, requirements: approval.Requirements) -> list[User]:
    """Users who may approve the change (never its author)."""
    team_ids = set(requirements.team_ids)
    if requirements.security:
        team_ids |= {team.pk for team in requirements.security_teams}
    memberships = (
        Membership.objects.filter(team_id__in=team_ids, role__in=approval.APPROVER_ROLES, user__is_active=True)
        .exclude(user_id=change.author_id)
        .select_related("user")
        .order_by("user__username")
    )
    users: dict[int, User] = {}
    for membership in memberships:
        users.setdefault(membership.user_id, membership.user)
    return list(users.values())


def _notify(
    *,
    event: str,
    change: ChangeRequest,
    subject: str,
    body: str = "",
    teams: Iterable[Team] = (),
    users: Iterable[User] = (),
    payload: dict[str, Any] | None = None,
) -> None:
    notify(
        event=event,
        subject=subject,
        body=body or subject,
        url=change_url(change),
        payload={
            "change": change.pk,
            "environment": change.environment.name,
            "state": change.state,
            "title": change.title,
            "repository": change.repository,
            "commit_sha": change.commit_sha,
            "pull_request": change.pull_request,
            **(payload or {}),
        },
        teams=teams,
        users=users,
    )


# --- validation and guardrails -------------------------------------------------------------------------


def item_filename(item: ChangeItem) -> str:
    return f"{item.namespace}/{item.kind}/{item.name}.yaml"


def item_text(item: ChangeItem) -> str:
    if item.source_text.strip():
        return item.source_text
    return yaml.safe_dump(item.content, sort_keys=False, allow_unicode=True) if item.content is not None else ""


def promotion_conflict_findings(
    *, environment: Environment, item: ChangeItem, conflicts: Sequence[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """An MG0908 error for each unresolved promotion conflict of the item's object (the change's
    `promotion_conflicts`): the target environment's value is kept until the author edits the item."""
    identity = f"{item.kind}/{item.namespace}/{item.name}"
    return [
        catalogued(
            "MG0908",
            f"{conflict['path']} is {conflict['target']!r} in {environment.name}, but the promoted change edits it "
            f"from {conflict['base']!r} to {conflict['change']!r}: {environment.name}'s value is kept until the item "
            f"is edited to the value {environment.name} should hold",
            object=item.label,
            path=conflict["path"],
        ).as_dict()
        for conflict in conflicts or []
        if conflict.get("identity") == identity
    ]


def validate_items(
    *,
    environment: Environment,
    items: Sequence[ChangeItem],
    conflicts: Sequence[dict[str, Any]] | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """Validates the items' contents together against the environment, leaving out of the
    cross-resource context the policies they replace or delete; ``conflicts`` (a promoted change's
    unresolved promotion conflicts) add their MG0908 errors. {item id: findings (dicts)}."""
    present = [item for item in items if item.content is not None]
    result: dict[int, list[dict[str, Any]]] = {
        item.pk: promotion_conflict_findings(environment=environment, item=item, conflicts=conflicts) for item in items
    }
    if not present:
        return result
    replaced = {item.policy_id or getattr(item, "policy_id_now", None) for item in items} - {None}
    report = validate_bundle(
        environment=environment,
        files=[(item_filename(item), item_text(item).encode("utf-8", errors="surrogatepass")) for item in present],
        exclude_policy_ids=sorted(pk for pk in replaced if pk is not None),
    )
    by_file = {item_filename(item): item for item in present}
    for finding in report.findings:
        item = by_file.get(finding.file)
        if item is not None:
            result[item.pk].append(as_uploaded(finding.as_dict(), item))
    return result


def as_uploaded(finding: dict[str, Any], item: ChangeItem) -> dict[str, Any]:
    """A finding about an item, located in the file and at the line the author uploaded it from
    (when the item came from an uploaded bundle)."""
    if not item.source_file:
        return finding
    finding = {**finding, "file": item.source_file}
    if item.source_line and finding.get("line"):
        finding["line"] = finding["line"] + item.source_line - 1
    return finding


def _counts(findings: list[dict[str, Any]]) -> tuple[int, int]:
    errors = sum(1 for finding in findings if finding.get("level") == Level.ERROR)
    warnings = sum(1 for finding in findings if finding.get("level") == Level.WARNING)
    return errors, warnings


def _apply_findings(items: Sequence[ChangeItem], findings: dict[int, list[dict[str, Any]]]) -> list[ChangeItem]:
    changed = []
    for item in items:
        if item.pk not in findings:
            continue
        item.findings = findings[item.pk]
        item.error_count, item.warning_count = _counts(item.findings)
        changed.append(item)
    return changed


def guardrails_version() -> str:
    """Changes whenever a guardrail is added, edited or removed (one query)."""
    stats = Guardrail.objects.aggregate(latest=Max("updated_at"), count=Count("pk"))
    return f"{stats['latest'].isoformat() if stats['latest'] else '-'}:{stats['count']}"


def _guardrails_key(item: ChangeItem, environment: Environment, version: str) -> str:
    raw = f"{item.content_hash}|{environment.name}|{environment.is_production}|{version}"
    return hashlib.sha256(raw.encode()).hexdigest()


def change_guardrails_refresh(*, change: ChangeRequest, items: Sequence[ChangeItem]) -> list[ChangeItem]:
    """Evaluates the guardrails on the items whose content or the guardrails changed since the
    stored results, and stores them (cheap: two queries when nothing changed). Returns the items
    that were re-evaluated."""
    environment = change.environment
    version = guardrails_version()
    pending = [item for item in items if item.guardrails_key != _guardrails_key(item, environment, version)]
    if not pending:
        return []
    guardrails = list(Guardrail.objects.filter(enabled=True))
    for item in pending:
        results = (
            []
            if item.content is None
            else guardrails_evaluate(environment=environment, objects=[item.content], guardrails=guardrails)
        )
        item.guardrail_results = [result.as_dict() for result in results]
        item.guardrails_key = _guardrails_key(item, environment, version)
    ChangeItem.objects.bulk_update(pending, ["guardrail_results", "guardrails_key"])
    return pending


def advance(change: ChangeRequest, *, actor: User | None) -> bool:
    """An in-review change whose approvals suffice and that nothing blocks becomes approved.
    The caller holds the lock. Returns True when it moved."""
    if change.state != ChangeState.IN_REVIEW:
        return False
    items = list(selectors.change_items(change=change))
    status = approval.approval_status(change, items=items)
    if not status.approvable:
        return False
    now = timezone.now()
    set_state(
        change,
        ChangeState.APPROVED,
        actor=actor,
        action=ChangeAuditAction.CHANGE_APPROVED,
        extra_fields={"approved_at": now},
        after={"approved_by": [review.reviewer.get_username() for review in status.counted]},
    )
    requirements = approval.change_requirements(change, items=items)
    _notify(
        event=NotificationEvent.CHANGE_APPROVED,
        change=change,
        subject=f"Change #{change.pk} “{change.title}” is approved ({change.environment.name})",
        body=f"Approved by {', '.join(review.reviewer.get_username() for review in status.counted)}.",
        teams=requirements.teams,
        users=[change.author],
    )
    return True


# --- creating ----------------------------------------------------------------------------------------


def _clean_header(*, title: str, link: str) -> tuple[str, str]:
    title = (title or "").strip()
    if not title:
        raise ValidationError({"title": "give the change a title"})
    if len(title) > MAX_TITLE:
        raise ValidationError({"title": f"at most {MAX_TITLE} characters"})
    link = (link or "").strip()
    if link:
        try:
            URLValidator(schemes=["http", "https"])(link)
        except ValidationError as exc:
            raise ValidationError({"link": "an http(s) URL, e.g. of a ticket or pull request"}) from exc
    return title, link


def _item_snapshot(item: ChangeItem) -> dict[str, Any]:
    return {
        "identity": item.identity,
        "operation": item.operation,
        "policy": item.policy_id,
        "base_revision": item.base_revision.number if item.base_revision is not None else None,
        "content_hash": item.content_hash,
    }


@dataclass(frozen=True)
class ChangeSource:
    """Where a change's content comes from: repository, commit and pull request (from CI)."""

    repository: str = ""
    commit_sha: str = ""
    pull_request: str = ""

    def fields(self) -> dict[str, str]:
        return {"repository": self.repository, "commit_sha": self.commit_sha, "pull_request": self.pull_request}


def change_create(
    *,
    author: User,
    environment: Environment,
    drafts: Sequence[Draft],
    title: str,
    description: str = "",
    link: str = "",
    source: ChangeSource | None = None,
) -> ChangeRequest:
    """A change (state draft) holding the author's `drafts`, all of `environment`; the drafts are
    moved into it (deleted). Each item is based on its draft's base revision: the policy's current
    revision, unless the draft was started on an older one, in which case the change is created
    stale and must be rebased (the three-way view shows what moved)."""
    title, link = _clean_header(title=title, link=link)
    if not drafts:
        raise ValidationError({"drafts": "choose at least one draft"})
    for draft in drafts:
        if draft.author_id != author.pk:
            raise PermissionDeniedError("a change holds only your own drafts")
        if draft.environment_id != environment.pk:
            raise ValidationError(
                {"drafts": f"all drafts of a change are for one environment: {draft} is not for {environment.name}"}
            )
    with transaction.atomic():
        locked = list(
            Draft.objects.select_for_update(of=("self",))
            .filter(pk__in=[draft.pk for draft in drafts], author=author)
            .select_related("policy", "base_revision")
            .order_by("namespace", "kind", "name", "pk")
        )
        if len(locked) != len({draft.pk for draft in drafts}):
            raise ConflictError("a draft was discarded or moved into another change meanwhile: reload and try again")
        now = timezone.now()
        change = ChangeRequest.objects.create(
            environment=environment,
            title=title,
            description=description or "",
            link=link,
            author=author,
            created_at=now,
            updated_at=now,
            content_updated_at=now,
            **(source or ChangeSource()).fields(),
        )
        items = ChangeItem.objects.bulk_create(
            [
                ChangeItem(
                    change=change,
                    position=position,
                    kind=draft.kind,
                    namespace=draft.namespace,
                    name=draft.name,
                    policy=draft.policy,
                    operation=draft.operation,
                    base_revision_id=draft.base_revision_id,
                    content=draft.content,
                    content_hash=draft.content_hash,
                    source_text=draft.source_text,
                    source_file=draft.source_file,
                    source_line=draft.source_line,
                    message=draft.message,
                    findings=draft.findings,
                    error_count=draft.error_count,
                    warning_count=draft.warning_count,
                    updated_at=now,
                )
                for position, draft in enumerate(locked)
            ]
        )
        items = list(ChangeItem.objects.filter(change=change).select_related("base_revision").order_by("position"))
        change_guardrails_refresh(change=change, items=items)
        for draft in locked:
            audit_record(
                action=ChangeAuditAction.DRAFT_MOVED_TO_CHANGE,
                actor=author,
                obj=draft,
                environment=environment.name,
                before={"content_hash": draft.content_hash},
                after={"change": change.pk},
            )
        Draft.objects.filter(pk__in=[draft.pk for draft in locked]).delete()
        audit_change(
            action=ChangeAuditAction.CHANGE_CREATED,
            actor=author,
            change=change,
            after={
                "state": change.state,
                "title": title,
                "items": [_item_snapshot(item) for item in items],
                **(source or ChangeSource()).fields(),
            },
        )
    return change


def change_create_from_bundle(
    *,
    author: User,
    environment: Environment,
    files: list[tuple[str, bytes]],
    title: str,
    description: str = "",
    link: str = "",
    message: str = "",
    source: ChangeSource | None = None,
    default_namespace: str = "",
) -> ChangeRequest:
    """Drafts every object of the bundle (see `drafts_from_bundle`) and makes them one change, in
    one transaction: a refused bundle stores nothing. `default_namespace`: for objects without one. A
    bundle whose every object equals live raises `NoChanges` (nothing stored)."""
    from policies.services.no_changes import raise_if_no_changes  # no_changes imports this module

    _clean_header(title=title, link=link)
    with transaction.atomic():
        drafts = drafts_from_bundle(
            author=author, environment=environment, files=files, message=message, default_namespace=default_namespace
        )
        raise_if_no_changes(environment=environment, drafts=drafts)
        return change_create(
            author=author,
            environment=environment,
            drafts=drafts,
            title=title,
            description=description,
            link=link,
            source=source,
        )


# --- submitting ----------------------------------------------------------------------------------------


def _stale_labels(items: Sequence[ChangeItem]) -> list[str]:
    return [item.label for item in items if approval.item_is_stale(item)]


def _raise_if_stale(change: ChangeRequest, items: Sequence[ChangeItem], verb: str) -> None:
    stale = _stale_labels(items)
    if stale:
        raise ConflictError(
            f"change #{change.pk} is stale: {', '.join(stale)} changed since the change was based on "
            f"{'it' if len(stale) == 1 else 'them'}; rebase it before it can be {verb}",
            extra={"state": change.state, "stale_items": stale},
        )


def _store_validation(items: Sequence[ChangeItem], findings: dict[int, list[dict[str, Any]]]) -> None:
    changed = _apply_findings(items, findings)
    if changed:
        ChangeItem.objects.bulk_update(changed, ["findings", "error_count", "warning_count"])


def change_submit(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """draft | changes_requested → in_review, by the author. Refused while an item has validation
    errors (re-validated now against the environment) or the change is stale. Computes the plan
    and tells the approvers who can act."""
    if actor.pk != change.author_id:
        raise PermissionDeniedError("only the author of a change can submit it")
    require_state(change, {ChangeState.DRAFT, ChangeState.CHANGES_REQUESTED}, "submit")
    if change.promotion_conflicts:
        first = change.promotion_conflicts[0]
        raise ChangeInvalid(
            f"change #{change.pk} has {len(change.promotion_conflicts)} promotion conflict(s) to resolve; first: "
            f"{first['item']}: {first['path']} is {first['target']!r} in {change.environment.name}, the change "
            f"edits it from {first['base']!r} to {first['change']!r}: edit the item to the value it should hold",
            extra={"promotion_conflicts": change.promotion_conflicts},
        )
    items = list(selectors.change_items(change=change))
    _raise_if_stale(change, items, "submitted")
    findings = validate_items(environment=change.environment, items=items, conflicts=change.promotion_conflicts)
    errors = [
        finding
        for item_findings in findings.values()
        for finding in item_findings
        if finding.get("level") == Level.ERROR
    ]
    if errors:
        with transaction.atomic():
            _store_validation(items, findings)
        first = errors[0]
        raise ChangeInvalid(
            f"change #{change.pk} cannot be submitted: {len(errors)} validation error{'s' if len(errors) != 1 else ''}; "
            f"first: {first.get('object') or first.get('file')}: {first['message']}",
            extra={"findings": errors},
        )
    fingerprint = items_fingerprint(items)
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, {ChangeState.DRAFT, ChangeState.CHANGES_REQUESTED}, "submit")
        current = list(selectors.change_items(change=change))
        if items_fingerprint(current) != fingerprint:
            raise ConflictError("the change's items changed while it was being validated: submit again")
        _store_validation(current, findings)
        change_guardrails_refresh(change=change, items=current)
        now = timezone.now()
        set_state(
            change,
            ChangeState.IN_REVIEW,
            actor=actor,
            action=ChangeAuditAction.CHANGE_SUBMITTED,
            extra_fields={"submitted_at": now, "plan_rescues": 0, "plan_given_up_at": None},
            after={"items": len(current)},
        )
        requirements = approval.change_requirements(change, items=current)
        approvers = approvers_of(change, requirements)
        subject = f"Change #{change.pk} “{change.title}” submitted for review ({change.environment.name})"
        _notify(
            event=NotificationEvent.CHANGE_SUBMITTED,
            change=change,
            subject=subject,
            body=f"{change.author.get_username()} submitted {len(current)} item(s).",
            teams=requirements.teams,
        )
        if approvers:
            _notify(
                event=NotificationEvent.CHANGE_REVIEW_REQUESTED,
                change=change,
                subject=f"Review requested: change #{change.pk} “{change.title}” ({change.environment.name})",
                body=f"{requirements.required} approval(s) needed.",
                users=approvers,
                payload={"approvers": [user.get_username() for user in approvers]},
            )
        enqueue_plan(change)
    return change


# --- editing an item ---------------------------------------------------------------------------------


def change_item_update(*, author: User, item: ChangeItem, text: str, message: str | None = None) -> ChangeItem:
    """New text for one item (the same object). A content change voids every approval and sends an
    approved or scheduled change back to review; text that only changes comments or layout keeps
    them (approvals bind to the normalized content's hash)."""
    change = item.change
    if author.pk != change.author_id:
        raise PermissionDeniedError("only the author of a change can edit its items")
    require_state(change, EDITABLE_CHANGE_STATES, "edit")
    if item.operation == DraftOperation.DELETE:
        raise ConflictError(f"{item.label} is a deletion: it has no content to edit")
    report = validate_text(environment=change.environment, text=text, filename=item_filename(item))
    blocking = blocking_findings(report.findings)
    if blocking:
        raise DraftRejected(
            f"the text cannot be used: {blocking[0].message}", findings=[finding.as_dict() for finding in blocking]
        )
    if len(report.documents) != 1:
        raise DraftRejected(
            f"an item holds exactly one object, and this text holds {len(report.documents)}", findings=[]
        )
    (document,) = report.documents
    if document.identity != (item.kind, item.namespace, item.name):
        raise DraftRejected(
            f"this item is {item.label}, but the text describes {document.label}: an item keeps its object",
            findings=[],
        )
    content = normalize_object(document.obj)
    digest = content_hash(content)
    findings = [finding.as_dict() for finding in report.findings]
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, EDITABLE_CHANGE_STATES, "edit")
        item = ChangeItem.objects.select_for_update().get(pk=item.pk, change=change)
        before = {"item": item.identity, "content_hash": item.content_hash}
        now = timezone.now()
        content_changed = digest != item.content_hash
        item.content, item.content_hash, item.source_text = content, digest, text
        item.source_file, item.source_line = "", 0  # written in the portal now, not the uploaded file
        item.findings = findings
        item.error_count, item.warning_count = _counts(findings)
        item.updated_at = now
        if message is not None:
            item.message = message[:500]
        item.save()
        change_guardrails_refresh(change=change, items=[item])
        fields: dict[str, Any] = {"updated_at": now}
        identity = f"{item.kind}/{item.namespace}/{item.name}"
        if any(c.get("identity") == identity for c in change.promotion_conflicts or []):
            # The author's edit resolves the promotion conflicts of this object.
            fields["promotion_conflicts"] = [c for c in change.promotion_conflicts if c.get("identity") != identity]
        if content_changed:
            fields["content_updated_at"] = now
        for name, value in fields.items():
            setattr(change, name, value)
        change.save(update_fields=list(fields))
        audit_change(
            action=ChangeAuditAction.CHANGE_ITEM_UPDATED,
            actor=author,
            change=change,
            before=before,
            after={"item": item.identity, "content_hash": digest},
        )
        if content_changed:
            reason = f"{item.label} was edited by {author.get_username()} after this approval"
            approvals_void(change=change, reason=reason, actor=author)
            back_to_review(change, actor=author, reason=reason)
            if change.state == ChangeState.IN_REVIEW:
                enqueue_plan(change)
    item.change = change
    return item


# --- rebasing ------------------------------------------------------------------------------------------


def change_rebase(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """Moves every stale item's base to its policy's current revision (a creation whose policy now
    exists becomes an update of it), re-validates, voids the approvals and sends an approved or
    scheduled change back to review. The author reads the three-way view first."""
    if actor.pk != change.author_id:
        raise PermissionDeniedError("only the author of a change can rebase it")
    require_state(change, EDITABLE_CHANGE_STATES, "rebase")
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, EDITABLE_CHANGE_STATES, "rebase")
        items = list(selectors.change_items(change=change))
        stale = [item for item in items if approval.item_is_stale(item)]
        if not stale:
            raise ConflictError(f"change #{change.pk} is not stale: nothing to rebase", extra={"state": change.state})
        moved = []
        for item in stale:
            assert hasattr(item, "current_revision_now") and hasattr(item, "policy_id_now")  # selectors.change_items
            assert hasattr(item, "current_revision_number_now")
            old = item.base_revision.number if item.base_revision is not None else None
            item.base_revision_id = item.current_revision_now
            item.policy_id = item.policy_id_now
            if item.operation == DraftOperation.CREATE and item.current_revision_now is not None:
                item.operation = DraftOperation.UPDATE
            elif item.operation == DraftOperation.UPDATE and item.current_revision_now is None:
                item.operation = DraftOperation.CREATE
            item.updated_at = timezone.now()
            moved.append({"item": item.identity, "from": old, "to": item.current_revision_number_now})
        ChangeItem.objects.bulk_update(stale, ["base_revision", "policy", "operation", "updated_at"])
        now = timezone.now()
        change.content_updated_at = change.updated_at = now
        change.save(update_fields=["content_updated_at", "updated_at", *plan_asked(change)])
        audit_change(action=ChangeAuditAction.CHANGE_REBASED, actor=actor, change=change, after={"items": moved})
        reason = f"rebased by {actor.get_username()} onto the current revisions"
        approvals_void(change=change, reason=reason, actor=actor)
        back_to_review(change, actor=actor, reason=reason)
        if change.state == ChangeState.IN_REVIEW:
            enqueue_plan(change)
    items = list(selectors.change_items(change=change))
    findings = validate_items(environment=change.environment, items=items, conflicts=change.promotion_conflicts)
    with transaction.atomic():
        _store_validation(items, findings)
    return change


# --- rejecting, scheduling, plan refresh, guardrail overrides ----------------------------------------------


def change_reject(*, actor: User, change: ChangeRequest, reason: str = "") -> ChangeRequest:
    """in_review | changes_requested | approved → rejected (final), by an approver of the change."""
    allowed = {ChangeState.IN_REVIEW, ChangeState.CHANGES_REQUESTED, ChangeState.APPROVED}
    require_state(change, allowed, "reject")
    items = list(selectors.change_items(change=change))
    requirements = approval.change_requirements(change, items=items)
    if not approval.user_may_approve(user=actor, change=change, requirements=requirements):
        raise PermissionDeniedError(
            approval.why_may_not_approve(user=actor, change=change, requirements=requirements)
            .replace("approve or request changes on", "reject")
            .replace("approve your own change", "reject your own change")
        )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, allowed, "reject")
        set_state(
            change,
            ChangeState.REJECTED,
            actor=actor,
            action=ChangeAuditAction.CHANGE_REJECTED,
            extra_fields={"approved_at": None},
            after={"reason": reason.strip()},
        )
        _notify(
            event=NotificationEvent.CHANGE_REJECTED,
            change=change,
            subject=f"Change #{change.pk} “{change.title}” was rejected by {actor.get_username()}",
            body=reason.strip() or "No reason given.",
            users=[change.author],
        )
    return change


def user_may_schedule(*, user: User, change: ChangeRequest, requirements: approval.Requirements) -> bool:
    return user.is_authenticated and (
        user.pk == change.author_id
        or selectors.user_is_admin(user)
        or approval.user_may_approve(user=user, change=change, requirements=requirements)
    )


def change_schedule(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """approved → scheduled for the next opening of the environment's change windows (now, when it
    is open). The rollout engine starts it from there. The approvals, staleness, guardrails and plan
    are checked again first."""
    require_state(change, {ChangeState.APPROVED}, "schedule")
    items = list(selectors.change_items(change=change))
    requirements = approval.change_requirements(change, items=items)
    if not user_may_schedule(user=actor, change=change, requirements=requirements):
        raise PermissionDeniedError("only the author, an approver of the change or an admin can schedule it")
    _raise_if_stale(change, items, "scheduled")
    change_guardrails_refresh(change=change, items=items)
    status = approval.approval_status(change, items=items, requirements=requirements)
    if not status.approvable:
        problems = status.blockers + ([status.summary] if not status.satisfied else [])
        raise ConflictError(
            f"change #{change.pk} cannot be scheduled: {'; '.join(problems)}",
            extra={"state": change.state, "missing": status.missing, "blockers": status.blockers},
        )
    now = timezone.now()
    opening = window_next_opening(environment=change.environment, after=now)
    explanation = window_explain(environment=change.environment, at=now)
    if opening is None:
        raise ConflictError(
            f"{change.environment.name} has no change window opening soon: {explanation}", extra={"state": change.state}
        )
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, {ChangeState.APPROVED}, "schedule")
        set_state(
            change,
            ChangeState.SCHEDULED,
            actor=actor,
            action=ChangeAuditAction.CHANGE_SCHEDULED,
            extra_fields={"scheduled_at": now, "scheduled_for": opening},
            after={"scheduled_for": opening.isoformat(), "window": explanation},
        )
    return change


def change_refresh_plan(*, actor: User, change: ChangeRequest) -> ChangeRequest:
    """Marks the plan out of date and asks the worker for a new one: the author, members of the teams
    owning the change's namespaces, and platform admins."""
    namespaces = set(change.items.values_list("namespace", flat=True))
    if not (
        actor.is_authenticated
        and (
            actor.pk == change.author_id
            or selectors.user_is_admin(actor)
            or (
                namespaces
                and all(
                    selectors.user_may_author(user=actor, environment=change.environment, namespace=ns)
                    for ns in namespaces
                )
            )
        )
    ):
        raise PermissionDeniedError("only the author, the owning teams and platform admins may refresh this plan")
    require_state(change, OPEN_CHANGE_STATES - {ChangeState.ROLLING_OUT}, "refresh the plan of")
    with transaction.atomic():
        change = lock_change(change)
        change.plan_requested_at = timezone.now()
        change.save(update_fields=["plan_requested_at", *plan_asked(change)])
        enqueue_plan(change)
    return change


def change_guardrail_override(
    *, admin: User, change: ChangeRequest, item: ChangeItem, guardrail: Guardrail, reason: str
) -> GuardrailOverride:
    """An admin lets a failed soft-mandatory guardrail pass for this item's current content (see
    `guardrail_override`); an in-review change whose approvals suffice then becomes approved."""
    require_state(change, EDITABLE_CHANGE_STATES, "override a guardrail on")
    if item.change_id != change.pk:
        raise ValidationError({"item": "the item is not part of this change"})
    with transaction.atomic():
        change = lock_change(change)
        override = guardrail_override(
            admin=admin,
            guardrail=guardrail,
            subject_type=approval.GUARDRAIL_SUBJECT,
            subject_id=item.pk,
            content_hash=item.content_hash,
            reason=reason,
        )
        audit_change(
            action=ChangeAuditAction.CHANGE_GUARDRAIL_OVERRIDDEN,
            actor=admin,
            change=change,
            after={"item": item.identity, "guardrail": guardrail.name, "reason": override.reason},
        )
        advance(change, actor=admin)
    return override


def editable(change: ChangeRequest) -> bool:
    return change.state in EDITABLE_CHANGE_STATES


def reviewable(change: ChangeRequest) -> bool:
    return change.state in REVIEWABLE_CHANGE_STATES


def changes_notify_stale(*, policies: Iterable[Any]) -> list[int]:
    """Tells the authors (and owning teams) of open changes touching `policies` that their change went
    stale. For whoever moves a policy's current revision (the import, the rollout engine), on commit.
    Returns the ids of the changes notified."""
    policies = list(policies)
    if not policies:
        return []
    identities = {(p.environment_id, p.kind, p.namespace, p.name) for p in policies if isinstance(p, Policy)}
    candidates = ChangeItem.objects.filter(
        change__state__in=OPEN_CHANGE_STATES - {ChangeState.ROLLING_OUT},
        namespace__in={identity[2] for identity in identities},
    ).select_related("change__environment", "change__author")
    notified: dict[int, ChangeRequest] = {}
    for item in candidates:
        change = item.change
        if (change.environment_id, item.kind, item.namespace, item.name) in identities:
            notified.setdefault(change.pk, change)
    sent = []
    for change in notified.values():
        items = list(selectors.change_items(change=change))
        stale = _stale_labels(items)
        if not stale:
            continue
        sent.append(change.pk)
        requirements = approval.change_requirements(change, items=items)
        _notify(
            event=NotificationEvent.CHANGE_STALE,
            change=change,
            subject=f"Change #{change.pk} “{change.title}” is stale: rebase it",
            body=f"{', '.join(stale)} moved since the change was based on {'it' if len(stale) == 1 else 'them'}.",
            teams=requirements.teams,
            users=[change.author],
            payload={"stale_items": stale},
        )
    return sent
