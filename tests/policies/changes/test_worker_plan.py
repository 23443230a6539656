"""A real Celery worker computes a change's plan against the simulated cluster."""

import time

import pytest

from integrations import kubernetes as kube
from policies.choices import PlanLiveState, PlanStatus
from policies.cluster import cluster_config
from policies.models import Plan
from policies.normalize import content_hash, normalize_object
from policies.services.changes import change_refresh_plan, change_submit
from tests.policies.changes.helpers import make_change

pytestmark = pytest.mark.worker


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the worker")
        time.sleep(0.25)


def test_the_worker_stores_a_plan_whose_live_object_is_the_clusters(celery_worker_process, cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    change_submit(actor=org.author, change=change)  # enqueues compute_plan once committed

    plan = wait_for(lambda: Plan.objects.filter(change=change).first())
    assert plan.status == PlanStatus.OK, plan.error
    (plan_item,) = plan.items.all()
    live = kube.get_object(cluster_config(org.env), "VirtualService", "bookinfo", "reviews")
    assert plan_item.live_state == PlanLiveState.PRESENT
    assert plan_item.live_content == normalize_object(live)
    assert plan_item.live_hash == content_hash(normalize_object(live))
    assert plan_item.live_resource_version == live["metadata"]["resourceVersion"]
    assert plan.resource_versions == {str(plan_item.item_id): live["metadata"]["resourceVersion"]}
    assert plan_item.diff_live["summary"] == {"added": 1, "removed": 4, "changed": 0}

    change_refresh_plan(actor=org.approver, change=change)
    wait_for(lambda: Plan.objects.filter(change=change).count() == 2)
    newest = Plan.objects.filter(change=change).latest()
    assert newest.content_fingerprint == plan.content_fingerprint
