"""Helpers shared by the rollout benchmarks: a throwaway database and broker, the organisation that owns
bookinfo on a meshsim cluster, and one real Celery worker started through docker/start-worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"completed", "rolled_back", "failed", "aborted"}


def setup_django(workdir: Path, database_url: str, broker_url: str, extra_env: dict[str, str | None]) -> None:
    """Points this process (and every process it starts) at a throwaway database and broker, then migrates.

    `database_url` "" is a SQLite file in `workdir`; a postgres URL's database is DROPPED and re-created.
    `broker_url` "" is a filesystem broker under `workdir`; a redis URL's database number is FLUSHED.
    `extra_env`: more variables to set (None: remove the variable)."""
    sys.path.insert(0, str(REPO_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings.test"
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'benchmark.sqlite3'}"
    os.environ["MESHGATE_VAR_DIR"] = str(workdir)
    os.environ["CELERY_BROKER_URL"] = broker_url or "filesystem://"
    for name, value in extra_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for folder in ("queue", "processed"):
        (workdir / "broker" / folder).mkdir(parents=True, exist_ok=True)
    if database_url.startswith("postgres"):
        recreate_postgres_database(database_url)
    if broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()  # this benchmark's own Redis database number
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def recreate_postgres_database(url: str) -> None:
    """Drops and creates the (throwaway) database named in the URL."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def organisation(meshsim_url: str):
    """Environment "staging" on the meshsim cluster at `meshsim_url`, team bookinfo owning namespace
    bookinfo, author alice and approver bob. The cluster is not imported yet (the caller does it)."""
    from policies.choices import Role
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
    return org


def start_worker(
    workdir: Path, concurrency: int | None, pool: str, include: str = "", queues: str = "", name: str = "worker"
) -> subprocess.Popen:
    """ONE `celery worker` through docker/start-worker, with this process's environment (database, broker,
    var dir, settings), consuming the settings' queues (all three, or `queues`: start-worker's
    MESHGATE_WORKER_QUEUES, e.g. "rollouts"); returns once it is consuming. Its output goes to
    `workdir`/<name>.log. `include`: a module the worker imports at start-up. `concurrency` None: the
    start script's default."""
    from django.conf import settings

    ready = workdir / f"{name}.ready"
    log = (workdir / f"{name}.log").open("w")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "MESHGATE_WORKER_READY_FILE": str(ready),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **({"CELERY_CONCURRENCY": str(concurrency)} if concurrency is not None else {}),
        "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
        "MESHGATE_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,  # its queues, .rollouts and .notifications
        **({"MESHGATE_WORKER_QUEUES": queues} if queues else {}),
        "MESHGATE_WORKER_ARGS": f"--pool={pool} --without-gossip "
        "--without-mingle --without-heartbeat" + (f" --include {include}" if include else ""),
    }
    proc = subprocess.Popen(
        [str(REPO_ROOT / "docker" / "start-worker")], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180  # a loaded, shared machine boots Django slowly
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"worker did not start:\n{(workdir / f'{name}.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def stop_worker(proc: subprocess.Popen | None) -> None:
    """Warm shutdown (SIGTERM), killed after 20 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
