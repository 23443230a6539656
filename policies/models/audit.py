import hashlib
import hmac
import json
from typing import Any, NoReturn

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from policies.constants import GENESIS_HASH
from policies.exceptions import ImmutableError


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise ImmutableError("the audit log is append-only")

    def delete(self) -> NoReturn:
        raise ImmutableError("the audit log is append-only")


HASH_SHA256 = 1
"""Rows written before the keyed chain: a plain SHA-256 over the row (bound by their seals since)."""
HASH_HMAC = 2
"""HMAC-SHA256 over the row with the audit key, which lives outside the database."""


class AuditEvent(models.Model):
    """One state change or cluster write, keyed with an HMAC of its content (`hash`). Rows are
    appended without any shared lock; `AuditSeal` rows chain them in the order they committed."""

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # PROTECT: deleting a user must not rewrite history; deactivate users instead.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_name = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    environment = models.CharField(max_length=63, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    prev_hash = models.CharField(max_length=64, blank=True)
    """The previous row's hash for rows of the SHA-256 era; empty since (their seal holds the link)."""
    hash = models.CharField(max_length=64, unique=True)
    hash_version = models.PositiveSmallIntegerField(default=HASH_SHA256)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_repr}"

    def compute_hash(self, key: bytes | None = None) -> str:
        """The row's hash over everything it records (plus the previous row's hash): an HMAC with `key`
        for keyed rows, a plain SHA-256 for rows of the SHA-256 era."""
        payload = {
            "sequence": self.sequence,
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_name": self.actor_name,
            "request_id": self.request_id,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "environment": self.environment,
            "before": self.before,
            "after": self.after,
            "prev_hash": self.prev_hash,
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder).encode()
        if self.hash_version == HASH_HMAC:
            if key is None:
                raise ValueError("a keyed audit row needs the audit key")
            return hmac.new(key, canonical, hashlib.sha256).hexdigest()
        return hashlib.sha256(canonical).hexdigest()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError("the audit log is append-only")


class AuditSeal(models.Model):
    """The chain: one seal per event, in the order the sealer found them committed. `chain` is
    HMAC(key, position | event sequence | event hash | previous chain), so an edited, removed or
    inserted row (or seal) breaks it, and nobody without the key can recompute it."""

    position = models.PositiveBigIntegerField(unique=True)
    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="seal")
    event_sequence = models.PositiveBigIntegerField()
    event_hash = models.CharField(max_length=64)
    prev = models.CharField(max_length=64)
    chain = models.CharField(max_length=64, unique=True)
    sealed_at = models.DateTimeField(default=timezone.now)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return f"seal {self.position} of #{self.event_sequence}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError("the audit log is append-only")


class AuditChainHead(models.Model):
    """pk=1: the last seal (position and chain), updated by the sealer in a short transaction of its
    own. pk=2 on SQLite: the event counter (SQLite serializes writers anyway; PostgreSQL uses a
    sequence, so appends never wait for each other)."""

    sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
