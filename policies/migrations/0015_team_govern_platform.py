from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0010_change_rollout_options"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="team",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("govern_platform", "Govern the platform: approval rules, guardrails, windows, environments, "
                                        "imports and the whole audit log"),
                ],
            },
        ),
    ]
