#!/usr/bin/env python3
"""Meshgate's two commands, on a machine with only Python 3.11+, pip, Node/npm and git.

    python3 dev.py run    set up, then run everything on the embedded default (SQLite, a
                          filesystem broker, worker, beat, web, two simulated clusters)
    python3 dev.py test   set up, then run the whole test suite (extra arguments go to pytest)
    python3 dev.py check  set up, then lint (ruff), format check, types (mypy), layer contracts
                          (import-linter) and import cycles; fails on any finding

Both are idempotent: a second run reuses the virtual environment, node_modules, the database
and the simulated clusters' saved state. DATABASE_URL and CELERY_BROKER_URL switch to
PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VAR = Path(os.environ.get("MESHGATE_VAR_DIR", ROOT / "var"))
BIN = VENV / "bin"
PYTHON = BIN / "python"
DEMO_USERS = [
    ("alice", "author, team Bookinfo"),
    ("bob", "approver, team Bookinfo"),
    ("carol", "author, team Shop"),
    ("dan", "approver, team Shop"),
    ("sam", "security approver (sees every policy)"),
    ("ada", "platform admin (Django admin too)"),
    ("erin", "approver, team Bookinfo (prod needs two)"),
    ("finn", "approver, team Shop"),
    ("pat", "approver, team Platform"),
]


def say(message: str) -> None:
    print(f"[meshgate] {message}", flush=True)


def run(*args: str | Path, env: dict | None = None) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _up_to_date(stamp: Path, source: Path) -> bool:
    """True when `stamp` records the digest of `source` from the last successful install."""
    return stamp.exists() and stamp.read_text() == _digest(source)


def setup_python() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Meshgate needs Python 3.11 or newer")
    if sys.version_info < (3, 11, 10):
        say(
            f"warning: Python {sys.version.split()[0]} has CVE-2024-6232 (tarfile's pax parser backtracks "
            "quadratically). Meshgate reads uploaded archives with its own bounded parser, so uploads are safe, "
            "but use Python 3.11.10 or newer (or 3.12.6+) in production; the Docker image does."
        )
    if not PYTHON.exists():
        say(f"creating the virtual environment in {VENV}")
        run(sys.executable, "-m", "venv", VENV)
    stamp, source = VENV / ".meshgate-installed", ROOT / "pyproject.toml"
    if not _up_to_date(stamp, source):
        say("installing Python dependencies (pinned in pyproject.toml)")
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test,dev]")
        stamp.write_text(_digest(source))


def _frontend_digest() -> str:
    """Digest of what the bundle is built from: the lock, package.json and frontend/."""
    digest = hashlib.sha256()
    sources = [ROOT / "package.json", ROOT / "package-lock.json", *sorted((ROOT / "frontend").rglob("*"))]
    for path in (p for p in sources if p.is_file()):
        digest.update(f"{path.relative_to(ROOT)}\0{_digest(path)}\0".encode())
    return digest.hexdigest()


def setup_node() -> None:
    stamp, source = ROOT / "node_modules" / ".meshgate-installed", ROOT / "package-lock.json"
    built, bundle = ROOT / "node_modules" / ".meshgate-built", ROOT / "static" / "build" / "editor.js"
    if _up_to_date(stamp, source) and bundle.exists() and built.exists() and built.read_text() == _frontend_digest():
        return
    if not shutil.which("npm"):
        sys.exit("npm is needed for the front-end libraries (install Node.js 20+)")
    if not _up_to_date(stamp, source):
        say("installing front-end libraries (npm ci, from package-lock.json)")
        run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
        stamp.write_text(_digest(source))
    say("building the editor bundle (npm run build, into static/build/)")
    run("npm", "run", "--silent", "build")
    built.write_text(_frontend_digest())


def base_env(settings: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "MESHGATE_VAR_DIR": str(VAR),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }


def wait_for(path: Path, proc: subprocess.Popen, what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            sys.exit(f"{what} exited with code {proc.returncode}; see the output above")
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not become ready within {timeout:.0f}s")
        time.sleep(0.2)
    return path.read_text().strip()


def start_prometheus(start, targets: dict[str, str]) -> str:
    """Runs Prometheus scraping the simulated clusters when it is installed; returns its URL or "".
    One scrape job per cluster, its series labelled `cluster` (meshsim's own metrics also carry Istio's
    `destination_cluster`, which every analysis query of an environment selects): the two clusters'
    traffic never mixes."""
    binary = shutil.which("prometheus")
    if not binary:
        return ""
    folder = VAR / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"  - job_name: meshsim-{cluster}\n"
        f"    static_configs: [{{targets: ['{url.split('://', 1)[1]}'], labels: {{cluster: {cluster}}}}}]\n"
        for cluster, url in targets.items()
    )
    (folder / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 5s, evaluation_interval: 5s}}\nscrape_configs:\n{jobs}"
    )
    listen = os.environ.get("MESHGATE_PROMETHEUS_LISTEN", "127.0.0.1:19090")
    start(
        "prometheus",
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={listen}",
            "--storage.tsdb.retention.time=2d",
            "--log.level=warn",
        ],
    )
    return f"http://{listen}"


def cmd_run(args: list[str]) -> int:
    setup_python()
    setup_node()
    env = base_env("portal.settings.local")
    for folder in ("meshsim", "broker/queue", "broker/processed", "run"):
        (VAR / folder).mkdir(parents=True, exist_ok=True)
    say("migrating the database and collecting static files")
    run(PYTHON, "manage.py", "migrate", "--noinput", "-v0", env=env)
    run(PYTHON, "manage.py", "collectstatic", "--noinput", "-v0", env=env)

    processes: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, command: list[str | Path], extra_env: dict | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([str(c) for c in command], cwd=ROOT, env={**env, **(extra_env or {})})
        processes.append((name, proc))
        return proc

    def stop_all(*_: object) -> None:
        say("stopping")
        for _, proc in reversed(processes):
            if proc.poll() is None:
                proc.terminate()
        for name, proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                proc.kill()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        urls = {}
        ports = {
            "staging": os.environ.get("MESHSIM_STAGING_PORT", "18081"),
            "prod": os.environ.get("MESHSIM_PROD_PORT", "18082"),
        }
        for cluster, port in ports.items():
            ready = VAR / "run" / f"meshsim-{cluster}.url"
            ready.unlink(missing_ok=True)
            proc = start(
                f"meshsim {cluster}",
                [
                    PYTHON,
                    "-m",
                    "integrations.meshsim",
                    "--name",
                    cluster,
                    "--port",
                    port,
                    "--seed",
                    ROOT / "integrations" / "meshsim" / "seeds" / f"{cluster}.yaml",
                    "--state-file",
                    VAR / "meshsim" / f"{cluster}.json",
                    "--ready-file",
                    ready,
                    "--traffic",
                ],
            )
            urls[cluster] = wait_for(ready, proc, f"meshsim {cluster}")
        prometheus_url = start_prometheus(start, dict(urls))
        say("loading the demo organization and importing both clusters")
        run(
            PYTHON,
            "manage.py",
            "seed_demo",
            "--staging-url",
            urls["staging"],
            "--prod-url",
            urls["prod"],
            "--prometheus-url",
            prometheus_url,
            env=env,
        )
        worker_ready = VAR / "run" / "worker.ready"
        worker_ready.unlink(missing_ok=True)
        worker = start(
            "worker",
            [ROOT / "docker" / "start-worker"],
            {"MESHGATE_WORKER_READY_FILE": str(worker_ready), "CELERY_CONCURRENCY": "2"},
        )
        start("beat", [ROOT / "docker" / "start-beat"])
        start("inventory", [ROOT / "docker" / "start-inventory"])
        bind = os.environ.get("MESHGATE_BIND", "127.0.0.1:8000")
        start("web", [ROOT / "docker" / "start-web"], {"MESHGATE_BIND": bind, "WEB_CONCURRENCY": "2"})
        wait_for(worker_ready, worker, "the Celery worker")
        say("")
        say(f"Meshgate is up:  http://{bind}/")
        say(f"clusters:        staging {urls['staging']}   prod {urls['prod']}")
        say(f"metrics:         {prometheus_url or 'read from meshsim directly (install prometheus for the real one)'}")
        say(f"rollouts:        http://{bind}/rollouts/  (two canaries on staging: one rolls back, one promotes)")
        say("demo logins (password 'meshgate-demo'):")
        for username, role in DEMO_USERS:
            say(f"  {username:<6} {role}")
        say("press Ctrl-C to stop everything")
        while True:
            for name, proc in processes:
                if proc.poll() is not None:
                    say(f"{name} exited with code {proc.returncode}")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_all()


def cmd_test(args: list[str]) -> int:
    setup_python()
    setup_node()
    env = base_env("portal.settings.test")
    VAR.mkdir(parents=True, exist_ok=True)
    return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env)


CHECKS = [
    ("ruff lint", ["ruff", "check", "."]),
    ("ruff format", ["ruff", "format", "--check", "."]),
    ("mypy", ["mypy"]),  # the packages and flags are in pyproject.toml [tool.mypy]
    ("import contracts", ["lint-imports"]),
    ("import cycles", ["python", ".ci/import_cycles.py", "policies", "portal", "integrations"]),
]


def cmd_check(args: list[str]) -> int:
    """Every check, each run even when one before it failed; the exit status is 1 if any failed."""
    setup_python()
    env = base_env("portal.settings.test")
    failed = []
    for name, command in CHECKS:
        say(f"check: {name}")
        if subprocess.call([str(BIN / command[0]), *command[1:]], cwd=ROOT, env=env) != 0:
            failed.append(name)
    if failed:
        say(f"checks failed: {', '.join(failed)}")
        return 1
    say("checks passed")
    return 0


COMMANDS = {"run": cmd_run, "test": cmd_test, "check": cmd_check}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
