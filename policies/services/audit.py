"""The append-only, keyed audit log: writing a row, sealing committed rows into the chain, verifying.

Appending takes no shared lock: a row gets its sequence from a database sequence (PostgreSQL; on
SQLite, whose writers are serialized anyway, a counter row) and an HMAC of its content with the
audit key (`MESHGATE_AUDIT_KEY`, from the environment: it never lives in the database). Once the
transaction that wrote it commits, the sealer chains it: in a short transaction of its own (no
network I/O, no other work) it appends one `AuditSeal` per committed, unsealed row, each an HMAC
over its position, the row's sequence and hash and the previous seal. A periodic task seals what an
interrupted commit hook left. Every seal run logs an anchor (position and chain) to the
application log, outside the database, so even a truncated tail can be proven against the logs.

`audit_verify_chain` recomputes every row's HMAC and every seal: an edited row (even with every
hash recomputed, which takes the key), a removed row or seal, and an inserted row are all named.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from policies.constants import GENESIS_HASH
from policies.models import AuditChainHead, AuditEvent, AuditSeal
from policies.models.audit import HASH_HMAC
from portal.middleware import current_request_id

SYSTEM_ACTOR = "system"
HEAD_PK = 1
SQLITE_COUNTER_PK = 2
PG_SEQUENCE = "policies_auditevent_sequence_seq"
SEAL_BATCH = 5000
AUDIT_INSERT_BATCH = 1000
logger = logging.getLogger(__name__)


def audit_key() -> bytes:
    """The HMAC key: `MESHGATE_AUDIT_KEY`; on the embedded default, derived from SECRET_KEY (production
    refuses to start without its own key)."""
    configured = getattr(settings, "MESHGATE_AUDIT_KEY", "") or ""
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"meshgate-audit-chain", hashlib.sha256).digest()


def _next_sequence() -> int:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s)", [PG_SEQUENCE])
            return int(cursor.fetchone()[0])
    # SQLite: the UPDATE takes the database's write lock first, so no two writers read the same value.
    if not AuditChainHead.objects.filter(pk=SQLITE_COUNTER_PK).update(sequence=F("sequence") + 1):
        last = AuditEvent.objects.aggregate(last=models.Max("sequence"))["last"] or 0
        AuditChainHead.objects.create(pk=SQLITE_COUNTER_PK, sequence=last + 1, last_hash="")
    return AuditChainHead.objects.values_list("sequence", flat=True).get(pk=SQLITE_COUNTER_PK)


def _next_sequences(count: int) -> list[int]:
    """`count` fresh sequence numbers, ascending (one round trip)."""
    if count <= 0:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [PG_SEQUENCE, count])
            return sorted(int(row[0]) for row in cursor.fetchall())
    if not AuditChainHead.objects.filter(pk=SQLITE_COUNTER_PK).update(sequence=F("sequence") + count):
        last = AuditEvent.objects.aggregate(last=models.Max("sequence"))["last"] or 0
        AuditChainHead.objects.create(pk=SQLITE_COUNTER_PK, sequence=last + count, last_hash="")
    end = AuditChainHead.objects.values_list("sequence", flat=True).get(pk=SQLITE_COUNTER_PK)
    return list(range(end - count + 1, end + 1))


def _event(
    *,
    sequence: int,
    action: str,
    user: User | None,
    obj: models.Model | None,
    environment: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    key: bytes,
) -> AuditEvent:
    event = AuditEvent(
        sequence=sequence,
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
        prev_hash="",
        hash_version=HASH_HMAC,
    )
    event.hash = event.compute_hash(key)
    return event


@dataclass(frozen=True)
class AuditEntry:
    """One event of a batch (`audit_record_many`)."""

    action: str
    obj: models.Model | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


def audit_record_many(
    *,
    entries: list[AuditEntry],
    actor: User | AnonymousUser | None = None,
    environment: str = "",
) -> list[AuditEvent]:
    """Appends `entries` as consecutive events in their order (their sequences ascend as the list does),
    with one round trip for the sequences and batched inserts: what `audit_record` does per event, for
    a service that records many at once (an import). Call it inside the transaction of the changes."""
    user = actor if actor is not None and actor.is_authenticated else None
    if not entries:
        return []
    key = audit_key()
    with transaction.atomic():
        sequences = _next_sequences(len(entries))
        events = [
            _event(
                sequence=sequence,
                action=entry.action,
                user=user,
                obj=entry.obj,
                environment=environment,
                before=entry.before,
                after=entry.after,
                key=key,
            )
            for sequence, entry in zip(sequences, entries, strict=True)
        ]
        AuditEvent.objects.bulk_create(events, batch_size=AUDIT_INSERT_BATCH)
    transaction.on_commit(_seal_after_commit)
    return events


def audit_record(
    *,
    action: str,
    actor: User | AnonymousUser | None = None,
    obj: models.Model | None = None,
    environment: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Appends one event. Call it inside the transaction of the change it records; it holds no lock
    another request needs, and the event is sealed into the chain once that transaction commits."""
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        event = _event(
            sequence=_next_sequence(),
            action=action,
            user=user,
            obj=obj,
            environment=environment,
            before=before,
            after=after,
            key=audit_key(),
        )
        event.save(force_insert=True)
    transaction.on_commit(_seal_after_commit)
    return event


def _seal_after_commit() -> None:
    try:
        audit_seal()
    except Exception:
        logger.exception("audit: sealing after commit failed; the periodic sealer will retry")


def _seal_mac(key: bytes, position: int, sequence: int, event_hash: str, prev: str) -> str:
    return hmac.new(key, f"{position}|{sequence}|{event_hash}|{prev}".encode(), hashlib.sha256).hexdigest()


def audit_seal(*, limit: int = SEAL_BATCH) -> int:
    """Chains the committed, unsealed rows (oldest sequence first); returns how many it sealed. One
    short transaction holding the head row; a concurrent sealer waits for it, then finds nothing."""
    key = audit_key()
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(
            pk=HEAD_PK, defaults={"sequence": 0, "last_hash": GENESIS_HASH}
        )
        pending = list(
            AuditEvent.objects.filter(seal__isnull=True)
            .order_by("sequence")
            .values_list("pk", "sequence", "hash")[:limit]
        )
        if not pending:
            return 0
        position, prev = head.sequence, head.last_hash
        seals = []
        for pk, sequence, event_hash in pending:
            position += 1
            chain = _seal_mac(key, position, sequence, event_hash, prev)
            seals.append(
                AuditSeal(
                    position=position,
                    event_id=pk,
                    event_sequence=sequence,
                    event_hash=event_hash,
                    prev=prev,
                    chain=chain,
                )
            )
            prev = chain
        AuditSeal.objects.bulk_create(seals)
        AuditChainHead.objects.filter(pk=HEAD_PK).update(sequence=position, last_hash=prev)
    logger.info(
        "audit anchor: position %s chain %s",
        position,
        prev,
        extra={"audit_anchor_position": position, "audit_anchor_chain": prev},
    )
    return len(seals)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_sequence: int | None = None
    reason: str = ""
    unsealed: int = 0


def _row_ok(event: AuditEvent, key: bytes) -> bool:
    return hmac.compare_digest(event.compute_hash(key), event.hash)


def audit_verify_chain(*, seal: bool = True) -> ChainReport:
    """Seals what has committed (unless `seal=False`), then recomputes every row's hash and every seal
    in chain order; names the first row that does not verify."""
    if seal:
        while audit_seal():
            pass
    key = audit_key()
    expected_prev = GENESIS_HASH
    checked = 0
    seals = AuditSeal.objects.order_by("position").values_list(
        "position", "event_id", "event_sequence", "event_hash", "prev", "chain"
    )
    batch: list[tuple] = []

    def check(rows: list[tuple]) -> ChainReport | None:
        nonlocal expected_prev, checked
        events = AuditEvent.objects.in_bulk([row[1] for row in rows])
        for position, event_id, sequence, event_hash, prev, chain in rows:
            if position != checked + 1:
                return ChainReport(False, checked, sequence, f"the seal before row #{sequence} is missing")
            if prev != expected_prev or not hmac.compare_digest(
                _seal_mac(key, position, sequence, event_hash, prev), chain
            ):
                return ChainReport(False, checked, sequence, "its seal does not match the chain")
            event = events.get(event_id)
            if event is None:
                return ChainReport(False, checked, sequence, f"row #{sequence} is missing")
            if event.sequence != sequence or event.hash != event_hash or not _row_ok(event, key):
                return ChainReport(False, checked, sequence, "its content does not match its hash")
            expected_prev = chain
            checked += 1
        return None

    for row in seals.iterator(chunk_size=2000):
        batch.append(row)
        if len(batch) >= 2000:
            if (report := check(batch)) is not None:
                return report
            batch = []
    if batch and (report := check(batch)) is not None:
        return report
    head = AuditChainHead.objects.filter(pk=HEAD_PK).first()
    if head is not None and (head.sequence != checked or head.last_hash != expected_prev):
        return ChainReport(False, checked, checked + 1, "rows after the last one found have been removed")
    unsealed = 0
    for event in AuditEvent.objects.filter(seal__isnull=True).order_by("sequence").iterator(chunk_size=2000):
        if not _row_ok(event, key):
            return ChainReport(
                False, checked, event.sequence, "it was not written by Meshgate (its hash does not verify)"
            )
        unsealed += 1
    return ChainReport(True, checked, unsealed=unsealed)
