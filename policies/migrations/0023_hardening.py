"""Hardening: the platform role; the keyed, lock-free audit chain (seals); SQLite refusing DELETE.

- `policies.govern_platform`: platform-wide governance, apart from a team's admin role.
- `AuditEvent.hash_version` (1: the SHA-256 era, 2: HMAC with MESHGATE_AUDIT_KEY) and `AuditSeal`,
  the chain in commit order; existing rows are sealed here, with the key of this deployment.
- PostgreSQL: a sequence hands out event numbers (no lock between writers); seals are immutable.
- SQLite refuses DELETE on revisions, events and seals as PostgreSQL does: the trigger asks
  `meshgate_delete_allowed()`, a function each connection registers (policies.apps) that says no
  except while the test suite flushes its tables.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

IMMUTABLE = ("policies_policyrevision", "policies_auditevent", "policies_auditseal")


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            "CREATE TRIGGER policies_auditseal_immutable BEFORE UPDATE OR DELETE ON policies_auditseal "
            "FOR EACH ROW EXECUTE FUNCTION meshgate_forbid_change();"
        )
        schema_editor.execute("CREATE SEQUENCE IF NOT EXISTS policies_auditevent_sequence_seq")
        schema_editor.execute(
            "SELECT setval('policies_auditevent_sequence_seq', "
            "GREATEST((SELECT COALESCE(MAX(sequence), 0) FROM policies_auditevent), 1), "
            "(SELECT COUNT(*) > 0 FROM policies_auditevent))"
        )
    elif vendor == "sqlite":
        # SQLite rebuilt policies_auditevent for the new column, which drops its triggers: all again.
        for table in IMMUTABLE:
            schema_editor.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_immutable BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are immutable'); END;"
            )
        for table in IMMUTABLE:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_undeletable BEFORE DELETE ON {table} "
                f"WHEN meshgate_delete_allowed() IS NOT 1 "
                f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are immutable (DELETE refused)'); END;"
            )


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS policies_auditseal_immutable ON policies_auditseal;")
        schema_editor.execute("DROP SEQUENCE IF EXISTS policies_auditevent_sequence_seq")
    elif vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS policies_auditseal_immutable;")
        for table in IMMUTABLE:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_undeletable;")


def seal_existing(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    from policies.services.audit import HEAD_PK, _seal_mac, audit_key

    AuditEvent = apps.get_model("policies", "AuditEvent")
    AuditSeal = apps.get_model("policies", "AuditSeal")
    AuditChainHead = apps.get_model("policies", "AuditChainHead")
    key = audit_key()
    position, prev = 0, "0" * 64
    seals = []
    for pk, sequence, event_hash in AuditEvent.objects.order_by("sequence").values_list("pk", "sequence", "hash"):
        position += 1
        chain = _seal_mac(key, position, sequence, event_hash, prev)
        seals.append(
            AuditSeal(
                position=position, event_id=pk, event_sequence=sequence, event_hash=event_hash, prev=prev, chain=chain
            )
        )
        prev = chain
    AuditSeal.objects.bulk_create(seals, batch_size=2000)
    AuditChainHead.objects.update_or_create(pk=HEAD_PK, defaults={"sequence": position, "last_hash": prev})


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0022_environment_metrics_scope"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="team",
            options={
                "ordering": ["name"],
                "permissions": [
                    (
                        "govern_platform",
                        "Govern the platform: approval rules, guardrails, windows, environments, "
                        "imports and the whole audit log",
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.CreateModel(
            name="AuditSeal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("position", models.PositiveBigIntegerField(unique=True)),
                ("event_sequence", models.PositiveBigIntegerField()),
                ("event_hash", models.CharField(max_length=64)),
                ("prev", models.CharField(max_length=64)),
                ("chain", models.CharField(max_length=64, unique=True)),
                ("sealed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "event",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT, related_name="seal", to="policies.auditevent"
                    ),
                ),
            ],
            options={"ordering": ["position"]},
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
        migrations.RunPython(forwards, backwards),
    ]
