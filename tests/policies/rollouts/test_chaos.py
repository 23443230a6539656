"""Rollouts that stay true under cluster faults: a real worker, meshsim over HTTP with its API fault
injection, good and bad canaries side by side, under each fault profile.

Every rollout must end with live equal to the approved revision (`completed`) or to the snapshot
(`rolled_back`), or `failed` with the live state shown; no rollback is reported while the canary
still serves traffic, no out-of-band pause happens without another writer, and the API never
answers 5xx while the worker works. benchmarks/rollout_chaos.py runs more seeds per profile.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from policies.choices import ChangeState, DraftOperation, RolloutEventKind, RolloutState
from policies.models import Rollout, RolloutEvent
from policies.rollout import writes
from policies.services.rollouts import rollout_start
from policies.tasks import reconcile_rollouts
from tests.policies.rollouts.helpers import live_normalized, scheduled_change

ANALYZER = "tests.policies.rollouts.stubs.chaos_scripted"
TERMINAL = {
    str(s) for s in (RolloutState.COMPLETED, RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.ABORTED)
}
# (namespace, VirtualService, new subset, good canary?)
CANARIES = [("bookinfo", "reviews", "v3", True), ("shop", "payments", "v2", True), ("shop", "catalog", "v2", False)]
BAD_SERVICES = "catalog"
CLIENT_TIMEOUT = 1.5


def _vs(resource_verb: str, **rule: Any) -> dict[str, Any]:
    return {"match": {"verb": resource_verb, "resource": "virtualservices"}, **rule}


def profile_faults(profile: str, rng: random.Random) -> list[dict[str, Any]]:
    """The API faults of one profile; counts drawn from the seed."""

    def n(low: int, high: int) -> int:
        return rng.randint(low, high)

    faults = {
        "409": [_vs("apply", status=409, count=n(2, 5))],
        "500": [_vs("apply", status=500, count=n(2, 4)), _vs("get", status=500, count=n(1, 3))],
        "latency": [{"match": {"resource": "virtualservices"}, "delay_ms": n(300, 900), "count": n(4, 10)}],
        # Longer than the client's timeout: the client gives up, the server applies afterwards.
        "timeout": [_vs("apply", delay_ms=int(CLIENT_TIMEOUT * 1000) + 700, count=n(1, 3))],
        "applied": [_vs("apply", status=500, applied=True, count=n(2, 4))],
    }
    if profile == "mixed":
        return [rule for name in ("409", "500", "timeout", "applied") for rule in faults[name][:1]]
    return faults[profile]


@dataclass
class ChaosRun:
    profile: str
    seed: int
    rollouts: list[Rollout] = field(default_factory=list)
    api_statuses: list[int] = field(default_factory=list)
    seconds: float = 0.0


def approved(env, namespace: str, name: str, subset: str) -> dict[str, Any]:
    obj = copy.deepcopy(live_normalized(env, "VirtualService", namespace, name))
    obj["spec"]["http"][0]["route"] = [{"destination": {"host": name, "subset": subset}}]
    return obj


def run_chaos(ro, profile: str, seed: int, *, timeout: float = 150) -> ChaosRun:
    """Starts the canaries, injects the profile's faults (at the start and at seed-drawn moments),
    polls the API as a person's browser would and plays celery beat until every rollout ends."""
    rng = random.Random(f"{profile}:{seed}")
    run = ChaosRun(profile, seed)
    meshsim = ro.meshsim
    meshsim.admin("DELETE", "faults")
    for namespace, name, subset, _good in CANARIES:
        change = scheduled_change(
            ro, [(DraftOperation.UPDATE, approved(ro.env, namespace, name, subset))], title=f"canary {name}"
        )
        run.rollouts.append(rollout_start(change=change, steps=[20, 50, 100], analysis={"interval_seconds": 1}))
    for rule in profile_faults(profile, rng):
        assert meshsim.admin("POST", "faults", json=rule).status_code == 201
    later = sorted(rng.uniform(1.0, 6.0) for _ in range(2))
    client = Client()  # a platform admin's browser: sees every rollout
    client.force_login(get_user_model().objects.create_superuser("chaos-admin", "admin@example.com", "x"))
    started = time.monotonic()
    deadline = started + timeout
    next_beat = 0.0
    try:
        while time.monotonic() < deadline:
            states = []
            for rollout in run.rollouts:
                answer = client.get(f"/api/v1/rollouts/{rollout.pk}/")
                run.api_statuses.append(answer.status_code)
                states.append(answer.json().get("state") if answer.status_code == 200 else None)
            if all(state in TERMINAL for state in states):
                break
            if later and time.monotonic() - started >= later[0]:
                later.pop(0)
                for rule in profile_faults(profile, rng):
                    meshsim.admin("POST", "faults", json=rule)
            if time.monotonic() >= next_beat:
                reconcile_rollouts.delay()
                next_beat = time.monotonic() + 1.0
            time.sleep(0.2)
    finally:
        meshsim.admin("DELETE", "faults")
    run.seconds = time.monotonic() - started
    for rollout in run.rollouts:
        rollout.refresh_from_db()
    return run


def check_run(ro, run: ChaosRun) -> list[str]:
    """The acceptance, as a list of what went wrong (empty: every rollout told the truth)."""
    problems = []
    for rollout, (namespace, name, subset, good) in zip(run.rollouts, CANARIES, strict=True):
        label = f"{run.profile}/{run.seed} {name} ({'good' if good else 'bad'})"
        live = live_normalized(ro.env, "VirtualService", namespace, name)
        snapshot = rollout.snapshot.get(f"VirtualService/{namespace}/{name}")
        out_of_band = RolloutEvent.objects.filter(
            rollout=rollout, kind=RolloutEventKind.PAUSED, message__contains="outside Meshgate"
        )
        if out_of_band.exists():
            problems.append(f"{label}: out-of-band pause without another writer: {out_of_band.first().message}")
        if rollout.state == RolloutState.COMPLETED:
            if live != approved_content(rollout):
                problems.append(f"{label}: completed but live is not the approved revision: {live}")
            if not good:
                problems.append(f"{label}: a bad canary completed")
        elif rollout.state == RolloutState.ROLLED_BACK:
            if not writes.live_matches(live, snapshot):
                problems.append(
                    f"{label}: rolled back while live is not the snapshot "
                    f"(canary still served): {live['spec']['http'][0]['route']}"
                )
            if good:
                problems.append(f"{label}: a good canary rolled back: {rollout.rollback_reason.get('summary')}")
        elif rollout.state == RolloutState.FAILED:
            shown = RolloutEvent.objects.filter(rollout=rollout, kind=RolloutEventKind.FAILED).first()
            if (
                not rollout.error
                or shown is None
                or not (shown.data.get("live") or (rollout.rollback_reason or {}).get("live_at_failure"))
            ):
                problems.append(f"{label}: failed without the live state shown: {rollout.error}")
        else:
            problems.append(f"{label}: not finished ({rollout.state}: {rollout.pause_reason or rollout.error})")
        rollout.change.refresh_from_db()
        expected_change = {
            RolloutState.COMPLETED: ChangeState.COMPLETED,
            RolloutState.ROLLED_BACK: ChangeState.ROLLED_BACK,
            RolloutState.FAILED: ChangeState.FAILED,
        }.get(rollout.state)
        if expected_change and rollout.change.state != expected_change:
            problems.append(f"{label}: change is {rollout.change.state}, rollout {rollout.state}")
    errors = sorted({code for code in run.api_statuses if code != 200})
    if errors:
        problems.append(f"{run.profile}/{run.seed}: the API answered {errors}")
    return problems


def approved_content(rollout: Rollout) -> dict[str, Any]:
    return rollout.change.items.get().content


@pytest.fixture
def chaos_worker(transactional_db, monkeypatch, request):
    monkeypatch.setenv("MESHGATE_ROLLOUT_ANALYZER", ANALYZER)
    monkeypatch.setenv("ROLLOUT_STUB_BAD_SERVICES", BAD_SERVICES)
    monkeypatch.setenv("MESHGATE_KUBE_TIMEOUT_SECONDS", str(CLIENT_TIMEOUT))
    monkeypatch.delenv("ROLLOUT_STUB_FAIL_AT_WEIGHT", raising=False)
    return request.getfixturevalue("celery_worker_process")


PROFILES = ["409", "500", "latency", "timeout", "applied", "mixed"]
# A seed per profile in the suite; ROLLOUT_CHAOS_SEEDS (benchmarks/rollout_chaos.py) for more.
SEEDS = [int(s) for s in os.environ.get("ROLLOUT_CHAOS_SEEDS", "1").split(",") if s.strip()]


def run_record(ro, run: ChaosRun) -> dict[str, Any]:
    """One run as the benchmark reports it."""
    outcomes = []
    for rollout, (namespace, name, _subset, good) in zip(run.rollouts, CANARIES, strict=True):
        live = live_normalized(ro.env, "VirtualService", namespace, name)
        target = (
            approved_content(rollout)
            if rollout.state == RolloutState.COMPLETED
            else rollout.snapshot.get(f"VirtualService/{namespace}/{name}")
        )
        outcomes.append(
            {
                "canary": name,
                "good": good,
                "state": rollout.state,
                "verified": writes.live_matches(live, target),
                "errors_retried": rollout.events.filter(kind=RolloutEventKind.ERROR).count(),
            }
        )
    return {
        "profile": run.profile,
        "seed": run.seed,
        "seconds": round(run.seconds, 1),
        "rollouts": outcomes,
        "api_5xx": sum(1 for code in run.api_statuses if code >= 500),
        "api_calls": len(run.api_statuses),
        "problems": check_run(ro, run),
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("profile", PROFILES)
def test_rollouts_stay_true_under_api_faults(chaos_worker, ro, profile, seed):
    run = run_chaos(ro, profile, seed)
    record = run_record(ro, run)
    report = os.environ.get("ROLLOUT_CHAOS_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    assert record["problems"] == []
