"""Import: record what the cluster holds as the current revision of each policy."""

import datetime
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from integrations import kubernetes as kube
from policies import inventory
from policies.choices import AuditAction, LiveState, PolicyKind, RevisionSource, RolloutState
from policies.cluster import cluster_config
from policies.exceptions import ClusterError
from policies.models import Environment, Policy, PolicyRevision, Rollout
from policies.normalize import content_hash, normalize_object
from policies.services.audit import audit_record
from policies.services.changes import changes_notify_stale


@dataclass
class ImportResult:
    environment: str
    seen: int = 0
    new_policies: int = 0
    new_revisions: int = 0
    unchanged: int = 0
    gone: int = 0
    errors: list[str] = field(default_factory=list)
    moved: list[Policy] = field(default_factory=list)  # policies whose current revision moved
    # "Kind/namespace/name" of objects an active rollout is writing: left alone (neither recorded as a
    # revision nor marked absent); the rollout records the outcome, a later import the settled object
    in_rollout: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.new_revisions or self.gone)


def environment_import(*, environment: Environment, actor: User | None = None) -> ImportResult:
    """Reads every supported kind from the cluster, then records it in one transaction.

    Idempotent: objects whose normalized content equals the current revision create nothing.
    A cluster error before the write leaves the database untouched. Objects an active rollout is
    writing (half-way canary weights, a temporary subset) are left alone and listed in `in_rollout`.
    """
    cfg = cluster_config(environment)
    live: dict[tuple[str, str, str], dict] = {}
    fresh = inventory.freshness(environment, PolicyKind.values).fresh
    try:
        for kind in PolicyKind.values:
            # the live inventory when the watcher keeps it current; the cluster's lists otherwise
            for obj in inventory.items(environment, kind) if fresh else kube.list_objects(cfg, kind):
                metadata = obj.get("metadata") or {}
                live[(kind, metadata.get("namespace", ""), metadata.get("name", ""))] = obj
    except kube.KubernetesError as exc:
        raise ClusterError(f"import from {environment.name} failed: {exc.message}") from exc

    result = ImportResult(environment=environment.name, seen=len(live))
    now = timezone.now()
    with transaction.atomic():
        Environment.objects.select_for_update().filter(pk=environment.pk).first()  # one import at a time
        policies = {
            (p.kind, p.namespace, p.name): p
            for p in Policy.objects.filter(environment=environment).select_related("current_revision")
        }
        in_rollout = _rollout_identities(environment)
        result.in_rollout = sorted(
            "/".join(identity) for identity in in_rollout if identity in live or identity in policies
        )
        for identity, obj in sorted(live.items()):
            if identity in in_rollout:
                continue
            policy = policies.get(identity)
            if policy is None:
                kind, namespace, name = identity
                policy = Policy.objects.create(environment=environment, kind=kind, namespace=namespace, name=name)
                result.new_policies += 1
            _record_live(policy=policy, obj=obj, actor=actor, seen_at=now, result=result)
        for identity, policy in policies.items():
            if identity not in live and identity not in in_rollout and policy.live_state == LiveState.PRESENT:
                policy.live_state = LiveState.ABSENT
                policy.live_resource_version = ""
                policy.save(update_fields=["live_state", "live_resource_version"])
                audit_record(
                    action=AuditAction.POLICY_LIVE_ABSENT, actor=actor, obj=policy, environment=environment.name
                )
                result.gone += 1
        environment.last_import_at = now
        environment.save(update_fields=["last_import_at"])
        if result.moved:
            moved = list(result.moved)
            transaction.on_commit(lambda: _notify_stale(moved))
        if result.changed:
            audit_record(
                action=AuditAction.ENVIRONMENT_IMPORTED,
                actor=actor,
                obj=environment,
                environment=environment.name,
                after={
                    "seen": result.seen,
                    "new_policies": result.new_policies,
                    "new_revisions": result.new_revisions,
                    "gone": result.gone,
                    **({"in_rollout": result.in_rollout} if result.in_rollout else {}),
                },
            )
    return result


def _rollout_identities(environment: Environment) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every object an active rollout of the environment has seen or
    written (its `observed` keys, "Kind/namespace/name") or plans to write (its phases' writes)."""
    identities: set[tuple[str, str, str]] = set()
    rollouts = Rollout.objects.filter(environment=environment, state__in=list(RolloutState.active()))
    for observed, phases in rollouts.values_list("observed", "phases"):
        keys = list(observed or {})
        for phase in phases or []:
            writes = phase.get("writes") if isinstance(phase, dict) else None
            keys += [pair[0] for pair in writes or [] if isinstance(pair, list | tuple) and pair]
        for key in keys:
            parts = str(key).split("/")
            if len(parts) == 3:
                identities.add((parts[0], parts[1], parts[2]))
    return identities


def _record_live(
    *, policy: Policy, obj: dict, actor: User | None, seen_at: datetime.datetime, result: ImportResult
) -> None:
    content = normalize_object(obj)
    digest = content_hash(content)
    current = policy.current_revision
    resource_version = (obj.get("metadata") or {}).get("resourceVersion", "")
    fields = {"live_state": LiveState.PRESENT, "live_resource_version": resource_version, "live_seen_at": seen_at}
    if current is not None and current.content_hash == digest:
        result.unchanged += 1
        if policy.live_state != LiveState.PRESENT or policy.live_resource_version != resource_version:
            Policy.objects.filter(pk=policy.pk).update(**fields)
        return
    revision = PolicyRevision.objects.create(
        policy=policy,
        number=(current.number + 1) if current else 1,
        content=content,
        content_hash=digest,
        parent=current,
        author=None,
        source=RevisionSource.IMPORT,
        message="imported from the cluster",
    )
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.current_revision = revision
    policy.save(update_fields=["current_revision", *fields])
    if current is not None:
        result.moved.append(policy)
    audit_record(
        action=AuditAction.POLICY_REVISION_CREATED,
        actor=actor,
        obj=policy,
        environment=result.environment,
        before={"revision": current.number, "content_hash": current.content_hash} if current else None,
        after={"revision": revision.number, "content_hash": digest, "source": RevisionSource.IMPORT},
    )
    result.new_revisions += 1


def _notify_stale(policies: list[Policy]) -> None:
    """Open changes based on the revisions the import just replaced are stale: tell their authors."""
    changes_notify_stale(policies=policies)
