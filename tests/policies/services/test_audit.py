import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from policies.constants import GENESIS_HASH
from policies.exceptions import ImmutableError
from policies.models import AuditEvent
from policies.services.audit import audit_record, audit_verify_chain
from tests.factories import UserFactory


def _tamper(sql: str, params: list) -> None:
    """What an attacker with database access would do: bypass the guards, then edit a row."""
    table = "policies_auditevent"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")  # superuser: triggers off
            cursor.execute(sql, params)
            cursor.execute("SET session_replication_role = origin")
        else:
            cursor.execute(f"DROP TRIGGER {table}_immutable")
            cursor.execute(sql, params)


@pytest.fixture
def chain(db):
    user = UserFactory(username="auditor")
    return [
        audit_record(action="test.one", actor=user, after={"n": 1}),
        audit_record(action="test.two", actor=None, before={"n": 1}, after={"n": 2, "when": "now"}),
        audit_record(action="test.three", actor=user, environment="prod", after={"list": [1, 2, 3]}),
    ]


def test_events_link_each_to_the_previous_hash(chain):
    stored = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in stored] == [1, 2, 3]
    assert stored[0].prev_hash == GENESIS_HASH
    assert stored[1].prev_hash == stored[0].hash
    assert stored[2].prev_hash == stored[1].hash
    assert stored[0].actor_name == "auditor" and stored[1].actor_name == "system"


def test_an_untouched_chain_verifies(chain, capsys):
    assert audit_verify_chain().ok
    call_command("audit_verify")
    assert "audit chain OK: 3 rows verified" in capsys.readouterr().out


def test_a_tampered_row_is_named(chain):
    _tamper("UPDATE policies_auditevent SET actor_name = %s WHERE sequence = %s", ["mallory", 2])
    report = audit_verify_chain()
    assert not report.ok
    assert report.broken_sequence == 2
    assert report.checked == 1
    with pytest.raises(CommandError, match=r"BROKEN at row #2: its content does not match its hash"):
        call_command("audit_verify")


def test_a_rehashed_row_still_breaks_the_next_link(chain):
    event = AuditEvent.objects.get(sequence=2)
    event.after = {"n": 999}
    forged = event.compute_hash()
    json_param = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    _tamper(f"UPDATE policies_auditevent SET after = {json_param}, hash = %s WHERE sequence = 2",
            ['{"n": 999}', forged])
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 3)
    assert "previous-hash" in report.reason


def test_a_removed_row_is_detected(chain):
    _tamper("DELETE FROM policies_auditevent WHERE sequence = %s", [2])
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 2)
    assert "missing" in report.reason


def test_removing_the_newest_rows_is_detected(chain):
    _tamper("DELETE FROM policies_auditevent WHERE sequence = %s", [3])
    report = audit_verify_chain()
    assert (report.ok, report.broken_sequence) == (False, 3)


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
    audit_record(action="test.guarded")
    with pytest.raises(Exception, match="immutable"):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE policies_auditevent SET action = 'x'")
    assert AuditEvent.objects.get().action == "test.guarded"
    if connection.vendor == "postgresql":
        with pytest.raises(Exception, match="immutable"):
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM policies_auditevent")
        assert AuditEvent.objects.count() == 1
