"""docker/start-*: the one way each process starts, in the image, compose, `dev.py run` and the
tests' worker fixture. Checked statically, and start-web for real: it serves /healthz and stops
on SIGTERM."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.docker import DOCKER, REPO, START_SCRIPTS

VENV_BIN = Path(sys.executable).parent
PRODUCTION_REQUIRED = (
    "DJANGO_SECRET_KEY",
    "MESHGATE_FIELD_ENCRYPTION_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "MESHGATE_CACHE_URL",
    "MESHGATE_AUDIT_KEY",
    "DJANGO_ALLOWED_HOSTS",
)
PRODUCTION_VALUES = {
    "DJANGO_SECRET_KEY": "test-only-not-a-secret",
    "MESHGATE_FIELD_ENCRYPTION_KEY": "dGVzdC1vbmx5LW1lc2hnYXRlLWZpZWxkLWtleS0zMiE=",
    "DATABASE_URL": "postgres://meshgate@127.0.0.1:5432/meshgate",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "MESHGATE_CACHE_URL": "redis://127.0.0.1:6379/1",
    "MESHGATE_AUDIT_KEY": "test-only-not-a-secret",
    "DJANGO_ALLOWED_HOSTS": "localhost",
}


@pytest.mark.parametrize("name", START_SCRIPTS)
def test_start_script_is_an_executable_bash_script(name):
    path = DOCKER / name
    assert path.is_file()
    assert os.access(path, os.X_OK), f"{name} is not executable (git keeps the mode: chmod +x)"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    # The image keeps docker/ under the app directory: each script starts from there.
    assert 'cd "$(dirname "$0")/.."' in lines
    # exec: the server, not bash, is PID 1 and gets the container's SIGTERM.
    assert any(line.startswith("exec ") for line in lines)


@pytest.mark.parametrize("name", START_SCRIPTS)
def test_start_script_parses(name):
    result = subprocess.run(["bash", "-n", str(DOCKER / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def test_start_web_serves_healthz_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "MESHGATE_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "MESHGATE_MIGRATE_ON_START": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        # Started from elsewhere: the script finds the repository by itself.
        proc = subprocess.Popen(
            [str(DOCKER / "start-web")], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            status = None
            while status != 200:
                if proc.poll() is not None:
                    pytest.fail(f"start-web exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"/healthz did not answer 200 within 90 s (last: {status}):\n{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.2)
                status = _get(f"http://127.0.0.1:{port}/healthz")
            proc.terminate()
            returncode = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert returncode == 0, log_path.read_text()[-4000:]
    assert _get(f"http://127.0.0.1:{port}/healthz") is None


def _setup_production(env_overrides: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_REQUIRED}
    env.update({k: v for k, v in PRODUCTION_VALUES.items()})
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings.production"
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_load_with_every_required_variable():
    result = _setup_production({})
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("name", PRODUCTION_REQUIRED)
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_production_settings_refuse_to_load_without(name, value):
    result = _setup_production({name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name} must be set in production" in result.stderr
