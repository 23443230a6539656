"""DestinationRule canary, AuthorizationPolicy dry run, PeerAuthentication ramp, direct and waves."""

import pytest

from policies.choices import ChangeState, DraftOperation, RolloutState
from policies.models import RolloutEvent
from policies.normalize import normalize_object
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    failing_at_phase,
    failing_from,
    live,
    live_normalized,
    passing,
    scheduled_change,
    with_spec,
)

pytestmark = pytest.mark.django_db

POOL = {"connectionPool": {"http": {"http1MaxPendingRequests": 10}, "tcp": {"maxConnections": 20}}}


def _dr_change(ro):
    approved = with_spec(
        ro.env, "DestinationRule", "bookinfo", "reviews", lambda o: o["spec"].__setitem__("trafficPolicy", POOL)
    )
    return approved, scheduled_change(ro, [(DraftOperation.UPDATE, approved)])


def _at_canary_step(r):
    return r.current_weight == 25 and r.step_stage == "analyze"


def test_destination_rule_canary_adds_a_temporary_subset_then_promotes(ro):
    vs_before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    approved, change = _dr_change(ro)
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    drive(rollout, passing, until=_at_canary_step)
    dr = live(ro.env, "DestinationRule", "bookinfo", "reviews")
    canaries = [s for s in dr["spec"]["subsets"] if s["name"].endswith("-canary")]
    assert {s["name"] for s in canaries} == {"v1-canary", "v2-canary"}
    assert all(s["labels"]["meshgate.io/canary"] == "true" and s["trafficPolicy"] == POOL for s in canaries)
    route = live(ro.env, "VirtualService", "bookinfo", "reviews")["spec"]["http"][0]["route"]
    weights = {d["destination"]["subset"]: d["weight"] for d in route}
    assert weights["v1-canary"] + weights["v2-canary"] == 25 and sum(weights.values()) == 100

    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert live_normalized(ro.env, "DestinationRule", "bookinfo", "reviews") == normalize_object(approved)
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == vs_before


def test_destination_rule_canary_rolls_back(ro):
    vs_before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    dr_before = live_normalized(ro.env, "DestinationRule", "bookinfo", "reviews")
    _, change = _dr_change(ro)
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), failing_from(10))
    assert rollout.state == RolloutState.ROLLED_BACK
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == vs_before
    assert live_normalized(ro.env, "DestinationRule", "bookinfo", "reviews") == dr_before


def _authz(ro):
    return with_spec(
        ro.env,
        "AuthorizationPolicy",
        "bookinfo",
        "ratings-viewer",
        lambda o: o["spec"]["rules"][0]["to"][0]["operation"].__setitem__("methods", ["GET", "HEAD"]),
    )


def test_authorization_policy_dry_run_then_enforce(ro):
    approved = _authz(ro)
    change = scheduled_change(ro, [(DraftOperation.UPDATE, approved)])
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    assert rollout.strategy == "dry_run"
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze")
    shadow = live(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer")
    assert shadow["metadata"]["annotations"]["istio.io/dry-run"] == "true"
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == normalize_object(approved)


def test_authorization_policy_shadow_denials_roll_back(ro):
    before = live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer")
    change = scheduled_change(ro, [(DraftOperation.UPDATE, _authz(ro))])
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), failing_at_phase("dry-run"))
    assert rollout.state == RolloutState.ROLLED_BACK and rollout.rollback_reason["phase"] == "dry-run"
    assert live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == before


# The seeded shop namespace is PERMISSIVE; a new workload-level policy is a creation.
PA_SHOP = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "shop"},
    "spec": {"mtls": {"mode": "STRICT"}},
}
PA_PAYMENTS = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "payments-strict", "namespace": "shop"},
    "spec": {"selector": {"matchLabels": {"app": "payments"}}, "mtls": {"mode": "STRICT"}},
}


def test_peer_authentication_ramp_permissive_then_strict(ro):
    assert live(ro.env, "PeerAuthentication", "shop", "default")["spec"]["mtls"]["mode"] == "PERMISSIVE"
    change = scheduled_change(ro, [(DraftOperation.UPDATE, PA_SHOP)])
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    assert rollout.strategy == "ramp"
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze")
    assert live(ro.env, "PeerAuthentication", "shop", "default")["spec"]["mtls"]["mode"] == "PERMISSIVE"
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert live_normalized(ro.env, "PeerAuthentication", "shop", "default") == normalize_object(PA_SHOP)
    change.refresh_from_db()
    assert change.items.get().policy.current_revision.source == "rollout"


def test_peer_authentication_ramp_failing_at_permissive_rolls_back_and_deletes_the_new_object(ro):
    change = scheduled_change(ro, [(DraftOperation.CREATE, PA_PAYMENTS)])
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze")
    assert live(ro.env, "PeerAuthentication", "shop", "payments-strict")["spec"]["mtls"]["mode"] == "PERMISSIVE"
    rollout = drive(rollout, failing_at_phase("permissive"))
    assert rollout.state == RolloutState.ROLLED_BACK
    assert live(ro.env, "PeerAuthentication", "shop", "payments-strict") is None


def _timeout(ro):
    return with_spec(
        ro.env, "VirtualService", "shop", "frontend", lambda o: o["spec"]["http"][0].__setitem__("timeout", "9s")
    )


def test_direct_applies_bakes_and_keeps(ro):
    approved = _timeout(ro)
    rollout = drive(
        rollout_start(
            change=scheduled_change(ro, [(DraftOperation.UPDATE, approved)]),
            strategy="direct",
            analysis={"interval_seconds": 1, "intervals_per_step": 2},
        ),
        passing,
    )
    assert rollout.state == RolloutState.COMPLETED and rollout.analysis_runs == 0
    assert RolloutEvent.objects.filter(rollout=rollout, kind="analysis").count() == 2
    assert live_normalized(ro.env, "VirtualService", "shop", "frontend") == normalize_object(approved)


def test_direct_bake_failure_rolls_back(ro):
    before = live_normalized(ro.env, "VirtualService", "shop", "frontend")
    rollout = drive(
        rollout_start(
            change=scheduled_change(ro, [(DraftOperation.UPDATE, _timeout(ro))]),
            strategy="direct",
            analysis={"interval_seconds": 1},
        ),
        failing_from(0),
    )
    assert rollout.state == RolloutState.ROLLED_BACK
    assert live_normalized(ro.env, "VirtualService", "shop", "frontend") == before
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.ROLLED_BACK


def test_a_vs_change_that_is_not_a_routing_change_falls_back_to_apply_and_bake(ro):
    approved = with_spec(
        ro.env,
        "VirtualService",
        "bookinfo",
        "reviews",
        lambda o: o["spec"]["http"].append({"route": [{"destination": {"host": "reviews"}}]}),
    )
    rollout = drive(rollout_start(change=scheduled_change(ro, [(DraftOperation.UPDATE, approved)])), passing)
    assert rollout.state == RolloutState.COMPLETED and len(rollout.phases) == 1
    assert "not a routing change" in RolloutEvent.objects.get(rollout=rollout, step_key="snapshot").data["note"]


def test_waves_go_namespace_after_namespace(ro):
    frontend = _timeout(ro)
    rollout = rollout_start(
        change=scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3), (DraftOperation.UPDATE, frontend)]),
        strategy="waves",
        analysis={"interval_seconds": 1},
    )
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze")
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)
    assert live_normalized(ro.env, "VirtualService", "shop", "frontend") != normalize_object(frontend)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert [p["key"] for p in rollout.phases] == ["wave-bookinfo", "wave-shop"]
    assert live_normalized(ro.env, "VirtualService", "shop", "frontend") == normalize_object(frontend)


def test_waves_failure_in_the_second_wave_restores_both(ro):
    before = {
        ns: live_normalized(ro.env, "VirtualService", ns, n)
        for ns, n in (("bookinfo", "reviews"), ("shop", "frontend"))
    }
    rollout = drive(
        rollout_start(
            change=scheduled_change(
                ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3), (DraftOperation.UPDATE, _timeout(ro))]
            ),
            strategy="waves",
            analysis={"interval_seconds": 1},
        ),
        failing_at_phase("wave-shop"),
    )
    assert rollout.state == RolloutState.ROLLED_BACK
    for ns, n in (("bookinfo", "reviews"), ("shop", "frontend")):
        assert live_normalized(ro.env, "VirtualService", ns, n) == before[ns]
