"""The engine driven by a REAL Celery worker process: the reconciler resumes lost tasks, and a worker
SIGKILLed at a random point of a rollout (then replaced) ends in the same final state."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policies.choices import ChangeState, DraftOperation, RolloutState
from policies.models import Rollout, RolloutEvent
from policies.normalize import normalize_object
from policies.services.rollouts import rollout_start
from policies.tasks import reconcile_rollouts
from tests.fixtures.worker import REPO, WORKER_START_DEADLINE_S, _database_url, wait_worker_idle
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    live_normalized,
    scheduled_change,
)

ANALYZER = "tests.policies.rollouts.stubs.env_scripted"
TERMINAL = {RolloutState.COMPLETED, RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.ABORTED}


@pytest.fixture
def stub_env(monkeypatch):
    monkeypatch.setenv("MESHGATE_ROLLOUT_ANALYZER", ANALYZER)
    monkeypatch.delenv("ROLLOUT_STUB_FAIL_AT_WEIGHT", raising=False)
    return monkeypatch


def start_worker(tmp_path: Path, name: str) -> subprocess.Popen:
    """Another worker like `celery_worker_process` (same start script, test database and queue)."""
    from django.conf import settings

    ready = tmp_path / f"{name}.ready"
    log = (tmp_path / f"{name}.log").open("w")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": _database_url(),
        "MESHGATE_WORKER_READY_FILE": str(ready),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CELERY_CONCURRENCY": "1",
        "MESHGATE_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,  # its queues, .rollouts and .notifications
        "MESHGATE_WORKER_ARGS": "--pool=solo --without-gossip --without-mingle --without-heartbeat",
    }
    proc = subprocess.Popen(
        [str(REPO / "docker" / "start-worker")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + WORKER_START_DEADLINE_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()  # a worker left running would take the next tests' tasks
            proc.wait()
            pytest.fail(f"worker {name} did not start:\n{(tmp_path / f'{name}.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def wait_terminal(rollout: Rollout, *, timeout: float = 90, beat: float = 1.0, on_tick=None) -> Rollout:
    """Polls the row (as the UI does) and plays celery beat: `reconcile_rollouts` every `beat` seconds."""
    deadline = time.monotonic() + timeout
    next_beat = 0.0
    while time.monotonic() < deadline:
        rollout.refresh_from_db()
        if rollout.state in TERMINAL:
            return rollout
        if on_tick is not None:
            on_tick()
        if time.monotonic() >= next_beat:
            reconcile_rollouts.delay()
            next_beat = time.monotonic() + beat
        time.sleep(0.1)
    pytest.fail(
        f"rollout still {rollout.state} after {timeout}s: "
        f"{list(RolloutEvent.objects.filter(rollout=rollout).values_list('message', flat=True))}"
    )


def _start(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    return rollout_start(change=change, analysis={"interval_seconds": 1})


def _assert_completed(ro, rollout):
    assert rollout.state == RolloutState.COMPLETED, rollout.error or rollout.pause_reason
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.COMPLETED
    keys = [k for k in RolloutEvent.objects.filter(rollout=rollout).values_list("step_key", flat=True) if k]
    assert [k for k in keys if k.startswith("apply:")] == [
        f"apply:{i}:w{w}" for i, w in enumerate([5, 10, 25, 50, 100])
    ]


def test_worker_runs_a_rollout_to_completion(transactional_db, stub_env, ro, request):
    request.getfixturevalue("celery_worker_process")
    _assert_completed(ro, wait_terminal(_start(ro), beat=30))


def test_the_reconciler_resumes_a_rollout_whose_task_was_lost(transactional_db, stub_env, ro, request):
    rollout = _start(ro)  # its task is enqueued ...
    request.getfixturevalue("celery_worker_process")  # ... and purged with the queue: lost
    wait_worker_idle()  # nothing queued, nothing held by the worker: nobody advances it
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PENDING
    _assert_completed(ro, wait_terminal(rollout))


# benchmarks/rollout_kill.py runs many more points through ROLLOUT_KILL_SEEDS.
KILL_SEEDS = [int(s) for s in os.environ.get("ROLLOUT_KILL_SEEDS", "11,23,37").split(",") if s.strip()]


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_killing_the_worker_at_a_random_point_ends_in_the_same_state(transactional_db, stub_env, ro, tmp_path, seed):
    point = random.Random(seed).uniform(0.2, 4.0)  # the rollout takes 5+ s: 5 phases, 1 s analysis each
    worker = start_worker(tmp_path, "first")
    workers = [worker]
    rollout = _start(ro)
    started = time.monotonic()

    def maybe_kill():
        if len(workers) == 1 and time.monotonic() - started >= point:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            workers.append(start_worker(tmp_path, "second"))

    try:
        rollout = wait_terminal(rollout, on_tick=maybe_kill)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
    assert len(workers) == 2, "the worker was not killed before the rollout ended"
    _assert_completed(ro, rollout)


def test_killing_the_worker_during_a_failing_rollout_still_restores_the_snapshot(
    transactional_db,
    stub_env,
    ro,
    tmp_path,
):
    stub_env.setenv("ROLLOUT_STUB_FAIL_AT_WEIGHT", "25")
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    worker = start_worker(tmp_path, "first")
    workers = [worker]
    rollout = _start(ro)
    started, point = time.monotonic(), random.Random(5).uniform(0.5, 2.0)

    def maybe_kill():
        if len(workers) == 1 and time.monotonic() - started >= point:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            workers.append(start_worker(tmp_path, "second"))

    try:
        rollout = wait_terminal(rollout, on_tick=maybe_kill)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
    assert len(workers) == 2, "the worker was not killed before the rollout ended"
    assert rollout.state == RolloutState.ROLLED_BACK and rollout.rollback_reason["weight"] == 25
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before
