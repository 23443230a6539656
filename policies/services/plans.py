"""A change's plan: what the cluster holds for each item now, and what applying the item would do.

For each item the plan reads the live object through the adapter (404 = absent), normalizes it,
asks the API server for a dry-run (an apply with dryRun=All; a deletion with dryRun=All), then
dry-runs the rollout's exact write (`policies.rollout.ownership.apply_owned`: same manager, same
content, same takeover of other managers' fields). Its normalized answer is the plan's "after":
the diff approvers see is live against it, and when it is not the approved content (a field another
manager keeps, a server default) each difference is an MG0905 error, which blocks approval. A live
object managed by Argo CD, Flux or Helm is an MG0906 warning, or an MG0907 error where the
environment refuses such changes. The rollout's final verification makes the same comparison
(`ownership.held_differences`). It records the live
resourceVersions and two fingerprints:

- `fingerprint`: item contents + live resourceVersions (any write to a live object moves it);
- `content_fingerprint`: item contents + normalized live contents (only a material change moves it).

An approval binds to the content fingerprint of the plan it saw. When a new plan read every live
object and its content fingerprint differs from an approval's, the live state moved materially
after the approval: the approval is voided and an approved change goes back to review. A plan that
could not read the cluster voids nothing (it is an error the page shows, and a blocker). Once the
change is rolling out (or its rollout ended), the rollout itself moves the live objects: a plan
computed then (a late task, a refresh) is stored for the record but voids nothing and leaves the
change's state alone. Before the rollout starts (approved, scheduled) a material move still voids.

The cluster is read before the transaction opens; the plan is stored in one transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, Exists, F, OuterRef
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from integrations import kubernetes as kube
from policies import inventory, jobs
from policies.choices import (
    ChangeAuditAction,
    ChangeState,
    DraftOperation,
    ForeignControllerPolicy,
    PlanLiveState,
    PlanStatus,
    ReviewVerdict,
)
from policies.cluster import cluster_config
from policies.diff import ChangeOp, DiffRow, ObjectDiff, RowTag, diff_objects
from policies.models import ChangeItem, ChangeRequest, Environment, InventoryObject, Plan, PlanItem, Review
from policies.normalize import content_hash, normalize_object
from policies.rollout import ownership
from policies.services.changes import (
    approvals_void,
    audit_change,
    back_to_review,
    item_filename,
    item_text,
    items_fingerprint,
    lock_change,
    promotion_conflict_findings,
)
from policies.validation import Level
from policies.validation.codes import finding as catalogued
from policies.validation.dryrun import dry_run, not_performed
from policies.validation.parse import parse_bundle

# The rollout writes the live objects from here on: a plan's view of live no longer judges the approvals.
ROLLOUT_OWNS_LIVE_STATES = frozenset(
    {
        ChangeState.ROLLING_OUT,
        ChangeState.COMPLETED,
        ChangeState.ROLLED_BACK,
        ChangeState.FAILED,
        ChangeState.ABORTED,
    }
)
# A change in these states is owed a plan (submit, an edit, a rebase and a refresh ask for one).
PLANNED_STATES = frozenset(
    {ChangeState.IN_REVIEW, ChangeState.CHANGES_REQUESTED, ChangeState.APPROVED, ChangeState.SCHEDULED}
)
logger = logging.getLogger(__name__)


@dataclass
class LiveRead:
    state: str
    obj: dict[str, Any] | None = None
    resource_version: str = ""
    error: str = ""


@dataclass
class _ItemPlan:
    item: ChangeItem
    live: LiveRead
    findings: list[dict[str, Any]] = field(default_factory=list)
    ownership: dict[str, Any] = field(default_factory=dict)


def serialize_diff(diff: ObjectDiff) -> dict[str, Any]:
    """`ObjectDiff.as_dict()` plus the folded side-by-side rows, compact."""
    return {
        **diff.as_dict(),
        "rows": [
            [row.left_no, row.left, row.right_no, row.right, str(row.tag), row.skipped] for row in diff.side_by_side
        ],
    }


def stored_rows(data: dict[str, Any]) -> list[DiffRow]:
    """The side-by-side rows of a stored diff, as `DiffRow`s for the templates."""
    return [
        DiffRow(left_no, left, right_no, right, RowTag(tag), skipped)
        for left_no, left, right_no, right, tag, skipped in data.get("rows", [])
    ]


def _read_inventory(change: ChangeRequest, items: list[ChangeItem]) -> tuple[dict[int, LiveRead] | None, str]:
    """The items' live objects from the inventory (one query) when it is fresh for their kinds;
    else None and the notice to give."""
    kinds = sorted({item.kind for item in items})
    state = inventory.freshness(change.environment, kinds)
    if not state.fresh:
        return None, state.stale_notice() if state.watched else ""
    wanted = {(item.kind, item.namespace, item.name) for item in items}
    rows = InventoryObject.objects.filter(
        environment=change.environment,
        kind__in=kinds,
        namespace__in={item.namespace for item in items},
        name__in={item.name for item in items},
    ).values_list("kind", "namespace", "name", "resource_version", "content")
    found = {(kind, ns, name): (rv, content) for kind, ns, name, rv, content in rows if (kind, ns, name) in wanted}
    reads: dict[int, LiveRead] = {}
    for item in items:
        hit = found.get((item.kind, item.namespace, item.name))
        if hit is None:
            reads[item.pk] = LiveRead(PlanLiveState.ABSENT)
        else:
            reads[item.pk] = LiveRead(PlanLiveState.PRESENT, obj=hit[1], resource_version=hit[0])
    return reads, ""


def _read_live(cfg: kube.ClusterConfig, items: list[ChangeItem]) -> dict[int, LiveRead]:
    reads: dict[int, LiveRead] = {}
    unreachable = ""
    for item in items:
        if unreachable:
            reads[item.pk] = LiveRead(PlanLiveState.UNREADABLE, error=unreachable)
            continue
        try:
            obj = kube.get_object(cfg, item.kind, item.namespace, item.name)
        except kube.NotFound:
            reads[item.pk] = LiveRead(PlanLiveState.ABSENT)
        except (kube.Unreachable, kube.Unauthorized) as exc:
            unreachable = f"the cluster could not be read: {exc.message}"
            reads[item.pk] = LiveRead(PlanLiveState.UNREADABLE, error=unreachable)
        except kube.KubernetesError as exc:
            reads[item.pk] = LiveRead(PlanLiveState.UNREADABLE, error=f"reading the live object failed: {exc.message}")
        else:
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            reads[item.pk] = LiveRead(PlanLiveState.PRESENT, obj=obj, resource_version=rv)
    return reads


def _dry_run(change: ChangeRequest, plans: list[_ItemPlan], cfg: kube.ClusterConfig) -> None:
    """Server dry-run of every item whose live object could be read."""
    if any(plan.live.state == PlanLiveState.UNREADABLE for plan in plans):
        reason = next(plan.live.error for plan in plans if plan.live.error)
        for plan in plans:
            plan.findings.append(not_performed(reason).as_dict())
        return
    applies = [plan for plan in plans if plan.item.operation != DraftOperation.DELETE]
    if applies:
        by_file = {item_filename(plan.item): plan for plan in applies}
        documents, parse_findings = parse_bundle(
            [(name, item_text(plan.item).encode("utf-8", errors="surrogatepass")) for name, plan in by_file.items()]
        )
        for finding in [*parse_findings, *dry_run(change.environment, [doc for doc in documents if doc.checkable])]:
            target = by_file.get(finding.file)
            for plan in [target] if target is not None else applies:
                plan.findings.append(finding.as_dict())
    for plan in plans:
        if plan.item.operation != DraftOperation.DELETE:
            continue
        item = plan.item
        if plan.live.state == PlanLiveState.ABSENT:
            continue  # already gone: the page shows it as not in the cluster; deleting it is a no-op
        try:
            kube.delete_object(
                cfg,
                item.kind,
                item.namespace,
                item.name,
                dry_run=True,
                resource_version=plan.live.resource_version or None,
            )
        except kube.KubernetesError as exc:
            plan.findings.append(
                catalogued(
                    "MG0902",
                    f"the API server refused the dry-run deletion: {exc.message}",
                    object=item.label,
                ).as_dict()
            )


def _planned_write(environment: Environment, plan: _ItemPlan, cfg: kube.ClusterConfig) -> dict[str, Any] | None:
    """The server's dry-run answer to the rollout's exact write of the item (policies.rollout.ownership),
    normalized, with findings when it is not the approved content or another controller manages live."""
    item, live = plan.item, plan.live
    controller = ownership.foreign_controller(live.obj)
    if controller is not None:
        refuse = environment.foreign_controllers == ForeignControllerPolicy.REFUSE
        message = (
            f"{item.label} is managed by {controller.name} ({controller.evidence}): its controller will revert "
            f"Meshgate's write at its next sync" + (f"; {environment.name} refuses such changes" if refuse else "")
        )
        plan.findings.append(catalogued("MG0907" if refuse else "MG0906", message, object=item.label).as_dict())
        plan.ownership["controller"] = {"name": controller.name, "evidence": controller.evidence}
    if item.operation == DraftOperation.DELETE or live.state == PlanLiveState.UNREADABLE:
        return None
    if any(finding.get("level") == Level.ERROR for finding in plan.findings):
        return None  # the dry-run already refused it
    try:
        assert item.content is not None  # a DELETE returned above; every other item has content
        written = ownership.apply_owned(cfg, item.content, live=live.obj, dry_run=True)
    except kube.KubernetesError as exc:
        plan.findings.append(
            catalogued(
                "MG0902",
                f"the API server refused the dry-run of the rollout's write: {exc.message}",
                object=item.label,
            ).as_dict()
        )
        return None
    after = normalize_object(written.obj)
    plan.ownership["taken_from"] = written.taken_from
    survivors = []
    for difference in ownership.held_differences(approved=item.content, held=written.obj):
        owners = ownership.owners_of(written.obj, difference.path)
        survivors.append({**difference.as_dict(), "owners": owners})
        if difference.op == ChangeOp.ADDED:
            what = f"{difference.path} would stay in the cluster" + (
                f" (owned by {', '.join(owners)})" if owners else " (the server sets it)"
            )
        elif difference.op == ChangeOp.REMOVED:
            what = f"{difference.path} would be missing from the cluster"
        else:
            what = f"{difference.path} would be {difference.new!r}, not the approved {difference.old!r}"
        plan.findings.append(
            catalogued(
                "MG0905",
                f"{what}: the cluster would not hold the approved content",
                object=item.label,
                path=difference.path,
            ).as_dict()
        )
    plan.ownership["survivors"] = survivors
    return after


def _fingerprint(parts: list[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(sorted(parts), separators=(",", ":")).encode()).hexdigest()


def plan_compute(*, change: ChangeRequest) -> Plan:
    """Reads the cluster for every item, stores a new plan, and voids the approvals whose plan the
    live state has materially moved away from."""
    started = time.monotonic()
    change = ChangeRequest.objects.select_related("environment").get(pk=change.pk)
    items = list(ChangeItem.objects.filter(change=change).select_related("base_revision").order_by("position", "pk"))
    cfg = cluster_config(change.environment)
    from_inventory, notice = _read_inventory(change, items) if items else (None, "")
    reads = from_inventory if from_inventory is not None else _read_live(cfg, items)
    plans = [_ItemPlan(item=item, live=reads[item.pk]) for item in items]
    if notice:
        for plan in plans:
            plan.findings.append(catalogued("MG0399", notice, object=plan.item.label).as_dict())
    _dry_run(change, plans, cfg)
    afters = {plan.item.pk: _planned_write(change.environment, plan, cfg) for plan in plans}
    for plan in plans:  # an unresolved promotion conflict blocks the plan as it blocks submission
        plan.findings += promotion_conflict_findings(
            environment=change.environment, item=plan.item, conflicts=change.promotion_conflicts
        )

    plan_items = []
    rv_parts, content_parts, errors = [], [], []
    for plan in plans:
        item, live = plan.item, plan.live
        live_content = normalize_object(live.obj) if live.obj is not None else None
        live_hash = content_hash(live_content) if live_content is not None else ""
        base = item.base_revision.content if item.base_revision is not None else None
        after = afters[item.pk]
        # What approvers see: live against what the cluster would hold after the rollout's write.
        diff_live = serialize_diff(diff_objects(live_content, after or item.content))
        # the live object is usually the base revision: one diff serves both
        same = (
            after is None and base is not None and live_content is not None and normalize_object(base) == live_content
        )
        has_error = live.state == PlanLiveState.UNREADABLE or any(
            finding.get("level") == Level.ERROR for finding in plan.findings
        )
        if has_error:
            errors.append(item.label)
        plan_items.append(
            PlanItem(
                item=item,
                item_content_hash=item.content_hash,
                status=PlanStatus.ERROR if has_error else PlanStatus.OK,
                live_state=live.state,
                live_content=live_content,
                live_hash=live_hash,
                live_resource_version=live.resource_version,
                error=live.error,
                diff_live=diff_live,
                diff_base=diff_live if same else serialize_diff(diff_objects(base, item.content)),
                findings=plan.findings,
                after_content=after,
                ownership=plan.ownership,
            )
        )
        rv_parts.append([item.pk, item.content_hash, live.state, live.resource_version])
        content_parts.append([item.pk, item.content_hash, live.state, live_hash])
    unreadable = any(plan.live.state == PlanLiveState.UNREADABLE for plan in plans)
    error = ""
    if unreadable:
        error = next(plan.live.error for plan in plans if plan.live.error)
    elif errors:
        error = f"blocking findings on {', '.join(errors[:3])}" + (
            f" and {len(errors) - 3} more" if len(errors) > 3 else ""
        )

    with transaction.atomic():
        change = lock_change(change)
        created = Plan.objects.create(
            change=change,
            computed_at=timezone.now(),
            status=PlanStatus.ERROR if errors else PlanStatus.OK,
            # A plan that could not read the cluster knows no live state: empty fingerprints.
            error=error,
            items_fingerprint=items_fingerprint(items),
            fingerprint="" if unreadable else _fingerprint(rv_parts),
            content_fingerprint="" if unreadable else _fingerprint(content_parts),
            resource_versions={str(plan.item.pk): plan.live.resource_version for plan in plans},
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        for plan_item in plan_items:
            plan_item.plan = created
        PlanItem.objects.bulk_create(plan_items)
        if not unreadable and change.state not in ROLLOUT_OWNS_LIVE_STATES:
            _void_moved_approvals(change, created)
    return created


def _void_moved_approvals(change: ChangeRequest, plan: Plan) -> None:
    moved = list(
        Review.objects.filter(change=change, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True)
        .exclude(plan_content_fingerprint=plan.content_fingerprint)
        .select_related("plan")
    )
    if not moved:
        return
    # Name the live objects that changed since the plan the (first) approval saw.
    seen = moved[0].plan
    changed = []
    if seen is not None:
        before = dict(PlanItem.objects.filter(plan=seen).values_list("item_id", "live_hash"))
        for plan_item in PlanItem.objects.filter(plan=plan).select_related("item"):
            if before.get(plan_item.item_id, plan_item.live_hash) != plan_item.live_hash:
                changed.append(plan_item.item.label)
    what = f"the live {', '.join(changed)}" if changed else "the live state"
    reason = f"{what} changed after this approval (plan of {plan.computed_at:%Y-%m-%d %H:%M:%S} UTC)"
    approvals_void(change=change, reason=reason, reviews=moved)
    if change.state in (ChangeState.APPROVED, ChangeState.SCHEDULED):
        back_to_review(change, actor=None, reason=reason)


def plan_is_current(*, change: ChangeRequest, plan: Plan | None, items: list[ChangeItem]) -> bool:
    """False when items changed after the plan, or a refresh was asked for since."""
    if plan is None:
        return False
    if change.plan_requested_at and change.plan_requested_at > plan.computed_at:
        return False
    if change.content_updated_at and change.content_updated_at > plan.computed_at:
        return False  # an edit or a rebase since
    return plan.items_fingerprint == items_fingerprint(items)


# --- lost plans ----------------------------------------------------------------------------------------


def plans_pending(*, asked_before: dt.datetime, limit: int = 100) -> list[ChangeRequest]:
    """Changes owed a plan (PLANNED_STATES) whose last request for one (the submit, an edit or rebase, a
    refresh) is older than `asked_before` and no plan was stored since, oldest request first; each carries
    that request's time as `plan_asked_at`. A plan the reconciler gave up on since that request is not owed
    (see `plans_rescue`)."""
    asked = Greatest(
        F("content_updated_at"),
        Coalesce("submitted_at", "content_updated_at"),
        Coalesce("plan_requested_at", "content_updated_at"),
        output_field=DateTimeField(),
    )
    stored_since = Plan.objects.filter(change=OuterRef("pk"), computed_at__gte=OuterRef("plan_asked_at"))
    return list(
        ChangeRequest.objects.filter(state__in=PLANNED_STATES)
        .annotate(plan_asked_at=asked)
        .filter(plan_asked_at__lt=asked_before)
        .exclude(Exists(stored_since))
        .filter(plan_given_up_at__isnull=True)
        .select_related("environment")
        .order_by("plan_asked_at", "pk")[:limit]
    )


def plans_rescue(*, now: dt.datetime | None = None) -> list[int]:
    """Asks again for every plan asked for more than MESHGATE_PLAN_RESCUE_SECONDS ago and never stored:
    its task was lost (a worker killed while planning, an enqueue that failed after the commit). Run by
    the periodic reconciler. Single-flight: the change's `plan_requested_at` is moved to `now` by a
    compare-and-set, so however many reconcilers run, a lost plan is sent again once per bound, and the
    plan of a change that moved meanwhile (another state, a plan stored) is left alone. Each rescue
    writes an audit row (its `attempt` in a row) and a log line. After MESHGATE_PLAN_RESCUE_ATTEMPTS
    rescues in a row with no request in between, the plan is given up (`plan_given_up_at`, an audit row,
    an error log line): a task that keeps getting lost, or keeps killing its worker, is not sent forever;
    the change page says so, and the next request by a person (an edit, a submit, a refresh:
    `services.changes.plan_asked`) starts over. Returns the ids of the changes rescued."""
    now = now or timezone.now()
    bound = dt.timedelta(seconds=settings.MESHGATE_PLAN_RESCUE_SECONDS)
    cap = max(int(settings.MESHGATE_PLAN_RESCUE_ATTEMPTS), 1)
    rescued = []
    for change in plans_pending(asked_before=now - bound):
        asked_at: dt.datetime = change.plan_asked_at  # type: ignore[attr-defined]
        attempt = change.plan_rescues + 1
        waited = round((now - asked_at).total_seconds(), 1)
        with transaction.atomic():
            claimed = ChangeRequest.objects.filter(
                pk=change.pk,
                state=change.state,
                plan_requested_at=change.plan_requested_at,
                plan_rescues=change.plan_rescues,
                plan_given_up_at__isnull=True,
            ).exclude(Exists(Plan.objects.filter(change=change.pk, computed_at__gte=asked_at)))
            if attempt > cap:
                if claimed.update(plan_given_up_at=now):
                    audit_change(
                        action=ChangeAuditAction.CHANGE_PLAN_GIVEN_UP,
                        actor=None,
                        change=change,
                        before={"plan_requested_at": asked_at.isoformat()},
                        after={"plan_given_up_at": now.isoformat(), "attempts": cap},
                    )
                    logger.error(
                        "plan of change #%s was lost %d times in a row: given up until a person asks again",
                        change.pk,
                        cap,
                    )
                continue
            if not claimed.update(plan_requested_at=now, plan_rescues=attempt):
                continue
            audit_change(
                action=ChangeAuditAction.CHANGE_PLAN_RESCUED,
                actor=None,
                change=change,
                before={"plan_requested_at": asked_at.isoformat()},
                after={"plan_requested_at": now.isoformat(), "waited_seconds": waited, "attempt": attempt},
            )
            jobs.compute_plan.on_commit(change.pk)
        logger.warning(
            "plan of change #%s asked for %.0f s ago was never stored (lost task): sent again (attempt %d of %d)",
            change.pk,
            waited,
            attempt,
            cap,
        )
        rescued.append(change.pk)
    return rescued


def plan_given_up(change: ChangeRequest) -> bool:
    """The reconciler gave up on the plan now owed (no request by a person since)."""
    return change.plan_given_up_at is not None
