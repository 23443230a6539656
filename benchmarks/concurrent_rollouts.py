"""Step lag of many concurrent canary rollouts, with webhooks and multi-object changes, while reviews and
imports run alongside (target p99 < 1 s).

    .venv/bin/python benchmarks/concurrent_rollouts.py [--rollouts 200] [--objects-per-change 3] [--interval 30] \
        [--stagger 0] [--review-every 2] [--import-every 20] [--layout split] \
        [--database-url postgres://postgres@127.0.0.1:5432/meshgate_bench] [--broker-url redis://127.0.0.1:6379/9]

What it measures: the step lag = (time a rollout step actually runs) - (its `next_action_at`), for
every step every rollout executes (prepare, each canary weight's apply, each analysis interval,
promote). "Runs" is the `now` that `policies.rollout.engine.advance` passes to the
engine's `_act` when it acts; the due time is the row's `next_action_at` at that moment. A probe
wraps `_act` (only in this benchmark's processes) and appends one line per executed step to a file.

Setup: a throwaway database (a temporary SQLite file, or `--database-url`, which is DROPPED and
re-created) and broker (a temporary filesystem broker, or `--broker-url`, whose Redis database is
FLUSHED), a meshsim staging cluster (no simulated traffic) holding, per rollout, a VirtualService
`bench-<n>` in namespace bookinfo (v1 -> v3, like the tests' REVIEWS_TO_V3: the canary) and
`--objects-per-change` - 1 more VirtualServices `bench-<n>-x<j>` (given a timeout by the change, written
with the first weight), imported into the environment; then one approved, scheduled change per
rollout with all its objects, started with `rollout_start` one after another, evenly over `--stagger`
seconds (0: all at once), with the default canary steps 5/10/25/50/100 and `interval_seconds =
--interval`. Each rollout calls three webhooks of its plan (`--webhooks`, on by default): a gating
`pre-rollout` one, a gating `step` one at every analysis interval and a gating `promotion` one, on an
HTTP receiver in this process that answers 200 after `--webhook-ms`. Analysis is a stub that passes at
once (`MESHGATE_ROLLOUT_ANALYZER=benchmarks.concurrent_rollouts.bench_analyzer`: no metrics source
here), so the engine, its webhooks, the database, the cluster writes and the scheduling are measured.

Alongside (a thread of this process, through the services the web process calls): every
`--review-every` s a change is created from a draft (validated against the cluster) and submitted
(its plan is computed by a worker) and every change whose plan is current is approved; every
`--import-every` s an import of the environment is enqueued (a worker imports the whole cluster,
several hundred objects). 0 turns either off.

Workers (real `celery worker` processes through docker/start-worker): `--layout split` (default, the
README's layout at scale) runs one worker for the rollout queue (`MESHGATE_WORKER_QUEUES=rollouts`, its
start script's default prefork pool of 4 processes; `--pool`/`--concurrency` change it) and one for the rest (plans,
imports, deliveries; 1 process); `--layout single` runs ONE worker consuming every queue, as the start
script does by default. This script plays celery beat, enqueuing `reconcile_rollouts` every `--beat` s
(the production default is 2 s). `--mode inprocess`: no Celery; a loop in this process calls
`rollouts_due()` + `rollout_advance()` every `--tick` s (nothing runs alongside).

The shape before webhooks, multi-object changes and the work alongside: `--objects-per-change 1
--no-webhooks --review-every 0 --import-every 0 --layout single`.

Prints a table of lag p50 / p99 / max overall and per kind of step, the busiest second, the webhook
calls answered, the reviews and imports done alongside, the machine's load average, the final states
and the wall time.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    REPO_ROOT,
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


def _stable_vs(name: str, labels: dict) -> dict:
    """bench-<n>(-x<j>) as kubectl would create it: routes its host to subset v1."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "bookinfo", "labels": {**labels, "app": name}},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": "v1"}}]}]},
    }


def _organisation(meshsim_url: str, count: int, per_change: int):
    from integrations import kubernetes as kube
    from policies.cluster import cluster_config
    from policies.services.imports import environment_import
    from tests.policies.rollouts.helpers import live

    org = organisation(meshsim_url)
    cfg = cluster_config(org.env)
    seed = live(org.env, "VirtualService", "bookinfo", "reviews")
    labels = seed["metadata"].get("labels") or {}
    for n in range(count):  # the stable state: every object routes to subset v1 (as kubectl would create it)
        for name in _names(n, per_change):
            kube.apply_object(cfg, _stable_vs(name, labels), field_manager="kubectl")
    environment_import(environment=org.env)
    return org, labels


def _names(n: int, per_change: int) -> list[str]:
    return [f"bench-{n}", *(f"bench-{n}-x{j}" for j in range(1, per_change))]


def _target(n: int) -> dict:
    from tests.policies.rollouts.helpers import REVIEWS_TO_V3

    obj = copy.deepcopy(REVIEWS_TO_V3)
    obj["metadata"]["name"] = f"bench-{n}"
    obj["metadata"]["labels"]["app"] = f"bench-{n}"
    obj["spec"]["hosts"] = [f"bench-{n}"]
    obj["spec"]["http"][0]["route"][0]["destination"]["host"] = f"bench-{n}"
    return obj


def _items(n: int, per_change: int, labels: dict) -> list[tuple[str, dict]]:
    """The change of rollout n: the canary VirtualService, then the others given a timeout."""
    from policies.choices import DraftOperation

    items = [(DraftOperation.UPDATE, _target(n))]
    for name in _names(n, per_change)[1:]:
        obj = _stable_vs(name, labels)
        obj["spec"]["http"][0]["timeout"] = "5s"
        items.append((DraftOperation.UPDATE, obj))
    return items


# --- the webhook receiver and the work alongside -----------------------------------------------------


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.delay = delay
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        phase = str(json.loads(body or b"{}").get("phase", "?"))
        time.sleep(self.server.delay)
        with self.server.lock:
            self.server.calls[phase] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args) -> None:
        pass


REVIEW_TEXT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: review-{n}, namespace: bookinfo}}
spec:
  hosts: [review-{n}]
  http:
  - route:
    - destination: {{host: review-{n}}}
    timeout: {seconds}s
"""


def _alongside(org, approver, stop: threading.Event, review_every: float, import_every: float, done: Counter):
    """Reviews and imports while the rollouts run, through the services the web process and beat call."""
    from django.db import connection
    from kubernetes import client

    from policies import jobs
    from policies.choices import ChangeState
    from policies.models import ChangeRequest
    from policies.selectors import change_items, change_latest_plan
    from policies.services.changes import change_create, change_submit
    from policies.services.drafts import draft_save
    from policies.services.plans import plan_is_current
    from policies.services.reviews import review_approve
    from tests.fixtures.meshsim import kube_api_client

    core = client.CoreV1Api(kube_api_client(org.env.api_url))

    def new_service(n: int) -> None:
        core.create_namespaced_service(
            "bookinfo",
            {
                "metadata": {"name": f"review-{n}"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080, "name": "http"}]},
            },
        )

    next_import = time.monotonic() + import_every if import_every else None
    period = min([v for v in (review_every, import_every) if v] or [1.0])
    n = 0
    try:
        if review_every:
            new_service(0)
        while not stop.wait(period):
            if next_import is not None and time.monotonic() >= next_import:
                jobs.import_environment.delay(org.env.pk, None)
                done["imports enqueued"] += 1
                next_import += import_every
            if not review_every:
                continue
            for change in ChangeRequest.objects.filter(state=ChangeState.IN_REVIEW, title__startswith="review "):
                plan = change_latest_plan(change=change)
                if plan is not None and plan_is_current(
                    change=change, plan=plan, items=list(change_items(change=change))
                ):
                    review_approve(reviewer=approver, change=change, body="looks right")
                    done["reviews approved"] += 1
            # another team's new Service (routed to by the next cycle: the watch has brought it by then)
            new_service(n + 1)
            started = time.monotonic()
            draft = draft_save(author=org.author, environment=org.env, text=REVIEW_TEXT.format(n=n, seconds=1 + n % 9))
            change = change_create(author=org.author, environment=org.env, drafts=[draft.draft], title=f"review {n}")
            change_submit(actor=org.author, change=change)
            done["changes submitted"] += 1
            done["submit ms total"] += int((time.monotonic() - started) * 1000)
            n += 1
    except Exception as exc:  # noqa: BLE001 - reported with the results
        done[f"error: {exc!r}"[:200]] += 1
    finally:
        connection.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument(
        "--objects-per-change", type=int, default=3, help="objects of each change (the canary and the others)"
    )
    parser.add_argument(
        "--webhooks", action=argparse.BooleanOptionalAction, default=True, help="pre-rollout, step, promotion"
    )
    parser.add_argument("--webhook-ms", type=float, default=20.0, help="the receiver answers after this long")
    parser.add_argument("--review-every", type=float, default=2.0, help="a review cycle alongside every N s (0: none)")
    parser.add_argument("--import-every", type=float, default=20.0, help="an import enqueued every N s (0: none)")
    parser.add_argument(
        "--watcher",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the inventory watcher (manage.py watch_inventory), as every deployment does",
    )
    parser.add_argument(
        "--layout",
        choices=["split", "single"],
        default="split",
        help="split: a rollouts worker and one for the rest; single: one worker for every queue",
    )
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
        default=None,
        help="worker mode: processes of the rollouts worker (default: docker/start-worker's, 4)",
    )
    parser.add_argument("--save-worker-log", default="", help="worker mode: copy the worker's log to this file")
    parser.add_argument("--save-lags", help="copy the per-step lag lines (time, rollout, step, lag s) to this file")
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

        from policies.models import ChangeRequest, Plan, Rollout
        from policies.services.rollouts import (
            rollout_advance,
            rollout_start,
            rollouts_due,
        )
        from policies.tasks import reconcile_rollouts
        from tests.fixtures.meshsim import STAGING_SEED, start_meshsim
        from tests.policies.rollouts.helpers import scheduled_change

        meshsim = start_meshsim(workdir, name="staging", seeds=[STAGING_SEED], timeout=60)
        receiver = _Receiver(args.webhook_ms / 1000)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        workers: list = []
        watcher: subprocess.Popen | None = None
        stop = threading.Event()
        side: threading.Thread | None = None
        done: Counter = Counter()
        load_before = os.getloadavg()
        try:
            t0 = time.monotonic()
            org, labels = _organisation(meshsim.url, args.rollouts, args.objects_per_change)
            print(
                f"setup: {args.rollouts * args.objects_per_change} VirtualServices created and imported in "
                f"{time.monotonic() - t0:.1f} s",
                flush=True,
            )
            if args.watcher:
                watcher = subprocess.Popen(
                    [sys.executable, "manage.py", "watch_inventory"],
                    cwd=REPO_ROOT,
                    stdout=(workdir / "watcher.log").open("w"),
                    stderr=subprocess.STDOUT,
                )
            if args.mode == "worker":
                include = "benchmarks.concurrent_rollouts"
                if args.layout == "split":
                    workers.append(start_worker(workdir, args.concurrency, args.pool, include, "rollouts"))
                    workers.append(start_worker(workdir, 1, args.pool, include, "default,notifications", "worker-rest"))
                else:
                    workers.append(start_worker(workdir, args.concurrency, args.pool, include))
            else:
                _install_lag_probe()
            changes = [
                scheduled_change(org, _items(n, args.objects_per_change, labels), title=f"bench {n}")
                for n in range(args.rollouts)
            ]
            analysis: dict = {"interval_seconds": args.interval}
            if args.webhooks:
                analysis["webhooks"] = [
                    {"name": "smoke", "phase": "pre-rollout", "url": receiver.url},
                    {"name": "acceptance", "phase": "step", "url": receiver.url},
                    {"name": "release-notes", "phase": "promotion", "url": receiver.url},
                ]
            if args.mode == "worker" and (args.review_every or args.import_every):
                from django.contrib.auth import get_user_model

                approver = get_user_model().objects.get(username="bob")
                side = threading.Thread(
                    target=_alongside,
                    args=(org, approver, stop, args.review_every, args.import_every, done),
                    daemon=True,
                )
                side.start()
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
                    ids.append(rollout_start(change=change, analysis=analysis).pk)
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
            load_after = os.getloadavg()
            from policies.models import Environment

            last_import = Environment.objects.get(pk=org.env.pk).last_import_at
            done["last import ended s before the end"] = int((timezone.now() - last_import).total_seconds())
            done["plans stored (reviews)"] = Plan.objects.filter(change__title__startswith="review ").count()
            if not done["imports enqueued"] and not done["changes submitted"]:
                done.clear()
        finally:
            stop.set()
            if side is not None:
                side.join(30)
            for worker in workers:
                stop_worker(worker)
            stop_worker(watcher)
            receiver.shutdown()
            meshsim.stop()
        lag_file = workdir / "lags.txt"
        lines = lag_file.read_text().split() if lag_file.exists() else []
        worker_log = (workdir / "worker.log").read_text(errors="replace") if args.mode == "worker" else ""
        for extra in ("worker-rest",):
            if (workdir / f"{extra}.log").exists():
                worker_log += f"\n--- {extra} ---\n" + (workdir / f"{extra}.log").read_text(errors="replace")
        if args.save_worker_log and worker_log:
            Path(args.save_worker_log).write_text(worker_log)
        if args.save_lags and lag_file.exists():
            Path(args.save_lags).write_text(lag_file.read_text())

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
    print(f"webhook calls answered: {dict(receiver.calls) or 'none'}")
    if done:
        submitted = done["changes submitted"]
        mean = f", mean submit {done['submit ms total'] / submitted:.0f} ms" if submitted else ""
        print("alongside: " + ", ".join(f"{k} {v}" for k, v in done.items() if k != "submit ms total") + mean)
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
        f"at the end {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f} (2 cores, shared)"
    )
    print(
        f"final states: {dict(states)}; wall {wall:.1f} s for {len(ids)} rollouts of {args.objects_per_change} "
        f"objects (interval {args.interval:g} s, started over {args.stagger:g} s; mode {args.mode}"
        + (
            f", {args.layout} layout, rollouts on {args.pool} x{args.concurrency or os.environ.get('CELERY_CONCURRENCY') or '(start-worker default)'}"
            if args.mode == "worker"
            else ""
        )
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
