"""Celery as it runs at scale: queues per kind of work, redelivery, expiring beat entries, one beat."""

import subprocess
from pathlib import Path

from django.conf import settings

from portal.beat import LockedScheduler
from portal.celery import app, queue_names, route_task

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_steps_and_deliveries_have_queues_of_their_own():
    queues = queue_names(settings.CELERY_TASK_DEFAULT_QUEUE)
    assert route_task("policies.tasks.rollout_advance", (), {}, {}) == {"queue": queues["rollouts"]}
    assert route_task("policies.tasks.reconcile_rollouts", (), {}, {}) == {"queue": queues["rollouts"]}
    assert route_task("policies.tasks.deliver_notification", (), {}, {}) == {"queue": queues["notifications"]}
    for task in ("import_environment", "compute_plan", "detect_drift", "probe_clusters", "seal_audit_log"):
        assert route_task(f"policies.tasks.{task}", (), {}, {}) == {"queue": queues["default"]}
    assert len(set(queues.values())) == 3


def test_the_start_script_consumes_every_queue_unless_told(tmp_path):
    fake = tmp_path / "celery"
    fake.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MESHGATE_QUEUE": "mq"}
    out = subprocess.run([str(ROOT / "docker" / "start-worker")], env=env, capture_output=True, text=True, check=True)
    assert "--queues mq,mq.rollouts,mq.notifications" in out.stdout
    out = subprocess.run(
        [str(ROOT / "docker" / "start-worker")],
        env={**env, "MESHGATE_WORKER_QUEUES": "rollouts"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--queues mq.rollouts" in out.stdout and "mq.notifications" not in out.stdout
    bad = subprocess.run(
        [str(ROOT / "docker" / "start-worker")],
        env={**env, "MESHGATE_WORKER_QUEUES": "x"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown queue" in bad.stderr


def test_redis_redelivers_only_after_the_longest_countdown():
    from policies.tasks import ROLLOUT_FOLLOW_SECONDS

    longest = max(ROLLOUT_FOLLOW_SECONDS, float(3600))  # notification retries wait at most 1 h
    assert settings.CELERY_BROKER_VISIBILITY_TIMEOUT > longest


def test_every_beat_entry_expires_after_its_period():
    from portal.settings import base

    for name, entry in base.CELERY_BEAT_SCHEDULE.items():
        assert 0 < entry["options"]["expires"] <= max(1.0, entry["schedule"]), name
    assert "seal-audit-log" in base.CELERY_BEAT_SCHEDULE
    assert base.CELERY_BEAT_SCHEDULER == "portal.beat:LockedScheduler"


def test_only_one_beat_is_active_on_the_embedded_default(tmp_path):
    schedule = tmp_path / "celerybeat-schedule"
    first = LockedScheduler(app=app, schedule_filename=str(schedule), lazy=True)
    second = LockedScheduler(app=app, schedule_filename=str(schedule), lazy=True)
    assert first._hold_file() is True
    assert second._hold_file() is False  # stands by
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        assert second.tick() == 5.0  # a standby sends nothing
    first._file.close()  # the active beat died
    assert second._hold_file() is True


def test_only_one_beat_is_active_on_redis(tmp_path):
    import redis

    url = "redis://127.0.0.1:6379/14"  # this checkout's Redis database
    client = redis.Redis.from_url(url)
    client.delete("meshgate:beat:lock")
    first = LockedScheduler(app=app, schedule_filename=str(tmp_path / "a"), lazy=True)
    second = LockedScheduler(app=app, schedule_filename=str(tmp_path / "b"), lazy=True)
    assert first._hold_redis(url) and first._hold_redis(url)  # renews its own lock
    assert not second._hold_redis(url)
    client.delete("meshgate:beat:lock")  # its TTL ran out: the active beat died
    assert second._hold_redis(url) and not first._hold_redis(url)
    client.delete("meshgate:beat:lock")
