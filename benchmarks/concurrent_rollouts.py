"""Step lag of many concurrent canary rollouts handled by ONE worker (target p99 < 1 s).

    .venv/bin/python benchmarks/concurrent_rollouts.py [--rollouts 200] [--interval 30] [--stagger 30] \
        [--database-url postgres://postgres@127.0.0.1:5432/meshgate_bench] [--broker-url redis://127.0.0.1:6379/9]

What it measures: the step lag = (time a rollout step actually runs) - (its `next_action_at`), for
every step every rollout executes (prepare, each canary weight's apply, each analysis interval,
promote). "Runs" is the `now` that `policies.rollout.engine.advance` passes to the
engine's `_act` when it acts; the due time is the row's `next_action_at` at that moment. A probe
wraps `_act` (only in this benchmark's processes) and appends one line per executed step to a file.

Setup: a throwaway database (a temporary SQLite file, or `--database-url`, which is DROPPED and
re-created) and broker (a temporary filesystem broker, or `--broker-url`, whose Redis database is
FLUSHED), a meshsim staging cluster (no simulated traffic) holding `--rollouts` extra
VirtualServices `bench-<n>` in namespace bookinfo (v1 -> v3, like the tests' REVIEWS_TO_V3),
imported into the environment; then one approved, scheduled change per VirtualService, started
with `rollout_start` one after another, evenly over `--stagger` seconds (0: all at once), with the
default canary steps 5/10/25/50/100 and `interval_seconds = --interval`. Analysis is a stub that
passes at once (`MESHGATE_ROLLOUT_ANALYZER=benchmarks.concurrent_rollouts.bench_analyzer`), so only
the engine, the database, the cluster writes and the scheduling are measured.

`--mode worker` (default): ONE real `celery worker` (docker/start-worker, its default prefork pool
of 2 processes; `--pool`/`--concurrency` change it) runs the `rollout_advance` task chains
(countdown = next action); this script plays celery beat, enqueuing `reconcile_rollouts` every
`--beat` s (the production default is 2 s). `--mode inprocess`: no Celery; a loop in this process
calls `rollouts_due()` + `rollout_advance()` every `--tick` s.

Prints a table of lag p50 / p99 / max overall and per kind of step, the busiest second, the final
states and the wall time.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    TERMINAL,
    organisation,
    setup_django,
    start_worker,
    stop_worker,
)

TARGET_P99 = 1.0
LAG_FILE_ENV = "BENCH_LAG_FILE"


# --- parts imported by the worker (--include benchmarks.concurrent_rollouts) -------------------------


def bench_analyzer(context):
    """Stub analysis: passes at once (also makes sure the lag probe is installed)."""
    _install_lag_probe()
    from policies.rollout import analysis as an

    return an.Outcome(an.PASS, "bench stub: healthy", {"success_rate": 1.0})


def _install_lag_probe() -> None:
    path = os.environ.get(LAG_FILE_ENV)
    if not path:
        return
    try:
        import policies.rollout.engine as svc
    except Exception:  # noqa: BLE001 - apps not ready yet: installed at the first analysis instead
        return
    if getattr(svc._act, "_bench_probe", False):
        return
    original = svc._act

    def _act(rollout, *, analyzer, now):
        due = rollout.next_action_at
        kind = (
            "prepare"
            if rollout.state == "pending"
            else (rollout.state if rollout.state in ("promoting", "rolling_back") else rollout.step_stage or "?")
        )
        try:
            return original(rollout, analyzer=analyzer, now=now)
        finally:
            if due is not None:
                with open(path, "a") as fh:
                    fh.write(f"{time.time():.3f} {rollout.pk} {kind} {(now - due).total_seconds():.4f}\n")

    _act._bench_probe = True
    svc._act = _act


if os.environ.get(LAG_FILE_ENV) and "celery" in Path(sys.argv[0]).name:
    from celery.signals import worker_process_init, worker_ready

    # prefork: each pool process installs it; solo: the worker itself once it is ready
    worker_process_init.connect(lambda **_: _install_lag_probe(), weak=False)
    worker_ready.connect(lambda **_: _install_lag_probe(), weak=False)


# --- the benchmark -----------------------------------------------------------------------------------


def _setup_django(workdir: Path, database_url: str, broker_url: str) -> None:
    setup_django(
        workdir,
        database_url,
        broker_url,
        {
            "MESHGATE_ROLLOUT_ANALYZER": "benchmarks.concurrent_rollouts.bench_analyzer",
            LAG_FILE_ENV: str(workdir / "lags.txt"),
        },
    )


def _organisation(meshsim_url: str, count: int):
    from integrations import kubernetes as kube
    from policies.cluster import cluster_config
    from policies.services.imports import environment_import
    from tests.policies.rollouts.helpers import live

    org = organisation(meshsim_url)
    cfg = cluster_config(org.env)
    seed = live(org.env, "VirtualService", "bookinfo", "reviews")
    for n in range(count):  # the stable state: bench-<n> routes to subset v1 (as kubectl would create it)
        kube.apply_object(
            cfg,
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {
                    "name": f"bench-{n}",
                    "namespace": "bookinfo",
                    "labels": {**(seed["metadata"].get("labels") or {}), "app": f"bench-{n}"},
                },
                "spec": {
                    "hosts": [f"bench-{n}"],
                    "http": [{"route": [{"destination": {"host": f"bench-{n}", "subset": "v1"}}]}],
                },
            },
            field_manager="kubectl",
        )
    environment_import(environment=org.env)
    return org


def _target(n: int) -> dict:
    from tests.policies.rollouts.helpers import REVIEWS_TO_V3

    obj = copy.deepcopy(REVIEWS_TO_V3)
    obj["metadata"]["name"] = f"bench-{n}"
    obj["metadata"]["labels"]["app"] = f"bench-{n}"
    obj["spec"]["hosts"] = [f"bench-{n}"]
    obj["spec"]["http"][0]["route"][0]["destination"]["host"] = f"bench-{n}"
    return obj


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--interval", type=float, default=30.0, help="analysis interval_seconds (default 30)")
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="start the rollouts one after another over this many seconds (default 0: all at once)",
    )
    parser.add_argument("--mode", choices=["worker", "inprocess"], default="worker")
    parser.add_argument("--beat", type=float, default=2.0, help="worker mode: reconcile_rollouts period (s)")
    parser.add_argument("--tick", type=float, default=0.05, help="inprocess mode: loop period (s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="worker mode: processes of the one worker (docker/start-worker's default: 2)",
    )
    parser.add_argument("--save-worker-log", default="", help="worker mode: copy the worker's log to this file")
    parser.add_argument("--pool", default="prefork", help="worker mode: Celery pool (prefork, solo, threads)")
    parser.add_argument(
        "--database-url",
        default="",
        help="e.g. postgres://postgres@127.0.0.1:5432/meshgate_bench (DROPPED and re-created); "
        "default: a temporary SQLite file",
    )
    parser.add_argument(
        "--broker-url",
        default="",
        help="e.g. redis://127.0.0.1:6379/9 (that database is FLUSHED); default: a temporary filesystem broker",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        workdir = Path(tmp)
        _setup_django(workdir, args.database_url, args.broker_url)
        from django.utils import timezone

        from policies.choices import DraftOperation
        from policies.models import ChangeRequest, Rollout
        from policies.services.rollouts import (
            rollout_advance,
            rollout_start,
            rollouts_due,
        )
        from policies.tasks import reconcile_rollouts
        from tests.fixtures.meshsim import STAGING_SEED, start_meshsim
        from tests.policies.rollouts.helpers import scheduled_change

        meshsim = start_meshsim(workdir, name="staging", seeds=[STAGING_SEED])
        worker = None
        try:
            t0 = time.monotonic()
            org = _organisation(meshsim.url, args.rollouts)
            print(
                f"setup: {args.rollouts} VirtualServices created and imported in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            if args.mode == "worker":
                worker = start_worker(workdir, args.concurrency, args.pool, include="benchmarks.concurrent_rollouts")
            else:
                _install_lag_probe()
            changes = [
                scheduled_change(org, [(DraftOperation.UPDATE, _target(n))], title=f"bench {n}")
                for n in range(args.rollouts)
            ]
            # Held back (the reconciler would start them itself); each is due when this script starts it.
            later = timezone.now() + dt.timedelta(days=1)
            ChangeRequest.objects.filter(pk__in=[c.pk for c in changes]).update(scheduled_for=later)
            started = time.monotonic()
            ids = []
            pending = list(changes)  # started one after another, spread evenly over --stagger seconds
            next_beat, next_report = 0.0, time.monotonic() + 10
            states: Counter = Counter()
            while time.monotonic() - started < args.timeout:
                while pending and time.monotonic() - started >= args.stagger * len(ids) / len(changes):
                    change = pending.pop(0)
                    change.scheduled_for = timezone.now()
                    change.save(update_fields=["scheduled_for"])
                    ids.append(rollout_start(change=change, analysis={"interval_seconds": args.interval}).pk)
                    if not pending:
                        print(
                            f"started {len(ids)} rollouts in {time.monotonic() - started:.1f} s ({args.mode} mode)",
                            flush=True,
                        )
                now = time.monotonic()
                if args.mode == "worker":
                    if now >= next_beat:
                        reconcile_rollouts.delay()
                        next_beat = now + args.beat
                    time.sleep(0.25)
                else:
                    for rollout_id in rollouts_due():
                        rollout_advance(rollout_id=rollout_id)
                    time.sleep(args.tick)
                states = Counter(Rollout.objects.filter(pk__in=ids).values_list("state", flat=True))
                if not pending and sum(states[s] for s in TERMINAL) == len(ids):
                    break
                if now >= next_report:
                    print(f"  t={now - started:5.0f} s  {dict(states)}", flush=True)
                    next_report = now + 10
            wall = time.monotonic() - started
        finally:
            stop_worker(worker)
            meshsim.stop()
        lag_file = workdir / "lags.txt"
        lines = lag_file.read_text().split() if lag_file.exists() else []
        worker_log = (workdir / "worker.log").read_text(errors="replace") if args.mode == "worker" else ""
        if args.save_worker_log and worker_log:
            Path(args.save_worker_log).write_text(worker_log)

    rows = [lines[i : i + 4] for i in range(0, len(lines), 4)]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _, _, kind, lag in rows:
        by_kind[kind].append(float(lag))
    lags = [lag for values in by_kind.values() for lag in values]
    print()
    print(f"{'steps':<14}{'count':>7}{'p50 s':>9}{'p99 s':>9}{'max s':>9}")
    for kind in ["all", *sorted(by_kind)]:
        values = lags if kind == "all" else by_kind[kind]
        if values:
            print(f"{kind:<14}{len(values):>7}{_pct(values, 0.5):>9.3f}{_pct(values, 0.99):>9.3f}{max(values):>9.3f}")
    per_second = Counter(int(float(at)) for at, _, _, _ in rows)
    if per_second:
        print(f"steps executed: {len(rows)}; busiest second: {max(per_second.values())} steps")
    print(
        f"final states: {dict(states)}; wall {wall:.1f} s for {len(ids)} rollouts "
        f"(interval {args.interval:g} s, started over {args.stagger:g} s; mode {args.mode}"
        + (f", {args.pool} x{args.concurrency}" if args.mode == "worker" else "")
        + f"; {'PostgreSQL' if args.database_url else 'SQLite'}, {'Redis' if args.broker_url else 'filesystem broker'})"
    )
    if not lags:
        print(
            "no steps recorded (probe not installed?)"
            + (f"\nworker log tail:\n{worker_log[-2000:]}" if worker_log else "")
        )
        return 1
    p99 = _pct(lags, 0.99)
    done = sum(states[s] for s in TERMINAL) == len(ids)
    print(
        f"verdict: step lag p99 {p99:.3f} s vs target < {TARGET_P99:.1f} s: {'ok' if p99 < TARGET_P99 else 'MISSED'}"
        + ("" if done else " (NOT all rollouts finished before --timeout)")
    )
    return 0 if p99 < TARGET_P99 and done else 1


if __name__ == "__main__":
    raise SystemExit(main())
