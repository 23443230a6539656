"""Import: record what the cluster holds as the current revision of each policy."""

import datetime
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from integrations import kubernetes as kube
from policies import inventory
from policies.choices import AuditAction, LiveState, PolicyKind, RevisionSource, RolloutState
from policies.cluster import cluster_config
from policies.exceptions import ClusterError
from policies.models import Environment, Policy, PolicyRevision, Rollout
from policies.normalize import content_hash, normalize_object
from policies.services.audit import AuditEntry, audit_record, audit_record_many
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


IMPORT_CHUNK = 1000
"""Objects written per transaction: their policies, revisions and audit rows in a few batched queries."""

BULK_BATCH = 500
_Identity = tuple[str, str, str]  # (kind, namespace, name)


def environment_import(
    *, environment: Environment, actor: User | None = None, chunk_size: int = IMPORT_CHUNK
) -> ImportResult:
    """Reads every supported kind (the live inventory when it is fresh, else one list per kind), then
    records it in chunks of `chunk_size` objects, each chunk one transaction of batched writes (its
    new policies, its revisions, then its audit rows in the chain's order), and last the objects gone
    from the cluster and the summary row.

    Idempotent: objects whose normalized content equals the current revision create nothing, so a
    re-import after a failure finishes what a failed chunk left (a chunk is written whole or not at
    all). A cluster error before the writes leaves the database untouched. Objects an active rollout
    is writing (half-way canary weights, a temporary subset) are left alone and listed in `in_rollout`.
    Authors of open changes based on a revision an import replaced are told once, after its last chunk.
    """
    cfg = cluster_config(environment)
    live: dict[_Identity, dict] = {}
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
    identities = sorted(live)
    in_rollout_seen: set[_Identity] = set()
    try:
        for start in range(0, len(identities), max(chunk_size, 1)):
            chunk = identities[start : start + max(chunk_size, 1)]
            with transaction.atomic():
                in_rollout_seen |= _import_chunk(environment, chunk, live, actor=actor, seen_at=now, result=result)
        with transaction.atomic():
            _lock_environment(environment)
            in_rollout = _rollout_identities(environment)
            gone = _mark_gone(environment, live, in_rollout, actor=actor)
            result.gone = len(gone)
            in_rollout_seen |= {identity for identity in in_rollout if identity in live}
            in_rollout_seen |= _recorded(environment, in_rollout)
            result.in_rollout = sorted("/".join(identity) for identity in in_rollout_seen)
            environment.last_import_at = now
            environment.save(update_fields=["last_import_at"])
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
        if result.new_policies + result.new_revisions >= IMPORT_CHUNK:
            _analyze()
    finally:
        if result.moved:  # what the committed chunks moved, even when a later one failed
            moved = list(result.moved)
            transaction.on_commit(lambda: _notify_stale(moved))
    return result


def _analyze() -> None:
    """After a bulk load, fresh planner statistics of the tables it filled (PostgreSQL; autovacuum
    would catch up within a minute): the catalog's plans rely on them at once."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Policy._meta.db_table}, {PolicyRevision._meta.db_table}")


def _lock_environment(environment: Environment) -> None:
    """Inside a chunk's transaction: one import writes the environment's policies at a time."""
    Environment.objects.select_for_update().filter(pk=environment.pk).first()


def _recorded(environment: Environment, identities: set[_Identity]) -> set[_Identity]:
    """Those of `identities` (a few) that are policies of the environment."""
    if not identities:
        return set()
    rows = Policy.objects.filter(
        environment=environment,
        kind__in={kind for kind, _, _ in identities},
        namespace__in={namespace for _, namespace, _ in identities},
        name__in={name for _, _, name in identities},
    ).values_list("kind", "namespace", "name")
    return {row for row in rows if row in identities}


def _import_chunk(
    environment: Environment,
    chunk: list[_Identity],
    live: dict[_Identity, dict],
    *,
    actor: User | None,
    seen_at: datetime.datetime,
    result: ImportResult,
) -> set[_Identity]:
    """One transaction: the chunk's policies read under the environment's lock, then created, given
    their new revisions and updated in batches, and their audit rows appended in the chunk's order.
    Returns the chunk's identities an active rollout is writing (left alone)."""
    _lock_environment(environment)
    in_rollout = _rollout_identities(environment)
    wanted = set(chunk)
    policies: dict[_Identity, Policy] = {}
    candidates = Policy.objects.filter(
        environment=environment,
        kind__in={kind for kind, _, _ in chunk},
        namespace__in={namespace for _, namespace, _ in chunk},
    ).select_related("current_revision")
    for policy in candidates:
        identity = (policy.kind, policy.namespace, policy.name)
        if identity in wanted:
            policy.environment = environment
            policies[identity] = policy
    skipped = {identity for identity in chunk if identity in in_rollout}
    todo = [identity for identity in chunk if identity not in skipped]

    created = Policy.objects.bulk_create(
        [
            Policy(environment=environment, kind=kind, namespace=namespace, name=name)
            for kind, namespace, name in todo
            if (kind, namespace, name) not in policies
        ]
    )
    for policy in created:
        policies[(policy.kind, policy.namespace, policy.name)] = policy
    result.new_policies += len(created)

    revisions: list[tuple[Policy, PolicyRevision, PolicyRevision | None]] = []
    touched: list[Policy] = []  # unchanged content, live state or resourceVersion moved
    for identity in todo:
        policy, obj = policies[identity], live[identity]
        content = normalize_object(obj)
        digest = content_hash(content)
        current = policy.current_revision
        resource_version = (obj.get("metadata") or {}).get("resourceVersion", "")
        if current is not None and current.content_hash == digest:
            result.unchanged += 1
            if policy.live_state != LiveState.PRESENT or policy.live_resource_version != resource_version:
                _set_live(policy, resource_version, seen_at)
                touched.append(policy)
            continue
        revision = PolicyRevision(
            policy=policy,
            number=(current.number + 1) if current else 1,
            content=content,
            content_hash=digest,
            parent=current,
            author=None,
            source=RevisionSource.IMPORT,
            message="imported from the cluster",
        )
        _set_live(policy, resource_version, seen_at)
        revisions.append((policy, revision, current))

    PolicyRevision.objects.bulk_create([revision for _, revision, _ in revisions], batch_size=BULK_BATCH)
    for policy, revision, _ in revisions:
        policy.current_revision = revision
    Policy.objects.bulk_update(
        [policy for policy, _, _ in revisions],
        ["current_revision", "live_state", "live_resource_version", "live_seen_at"],
        batch_size=BULK_BATCH,
    )
    Policy.objects.bulk_update(touched, ["live_state", "live_resource_version", "live_seen_at"], batch_size=BULK_BATCH)
    audit_record_many(
        entries=[
            AuditEntry(
                action=AuditAction.POLICY_REVISION_CREATED,
                obj=policy,
                before={"revision": current.number, "content_hash": current.content_hash} if current else None,
                after={
                    "revision": revision.number,
                    "content_hash": revision.content_hash,
                    "source": RevisionSource.IMPORT,
                },
            )
            for policy, revision, current in revisions
        ],
        actor=actor,
        environment=environment.name,
    )
    result.new_revisions += len(revisions)
    result.moved.extend(policy for policy, _, current in revisions if current is not None)
    return skipped


def _set_live(policy: Policy, resource_version: str, seen_at: datetime.datetime) -> None:
    policy.live_state = LiveState.PRESENT
    policy.live_resource_version = resource_version
    policy.live_seen_at = seen_at


def _mark_gone(
    environment: Environment, live: dict[_Identity, dict], in_rollout: set[_Identity], *, actor: User | None
) -> set[_Identity]:
    """The environment's present policies whose object is no longer live (and no rollout writes it)
    become absent, with an audit row each. Returns their identities."""
    gone = [
        policy
        for policy in Policy.objects.filter(environment=environment, live_state=LiveState.PRESENT).only(
            "pk", "environment_id", "kind", "namespace", "name", "live_state", "live_resource_version"
        )
        if (policy.kind, policy.namespace, policy.name) not in live
        and (policy.kind, policy.namespace, policy.name) not in in_rollout
    ]
    for policy in gone:
        policy.environment = environment
        policy.live_state = LiveState.ABSENT
        policy.live_resource_version = ""
    Policy.objects.bulk_update(gone, ["live_state", "live_resource_version"], batch_size=BULK_BATCH)
    audit_record_many(
        entries=[AuditEntry(action=AuditAction.POLICY_LIVE_ABSENT, obj=policy) for policy in gone],
        actor=actor,
        environment=environment.name,
    )
    return {(policy.kind, policy.namespace, policy.name) for policy in gone}


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


def _notify_stale(policies: list[Policy]) -> None:
    """Open changes based on the revisions the import just replaced are stale: tell their authors."""
    changes_notify_stale(policies=policies)
