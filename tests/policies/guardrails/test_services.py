import importlib

import pytest
from django.core.exceptions import ValidationError

from policies.choices import AuditAction, GuardrailEnforcement
from policies.exceptions import PermissionDeniedError
from policies.guardrails.builtin import BUILTINS
from policies.models import AuditEvent, ChangeWindow, Guardrail, GuardrailOverride
from policies.services.guardrails import (
    guardrail_create,
    guardrail_override,
    guardrail_overrides_valid,
    guardrail_update,
    guardrails_seed_builtins,
    seed_governance,
)
from tests.factories import UserFactory


def test_admins_create_cel_guardrails_with_an_audit_row(admin_user):
    guardrail = guardrail_create(
        actor=admin_user,
        name="Timeouts set",
        expression="  has(object.spec)  ",
        message="{object} has no spec",
        kinds=["VirtualService"],
    )
    assert guardrail.expression == "has(object.spec)"
    assert guardrail.created_by == admin_user
    event = AuditEvent.objects.get(action=AuditAction.GUARDRAIL_CREATED, object_id=str(guardrail.pk))
    assert event.actor == admin_user and event.after["expression"] == "has(object.spec)"


def test_invalid_cel_is_refused_naming_the_position(admin_user):
    with pytest.raises(ValidationError) as caught:
        guardrail_create(actor=admin_user, name="x", expression="object.kind ==", message="m")
    assert "line 1, column 13" in caught.value.message_dict["expression"][0]
    assert not Guardrail.objects.filter(name="x").exists()


def test_kinds_must_be_policy_kinds(admin_user):
    with pytest.raises(ValidationError) as caught:
        guardrail_create(actor=admin_user, name="x", expression="true", message="m", kinds=["Deployment"])
    assert "kinds" in caught.value.message_dict


def test_non_admins_cannot_author_guardrails(db):
    with pytest.raises(PermissionDeniedError):
        guardrail_create(actor=UserFactory(), name="x", expression="true", message="m")


def test_update_built_in_keeps_key_and_audits(admin_user, builtins):
    guardrail = Guardrail.objects.get(builtin_key="timeouts-within-bounds")
    guardrail_update(
        actor=admin_user,
        guardrail=guardrail,
        parameters={"max_timeout_seconds": 30, "max_retries": 3},
        enforcement=GuardrailEnforcement.HARD_MANDATORY,
    )
    guardrail.refresh_from_db()
    assert guardrail.parameters["max_timeout_seconds"] == 30
    event = AuditEvent.objects.filter(action=AuditAction.GUARDRAIL_UPDATED).get()
    assert event.before["enforcement"] == "soft_mandatory" and event.after["enforcement"] == "hard_mandatory"
    with pytest.raises(ValidationError):
        guardrail_update(actor=admin_user, guardrail=guardrail, expression="true")
    with pytest.raises(ValueError):
        guardrail_update(actor=admin_user, guardrail=guardrail, builtin_key="other")
    # No change, no audit row.
    guardrail_update(actor=admin_user, guardrail=guardrail, enabled=True)
    assert AuditEvent.objects.filter(action=AuditAction.GUARDRAIL_UPDATED).count() == 1


def test_override_needs_an_admin_a_reason_and_a_soft_guardrail(admin_user, builtins):
    soft = Guardrail.objects.get(builtin_key="no-wildcard-hosts")
    hard = Guardrail.objects.get(builtin_key="weights-sum-100")
    args = {"subject_type": "changeitem", "subject_id": 5, "content_hash": "h1"}
    with pytest.raises(PermissionDeniedError):
        guardrail_override(admin=UserFactory(), guardrail=soft, reason="a good long reason", **args)
    with pytest.raises(ValidationError, match="at least 10"):
        guardrail_override(admin=admin_user, guardrail=soft, reason=" too short ", **args)
    with pytest.raises(ValidationError, match="only soft-mandatory"):
        guardrail_override(admin=admin_user, guardrail=hard, reason="a good long reason", **args)

    override = guardrail_override(admin=admin_user, guardrail=soft, reason="gateway-style host, reviewed", **args)
    assert override.subject_id == "5"
    event = AuditEvent.objects.get(action=AuditAction.GUARDRAIL_OVERRIDDEN)
    assert event.actor == admin_user and event.after["reason"] == "gateway-style host, reviewed"
    assert list(guardrail_overrides_valid(subject_type="changeitem", subject_id=5, content_hash="h1")) == [override]
    assert not guardrail_overrides_valid(subject_type="changeitem", subject_id=5, content_hash="h2").exists()


def test_seeding_is_idempotent_and_keeps_admin_changes(db, prod):
    Guardrail.objects.all().delete()
    assert len(guardrails_seed_builtins()) == len(BUILTINS)
    Guardrail.objects.filter(builtin_key="weights-sum-100").update(enabled=False)
    assert guardrails_seed_builtins() == []
    assert not Guardrail.objects.get(builtin_key="weights-sum-100").enabled

    seed_governance()
    seed_governance()
    assert Guardrail.objects.filter(name="Every HTTP route sets a timeout", enforcement="advisory").count() == 1
    freeze = ChangeWindow.objects.get(environment=prod, name="Weekend freeze")
    assert (freeze.kind, freeze.weekdays, freeze.end_weekday, freeze.timezone) == ("freeze", [4], 0, "Europe/Berlin")


def test_the_data_migration_matches_the_registry():
    migration = importlib.import_module("policies.migrations.0005_builtin_guardrails")
    for row in migration.BUILTINS:
        builtin = BUILTINS[row["builtin_key"]]
        assert row["enforcement"] == builtin.enforcement
        assert row["kinds"] == list(builtin.kinds)
        assert row["parameters"] == builtin.parameters
        assert row["production_only"] == builtin.production_only
    assert {row["builtin_key"] for row in migration.BUILTINS} == set(BUILTINS)


def test_overrides_are_kept_when_a_guardrail_is_protected(admin_user, builtins):
    soft = Guardrail.objects.get(builtin_key="no-wildcard-hosts")
    guardrail_override(
        admin=admin_user,
        guardrail=soft,
        subject_type="c",
        subject_id=1,
        content_hash="h",
        reason="reviewed by platform team",
    )
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        soft.delete()
    assert GuardrailOverride.objects.count() == 1
