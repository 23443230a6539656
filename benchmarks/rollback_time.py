"""Time from a regression's onset on a canary to traffic fully back on stable (automatic rollback).

    .venv/bin/python benchmarks/rollback_time.py [--runs 5] [--interval 2] [--onset-step 1]

What it measures: per run, a canary rollout of `reviews` (bookinfo) from the seeded stable subset to
v3 on a meshsim staging cluster started with `--traffic` (simulated traffic on). The engine's real
analysis is used (`policies.analysis` over meshsim's `/metrics`, provider "meshsim", success rate
>= 0.95 over a 1m window, each interval advancing meshsim's traffic clock by 60 simulated seconds),
with `interval_seconds = --interval`. Once the rollout has applied canary phase `--onset-step`
(0 = the first weight), the script waits a random 0..interval seconds (so the onset falls at a random
point of the interval) and injects the regression: a 503 fault (error_rate 1.0) on subset v3 through
meshsim's traffic API `POST /meshsim/traffic/faults`. That instant is the onset. It then polls the
live VirtualService through the kubernetes client (`integrations.kubernetes.get_object`) until it
is again identical (normalized) to the pre-rollout object, i.e. 100 % on stable; that instant is
"back on stable". Reported: onset -> back on stable, and onset -> rollout row `rolled_back`.

How the engine is driven: IN-PROCESS, not a Celery worker. A loop plays the reconciler and the
worker together: every `--tick` seconds (default 0.05) it calls `rollouts_due()` (what the
`reconcile_rollouts` beat task queries) and `rollout_advance(rollout_id=...)` (what the
`rollout_advance` task body calls) for each due rollout, with the real wall clock (`now=None`).
So the numbers exclude broker latency and beat period; a production beat period / countdown chain
adds to them. Database: a throwaway SQLite file (DATABASE_URL is replaced).

Target: back on stable within one analysis interval + 2 s of the onset.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"completed", "rolled_back", "failed", "aborted"}


def _setup_django(workdir: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'benchmark.sqlite3'}"
    os.environ["MESHGATE_VAR_DIR"] = str(workdir)
    os.environ.pop("MESHGATE_ROLLOUT_ANALYZER", None)  # the real analysis layer
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _organisation(meshsim_url: str):
    from policies.choices import Role
    from policies.services.imports import environment_import
    from tests.factories import (
        EnvironmentFactory,
        MembershipFactory,
        NamespaceOwnershipFactory,
        TeamFactory,
        UserFactory,
    )

    class Org:
        pass

    org = Org()
    org.env = EnvironmentFactory(name="staging", order=10)
    team = TeamFactory(slug="bookinfo", name="Bookinfo")
    NamespaceOwnershipFactory(environment=org.env, namespace="bookinfo", team=team)
    org.author = UserFactory(username="alice")
    MembershipFactory(team=team, user=org.author, role=Role.AUTHOR)
    MembershipFactory(team=team, user=UserFactory(username="bob"), role=Role.APPROVER)
    org.env.api_url = meshsim_url
    org.env.save(update_fields=["api_url"])
    environment_import(environment=org.env)
    return org


def _tick_engine() -> None:
    from policies.services.rollouts import rollout_advance, rollouts_due

    for rollout_id in rollouts_due():
        rollout_advance(rollout_id=rollout_id)


def one_run(org, meshsim, *, interval: float, onset_step: int, tick: float, rng: random.Random,
            timeout: float) -> dict:
    from policies.choices import DraftOperation
    from policies.models import Rollout
    from policies.services.imports import environment_import
    from policies.services.rollouts import rollout_start
    from tests.policies.rollouts.helpers import REVIEWS_TO_V3, live_normalized, scheduled_change

    meshsim.reset()
    environment_import(environment=org.env)  # policies' current revisions == the reset cluster
    before = live_normalized(org.env, "VirtualService", "bookinfo", "reviews")
    analysis = {"interval_seconds": interval, "provider": "meshsim", "meshsim_advance_seconds": 60,
                "window": "1m", "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}]}
    change = scheduled_change(org, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], title="rollback-time benchmark")
    rollout = rollout_start(change=change, analysis=analysis)
    started = time.monotonic()
    onset = back = rolled_back_at = None
    inject_at = None
    weight_at_onset = None
    while time.monotonic() - started < timeout:
        _tick_engine()
        now = time.monotonic()
        rollout = Rollout.objects.get(pk=rollout.pk)
        if onset is None:
            if inject_at is None and rollout.state == "running" and rollout.step_index >= onset_step \
                    and rollout.step_stage == "analyze":
                inject_at = now + rng.uniform(0, interval)
            if inject_at is not None and now >= inject_at:
                meshsim.admin("POST", "traffic/faults", json={
                    "service": "reviews", "namespace": "bookinfo", "subset": "v3",
                    "error_rate": 1.0, "status": 503}).raise_for_status()
                onset, weight_at_onset = time.monotonic(), rollout.current_weight
            if rollout.state in TERMINAL:
                break
        else:
            if back is None and live_normalized(org.env, "VirtualService", "bookinfo", "reviews") == before:
                back = time.monotonic()
            if rolled_back_at is None and rollout.state in TERMINAL:
                rolled_back_at = time.monotonic()
            if back is not None and rolled_back_at is not None:
                break
        time.sleep(tick)
    rollout.refresh_from_db()
    return {
        "rollout": rollout.pk, "state": rollout.state, "weight": weight_at_onset,
        "back": None if back is None or onset is None else back - onset,
        "terminal": None if rolled_back_at is None or onset is None else rolled_back_at - onset,
        "reason": (rollout.rollback_reason or {}).get("summary", "") if rollout.rollback_reason else rollout.error,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval_seconds (default 2)")
    parser.add_argument("--onset-step", type=int, default=1,
                        help="inject during the analysis of this canary phase (0 = first weight; default 1)")
    parser.add_argument("--tick", type=float, default=0.05, help="engine loop / VS poll period (s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per run (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    target = args.interval + 2.0

    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        _setup_django(Path(tmp))
        from tests.fixtures.meshsim import STAGING_SEED, start_meshsim

        meshsim = start_meshsim(Path(tmp), name="staging", seeds=[STAGING_SEED], extra_args=["--traffic"])
        try:
            org = _organisation(meshsim.url)
            results = []
            for index in range(args.runs):
                result = one_run(org, meshsim, interval=args.interval, onset_step=args.onset_step,
                                 tick=args.tick, rng=rng, timeout=args.timeout)
                results.append(result)
                fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
                print(f"run {index + 1}: rollout #{result['rollout']} {result['state']:<11} "
                      f"onset at {result['weight']} %  back on stable {fmt(result['back'])} s  "
                      f"row terminal {fmt(result['terminal'])} s  {result['reason'][:70]}", flush=True)
        finally:
            meshsim.stop()

    backs = [r["back"] for r in results if r["back"] is not None]
    failed = len(results) - len(backs)
    print()
    print(f"{'metric (onset -> traffic 100 % stable)':<42}{'value':>10}")
    print(f"{'runs measured / runs':<42}{f'{len(backs)}/{len(results)}':>10}")
    if backs:
        print(f"{'median (s)':<42}{statistics.median(backs):>10.2f}")
        print(f"{'max (s)':<42}{max(backs):>10.2f}")
    ok = bool(backs) and failed == 0 and max(backs) < target
    print(f"{'target: interval + 2 s (s)':<42}{target:>10.2f}")
    print(f"verdict: {'ok' if ok else 'MISSED'} (max {'%.2f' % max(backs) if backs else 'n/a'} s vs < {target:.2f} s;"
          f" engine driven in-process: rollouts_due + rollout_advance every {args.tick} s, no broker/beat)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
