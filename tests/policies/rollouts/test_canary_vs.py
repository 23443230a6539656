"""Canary of a VirtualService routing change on the simulated cluster (analysis stubbed at its interface)."""

import pytest

from policies.choices import ChangeState, DraftOperation, RevisionSource, RolloutState
from policies.models import AuditEvent, Policy, RolloutEvent
from policies.normalize import normalize_object
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    failing_from,
    live,
    live_normalized,
    passing,
    scheduled_change,
)

pytestmark = pytest.mark.django_db


def _weights(env):
    route = live(env, "VirtualService", "bookinfo", "reviews")["spec"]["http"][0]["route"]
    return {d["destination"]["subset"]: d.get("weight", 100) for d in route}


def test_good_change_promotes_and_live_equals_approved(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    assert rollout.strategy == "canary" and rollout.steps == [5, 10, 25, 50, 100]
    change.refresh_from_db()
    assert change.state == ChangeState.ROLLING_OUT

    seen = []

    def at_25(r):
        if r.current_weight == 25 and r.step_stage == "analyze":
            seen.append(_weights(ro.env))
            return True
        return False

    drive(rollout, passing, until=at_25)
    # 25 % follows the new route (v3), 75 % the stable split 90/10.
    assert seen == [{"v1": 68, "v2": 7, "v3": 25}] or seen == [{"v1": 67, "v2": 8, "v3": 25}]

    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED and rollout.current_weight == 100
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)
    change.refresh_from_db()
    assert change.state == ChangeState.COMPLETED
    policy = Policy.objects.get(environment=ro.env, kind="VirtualService", namespace="bookinfo", name="reviews")
    assert policy.current_revision.source == RevisionSource.ROLLOUT
    assert policy.current_revision.content == normalize_object(REVIEWS_TO_V3)
    assert (
        policy.live_resource_version
        == live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"]
    )
    keys = list(RolloutEvent.objects.filter(rollout=rollout).exclude(step_key=None).values_list("step_key", flat=True))
    assert keys[:4] == ["start", "snapshot", "apply:0:w5", "analyze:0:0"] and keys[-1] == "promote"
    assert AuditEvent.objects.filter(action="rollout.cluster_write").count() >= 5


def test_bad_change_rolls_back_to_the_snapshot(ro):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), failing_from(25))
    assert rollout.state == RolloutState.ROLLED_BACK
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before
    reason = rollout.rollback_reason
    assert reason["metric"] == "request-success-rate" and reason["observed"] == 0.8 and reason["threshold"] == 0.99
    assert reason["weight"] == 25 and reason["interval"] == 1
    change.refresh_from_db()
    assert change.state == ChangeState.ROLLED_BACK
    policy = Policy.objects.get(environment=ro.env, kind="VirtualService", namespace="bookinfo", name="reviews")
    assert policy.current_revision.source == RevisionSource.IMPORT
