"""Guardrails: authoring (admins), overrides (admins, with a reason, bound to content), seeding.

Evaluation lives in `policies.guardrails.engine` and is re-exported here for the change workflow:

    results = guardrails_evaluate(environment=env, objects=[item.content for item in items])
    overrides = guardrail_overrides_valid(subject_type="changeitem", subject_id=str(item.pk),
                                          content_hash=item.content_hash)
    blockers = blocking_results(results, overrides=overrides)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from policies.choices import AuditAction, GuardrailEnforcement, PolicyKind
from policies.exceptions import PermissionDeniedError
from policies.guardrails.builtin import BUILTINS
from policies.guardrails.engine import GuardrailResult, blocking_results, guardrail_check, guardrails_evaluate  # noqa: F401 - the workflow's entry points
from policies.models import Environment, Guardrail, GuardrailOverride
from policies.selectors import user_is_admin
from policies.services.audit import audit_record
from policies.services.windows import WEEKEND_FREEZE, change_window_upsert

MIN_OVERRIDE_REASON_LENGTH = 10
EXAMPLE_CEL_GUARDRAIL = {
    "name": "Every HTTP route sets a timeout",
    "description": "Without a timeout a slow upstream holds the caller's connections; set one per HTTP route.",
    "enforcement": GuardrailEnforcement.ADVISORY,
    "expression": "!has(object.spec.http) || object.spec.http.all(r, has(r.timeout))",
    "message": "{object}: an HTTP route has no timeout; add e.g. timeout: 10s to every route",
    "kinds": [PolicyKind.VIRTUAL_SERVICE.value],
}
_EDITABLE = (
    "name",
    "description",
    "enforcement",
    "expression",
    "parameters",
    "message",
    "kinds",
    "production_only",
    "enabled",
)


def _snapshot(guardrail: Guardrail) -> dict[str, Any]:
    return {
        "name": guardrail.name,
        "enforcement": guardrail.enforcement,
        "builtin_key": guardrail.builtin_key,
        "expression": guardrail.expression,
        "parameters": guardrail.parameters,
        "message": guardrail.message,
        "kinds": guardrail.kinds,
        "production_only": guardrail.production_only,
        "enabled": guardrail.enabled,
    }


def _require_admin(actor: User | None, what: str) -> None:
    if actor is None or not user_is_admin(actor):
        raise PermissionDeniedError(f"only platform admins may {what}")


@transaction.atomic
def guardrail_create(
    *,
    actor: User,
    name: str,
    expression: str,
    message: str,
    description: str = "",
    enforcement: str = GuardrailEnforcement.ADVISORY,
    kinds: Iterable[str] = (),
    production_only: bool = False,
    parameters: dict[str, Any] | None = None,
    enabled: bool = True,
) -> Guardrail:
    """A custom (CEL) guardrail. Raises ValidationError (an invalid expression names its position)."""
    _require_admin(actor, "create guardrails")
    guardrail = Guardrail(
        name=name.strip(),
        description=description,
        enforcement=enforcement,
        expression=expression.strip(),
        message=message,
        kinds=list(kinds),
        production_only=production_only,
        parameters=parameters or {},
        enabled=enabled,
        created_by=actor if actor.is_authenticated else None,
    )
    guardrail.full_clean()
    guardrail.save()
    audit_record(action=AuditAction.GUARDRAIL_CREATED, actor=actor, obj=guardrail, after=_snapshot(guardrail))
    return guardrail


@transaction.atomic
def guardrail_update(*, actor: User, guardrail: Guardrail, **fields: Any) -> Guardrail:
    """Changes the given fields. A built-in keeps its key and has no expression; everything else of it
    (enforcement, parameters, message, kinds, enabled, ...) is the admins' to tune."""
    _require_admin(actor, "edit guardrails")
    unknown = set(fields) - set(_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    guardrail = Guardrail.objects.select_for_update().get(pk=guardrail.pk)
    before = _snapshot(guardrail)
    for field, value in fields.items():
        if field == "kinds":
            value = list(value)
        elif field in ("expression", "name") and isinstance(value, str):
            value = value.strip()
        setattr(guardrail, field, value)
    guardrail.full_clean()
    after = _snapshot(guardrail)
    if after == before:
        return guardrail
    guardrail.save()
    audit_record(action=AuditAction.GUARDRAIL_UPDATED, actor=actor, obj=guardrail, before=before, after=after)
    return guardrail


@transaction.atomic
def guardrail_override(
    *,
    admin: User,
    guardrail: Guardrail,
    subject_type: str,
    subject_id: str | int,
    content_hash: str,
    reason: str,
) -> GuardrailOverride:
    """Lets a failed soft-mandatory guardrail pass for one subject's content. Only platform admins;
    the reason is required (at least 10 characters) and goes into the audit log. A later content
    change (another hash) voids the override; hard-mandatory guardrails cannot be overridden."""
    _require_admin(admin, "override guardrails")
    reason = (reason or "").strip()
    if len(reason) < MIN_OVERRIDE_REASON_LENGTH:
        raise ValidationError({"reason": f"explain the override in at least {MIN_OVERRIDE_REASON_LENGTH} characters"})
    if guardrail.enforcement != GuardrailEnforcement.SOFT_MANDATORY:
        raise ValidationError(
            {
                "guardrail": f"“{guardrail.name}” is {guardrail.get_enforcement_display().lower()}: "
                "only soft-mandatory guardrails can be overridden"
            }
        )
    if not content_hash or not subject_type or subject_id in (None, ""):
        raise ValidationError("an override names its subject and the content hash it applies to")
    override = GuardrailOverride.objects.create(
        guardrail=guardrail,
        subject_type=subject_type,
        subject_id=str(subject_id),
        content_hash=content_hash,
        reason=reason,
        admin=admin,
    )
    audit_record(
        action=AuditAction.GUARDRAIL_OVERRIDDEN,
        actor=admin,
        obj=guardrail,
        after={
            "subject_type": subject_type,
            "subject_id": str(subject_id),
            "content_hash": content_hash,
            "reason": reason,
            "override_id": override.pk,
        },
    )
    return override


def guardrail_overrides_valid(
    *, subject_type: str, subject_id: str | int, content_hash: str
) -> QuerySet[GuardrailOverride]:
    """Overrides still in force for the subject's current content (read; for `blocking_results`)."""
    return GuardrailOverride.objects.select_related("guardrail", "admin").filter(
        subject_type=subject_type, subject_id=str(subject_id), content_hash=content_hash
    )


@transaction.atomic
def guardrails_seed_builtins() -> list[Guardrail]:
    """Creates a row for every built-in that has none (idempotent; the data migration does the same).
    Existing rows keep whatever the admins configured."""
    created = []
    existing = set(Guardrail.objects.exclude(builtin_key="").values_list("builtin_key", flat=True))
    for key, builtin in BUILTINS.items():
        if key in existing:
            continue
        guardrail = Guardrail.objects.create(
            name=builtin.name,
            description=builtin.description,
            enforcement=builtin.enforcement,
            builtin_key=key,
            parameters=dict(builtin.parameters),
            message=builtin.message,
            kinds=[str(k) for k in builtin.kinds],
            production_only=builtin.production_only,
        )
        audit_record(action=AuditAction.GUARDRAIL_CREATED, obj=guardrail, after=_snapshot(guardrail))
        created.append(guardrail)
    return created


@transaction.atomic
def seed_governance() -> None:
    """Demo governance (idempotent): the built-in guardrails, an advisory CEL example, and a weekend
    freeze for every production environment."""
    guardrails_seed_builtins()
    example = dict(EXAMPLE_CEL_GUARDRAIL)
    if not Guardrail.objects.filter(name=example["name"]).exists():
        guardrail = Guardrail(**example)
        guardrail.full_clean()
        guardrail.save()
        audit_record(action=AuditAction.GUARDRAIL_CREATED, obj=guardrail, after=_snapshot(guardrail))
    for environment in Environment.objects.filter(is_production=True):
        change_window_upsert(environment=environment, **WEEKEND_FREEZE)
