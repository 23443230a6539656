"""Production settings, the Content-Security-Policy, /metrics and login throttling."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "portal.settings.production",
    "DJANGO_SECRET_KEY": "x" * 20 + "production-secret-key-for-the-check-only-0123456789",
    "MESHGATE_FIELD_ENCRYPTION_KEY": "dGVzdC1vbmx5LW1lc2hnYXRlLWZpZWxkLWtleS0zMiE=",
    "MESHGATE_AUDIT_KEY": "audit-key-from-the-secret-store",
    "DATABASE_URL": "postgres://meshgate@db.invalid:5432/meshgate",
    "CELERY_BROKER_URL": "redis://redis.invalid:6379/0",
    "MESHGATE_CACHE_URL": "redis://redis.invalid:6379/1",
    "DJANGO_ALLOWED_HOSTS": "meshgate.example.com",
}


def _manage(*args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "MESHGATE_AUDIT"))}
    env.update(PRODUCTION_ENV, PYTHONPATH=str(ROOT), **extra)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_the_deploy_check_with_no_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_to_start_without_the_audit_key():
    result = _manage("check", MESHGATE_AUDIT_KEY="")
    assert result.returncode != 0 and "MESHGATE_AUDIT_KEY must be set in production" in result.stderr


def test_metrics_are_closed_without_a_token_in_production(db, client, settings):
    settings.MESHGATE_METRICS_OPEN = False
    settings.MESHGATE_METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 403 and b"MESHGATE_METRICS_TOKEN" in response.content
    settings.MESHGATE_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_pages_carry_a_content_security_policy_without_inline_scripts(client, org):
    client.force_login(org.author)
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    script_src = policy.split("script-src")[1].split(";")[0]
    assert "'self'" in script_src and "'unsafe-inline'" not in script_src and "*" not in script_src
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    page = response.content.decode()
    for handler in ("onclick=", "onchange=", "onsubmit=", "hx-on"):
        assert handler not in page


# --- login throttling -------------------------------------------------------------------------------


class CountingHasher(MD5PasswordHasher):
    """Counts password checks: a locked-out login must not reach the hash at all."""

    algorithm = "counting-md5"
    checks = 0

    def verify(self, password, encoded):
        CountingHasher.checks += 1
        return super().verify(password, encoded)


@pytest.fixture
def counted(db, settings):
    settings.PASSWORD_HASHERS = ["tests.portal.test_hardening.CountingHasher"]
    settings.AXES_FAILURE_LIMIT = 5
    CountingHasher.checks = 0
    user = UserFactory(username="victim")
    user.set_password("the-right-one")
    user.save()
    return user


def _login(username: str, password: str, address: str = "203.0.113.7") -> int:
    return Client(REMOTE_ADDR=address).post(reverse("login"), {"username": username, "password": password}).status_code


def test_guessing_a_password_locks_the_account_before_any_more_hashing(counted):
    for attempt in range(4):
        assert _login("victim", f"guess-{attempt}", address=f"198.51.100.{attempt + 1}") == 200  # the form again
    assert _login("victim", "guess-5", address="198.51.100.5") == 429  # the fifth failure locks
    hashed = CountingHasher.checks
    # Locked: from a fresh address, even the right password is refused, and no hash is computed.
    assert _login("victim", "the-right-one", address="192.0.2.99") == 429
    assert _login("victim", "another-guess", address="192.0.2.100") == 429
    assert CountingHasher.checks == hashed


def test_one_address_trying_many_accounts_is_locked_out(counted):
    for attempt in range(4):
        assert _login(f"user-{attempt}", "password") == 200
    assert _login("user-5", "password") == 429
    hashed = CountingHasher.checks
    assert _login("victim", "the-right-one") == 429
    assert CountingHasher.checks == hashed
    # Another address is not affected.
    assert _login("victim", "the-right-one", address="192.0.2.1") == 302


def test_a_success_before_the_limit_resets_the_count(counted):
    for attempt in range(4):
        _login("victim", f"guess-{attempt}")
    assert _login("victim", "the-right-one") == 302
    for attempt in range(4):
        assert _login("victim", f"guess-{attempt}", address="192.0.2.50") == 200
    assert _login("victim", "the-right-one", address="192.0.2.50") == 302
