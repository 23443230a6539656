import hashlib
import hmac

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from policies.constants import GENESIS_HASH
from policies.exceptions import ImmutableError
from policies.models import AuditChainHead, AuditEvent, AuditSeal
from policies.models.audit import HASH_HMAC, HASH_SHA256
from policies.services.audit import audit_key, audit_record, audit_seal, audit_verify_chain
from tests.factories import UserFactory, restart_audit_numbers


def _tamper(*statements: tuple[str, list]) -> None:
    """What an attacker with database access would do: bypass the guards, then edit rows."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")  # superuser: triggers off
            for sql, params in statements:
                cursor.execute(sql, params)
            cursor.execute("SET session_replication_role = origin")
        else:
            for table in ("policies_auditevent", "policies_auditseal"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable")
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_undeletable")
            for sql, params in statements:
                cursor.execute(sql, params)


@pytest.fixture
def chain(db):
    restart_audit_numbers()
    user = UserFactory(username="auditor")
    events = [
        audit_record(action="test.one", actor=user, after={"n": 1}),
        audit_record(action="test.two", actor=None, before={"n": 1}, after={"n": 2, "when": "now"}),
        audit_record(action="test.three", actor=user, environment="prod", after={"list": [1, 2, 3]}),
    ]
    audit_seal()  # what the commit hook does once the request's transaction commits
    return events


def test_events_are_keyed_and_sealed_in_order(chain):
    stored = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in stored] == [1, 2, 3]
    assert all(e.hash_version == HASH_HMAC and e.hash == e.compute_hash(audit_key()) for e in stored)
    assert stored[0].hash != stored[0].compute_hash(b"another key")
    seals = list(AuditSeal.objects.order_by("position"))
    assert [(s.position, s.event_sequence, s.event_hash) for s in seals] == [
        (i + 1, e.sequence, e.hash) for i, e in enumerate(stored)
    ]
    assert seals[0].prev == GENESIS_HASH and seals[1].prev == seals[0].chain and seals[2].prev == seals[1].chain
    assert stored[0].actor_name == "auditor" and stored[1].actor_name == "system"


def test_the_key_comes_from_settings_not_the_database(settings, chain):
    assert audit_verify_chain().ok
    settings.MESHGATE_AUDIT_KEY = "a different key"
    report = audit_verify_chain()
    assert not report.ok and report.broken_sequence == 1


def test_an_untouched_chain_verifies(chain, capsys):
    assert audit_verify_chain().ok
    call_command("audit_verify")
    assert "audit chain OK: 3 rows verified" in capsys.readouterr().out


def test_a_tampered_row_is_named(chain):
    _tamper(("UPDATE policies_auditevent SET actor_name = %s WHERE sequence = %s", ["mallory", 2]))
    report = audit_verify_chain()
    assert not report.ok
    assert report.broken_sequence == 2
    assert report.checked == 1
    with pytest.raises(CommandError, match=r"BROKEN at row #2: its content does not match its hash"):
        call_command("audit_verify")


JSON = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"


def test_an_edited_row_with_every_hash_recomputed_is_detected(chain):
    """The attacker rewrites row #2 and recomputes its hash, every seal after it and the head, with
    everything the database holds, but not the key (which lives in the environment)."""
    event = AuditEvent.objects.get(sequence=2)
    event.after = {"n": 999}
    for version, key in ((HASH_SHA256, None), (HASH_HMAC, b"guessed key")):
        event.hash_version = version
        forged = event.compute_hash(key)
        statements = [
            (
                f"UPDATE policies_auditevent SET after = {JSON}, hash = %s, hash_version = %s WHERE sequence = 2",
                ['{"n": 999}', forged, version],
            )
        ]
        prev = AuditSeal.objects.get(position=1).chain
        for seal in AuditSeal.objects.filter(position__gte=2).order_by("position"):
            event_hash = forged if seal.position == 2 else seal.event_hash
            message = f"{seal.position}|{seal.event_sequence}|{event_hash}|{prev}".encode()
            chain_hash = hmac.new(b"guessed key", message, hashlib.sha256).hexdigest()
            statements.append(
                (
                    "UPDATE policies_auditseal SET event_hash = %s, prev = %s, chain = %s WHERE position = %s",
                    [event_hash, prev, chain_hash, seal.position],
                )
            )
            prev = chain_hash
        statements.append(("UPDATE policies_auditchainhead SET last_hash = %s WHERE id = 1", [prev]))
        _tamper(*statements)
        report = audit_verify_chain()
        assert (report.ok, report.broken_sequence) == (False, 2), version
        with pytest.raises(CommandError, match=r"BROKEN at row #2"):
            call_command("audit_verify")


def test_a_removed_row_is_detected(chain):
    _tamper(("DELETE FROM policies_auditevent WHERE sequence = %s", [2]))
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 2)
    assert "missing" in report.reason
    _tamper(("DELETE FROM policies_auditseal WHERE event_sequence = %s", [2]))  # no dangling key at teardown


def test_a_removed_row_and_its_seal_are_detected(chain):
    _tamper(
        ("DELETE FROM policies_auditseal WHERE event_sequence = %s", [2]),
        ("DELETE FROM policies_auditevent WHERE sequence = %s", [2]),
    )
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 3)
    assert "seal before row #3 is missing" in report.reason


def test_removing_the_newest_rows_is_detected(chain):
    _tamper(("DELETE FROM policies_auditevent WHERE sequence = %s", [3]))
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 3)
    _tamper(("DELETE FROM policies_auditseal WHERE event_sequence = %s", [3]))
    report = audit_verify_chain()
    assert not report.ok and "removed" in report.reason


def test_an_inserted_row_is_detected(chain):
    forged = AuditEvent(
        sequence=4,
        actor_name="system",
        action="test.forged",
        hash_version=HASH_HMAC,
        created_at=AuditEvent.objects.get(sequence=3).created_at,
    )
    forged.hash = forged.compute_hash(b"guessed key")
    forged.save(force_insert=True)
    report = audit_verify_chain(seal=False)
    assert (report.ok, report.broken_sequence) == (False, 4)
    assert "not written by Meshgate" in report.reason


def test_appending_takes_no_lock_until_the_transaction_commits(chain):
    """Inside a long transaction the event is written but not sealed; the head row is untouched."""
    head_before = AuditChainHead.objects.values_list("sequence", "last_hash").get(pk=1)
    with transaction.atomic():
        audit_record(action="test.in-a-long-transaction")
        assert AuditChainHead.objects.values_list("sequence", "last_hash").get(pk=1) == head_before
    report = audit_verify_chain(seal=False)
    assert report.ok and report.unsealed == 1
    assert audit_verify_chain().ok and AuditSeal.objects.count() == 4


def test_the_orm_refuses_to_change_or_delete_events(chain):
    event = AuditEvent.objects.get(sequence=1)
    event.action = "rewritten"
    with pytest.raises(ImmutableError):
        event.save()
    with pytest.raises(ImmutableError):
        event.delete()
    with pytest.raises(ImmutableError):
        AuditEvent.objects.filter(sequence=1).update(action="rewritten")
    with pytest.raises(ImmutableError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(sequence=1).action == "test.one"


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_updates_that_bypass_the_orm():
    restart_audit_numbers()
    audit_record(action="test.guarded")
    with pytest.raises(Exception, match="immutable"):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE policies_auditevent SET action = 'x'")
    assert AuditEvent.objects.get().action == "test.guarded"
    # SQLite refuses DELETE as PostgreSQL does.
    with pytest.raises(Exception, match="immutable"):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM policies_auditevent")
    with pytest.raises(Exception, match="immutable"):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM policies_auditseal")
    assert AuditEvent.objects.count() == 1 and AuditSeal.objects.count() == 1
