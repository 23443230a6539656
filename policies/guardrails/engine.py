"""Runs guardrails against Istio objects and says which results block an approval.

    results = guardrails_evaluate(environment=env, objects=[obj, ...])
    blockers = blocking_results(results, overrides=valid_overrides)

Only enabled guardrails whose kinds and production flag match an object run on it. A guardrail that
cannot be evaluated (a CEL error, an unknown built-in) gives the outcome "error", which counts as a
failure at its enforcement level: an expression that breaks never lets content through silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from policies.choices import GuardrailEnforcement, GuardrailOutcome
from policies.guardrails import limits
from policies.guardrails.builtin import BUILTINS, EnvironmentInfo
from policies.guardrails.cel import CelEvaluationError, cel_evaluate
from policies.models import Guardrail
from policies.validation.parse import parse_file

if TYPE_CHECKING:
    from policies.models import Environment, GuardrailOverride


@dataclass(frozen=True)
class GuardrailResult:
    guardrail_id: int | None
    name: str
    enforcement: str
    object: str
    """The object's identity, e.g. "VirtualService bookinfo/reviews"."""
    passed: bool
    error: str = ""
    """Why the guardrail could not be evaluated; empty when it was."""
    message: str = ""
    """The guardrail's message, rendered for this object; empty when it passed."""
    builtin_key: str = ""

    @property
    def outcome(self) -> GuardrailOutcome:
        if self.error:
            return GuardrailOutcome.ERROR
        return GuardrailOutcome.PASSED if self.passed else GuardrailOutcome.FAILED

    @property
    def failed(self) -> bool:
        """Failed or could not be evaluated (both count as failures at the enforcement level)."""
        return not self.passed

    @property
    def enforcement_choice(self) -> GuardrailEnforcement:
        return GuardrailEnforcement(self.enforcement)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value}


class ManifestError(Exception):
    """A pasted manifest that cannot be read; `message` names the line."""

    def __init__(self, message: str, *, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def object_identity(obj: dict[str, Any]) -> str:
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "object"
    metadata = found if isinstance(found := obj.get("metadata"), dict) else {}
    name, namespace = metadata.get("name") or "?", metadata.get("namespace") or ""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def environment_info(environment: Environment | EnvironmentInfo) -> EnvironmentInfo:
    if isinstance(environment, EnvironmentInfo):
        return environment
    return EnvironmentInfo(name=environment.name, production=bool(environment.is_production))


def matches(guardrail: Guardrail, *, kind: str, environment: EnvironmentInfo) -> bool:
    """Does the guardrail cover this kind in this environment (enabled or not)?"""
    if guardrail.production_only and not environment.production:
        return False
    return not guardrail.kinds or kind in guardrail.kinds


def applies_to(guardrail: Guardrail, *, kind: str, environment: EnvironmentInfo) -> bool:
    return guardrail.enabled and matches(guardrail, kind=kind, environment=environment)


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_message(template: str, values: dict[str, Any]) -> str:
    """Replaces {name} placeholders it knows; anything else (attribute access, unknown names) stays as
    written, so a message can never reach into Python objects the way str.format could."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def _details(violations: Sequence[str]) -> str:
    shown = list(violations[: limits.MAX_MESSAGE_DETAILS])
    more = len(violations) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def guardrail_check(
    guardrail: Guardrail,
    *,
    obj: dict[str, Any],
    environment: Environment | EnvironmentInfo,
    expression: str | None = None,
) -> GuardrailResult:
    """One guardrail on one object (whether it applies is the caller's question). `expression`
    replaces a CEL guardrail's stored expression, for trying an edit before saving it."""
    env = environment_info(environment)
    identity = object_identity(obj)
    metadata = found if isinstance(found := obj.get("metadata"), dict) else {}
    parameters = guardrail.parameters if isinstance(guardrail.parameters, dict) else {}
    values = {
        **{key: value for key, value in parameters.items() if isinstance(key, str)},
        "object": identity,
        "kind": obj.get("kind", ""),
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "environment": env.name,
        "guardrail": guardrail.name,
    }
    error, violations = "", []
    if guardrail.builtin_key:
        builtin = BUILTINS.get(guardrail.builtin_key)
        if builtin is None:
            error = f"unknown built-in guardrail {guardrail.builtin_key!r}"
        else:
            try:
                violations = builtin.check(obj, env, parameters)
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                error = f"the check failed on this object: {type(exc).__name__}: {exc}"
    else:
        variables = {
            "object": obj,
            "environment": {"name": env.name, "production": env.production},
            "params": parameters,
        }
        try:
            if not cel_evaluate(expression if expression is not None else guardrail.expression, variables=variables):
                violations = ["the expression returned false"]
        except CelEvaluationError as exc:
            error = exc.message
    passed = not error and not violations
    message = ""
    if not passed:
        values["details"] = error or _details(violations)
        message = render_message(guardrail.message, values)
    return GuardrailResult(
        guardrail_id=guardrail.pk,
        name=guardrail.name,
        enforcement=guardrail.enforcement,
        object=identity,
        passed=passed,
        error=error,
        message=message,
        builtin_key=guardrail.builtin_key,
    )


def guardrails_evaluate(
    *,
    environment: Environment | EnvironmentInfo,
    objects: Iterable[dict[str, Any]],
    guardrails: Iterable[Guardrail] | None = None,
) -> list[GuardrailResult]:
    """Every enabled, matching guardrail on every object: one result per (object, guardrail), in
    object order, then hard before soft before advisory. One query when `guardrails` is not given."""
    env = environment_info(environment)
    candidates = list(guardrails if guardrails is not None else Guardrail.objects.filter(enabled=True))
    rank: dict[str, int] = {
        GuardrailEnforcement.HARD_MANDATORY: 0,
        GuardrailEnforcement.SOFT_MANDATORY: 1,
        GuardrailEnforcement.ADVISORY: 2,
    }
    candidates.sort(key=lambda g: (rank.get(g.enforcement, 3), g.name))
    results = []
    for obj in objects:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if not isinstance(kind, str):
            continue
        for guardrail in candidates:
            if applies_to(guardrail, kind=kind, environment=env):
                results.append(guardrail_check(guardrail, obj=obj, environment=env))
    return results


def blocking_results(
    results: Iterable[GuardrailResult],
    *,
    overrides: Iterable[GuardrailOverride | int] = (),
    content_hash: str | None = None,
) -> list[GuardrailResult]:
    """What blocks approval: every failed (or erroring) hard-mandatory result, and every failed
    soft-mandatory one without an override. Overrides are rows or guardrail ids; with
    `content_hash`, a row counts only if it was given for that content (a content change voids it)."""
    overridden: set[int] = set()
    for override in overrides:
        if isinstance(override, int):
            overridden.add(override)
        elif content_hash is None or override.content_hash == content_hash:
            overridden.add(override.guardrail_id)
    blockers = []
    for result in results:
        if result.passed:
            continue
        if result.enforcement == GuardrailEnforcement.HARD_MANDATORY:
            blockers.append(result)
        elif result.enforcement == GuardrailEnforcement.SOFT_MANDATORY and result.guardrail_id not in overridden:
            blockers.append(result)
    return blockers


def manifest_objects(text: str) -> list[dict[str, Any]]:
    """The objects of a pasted YAML / JSON manifest, read by the validation parser (size, depth and
    alias limits; line numbers). Raises ManifestError for the first problem."""
    data = text.encode("utf-8", "replace")
    if len(data) > limits.MAX_TEST_MANIFEST_BYTES:
        raise ManifestError(
            f"the manifest is {len(data) // 1024} KiB, more than the {limits.MAX_TEST_MANIFEST_BYTES // 1024} KiB "
            "the test box accepts"
        )
    documents, findings = parse_file("manifest", data)
    errors = [f for f in findings if f.is_error]
    if errors:
        first = errors[0]
        raise ManifestError(first.message, line=first.line)
    if not documents:
        raise ManifestError("the manifest holds no object: paste an Istio object")
    if len(documents) > limits.MAX_TEST_OBJECTS:
        raise ManifestError(
            f"the manifest holds {len(documents)} objects; the test box takes {limits.MAX_TEST_OBJECTS}"
        )
    return [document.obj for document in documents]
