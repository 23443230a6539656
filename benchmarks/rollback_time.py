"""Time from a regression's onset on a canary to traffic fully back on stable (automatic rollback).

    .venv/bin/python benchmarks/rollback_time.py [--mode worker|inprocess] [--runs 5] [--interval 2] \
        [--onset-step 1] [--database-url postgres://postgres@127.0.0.1:5432/meshgate_rb] \
        [--broker-url redis://127.0.0.1:6379/10]

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

How the engine is driven (`--mode`):

- `worker` (default): ONE real `celery worker` (docker/start-worker, its default prefork pool of 2 processes;
  `--pool`/`--concurrency` change it) with this script's DATABASE_URL, CELERY_BROKER_URL,
  MESHGATE_VAR_DIR and DJANGO_SETTINGS_MODULE. `rollout_start` enqueues the first
  `policies.tasks.rollout_advance` on commit and each task enqueues the next with countdown = the
  rollout's next action; this script plays celery beat, sending `policies.tasks.reconcile_rollouts`
  every `--beat` s (the production default is 2 s). The analysis settings travel in the rollout row.
  Broker latency, the countdown chain and the worker's own database connections are included.
- `inprocess`: no Celery. A loop plays the reconciler and the worker together: every `--tick`
  seconds (default 0.05) it calls `rollouts_due()` (what the `reconcile_rollouts` beat task queries)
  and `rollout_advance(rollout_id=...)` (what the `rollout_advance` task body calls) for each due
  rollout, with the real wall clock (`now=None`). The numbers exclude broker latency and the task chain.

Database and broker: a throwaway SQLite file and a filesystem broker in a temporary directory, or
`--database-url` (a PostgreSQL database that is DROPPED and re-created) and `--broker-url` (a Redis
database number that is FLUSHED).

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    TERMINAL,
    organisation,
    setup_django,
    start_worker,
    stop_worker,
)

WORKER_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "MESHGATE_VAR_DIR", "DJANGO_SETTINGS_MODULE")


def _organisation(meshsim_url: str):
    from policies.services.imports import environment_import

    org = organisation(meshsim_url)
    environment_import(environment=org.env)
    return org


def _tick_engine() -> None:
    from policies.services.rollouts import rollout_advance, rollouts_due

    for rollout_id in rollouts_due():
        rollout_advance(rollout_id=rollout_id)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _check_worker_environment(worker) -> str:
    """The variables the worker process was started with (Linux /proc) must be this script's."""
    environ = Path(f"/proc/{worker.pid}/environ")
    if not environ.exists():
        return "worker environment not checked (no /proc)"
    seen = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
    wrong = [name for name in WORKER_ENV if seen.get(name) != os.environ.get(name)]
    if wrong:
        raise RuntimeError(
            "the worker's environment differs from this script's: "
            + ", ".join(f"{name}={seen.get(name)!r} (script: {os.environ.get(name)!r})" for name in wrong)
        )
    return "worker environment: " + ", ".join(f"{name}={seen[name]}" for name in WORKER_ENV)


def one_run(
    org,
    meshsim,
    *,
    mode: str,
    interval: float,
    onset_step: int,
    tick: float,
    beat: float,
    rng: random.Random,
    timeout: float,
) -> dict:
    from django.db import transaction

    from policies.choices import DraftOperation
    from policies.models import Rollout
    from policies.services.imports import environment_import
    from policies.services.rollouts import rollout_start
    from policies.tasks import reconcile_rollouts
    from tests.policies.rollouts.helpers import (
        REVIEWS_TO_V3,
        live_normalized,
        scheduled_change,
    )

    meshsim.reset()
    environment_import(environment=org.env)  # policies' current revisions == the reset cluster
    before = live_normalized(org.env, "VirtualService", "bookinfo", "reviews")
    analysis = {
        "interval_seconds": interval,
        "provider": "meshsim",
        "meshsim_advance_seconds": 60,
        "window": "1m",
        "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
    }
    # One transaction: a reconcile_rollouts running in the worker never sees the scheduled change
    # without its rollout (it would start it itself, with the default analysis).
    with transaction.atomic():
        change = scheduled_change(org, [(DraftOperation.UPDATE, REVIEWS_TO_V3)], title="rollback-time benchmark")
        rollout = rollout_start(change=change, analysis=analysis)
    started = time.monotonic()
    onset = back = rolled_back_at = None
    inject_at = None
    weight_at_onset = None
    next_beat = started
    while time.monotonic() - started < timeout:
        if mode == "worker":
            if time.monotonic() >= next_beat:
                reconcile_rollouts.delay()
                next_beat = time.monotonic() + beat
        else:
            _tick_engine()
        now = time.monotonic()
        rollout = Rollout.objects.get(pk=rollout.pk)
        if onset is None:
            if (
                inject_at is None
                and rollout.state == "running"
                and rollout.step_index >= onset_step
                and rollout.step_stage == "analyze"
            ):
                inject_at = now + rng.uniform(0, interval)
            if inject_at is not None and now >= inject_at:
                meshsim.admin(
                    "POST",
                    "traffic/faults",
                    json={
                        "service": "reviews",
                        "namespace": "bookinfo",
                        "subset": "v3",
                        "error_rate": 1.0,
                        "status": 503,
                    },
                ).raise_for_status()
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
        "rollout": rollout.pk,
        "state": rollout.state,
        "weight": weight_at_onset,
        "back": None if back is None or onset is None else back - onset,
        "terminal": None if rolled_back_at is None or onset is None else rolled_back_at - onset,
        "reason": (rollout.rollback_reason or {}).get("summary", "") if rollout.rollback_reason else rollout.error,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--mode",
        choices=["worker", "inprocess"],
        default="worker",
        help="who drives the engine (default worker; see below)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval_seconds (default 2)")
    parser.add_argument(
        "--onset-step",
        type=int,
        default=1,
        help="inject during the analysis of this canary phase (0 = first weight; default 1)",
    )
    parser.add_argument(
        "--tick", type=float, default=0.05, help="VS / rollout poll period, and the inprocess engine loop period (s)"
    )
    parser.add_argument("--beat", type=float, default=2.0, help="worker mode: reconcile_rollouts period (s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="worker mode: processes of the one worker (docker/start-worker's default: 2)",
    )
    parser.add_argument("--pool", default="prefork", help="worker mode: Celery pool (prefork, solo, threads)")
    parser.add_argument("--save-worker-log", default="", help="worker mode: copy the worker's log to this file")
    parser.add_argument("--timeout", type=float, default=60.0, help="per run (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default="",
        help="e.g. postgres://postgres@127.0.0.1:5432/meshgate_rb (DROPPED and re-created); "
        "default: a temporary SQLite file",
    )
    parser.add_argument(
        "--broker-url",
        default="",
        help="e.g. redis://127.0.0.1:6379/10 (that database is FLUSHED); default: a temporary filesystem broker",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    target = args.interval + 2.0
    results = []
    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        workdir = Path(tmp)
        setup_django(
            workdir, args.database_url, args.broker_url, {"MESHGATE_ROLLOUT_ANALYZER": None}
        )  # the real analysis layer
        from tests.fixtures.meshsim import STAGING_SEED, start_meshsim

        meshsim = start_meshsim(workdir, name="staging", seeds=[STAGING_SEED], extra_args=["--traffic"])
        worker = None
        try:
            org = _organisation(meshsim.url)
            if args.mode == "worker":
                worker = start_worker(workdir, args.concurrency, args.pool)
                print(_check_worker_environment(worker), flush=True)
            for index in range(args.runs):
                result = one_run(
                    org,
                    meshsim,
                    mode=args.mode,
                    interval=args.interval,
                    onset_step=args.onset_step,
                    tick=args.tick,
                    beat=args.beat,
                    rng=rng,
                    timeout=args.timeout,
                )
                results.append(result)
                print(
                    f"run {index + 1}: rollout #{result['rollout']} {result['state']:<11} "
                    f"onset at {result['weight']} %  back on stable {fmt(result['back'])} s  "
                    f"row terminal {fmt(result['terminal'])} s  {result['reason'][:70]}",
                    flush=True,
                )
        finally:
            stop_worker(worker)
            meshsim.stop()
            worker_log = (workdir / "worker.log").read_text(errors="replace") if worker is not None else ""
            if args.save_worker_log and worker_log:
                Path(args.save_worker_log).write_text(worker_log)

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
    if args.mode == "worker":
        driven = (
            f"one celery worker ({args.pool} x{args.concurrency}), task chain + reconcile_rollouts every "
            f"{args.beat:g} s"
        )
    else:
        driven = f"in-process: rollouts_due + rollout_advance every {args.tick} s, no broker/beat"
    backend = (
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, {'Redis' if args.broker_url else 'filesystem broker'}"
    )
    print(
        f"verdict: {'ok' if ok else 'MISSED'} (max {fmt(max(backs)) if backs else 'n/a'} s vs < {target:.2f} s;"
        f" engine driven {driven}; {backend})"
    )
    if failed and worker_log:
        print(f"worker log tail:\n{worker_log[-2000:]}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
