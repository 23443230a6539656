"""Every strategy end to end: a real Celery worker runs the rollout, meshsim serves the cluster over
HTTP with real-time traffic, a real Prometheus scrapes it and the worker's analysis reads it.

For each strategy a good change is promoted to 100 % (the live objects are the approved
revisions) and a bad one rolls back by itself (the live objects are the pre-rollout ones). The bad
changes fail through meshsim's traffic model: runtime fault profiles (on a version, or bound to the
policy being rolled out), shadow denials of a dry-run policy, plaintext callers refused under
STRICT, and a VirtualService fault abort."""

import time

import pytest

from integrations.meshsim.traffic import spec_sha256
from policies.choices import ChangeState, DraftOperation, RolloutState
from policies.normalize import normalize_object
from policies.services.rollouts import rollout_start
from tests.fixtures.prometheus import wait_for_window_after
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    live_normalized,
    scheduled_change,
    with_spec,
)
from tests.policies.rollouts.test_gates import (
    PA_PAYMENTS,
    PA_SHOP,
    _allows_reviews,
    _denies_reviews,
)
from tests.policies.rollouts.test_worker import wait_terminal

ANALYSIS = {
    "interval_seconds": 3,
    "window": "5s",
    "intervals_per_step": 1,
    "judge": "threshold",
    "min_requests": 5,
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
}
CANARY_STEPS = [50, 100]
BEAT = 2.0
TIMEOUT = 120  # a deadline, not a speed target: a busy machine runs the rollouts slower
WINDOW_SECONDS = 5  # ANALYSIS["window"]


@pytest.fixture
def e2e(transactional_db, monkeypatch, ro_live, request):
    """`ro_live` with a real worker running the engine's own analysis (no analyzer override)."""
    monkeypatch.delenv("MESHGATE_ROLLOUT_ANALYZER", raising=False)
    request.getfixturevalue("celery_worker_process")
    yield ro_live
    ro_live.meshsim.admin("DELETE", "traffic/faults").raise_for_status()


def _fault(org, **fault) -> None:
    org.meshsim.admin(
        "POST", "traffic/faults", json={"namespace": "bookinfo", "error_rate": 1.0, "status": 503, **fault}
    ).raise_for_status()


def _clear_faults(org) -> None:
    """No fault any more, and the failed requests of the previous rollout out of the analysis window."""
    org.meshsim.admin("DELETE", "traffic/faults").raise_for_status()
    wait_for_window_after(org.env.prometheus_url, time.time(), WINDOW_SECONDS)


def _run(org, items, **options):
    change = scheduled_change(org, items, title="end to end")
    return wait_terminal(rollout_start(change=change, **options), timeout=TIMEOUT, beat=BEAT)


def _assert_promoted(rollout, env, approved: list[dict]) -> None:
    assert rollout.state == RolloutState.COMPLETED, rollout.error or rollout.pause_reason or rollout.rollback_reason
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.COMPLETED
    assert rollout.current_weight == 100
    for obj in approved:
        meta = obj["metadata"]
        assert live_normalized(env, obj["kind"], meta["namespace"], meta["name"]) == normalize_object(obj)


def _assert_rolled_back(rollout, env, before: dict[tuple[str, str, str], dict | None], metric: str) -> dict:
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.error or rollout.pause_reason
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.ROLLED_BACK
    reason = rollout.rollback_reason
    assert reason["metric"] == metric, reason
    assert reason["observed"] is not None and reason["threshold"], reason
    for (kind, namespace, name), obj in before.items():
        assert live_normalized(env, kind, namespace, name) == obj, (kind, namespace, name)
    return reason


def _snapshot(env, *identities) -> dict[tuple[str, str, str], dict | None]:
    return {identity: live_normalized(env, *identity) for identity in identities}


# --- canary (VirtualService) ----------------------------------------------------------------------


def test_canary_virtual_service(e2e):
    env = e2e.env
    before = _snapshot(env, ("VirtualService", "bookinfo", "reviews"))
    _fault(e2e, service="reviews", version="v3")  # v3 answers 503 to every request
    rollout = _run(e2e, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], steps=CANARY_STEPS, analysis=ANALYSIS)
    assert rollout.strategy == "canary"
    reason = _assert_rolled_back(rollout, env, before, "request-success-rate")
    assert reason["observed"] < 0.95 and reason["threshold"] == ">= 0.95", reason

    _clear_faults(e2e)
    rollout = _run(e2e, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], steps=CANARY_STEPS, analysis=ANALYSIS)
    assert rollout.strategy == "canary"
    _assert_promoted(rollout, env, [REVIEWS_TO_V3])


# --- canary (DestinationRule: a temporary canary subset carries the new traffic policy) -------------

POOL = {"connectionPool": {"http": {"http1MaxPendingRequests": 100}, "tcp": {"maxConnections": 100}}}


def _subsets(env) -> list[str]:
    return [s["name"] for s in live_normalized(env, "DestinationRule", "bookinfo", "reviews")["spec"]["subsets"]]


def test_canary_destination_rule(e2e):
    env = e2e.env
    before = _snapshot(env, ("DestinationRule", "bookinfo", "reviews"), ("VirtualService", "bookinfo", "reviews"))
    approved = with_spec(
        env, "DestinationRule", "bookinfo", "reviews", lambda o: o["spec"].__setitem__("trafficPolicy", POOL)
    )
    _fault(e2e, service="reviews", canary=True)  # the canary subset's traffic answers 503
    rollout = _run(e2e, [(DraftOperation.UPDATE, approved)], steps=CANARY_STEPS, analysis=ANALYSIS)
    assert rollout.strategy == "canary"
    reason = _assert_rolled_back(rollout, env, before, "request-success-rate")
    assert reason["observed"] < 0.95, reason
    assert not [name for name in _subsets(env) if name.endswith("-canary")]

    _clear_faults(e2e)
    rollout = _run(e2e, [(DraftOperation.UPDATE, approved)], steps=CANARY_STEPS, analysis=ANALYSIS)
    _assert_promoted(rollout, env, [approved])
    assert (
        live_normalized(env, "VirtualService", "bookinfo", "reviews")
        == before[("VirtualService", "bookinfo", "reviews")]
    )  # the temporary routes are gone
    assert not [name for name in _subsets(env) if name.endswith("-canary")]


# --- dry run (AuthorizationPolicy) ------------------------------------------------------------------


def test_dry_run_authorization_policy(e2e):
    env = e2e.env
    before = _snapshot(env, ("AuthorizationPolicy", "bookinfo", "ratings-viewer"))
    rollout = _run(e2e, [(DraftOperation.UPDATE, _denies_reviews(env))], analysis=ANALYSIS)
    assert rollout.strategy == "dry_run"
    reason = _assert_rolled_back(rollout, env, before, "authz-dry-run-denials")
    assert reason["phase"] == "dry-run" and reason["observed"] > 0 and reason["threshold"] == "<= 0", reason

    _clear_faults(e2e)
    approved = _allows_reviews(env)
    rollout = _run(e2e, [(DraftOperation.UPDATE, approved)], analysis=ANALYSIS)
    _assert_promoted(rollout, env, [approved])


# --- ramp (PeerAuthentication) ----------------------------------------------------------------------


def test_ramp_peer_authentication(e2e):
    """shop's catalog has a plaintext caller: told to tolerate it at PERMISSIVE, STRICT refuses it."""
    env = e2e.env
    before = _snapshot(env, ("PeerAuthentication", "shop", "default"))
    # 5 rps instead of 1: every short strict window sees refused requests
    e2e.meshsim.admin(
        "POST", "traffic/rates", json={"namespace": "shop", "service": "catalog", "source": "legacy-batch", "rps": 5}
    ).raise_for_status()
    rollout = _run(e2e, [(DraftOperation.UPDATE, PA_SHOP)], analysis={**ANALYSIS, "max_plaintext_requests": 10**9})
    assert rollout.strategy == "ramp"
    reason = _assert_rolled_back(rollout, env, before, "plaintext-refused")
    assert reason["phase"] == "strict" and reason["observed"] > 0, reason

    e2e.meshsim.admin(
        "POST", "traffic/rates", json={"namespace": "shop", "service": "catalog", "source": "legacy-batch", "rps": None}
    ).raise_for_status()
    _clear_faults(e2e)
    rollout = _run(e2e, [(DraftOperation.CREATE, PA_PAYMENTS)], analysis=ANALYSIS)
    _assert_promoted(rollout, env, [PA_PAYMENTS])


# --- waves (namespace after namespace) --------------------------------------------------------------


def _catalog(env, consecutive_errors: int):
    return with_spec(
        env,
        "DestinationRule",
        "shop",
        "catalog",
        lambda o: o["spec"]["trafficPolicy"]["outlierDetection"].__setitem__(
            "consecutive5xxErrors", consecutive_errors
        ),
    )


def test_waves(e2e):
    env = e2e.env
    before = _snapshot(env, ("VirtualService", "bookinfo", "reviews"), ("DestinationRule", "shop", "catalog"))
    bad = _catalog(env, 7)
    # catalog fails while (and only while) the new shop/catalog DestinationRule is live: the second
    # wave, which analyses its own namespace's workload.
    policy = {"kind": "DestinationRule", "namespace": "shop", "name": "catalog", "spec_sha256": spec_sha256(bad)}
    _fault(e2e, namespace="shop", service="catalog", policy=policy)
    rollout = _run(
        e2e, [(DraftOperation.UPDATE, REVIEWS_TO_V3), (DraftOperation.UPDATE, bad)], strategy="waves", analysis=ANALYSIS
    )
    assert [p["key"] for p in rollout.phases] == ["wave-bookinfo", "wave-shop"]
    reason = _assert_rolled_back(rollout, env, before, "request-success-rate")
    assert reason["phase"] == "wave-shop", reason

    _clear_faults(e2e)
    approved = _catalog(env, 6)
    rollout = _run(
        e2e,
        [(DraftOperation.UPDATE, REVIEWS_TO_V3), (DraftOperation.UPDATE, approved)],
        strategy="waves",
        analysis=ANALYSIS,
    )
    _assert_promoted(rollout, env, [REVIEWS_TO_V3, approved])


# --- direct (apply and bake) ------------------------------------------------------------------------


def _reviews_route(env, **extra):
    return with_spec(env, "VirtualService", "bookinfo", "reviews", lambda o: o["spec"]["http"][0].update(extra))


def test_direct(e2e):
    env = e2e.env
    before = _snapshot(env, ("VirtualService", "bookinfo", "reviews"))
    aborts = _reviews_route(env, fault={"abort": {"httpStatus": 503, "percentage": {"value": 100}}})
    rollout = _run(e2e, [(DraftOperation.UPDATE, aborts)], strategy="direct", analysis=ANALYSIS)
    reason = _assert_rolled_back(rollout, env, before, "request-success-rate")
    assert reason["observed"] < 0.95, reason

    _clear_faults(e2e)
    approved = _reviews_route(env, timeout="9s")
    rollout = _run(e2e, [(DraftOperation.UPDATE, approved)], strategy="direct", analysis=ANALYSIS)
    _assert_promoted(rollout, env, [approved])
