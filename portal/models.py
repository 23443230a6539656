"""Accounts-side models: API tokens for pipelines and the workers' task counters."""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.choices import TokenScope

TOKEN_PREFIX = "mgt"


def token_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_token_material() -> tuple[str, str]:
    """Returns (key_id, plaintext). Only the key id and the digest are ever stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_id = models.CharField(max_length=12, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.key_id}_…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.enabled and not self.is_expired

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or (scope == TokenScope.READ and TokenScope.WRITE in self.scopes)


class TaskStat(models.Model):
    """How often each Celery task ended in each outcome; read by /metrics across processes."""

    task = models.CharField(max_length=200)
    outcome = models.CharField(max_length=20)
    count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "outcome"], name="unique_task_outcome")]
