# Rollout executor leases, other writers' managedFields digests, single-flight leases.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0023_hardening"),
    ]

    operations = [
        migrations.CreateModel(
            name="Lease",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=100, unique=True)),
                ("token", models.CharField(max_length=32)),
                ("expires_at", models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name="rollout",
            name="lease_expires_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the executor's lease lapses (a killed worker's lease is taken over after it).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="rollout",
            name="lease_token",
            field=models.CharField(
                blank=True, help_text="The executor acting on this rollout now (empty: none).", max_length=32
            ),
        ),
        migrations.AddField(
            model_name="rollout",
            name="others",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Per identity: digest of the managedFields entries of the other field managers, as Meshgate last saw them (a change in it is another writer's edit; a change of Meshgate's own entry is not).",
            ),
        ),
    ]
