"""Database-level guards: revisions and audit events can never be rewritten.

PostgreSQL refuses UPDATE and DELETE on both tables. SQLite refuses UPDATE; its DELETE is guarded by
the models (SQLite's test flush deletes rows one table at a time, which a trigger would block).
"""

from typing import Any

from django.db import migrations

TABLES = ("policies_policyrevision", "policies_auditevent")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION meshgate_forbid_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are immutable (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;
"""


def forwards(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION meshgate_forbid_change();"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'rows of {table} are immutable'); END;"
            )


def backwards(apps: Any, schema_editor: Any) -> None:
    for table in TABLES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table};")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable;")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS meshgate_forbid_change();")


def create_chain_head(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "AuditChainHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("policies", "0001_initial")]
    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.RunPython(create_chain_head, migrations.RunPython.noop),
    ]
