"""Per-environment promotion overrides: a small patch per policy, kept with the environment.

An override is a JSON merge patch (RFC 7386) stored in `Environment.promotion_overrides` under the
policy's identity `Kind/namespace/name`. When a change is promoted into that environment, the patch is
applied last, onto the carried content (`services.promotion.carried_content`), so the promoted change's
diff shows it. A policy is one identity in one environment; its overrides are those of the same
identity in every environment a change can be promoted into.

Who may write an override for an environment: approvers and admins of the team that owns the
namespace in that environment, and platform admins. What is accepted: a JSON object of at most
`PROMOTION_OVERRIDE_MAX_BYTES` that leaves the object's identity (apiVersion, kind, metadata.name and
metadata.namespace) alone, and whose result validates: applied to what the environment holds for
the policy (its current revision there; without one, the policy's current content, which is what a
promotion would carry), the object must pass that environment's validation (parse, schema, semantic
checks) without an error. Each write is one transaction on the environment's row with its own audit
row (the patch before and after).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from django.contrib.auth.models import User
from django.db import transaction

from policies import selectors
from policies.choices import AuditAction
from policies.constants import PROMOTION_OVERRIDE_MAX_BYTES
from policies.exceptions import ConflictError, DraftRejected, NotFoundError, PermissionDeniedError
from policies.merge import merge_patch
from policies.models import Environment, Policy
from policies.normalize import normalize_object
from policies.selectors import Override, override_identity, user_may_edit_override
from policies.services.audit import audit_record
from policies.validation import Level
from policies.validation.parse import parse_file
from policies.validation.service import validate_text

IDENTITY_FIELDS = (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"))


def override_parse(text: str) -> Any:
    """The patch a person typed (YAML or JSON), or DraftRejected naming the line at fault."""
    documents, findings = parse_file("override", text.encode("utf-8", errors="surrogatepass"))
    errors = [finding for finding in findings if finding.level == Level.ERROR]
    if errors:
        raise DraftRejected(
            f"the patch cannot be read: {errors[0].message}",
            findings=[finding.as_dict() for finding in errors],
            code="invalid_override",
        )
    if len(documents) != 1:
        raise _invalid("the patch must be exactly one YAML or JSON object", path="")
    return documents[0].obj


def _invalid(message: str, *, path: str) -> DraftRejected:
    return DraftRejected(
        message,
        findings=[{"code": "invalid_override", "level": "error", "message": message, "path": path}],
        code="invalid_override",
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _validated(*, environment: Environment, policy: Policy, patch: Any) -> dict[str, Any]:
    """The patch when it may be stored for `environment` (see the module docstring), else DraftRejected."""
    if not isinstance(patch, dict):
        raise _invalid(
            f"the patch must be a JSON object (a merge patch), not {type(patch).__name__ if patch is not None else 'null'}",
            path="",
        )
    if not patch:
        raise _invalid("the patch is empty: delete the override instead", path="")
    if _has_nul(patch):
        raise _invalid("the patch may not contain NUL characters", path="")
    size = len(json.dumps(patch, separators=(",", ":")))
    if size > PROMOTION_OVERRIDE_MAX_BYTES:
        raise _invalid(
            f"the patch is {size} bytes; an override holds at most {PROMOTION_OVERRIDE_MAX_BYTES} bytes", path=""
        )
    if "metadata" in patch and not isinstance(patch["metadata"], dict):
        raise _invalid("metadata must be an object", path="metadata")
    for path in IDENTITY_FIELDS:
        parent = patch.get("metadata") if len(path) == 2 else patch
        if isinstance(parent, dict) and path[-1] in parent:
            dotted = ".".join(path)
            raise _invalid(f"an override may not change {dotted}: it is the object's identity", path=dotted)
    there = selectors.policy_for_identity(
        environment=environment, kind=policy.kind, namespace=policy.namespace, name=policy.name
    )
    base_revision = (there.current_revision if there is not None else None) or policy.current_revision
    if base_revision is None:
        raise ConflictError(f"{override_identity(policy)} has no content to apply an override to")
    result = normalize_object(merge_patch(base_revision.content, patch))
    report = validate_text(
        environment=environment,
        text=yaml.safe_dump(result, sort_keys=False, allow_unicode=True),
        filename=f"{override_identity(policy)} with the override",
    )
    errors = [finding for finding in report.findings if finding.level == Level.ERROR]
    if errors:
        first = errors[0]
        where = f" at {first.path}" if first.path else ""
        raise DraftRejected(
            f"with this patch, {override_identity(policy)} does not validate in {environment.name}{where}: "
            f"{first.message}",
            findings=[finding.as_dict() for finding in errors],
            code="invalid_override",
        )
    return patch


def _require_editor(actor: User, environment: Environment, policy: Policy) -> None:
    if not user_may_edit_override(user=actor, environment=environment, namespace=policy.namespace):
        raise PermissionDeniedError(
            f"only approvers of the team owning namespace {policy.namespace} in {environment.name} "
            "and platform admins may change its promotion overrides"
        )


def _write(
    *, actor: User, policy: Policy, environment: Environment, patch: dict[str, Any] | None, create: bool
) -> Override | None:
    identity = override_identity(policy)
    _require_editor(actor, environment, policy)
    with transaction.atomic():
        locked = Environment.objects.select_for_update().get(pk=environment.pk)
        overrides = dict(locked.promotion_overrides or {})
        before = overrides.get(identity)
        if create and before is not None:
            raise ConflictError(
                f"{environment.name} already has an override for {identity}: edit it instead",
                extra={"environment": environment.name, "identity": identity},
            )
        if not create and before is None:
            raise NotFoundError(f"{environment.name} has no override for {identity}")
        if patch is None:
            overrides.pop(identity)
            action = AuditAction.PROMOTION_OVERRIDE_DELETED
        else:
            overrides[identity] = patch
            action = AuditAction.PROMOTION_OVERRIDE_CREATED if create else AuditAction.PROMOTION_OVERRIDE_UPDATED
        locked.promotion_overrides = overrides
        locked.save(update_fields=["promotion_overrides"])
        audit_record(
            action=action,
            actor=actor,
            obj=locked,
            environment=locked.name,
            before={"identity": identity, "patch": before} if before is not None else None,
            after={"identity": identity, "patch": patch} if patch is not None else None,
        )
    return Override(locked, identity, patch, True) if patch is not None else None


def promotion_override_create(*, actor: User, policy: Policy, environment: Environment, patch: Any) -> Override:
    """A new override of the policy for `environment` (409 when it has one)."""
    _require_editor(actor, environment, policy)
    written = _write(
        actor=actor,
        policy=policy,
        environment=environment,
        patch=_validated(environment=environment, policy=policy, patch=patch),
        create=True,
    )
    assert written is not None
    return written


def promotion_override_update(*, actor: User, policy: Policy, environment: Environment, patch: Any) -> Override:
    """Replaces the policy's override for `environment` (404 when it has none)."""
    _require_editor(actor, environment, policy)
    written = _write(
        actor=actor,
        policy=policy,
        environment=environment,
        patch=_validated(environment=environment, policy=policy, patch=patch),
        create=False,
    )
    assert written is not None
    return written


def promotion_override_delete(*, actor: User, policy: Policy, environment: Environment) -> None:
    """Removes the policy's override for `environment` (404 when it has none)."""
    _write(actor=actor, policy=policy, environment=environment, patch=None, create=False)
