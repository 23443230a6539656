"""Building scheduled changes on the simulated staging cluster and driving rollouts without waiting."""

from __future__ import annotations

import copy

from django.utils import timezone

from integrations import kubernetes as kube
from policies.choices import ChangeState, DraftOperation
from policies.cluster import cluster_config
from policies.models import ChangeItem, ChangeRequest, Policy, Rollout
from policies.normalize import content_hash, normalize_object
from policies.rollout import analysis as an
from policies.services.rollouts import rollout_advance

REVIEWS_TO_V3 = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {
        "name": "reviews",
        "namespace": "bookinfo",
        "labels": {"app": "reviews", "meshgate.io/owner": "platform-team"},
    },
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]},
}


def live(env, kind: str, namespace: str, name: str) -> dict | None:
    try:
        return kube.get_object(cluster_config(env), kind, namespace, name)
    except kube.NotFound:
        return None


def live_normalized(env, kind, namespace, name):
    obj = live(env, kind, namespace, name)
    return normalize_object(obj) if obj is not None else None


def with_spec(env, kind: str, namespace: str, name: str, mutate) -> dict:
    """The live object (normalized) changed by `mutate(obj)`: an approved content for an update."""
    obj = copy.deepcopy(live_normalized(env, kind, namespace, name))
    mutate(obj)
    return obj


def scheduled_change(org, items: list[tuple[str, dict]], *, title: str = "rollout test") -> ChangeRequest:
    """A change in state `scheduled` (as `change_schedule` leaves it) with (operation, content) items."""
    change = ChangeRequest.objects.create(
        environment=org.env,
        title=title,
        author=org.author,
        state=ChangeState.SCHEDULED,
        scheduled_at=timezone.now(),
        scheduled_for=timezone.now(),
    )
    for position, (operation, content) in enumerate(items):
        meta = content["metadata"]
        policy = Policy.objects.filter(
            environment=org.env, kind=content["kind"], namespace=meta["namespace"], name=meta["name"]
        ).first()
        normalized = normalize_object(content) if operation != DraftOperation.DELETE else None
        ChangeItem.objects.create(
            change=change,
            position=position,
            kind=content["kind"],
            namespace=meta["namespace"],
            name=meta["name"],
            policy=policy,
            operation=operation,
            base_revision=policy.current_revision if policy else None,
            content=normalized,
            content_hash=content_hash(normalized) if normalized else "",
        )
    return change


def drive(rollout: Rollout, analyzer=None, *, max_actions: int = 60, until=None) -> Rollout:
    """Runs the rollout's actions one after another, jumping the clock to each next action."""
    for _ in range(max_actions):
        rollout.refresh_from_db()
        if until is not None and until(rollout):
            return rollout
        if rollout.state not in ("pending", "running", "promoting", "rolling_back"):
            return rollout
        rollout_advance(rollout_id=rollout.pk, analyzer=analyzer, now=max(rollout.next_action_at, timezone.now()))
    rollout.refresh_from_db()
    return rollout


def passing(context):
    return an.Outcome(an.PASS, "stub: healthy", {"success_rate": 1.0})


def failing_from(weight: int, metric: str = "request-success-rate"):
    def analyzer(context):
        if context.phase["weight"] >= weight:
            return an.Outcome(
                an.FAIL,
                f"success rate 0.80 below 0.99 at {context.phase['weight']} %",
                {"success_rate": 0.8},
                metric=metric,
                observed=0.8,
                threshold=0.99,
            )
        return an.Outcome(an.PASS, "stub: healthy")

    return analyzer


def failing_at_phase(key: str):
    def analyzer(context):
        if context.phase["key"] == key:
            return an.Outcome(an.FAIL, f"failed at {key}", metric="stub", observed=1, threshold=0)
        return an.Outcome(an.PASS)

    return analyzer
