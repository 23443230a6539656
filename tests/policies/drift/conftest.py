"""A policy Meshgate rolled out on the simulated staging cluster, then edited outside Meshgate."""

from dataclasses import dataclass

import pytest

from integrations import kubernetes as kube
from policies.choices import DraftOperation, RolloutState
from policies.cluster import cluster_config
from policies.models import Policy, PolicyRevision
from policies.services.drift import drift_detect
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.conftest import ro  # noqa: F401 - fixture
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    live_normalized,
    passing,
    scheduled_change,
)


@dataclass
class Drifted:
    org: object
    policy: Policy
    applied: PolicyRevision
    """The revision the rollout applied (the policy's current revision)."""


def edit_out_of_band(env, *, timeout: str) -> dict:
    """What someone with kubectl does: changes the live reviews VirtualService."""
    obj = live_normalized(env, "VirtualService", "bookinfo", "reviews")
    obj["spec"]["http"][0]["timeout"] = timeout
    return kube.apply_object(cluster_config(env), obj, field_manager="kubectl-edit", force=True)


@pytest.fixture
def drifted(ro):  # overrides the fixture imported above
    """reviews (bookinfo) rolled out by Meshgate to subset v3, then given a 4s timeout with kubectl;
    drift detection has run."""
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], title="reviews to v3")
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), passing)
    assert rollout.state == RolloutState.COMPLETED
    edit_out_of_band(ro.env, timeout="4s")
    assert drift_detect(environment=ro.env)["new"] == 1
    policy = Policy.objects.select_related("current_revision").get(
        environment=ro.env, kind="VirtualService", namespace="bookinfo", name="reviews"
    )
    return Drifted(org=ro, policy=policy, applied=policy.current_revision)
