"""The append-only, hash-chained audit log: writing a row and verifying the chain."""
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from policies.constants import GENESIS_HASH
from policies.models import AuditChainHead, AuditEvent
from portal.middleware import current_request_id

SYSTEM_ACTOR = "system"


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    obj: models.Model | None = None,
    environment: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Appends one event. Call it inside the transaction of the change it records."""
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        # The UPDATE takes the row lock first (PostgreSQL) or the write lock (SQLite), so appends
        # are serialized before anyone reads the head: the chain cannot fork.
        if not AuditChainHead.objects.filter(pk=1).update(sequence=F("sequence") + 1):
            AuditChainHead.objects.create(pk=1, sequence=1)
        head = AuditChainHead.objects.get(pk=1)
        event = AuditEvent(
            sequence=head.sequence,
            created_at=timezone.now(),
            actor=user,
            actor_name=user.get_username() if user else SYSTEM_ACTOR,
            request_id=current_request_id(),
            action=action,
            object_type=obj._meta.label if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=str(obj)[:300] if obj is not None else "",
            environment=environment,
            before=before,
            after=after,
            prev_hash=head.last_hash,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
        AuditChainHead.objects.filter(pk=1).update(last_hash=event.hash)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_sequence: int | None = None
    reason: str = ""


def audit_verify_chain() -> ChainReport:
    """Recomputes every hash in order; names the first row that does not verify."""
    expected_prev = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000):
        if event.sequence != expected_sequence:
            return ChainReport(False, checked, expected_sequence, f"row #{expected_sequence} is missing")
        if event.prev_hash != expected_prev:
            return ChainReport(False, checked, event.sequence, "its previous-hash does not match the row before it")
        if event.compute_hash() != event.hash:
            return ChainReport(False, checked, event.sequence, "its content does not match its hash")
        expected_prev = event.hash
        expected_sequence += 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.sequence != checked or head.last_hash != expected_prev):
        return ChainReport(False, checked, checked + 1, "rows after the last one found have been removed")
    return ChainReport(True, checked)
