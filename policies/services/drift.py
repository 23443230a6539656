"""Acting on drift: adopt the live object as a draft, or re-apply the revision Meshgate applied.

`drift_detect` (the periodic sweep) keeps a `PolicyDrift` row while a policy that Meshgate rolled out
differs from its live object. It compares content hashes: in one query, each policy's last applied
revision's hash with the hash the live inventory holds for its object (written by the watcher), never
loading a revision's content, and the live content only of the few policies whose drift is new. When
the inventory is stale it lists each kind once per namespace instead, or once across the cluster
when its policies span more than `DRIFT_NAMESPACE_LISTS` namespaces (never one GET per policy), and
hashes what it listed. It writes only what changed, and runs under the single-flight lease
`drift:<environment>`: a sweep that finds the lease held skips that environment
(overlapping beats, two beat processes). People with a role in the team owning the
namespace (the same people who may draft there) have two ways out:

- `drift_adopt`: their draft for the policy becomes the live object (normalized), or a deletion
  draft when the live object is gone; a change made of it turns the drift into Meshgate's record.
- `drift_reapply`: a change (state draft) whose one item puts the last applied revision back. The
  item is based on the policy's current revision, so the change is not stale; it is reviewed and
  rolled out like any change, and its plan shows the drift being undone against live.

Each is one transaction with its own audit row (`policy.drift_adopted` / `policy.drift_reapplied`)
next to the rows of the draft and change services it calls.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from integrations import kubernetes as kube
from integrations.kubernetes.exceptions import KubernetesError
from policies import inventory, selectors
from policies.choices import (
    AuditAction,
    NotificationEvent,
    RevisionSource,
    RolloutAuditAction,
    RolloutState,
)
from policies.cluster import cluster_config
from policies.diff import to_yaml
from policies.exceptions import ConflictError, PermissionDeniedError
from policies.leases import lease_acquire, lease_release
from policies.models import (
    ChangeRequest,
    Draft,
    Environment,
    InventoryObject,
    Policy,
    PolicyDrift,
    PolicyRevision,
    Rollout,
    Team,
)
from policies.normalize import content_hash, normalize_object
from policies.services.audit import audit_record
from policies.services.changes import MAX_TITLE, change_create_from_bundle
from policies.services.drafts import draft_delete_policy, draft_save
from policies.services.notifications import notify

logger = logging.getLogger(__name__)

# A kind whose policies span more namespaces than this is listed once across the cluster.
DRIFT_NAMESPACE_LISTS = 20


class NoDrift(ConflictError):
    """The policy's live object matches what Meshgate applied (or the drift was resolved): 409."""

    code = "no_drift"


def drift_adopt(*, actor: User, policy: Policy) -> Draft:
    """The actor's draft for `policy` (created, or their existing one updated) with the live object
    as its content; a deletion draft when the live object is gone. Raises `PermissionDeniedError`
    (403), `NoDrift` (409), or the draft service's refusals."""
    state = _drift_of(actor=actor, policy=policy)
    drift, applied = state.drift, state.applied
    message = (
        f"adopted from the live object (resourceVersion {drift.live_resource_version or '—'}), "
        f"which drifted from revision #{applied.number}"
    )
    with transaction.atomic():
        _still_drifted(policy, drift)
        if drift.live_content is None:
            draft = draft_delete_policy(author=actor, policy=policy, message="adopted: the live object is gone")
        else:
            draft = draft_save(
                author=actor, environment=policy.environment, text=to_yaml(drift.live_content), message=message
            ).draft
        audit_record(
            action=AuditAction.POLICY_DRIFT_ADOPTED,
            actor=actor,
            obj=policy,
            environment=policy.environment.name,
            before=_drift_snapshot(drift, applied.number),
            after={"draft": draft.pk, "operation": draft.operation, "content_hash": draft.content_hash},
        )
    return draft


def drift_reapply(*, actor: User, policy: Policy) -> ChangeRequest:
    """A change (state draft) with one item whose content is the last revision Meshgate applied,
    based on the policy's current revision. Refused (409) while the actor has a draft for the
    policy, which the change would otherwise take in."""
    state = _drift_of(actor=actor, policy=policy)
    drift, applied = state.drift, state.applied
    label = f"{policy.kind} {policy.namespace}/{policy.name}"
    title = f"Re-apply revision #{applied.number} of {label}"
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    if drift.live_content is None:
        found = "the live object is gone"
    else:
        found = f"the live object (resourceVersion {drift.live_resource_version or '—'}) differs from it"
    description = (
        f"Meshgate applied revision #{applied.number}; at {drift.detected_at:%Y-%m-%d %H:%M} UTC drift detection "
        f"found that {found}. This change puts revision #{applied.number} back."
    )
    filename = f"{policy.namespace}/{policy.kind}/{policy.name}.yaml"
    with transaction.atomic():
        _still_drifted(policy, drift)
        existing = (
            Draft.objects.select_for_update()
            .filter(
                author=actor,
                environment=policy.environment,
                kind=policy.kind,
                namespace=policy.namespace,
                name=policy.name,
            )
            .first()
        )
        if existing is not None:
            raise ConflictError(
                f"you already have a draft for {label}: make it a change or discard it before re-applying "
                f"revision #{applied.number}",
                extra={"draft": existing.pk},
            )
        change = change_create_from_bundle(
            author=actor,
            environment=policy.environment,
            files=[(filename, to_yaml(applied.content).encode())],
            title=title,
            description=description,
            message=f"re-apply revision #{applied.number}",
        )
        audit_record(
            action=AuditAction.POLICY_DRIFT_REAPPLIED,
            actor=actor,
            obj=policy,
            environment=policy.environment.name,
            before=_drift_snapshot(drift, applied.number),
            after={"change": change.pk, "revision": applied.number, "content_hash": applied.content_hash},
        )
    return change


# --- shared -----------------------------------------------------------------------------------------


def _drift_of(*, actor: User, policy: Policy) -> selectors.DriftState:
    if not selectors.user_may_author(user=actor, environment=policy.environment, namespace=policy.namespace):
        raise PermissionDeniedError(
            f"only authors, approvers and admins of the team owning namespace {policy.namespace} of "
            f"{policy.environment.name} can act on the drift of its policies"
        )
    state = selectors.policy_drift(policy=policy)
    if state is None:
        raise NoDrift(
            f"{policy.kind} {policy.namespace}/{policy.name} has no drift: its live object matches the revision "
            "Meshgate applied, or the drift was resolved meanwhile",
            extra={"policy": policy.pk},
        )
    return state


def _still_drifted(policy: Policy, drift: PolicyDrift) -> None:
    """Inside the transaction: the drift row read before is still the policy's (not resolved or
    replaced by a newer detection meanwhile)."""
    locked = PolicyDrift.objects.select_for_update().filter(policy=policy).first()
    if locked is None:
        raise NoDrift(
            f"the drift of {policy.kind} {policy.namespace}/{policy.name} was resolved meanwhile",
            extra={"policy": policy.pk},
        )
    if locked.notified_hash != drift.notified_hash:
        raise ConflictError(
            f"the live object of {policy.kind} {policy.namespace}/{policy.name} changed again "
            "meanwhile: reload the page and look at the new drift first",
            extra={"policy": policy.pk},
        )


def _drift_snapshot(drift: PolicyDrift, applied_number: int) -> dict:
    return {
        "applied_revision": applied_number,
        "live_hash": content_hash(drift.live_content) if drift.live_content is not None else "absent",
        "live_resource_version": drift.live_resource_version,
        "detected_at": drift.detected_at.isoformat(),
    }


# --- detection (the periodic sweep) -----------------------------------------------------------------------


def drift_detect(*, environment: Environment | None = None) -> dict[str, int]:
    """Compares each policy Meshgate rolled out with its live object; marks and notifies drift.
    Counts: checked, drifted, new, resolved, errors (a namespace's list failed), skipped (another
    sweep of the environment holds its lease)."""
    counts = {"checked": 0, "drifted": 0, "new": 0, "resolved": 0, "errors": 0, "skipped": 0}
    environments = [environment] if environment is not None else list(Environment.objects.all())
    for env in environments:
        key = f"drift:{env.pk}"
        token = lease_acquire(key=key, ttl_seconds=settings.MESHGATE_DRIFT_LEASE_SECONDS)
        if token is None:
            counts["skipped"] += 1
            continue
        try:
            _drift_sweep(env, counts)
        finally:
            lease_release(key=key, token=token)
    return counts


def _drift_sweep(env: Environment, counts: dict[str, int]) -> None:
    applied = PolicyRevision.objects.filter(policy=OuterRef("pk"), source=RevisionSource.ROLLOUT).order_by("-number")
    live = InventoryObject.objects.filter(
        environment=env, kind=OuterRef("kind"), namespace=OuterRef("namespace"), name=OuterRef("name")
    )
    # One query: each policy a rollout wrote, the hash of the revision it applied last and the hash
    # the inventory holds for its live object (no revision content, no live content).
    policies = list(
        Policy.objects.filter(environment=env)
        .annotate(
            applied_hash=Subquery(applied.values("content_hash")[:1]),
            applied_number=Subquery(applied.values("number")[:1]),
            live_id=Subquery(live.values("pk")[:1]),
            live_hash=Subquery(live.values("content_hash")[:1]),
        )
        .filter(applied_hash__isnull=False)
        .only("pk", "kind", "namespace", "name", "environment_id")
        .order_by()
    )
    active = set(
        Rollout.objects.filter(environment=env, state__in=RolloutState.active()).values_list(
            "change__items__policy_id", flat=True
        )
    )
    existing = {
        d.policy_id: d
        for d in PolicyDrift.objects.filter(policy__environment=env).only("pk", "policy_id", "notified_hash")
    }
    swept = [policy for policy in policies if policy.pk not in active]
    for policy in swept:
        policy.environment = env  # audit rows name it: no query per policy
    kinds = sorted({policy.kind for policy in swept})
    if not kinds:
        return
    state = inventory.freshness(env, kinds)
    if state.fresh:
        _sweep_inventory(env, swept, existing, counts)
    else:
        logger.info("drift sweep of %s: %s", env.name, state.stale_notice())
        _sweep_lists(env, swept, existing, counts)


def _sweep_inventory(env: Environment, policies: list[Any], existing: dict[int, PolicyDrift], counts: dict) -> None:
    """Compares the hashes read with the policies; loads the live content of the (few) policies whose
    drift is new or changed, and of inventory rows stored before their hash was."""
    unhashed = [policy.live_id for policy in policies if policy.live_id is not None and not policy.live_hash]
    for start in range(0, len(unhashed), 1000):
        rows = InventoryObject.objects.filter(pk__in=unhashed[start : start + 1000]).values_list("pk", "content")
        hashes = {pk: content_hash(normalize_object(content)) for pk, content in rows}
        for policy in policies:
            if policy.live_id in hashes:
                policy.live_hash = hashes[policy.live_id]
    wanted = []
    for policy in policies:
        digest = policy.live_hash if policy.live_id is not None else "absent"
        drift = existing.get(policy.pk)
        if (
            digest != policy.applied_hash
            and policy.live_id is not None
            and (drift is None or drift.notified_hash != digest)
        ):
            wanted.append(policy.live_id)
    contents: dict[int, dict[str, Any]] = {}
    for start in range(0, len(wanted), 1000):
        contents.update(
            InventoryObject.objects.filter(pk__in=wanted[start : start + 1000]).values_list("pk", "content")
        )
    for policy in policies:
        counts["checked"] += 1
        if policy.live_id is None:
            _drift_compare(env, policy, "absent", None, "", existing.get(policy.pk), counts)
            continue
        content = contents.get(policy.live_id)
        normalized = normalize_object(content) if content is not None else None
        resource_version = ((content or {}).get("metadata") or {}).get("resourceVersion", "")
        _drift_compare(env, policy, policy.live_hash, normalized, resource_version, existing.get(policy.pk), counts)


def _sweep_lists(env: Environment, policies: list[Any], existing: dict[int, PolicyDrift], counts: dict) -> None:
    """The inventory is stale: lists each kind once per namespace (or across the cluster)."""
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)  # Policies annotated with applied_*
    for policy in policies:
        groups[(policy.kind, policy.namespace)].append(policy)
    cfg = cluster_config(env)
    namespaces_by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, namespace in groups:
        namespaces_by_kind[kind].add(namespace)
    for kind, namespaces in sorted(namespaces_by_kind.items()):
        # One list of the kind across the cluster when it spans many namespaces, else one per namespace.
        scopes = [None] if len(namespaces) > DRIFT_NAMESPACE_LISTS else sorted(namespaces)
        for scope in scopes:
            try:
                listed = kube.list_objects(cfg, kind, namespace=scope)
            except KubernetesError as exc:
                logger.warning(
                    "drift sweep of %s: cannot list %s in %s: %s", env.name, kind, scope or "all namespaces", exc
                )
                counts["errors"] += 1
                continue
            by_identity = {(obj["metadata"].get("namespace", ""), obj["metadata"]["name"]): obj for obj in listed}
            for namespace in [scope] if scope else sorted(namespaces):
                for policy in groups[(kind, namespace)]:
                    counts["checked"] += 1
                    live = by_identity.get((namespace, policy.name))
                    normalized = normalize_object(live) if live is not None else None
                    digest = content_hash(normalized) if normalized is not None else "absent"
                    resource_version = ((live or {}).get("metadata") or {}).get("resourceVersion", "")
                    _drift_compare(env, policy, digest, normalized, resource_version, existing.get(policy.pk), counts)


def _drift_compare(
    env: Environment,
    policy: Any,
    digest: str,
    live_content: dict[str, Any] | None,
    resource_version: str,
    existing: PolicyDrift | None,
    counts: dict[str, int],
) -> None:
    """`digest`: the live object's content hash ("absent" when it is gone); `live_content` its
    normalized content, needed only when the drift is new or changed."""
    if digest == policy.applied_hash:
        if existing is not None:
            with transaction.atomic():
                if PolicyDrift.objects.filter(pk=existing.pk).delete()[0]:
                    counts["resolved"] += 1
                    audit_record(action=RolloutAuditAction.DRIFT_RESOLVED, obj=policy, environment=env.name)
        return
    counts["drifted"] += 1
    if existing is not None and existing.notified_hash == digest:
        return
    with transaction.atomic():
        PolicyDrift.objects.update_or_create(
            policy=policy,
            defaults={
                "detected_at": timezone.now(),
                "live_content": live_content,
                "live_resource_version": resource_version,
                "notified_hash": digest,
            },
        )
        counts["new"] += 1
        audit_record(
            action=RolloutAuditAction.DRIFT_DETECTED,
            obj=policy,
            environment=env.name,
            before={"revision": policy.applied_number, "content_hash": policy.applied_hash},
            after={"live_hash": digest, "resourceVersion": resource_version},
        )
        teams = Team.objects.filter(namespaces__environment=env, namespaces__namespace=policy.namespace)
        notify(
            event=NotificationEvent.DRIFT_DETECTED,
            subject=f"{policy} drifted from the revision Meshgate applied (#{policy.applied_number})",
            body="The live object differs from the last revision Meshgate applied.",
            payload={"policy": policy.pk, "environment": env.name, "revision": policy.applied_number},
            teams=list(teams),
        )
