"""A canary against meshsim's simulated traffic: a 503 fault injected on the new subset through the
traffic admin API rolls the change back; without the fault it promotes. The analyzer here reads the
simulated cluster's own Istio metrics (meshsim `/metrics`) after advancing its traffic clock — a
stand-in at the engine's analysis interface until the analysis layer (`policies.analysis`) lands."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from policies.choices import DraftOperation, RolloutState
from policies.normalize import normalize_object
from policies.rollout import analysis as an
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    live_normalized,
    scheduled_change,
)

pytestmark = pytest.mark.django_db
MAX_ERROR_RATE = 0.05


def _totals(url: str, version: str) -> tuple[float, float]:
    total = errors = 0.0
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "istio_requests_total"
                and labels.get("destination_service_name") == "reviews"
                and labels.get("destination_version") == version
            ):
                total += sample.value
                if labels.get("response_code", "").startswith("5"):
                    errors += sample.value
    return total, errors


def canary_error_rate(meshsim, version: str):
    """Each interval: 60 simulated seconds of traffic, then the canary version's 5xx ratio over them."""
    last = {"total": 0.0, "errors": 0.0}

    def analyzer(context):
        meshsim.admin("POST", "traffic/advance", json={"seconds": 60}).raise_for_status()
        total, errors = _totals(meshsim.url, version)
        requests_, failed = total - last["total"], errors - last["errors"]
        last.update(total=total, errors=errors)
        if requests_ <= 0:
            return an.Outcome(an.NO_DATA, f"no requests to {version}")
        rate = failed / requests_
        metrics = {"requests": requests_, "errors": failed, "error_rate": round(rate, 4)}
        if rate > MAX_ERROR_RATE:
            return an.Outcome(
                an.FAIL,
                f"5xx ratio of reviews {version} {rate:.1%} above {MAX_ERROR_RATE:.0%}",
                metrics,
                metric="error-rate",
                observed=round(rate, 4),
                threshold=MAX_ERROR_RATE,
            )
        return an.Outcome(an.PASS, f"5xx ratio {rate:.1%}", metrics)

    return analyzer


def test_a_503_fault_on_the_canary_subset_rolls_back(ro):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    ro.meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "subset": "v3", "error_rate": 0.5, "status": 503},
    ).raise_for_status()
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), canary_error_rate(ro.meshsim, "v3"))
    assert rollout.state == RolloutState.ROLLED_BACK
    assert rollout.rollback_reason["metric"] == "error-rate" and rollout.rollback_reason["observed"] > 0.05
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before


def test_without_the_fault_the_same_change_promotes(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), canary_error_rate(ro.meshsim, "v3"))
    assert rollout.state == RolloutState.COMPLETED
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)


# --- with the real analysis layer (policies.analysis: run_interval + decide over meshsim's metrics) ----

REAL = {
    "interval_seconds": 1,
    "provider": "meshsim",
    "meshsim_advance_seconds": 60,
    "window": "5m",
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
}


def test_real_analysis_rolls_back_a_canary_with_a_503_fault(ro):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    ro.meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "subset": "v3", "error_rate": 0.5, "status": 503},
    ).raise_for_status()
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = rollout_start(change=change, analysis=REAL)
    assert rollout.state == RolloutState.PENDING
    rollout = drive(rollout)  # no analyzer injected: the engine's default, policies.analysis
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.pause_reason
    reason = rollout.rollback_reason
    assert reason["metric"] == "request-success-rate" and reason["observed"] < 0.95
    assert rollout.phases[0]["targets"]["canary"]["version"] == "v3"
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before


def test_real_analysis_promotes_a_healthy_canary(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(rollout_start(change=change, analysis=REAL))
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)
