"""The dry-run and ramp gates with the real analysis layer on simulated traffic: shadow denials of a
dry-run AuthorizationPolicy roll it back before it is enforced, plaintext callers hold a
PeerAuthentication at PERMISSIVE until a person looks; without them both promote.

The meshsim provider advances the simulated traffic clock per interval; the Prometheus tests run
in real time against a real Prometheus scraping meshsim every second."""

import time

import pytest
from django.utils import timezone

from policies.choices import DraftOperation, RolloutState
from policies.models import RolloutEvent
from policies.normalize import normalize_object
from policies.services.rollouts import rollout_advance, rollout_start
from tests.policies.rollouts.helpers import (
    drive,
    live,
    live_normalized,
    scheduled_change,
    with_spec,
)

pytestmark = pytest.mark.django_db

MESHSIM = {
    "interval_seconds": 1,
    "provider": "meshsim",
    "judge": "threshold",
    "meshsim_advance_seconds": 60,
    "window": "5m",
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
}
REVIEWS_PRINCIPAL = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
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


def _ratings_viewer(env, principals):
    """ratings-viewer allowing `principals` only (the seed allows reviews, ratings' only caller)."""
    return with_spec(
        env,
        "AuthorizationPolicy",
        "bookinfo",
        "ratings-viewer",
        lambda o: o["spec"]["rules"][0]["from"][0]["source"].__setitem__("principals", principals),
    )


def _denies_reviews(env):
    return _ratings_viewer(env, ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"])


def _allows_reviews(env):
    return _ratings_viewer(
        env, ["cluster.local/ns/bookinfo/sa/bookinfo-reviews", "cluster.local/ns/bookinfo/sa/bookinfo-productpage"]
    )


def _applied(rollout, key: str) -> bool:
    index = [p["key"] for p in rollout.phases].index(key)
    return RolloutEvent.objects.filter(rollout=rollout, step_key=f"apply:{index}:{key}").exists()


def _assert_shadow_denial_rollback(rollout, before, env):
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.pause_reason
    reason = rollout.rollback_reason
    assert reason["phase"] == "dry-run" and reason["metric"] == "authz-dry-run-denials", reason
    assert reason["observed"] > 0 and reason["threshold"] == "<= 0"
    summary = reason["summary"]
    assert "meshsim_authz_dry_run_denials_total" in summary and "(max 0)" in summary, summary
    assert "AuthorizationPolicy bookinfo/ratings-viewer" in summary
    assert "bookinfo/reviews-v2" in summary and REVIEWS_PRINCIPAL in summary, summary
    assert not _applied(rollout, "enforce")
    assert live_normalized(env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == before


# --- dry run (AuthorizationPolicy) ------------------------------------------------------------------


def test_dry_run_that_would_deny_a_caller_rolls_back_before_enforcing(ro):
    before = live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer")
    change = scheduled_change(ro, [(DraftOperation.UPDATE, _denies_reviews(ro.env))])
    rollout = drive(rollout_start(change=change, analysis=MESHSIM))
    _assert_shadow_denial_rollback(rollout, before, ro.env)


def test_dry_run_of_a_correct_policy_is_enforced_and_promoted(ro):
    approved = _allows_reviews(ro.env)
    rollout = drive(rollout_start(change=scheduled_change(ro, [(DraftOperation.UPDATE, approved)]), analysis=MESHSIM))
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason
    assert live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == normalize_object(approved)
    analyses = RolloutEvent.objects.filter(rollout=rollout, kind="analysis").order_by("pk")
    dry_run, enforce = [e.data["metrics"] for e in analyses]
    assert dry_run["authz-dry-run-denials"]["verdict"] == "pass" and dry_run["authz-dry-run-denials"]["canary"] == 0
    assert enforce["authz-403-rate"]["verdict"] == "pass" and enforce["request-success-rate"]["verdict"] == "pass"


def test_enforced_policy_with_403s_rolls_back(ro):
    """A dry run told to tolerate shadow denials: the enforce phase sees the 403s and rolls back."""
    before = live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer")
    change = scheduled_change(ro, [(DraftOperation.UPDATE, _denies_reviews(ro.env))])
    rollout = drive(rollout_start(change=change, analysis={**MESHSIM, "max_shadow_denials": 10**9}))
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.pause_reason
    reason = rollout.rollback_reason
    assert reason["phase"] == "enforce" and reason["metric"] == "authz-403-rate" and reason["observed"] == 1.0
    assert (
        'istio_requests_total{response_code="403"}' in reason["summary"] and "bookinfo/reviews-v" in reason["summary"]
    )
    assert live_normalized(ro.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == before


def test_dry_run_without_traffic_pauses_for_a_person(ro):
    ro.meshsim.admin(
        "POST", "traffic/rates", json={"namespace": "bookinfo", "service": "ratings", "rps": 0}
    ).raise_for_status()
    change = scheduled_change(ro, [(DraftOperation.UPDATE, _allows_reviews(ro.env))])
    rollout = drive(rollout_start(change=change, analysis={**MESHSIM, "no_data_limit": 2}))
    assert rollout.state == RolloutState.PAUSED and rollout.step_index == 0
    assert "no data (2 of 2 in a row)" in rollout.pause_reason
    assert "authz-dry-run-denials: no requests to bookinfo/ratings" in rollout.pause_reason


# --- ramp (PeerAuthentication) ---------------------------------------------------------------------


def test_ramp_with_a_plaintext_caller_holds_at_permissive_and_pauses(ro):
    """shop's catalog has a plaintext caller in staging (a legacy batch job without a sidecar)."""
    change = scheduled_change(ro, [(DraftOperation.UPDATE, PA_SHOP)])
    rollout = drive(rollout_start(change=change, analysis={**MESHSIM, "inconclusive_limit": 2}))
    assert rollout.state == RolloutState.PAUSED, rollout.state
    assert rollout.phases[rollout.step_index]["key"] == "permissive" and not _applied(rollout, "strict")
    reason = rollout.pause_reason
    assert "inconclusive (2 of 2 in a row)" in reason
    assert "plaintext requests from callers without a sidecar (source unknown)" in reason
    assert "in the last 5m; STRICT would break them" in reason
    assert live(ro.env, "PeerAuthentication", "shop", "default")["spec"]["mtls"]["mode"] == "PERMISSIVE"
    assert rollout.rollback_reason in ({}, None)


def test_ramp_without_plaintext_callers_goes_strict(ro):
    rollout = drive(
        rollout_start(change=scheduled_change(ro, [(DraftOperation.CREATE, PA_PAYMENTS)]), analysis=MESHSIM)
    )
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason
    assert live_normalized(ro.env, "PeerAuthentication", "shop", "payments-strict") == normalize_object(PA_PAYMENTS)
    analyses = RolloutEvent.objects.filter(rollout=rollout, kind="analysis").order_by("pk")
    permissive, strict = [e.data["metrics"] for e in analyses]
    assert permissive["plaintext-requests"]["verdict"] == "pass"
    assert strict["plaintext-refused"]["verdict"] == "pass" and strict["request-success-rate"]["verdict"] == "pass"


def test_strict_refusing_plaintext_callers_rolls_back(ro):
    """A ramp told to tolerate plaintext at PERMISSIVE: STRICT refuses the legacy caller, rolled back."""
    before = live_normalized(ro.env, "PeerAuthentication", "shop", "default")
    change = scheduled_change(ro, [(DraftOperation.UPDATE, PA_SHOP)])
    rollout = drive(rollout_start(change=change, analysis={**MESHSIM, "max_plaintext_requests": 10**9}))
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.pause_reason
    reason = rollout.rollback_reason
    assert reason["phase"] == "strict" and reason["metric"] == "plaintext-refused" and reason["observed"] > 0
    assert "refused under STRICT" in reason["summary"] and "callers without a sidecar" in reason["summary"]
    assert live_normalized(ro.env, "PeerAuthentication", "shop", "default") == before


# --- through a real Prometheus ------------------------------------------------------------------------


def drive_in_real_time(rollout, *, timeout: float = 90.0):
    """Runs the rollout's actions when they are due (the analysis windows need real traffic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout.refresh_from_db()
        if rollout.state not in ("pending", "running", "promoting", "rolling_back"):
            return rollout
        wait = (rollout.next_action_at - timezone.now()).total_seconds() if rollout.next_action_at else 0
        if wait > 0:
            time.sleep(min(wait, 0.5))
            continue
        rollout_advance(rollout_id=rollout.pk, now=timezone.now())
    raise AssertionError(f"rollout still {rollout.state} after {timeout}s")


PROMETHEUS = {
    "interval_seconds": 3,
    "window": "5s",
    "intervals_per_step": 2,
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
}


def test_prometheus_dry_run_that_would_deny_a_caller_rolls_back_before_enforcing(ro_live):
    before = live_normalized(ro_live.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer")
    change = scheduled_change(ro_live, [(DraftOperation.UPDATE, _denies_reviews(ro_live.env))])
    rollout = drive_in_real_time(rollout_start(change=change, analysis=PROMETHEUS))
    _assert_shadow_denial_rollback(rollout, before, ro_live.env)


def test_prometheus_dry_run_of_a_correct_policy_is_promoted(ro_live):
    approved = _allows_reviews(ro_live.env)
    change = scheduled_change(ro_live, [(DraftOperation.UPDATE, approved)])
    rollout = drive_in_real_time(rollout_start(change=change, analysis=PROMETHEUS))
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason
    assert live_normalized(ro_live.env, "AuthorizationPolicy", "bookinfo", "ratings-viewer") == normalize_object(
        approved
    )
