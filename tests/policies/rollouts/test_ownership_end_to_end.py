"""End to end with a real worker, meshsim traffic and Prometheus: a promoted change onto an object that
kubectl client-side apply created, and a retry after a rollback whose cause is then removed."""

from __future__ import annotations

import json

from integrations import kubernetes as kube
from policies.choices import ChangeState, DraftOperation, PolicyKind, RolloutState
from policies.cluster import cluster_config
from policies.models import ChangeItem, ChangeRequest, NamespaceOwnership, Rollout
from policies.normalize import content_hash, normalize_object
from policies.services.change_lifecycle import change_retry
from policies.services.changes import change_schedule, change_submit
from policies.services.imports import environment_import
from policies.services.plans import plan_compute
from policies.services.promotion import change_promote
from policies.services.reviews import review_approve
from policies.services.rollouts import rollout_start
from tests.factories import EnvironmentFactory, make_policy
from tests.policies.changes.helpers import make_change
from tests.policies.rollouts.helpers import live, live_normalized
from tests.policies.rollouts.test_end_to_end import ANALYSIS, BEAT, TIMEOUT, _clear_faults, _fault, e2e  # noqa: F401
from tests.policies.rollouts.test_worker import wait_terminal

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PROD_POLICY = {
    "tls": {"mode": "ISTIO_MUTUAL"},
    "loadBalancer": {"simple": "ROUND_ROBIN"},
    "connectionPool": {"tcp": {"maxConnections": 100}},
}


def _kubectl_client_side_apply(cfg, traffic_policy: dict) -> None:
    """What `kubectl apply` (client-side) sends: an Update by kubectl-client-side-apply that also rewrites
    the last-applied annotation."""
    obj = normalize_object(kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews"))
    obj["spec"]["trafficPolicy"] = traffic_policy
    kube.patch_object_json(
        cfg,
        "DestinationRule",
        "bookinfo",
        "reviews",
        [
            {"op": "add", "path": "/spec/trafficPolicy", "value": traffic_policy},
            {"op": "add", "path": "/metadata/annotations", "value": {LAST_APPLIED: json.dumps(obj) + "\n"}},
        ],
        field_manager="kubectl-client-side-apply",
    )


def _completed_source_change(org, target_live: dict) -> ChangeRequest:
    """A change completed in the environment before ("dev"): its base had tls and ROUND_ROBIN, it drops
    tls and moves to LEAST_REQUEST."""
    dev = EnvironmentFactory(name="dev", order=1)
    NamespaceOwnership.objects.create(environment=dev, namespace="bookinfo", team=org.team_a)
    base = normalize_object(target_live)
    base["spec"]["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "ROUND_ROBIN"}}
    new = normalize_object(base)
    new["spec"]["trafficPolicy"] = {"loadBalancer": {"simple": "LEAST_REQUEST"}}
    policy = make_policy(
        environment=dev, namespace="bookinfo", name="reviews", kind=PolicyKind.DESTINATION_RULE, content=base
    )
    change = ChangeRequest.objects.create(
        environment=dev, title="Drop tls on reviews", author=org.author, state=ChangeState.COMPLETED
    )
    ChangeItem.objects.create(
        change=change,
        kind=PolicyKind.DESTINATION_RULE,
        namespace="bookinfo",
        name="reviews",
        policy=policy,
        operation=DraftOperation.UPDATE,
        base_revision=policy.current_revision,
        content=new,
        content_hash=content_hash(new),
    )
    return change


def test_promoted_change_onto_a_client_side_applied_object(e2e):
    org, env = e2e, e2e.env
    cfg = cluster_config(env)
    _kubectl_client_side_apply(cfg, PROD_POLICY)
    environment_import(environment=env)
    seeded = live(env, "DestinationRule", "bookinfo", "reviews")
    assert LAST_APPLIED in seeded["metadata"]["annotations"]
    assert {m["manager"] for m in seeded["metadata"]["managedFields"]} == {"kubectl-client-side-apply"}

    promoted = change_promote(actor=org.author, change=_completed_source_change(org, seeded))
    assert promoted.state == ChangeState.IN_REVIEW and promoted.promotion_conflicts == []
    item = promoted.items.get()
    # the change's edit, onto what prod has: prod's own connectionPool is kept
    assert item.content["spec"]["trafficPolicy"] == {
        "connectionPool": {"tcp": {"maxConnections": 100}},
        "loadBalancer": {"simple": "LEAST_REQUEST"},
    }

    # the plan shows what will really happen: tls goes (kubectl's fields are taken over)
    plan_item = plan_compute(change=promoted).items.get()
    assert plan_item.status == "ok", plan_item.findings
    assert plan_item.after_content == item.content
    assert plan_item.ownership["taken_from"] == ["kubectl-client-side-apply"]
    assert plan_item.ownership["survivors"] == []
    changes = {(c["path"], c["op"]) for c in plan_item.diff_live["changes"]}
    assert ("spec.trafficPolicy.tls", "removed") in changes

    review_approve(reviewer=org.approver, change=promoted)
    promoted = change_schedule(actor=org.approver, change=ChangeRequest.objects.get(pk=promoted.pk))
    rollout = wait_terminal(
        rollout_start(change=promoted, actor=org.approver, strategy="direct", analysis=ANALYSIS),
        timeout=TIMEOUT,
        beat=BEAT,
    )
    assert rollout.state == RolloutState.COMPLETED, rollout.rollback_reason or rollout.error or rollout.pause_reason
    assert rollout.events.filter(kind="promoted").exists()  # the verification passed
    after = live(env, "DestinationRule", "bookinfo", "reviews")
    assert normalize_object(after) == item.content
    # what the plan showed approvers is, field by field, what the cluster holds after the rollout
    assert normalize_object(after) == plan_item.after_content
    assert LAST_APPLIED not in (after["metadata"].get("annotations") or {})
    assert {(m["manager"], m["operation"]) for m in after["metadata"]["managedFields"]} == {("meshgate", "Apply")}


def test_retry_after_a_rollback_whose_fault_is_removed_completes(e2e):
    org, env = e2e, e2e.env
    text = live_normalized(env, "VirtualService", "bookinfo", "reviews")
    text["spec"]["http"][0]["timeout"] = "9s"
    import yaml

    change = make_change(author=org.author, environment=env, texts=[yaml.safe_dump(text)], title="timeout 9s")
    change = change_submit(actor=org.author, change=change)
    review_approve(reviewer=org.approver, change=change)
    change = change_schedule(actor=org.approver, change=ChangeRequest.objects.get(pk=change.pk))
    _fault(org, service="reviews")  # every reviews request fails: the bake's analysis fails
    first = wait_terminal(
        rollout_start(change=change, actor=org.approver, strategy="direct", analysis=ANALYSIS),
        timeout=TIMEOUT,
        beat=BEAT,
    )
    assert first.state == RolloutState.ROLLED_BACK, first.error or first.pause_reason
    first_finished = first.finished_at

    _clear_faults(org)  # the cause is gone
    change = change_retry(actor=org.approver, change=ChangeRequest.objects.get(pk=change.pk))
    assert change.state == ChangeState.ROLLING_OUT
    rollout = Rollout.objects.get(change=change)
    assert rollout.started_at > first_finished  # a fresh analysis window: the new attempt starts now
    rollout = wait_terminal(rollout, timeout=TIMEOUT, beat=BEAT)
    assert rollout.state == RolloutState.COMPLETED, rollout.rollback_reason or rollout.error or rollout.pause_reason
    change.refresh_from_db()
    assert change.state == ChangeState.COMPLETED
    assert live_normalized(env, "VirtualService", "bookinfo", "reviews") == change.items.get().content
