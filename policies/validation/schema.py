"""Layer 2: each object against the `openAPIV3Schema` of its CRD, as the environment's cluster serves it."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from integrations.kubernetes import KubernetesError, NotFound, read_crd_schema
from integrations.kubernetes import cel as cel_limits
from integrations.kubernetes.structural import validate_custom_object
from policies.cluster import cluster_config
from policies.models import Environment
from policies.validation import limits
from policies.validation.cache import CrdSchema, Schema, SchemaCache
from policies.validation.codes import finding
from policies.validation.findings import Finding
from policies.validation.parse import ParsedDocument

_MAP_KEY = re.compile(r"\[([^\]0-9][^\]]*)\]")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_EXPECTED_TYPE = re.compile(r"must be of type ([\w,]+)")
_SHAPES = {
    "array": "a list (`- item` lines or `[a, b]`)",
    "object": "a mapping (`key: value` lines)",
    "string": "a string (quote it if it looks like a number or boolean)",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "integer,string": "a number or a string",
}
MAX_LISTED_FIELDS = 12
SERVED_FIELDS = ("schema", "served", "servedVersions")


@dataclass
class SchemaCheck:
    findings: list[Finding] = field(default_factory=list)
    cluster_unreachable: bool = False


def environment_schemas(environment: Environment, *, recheck_seconds: float | None = None) -> SchemaCache:
    """The schema cache of an environment's cluster, reading through the Kubernetes adapter."""
    cfg = cluster_config(environment)
    digest = hashlib.sha256(cfg.describe().encode()).hexdigest()[:12]

    def read(key: str) -> CrdSchema:
        """`Kind`: the default version's schema; `Kind/version`: that version's, with whether it is served."""
        kind, _, version = key.partition("/")
        if not version:
            answer = read_crd_schema(cfg, kind)
            return CrdSchema(str(answer["resourceVersion"]), answer["schema"])
        answer = read_crd_schema(cfg, kind, version)
        return CrdSchema(str(answer["resourceVersion"]), {key: answer[key] for key in SERVED_FIELDS})

    return SchemaCache(scope=f"{environment.pk}:{digest}", read=read, recheck_seconds=recheck_seconds)


def check_schemas(documents: list[ParsedDocument], *, schemas: SchemaCache, environment_name: str) -> SchemaCheck:
    """Each object against the schema of the version it is written in (`apiVersion`), as the cluster serves it."""
    result = SchemaCheck()
    loaded: dict[str, Schema | None] = {}
    remaining = limits.BUNDLE_RULE_BUDGET
    for doc in documents:
        key = f"{doc.kind}/{_version_of(doc)}"
        if key not in loaded:
            try:
                loaded[key] = schemas.get(key)
            except NotFound:
                loaded[key] = None
            except KubernetesError as exc:
                message = (
                    f"schema could not be checked: {exc.message}; fields will be checked again before "
                    "approval; check the environment's cluster connection and validate again"
                )
                result.findings.append(finding("MG0205", message))
                result.cluster_unreachable = True
                return result
        served = loaded[key]
        if served is None:
            message = (
                f"the cluster of environment {environment_name} does not serve {doc.kind} (no CRD "
                f"{doc.kind}): install or upgrade Istio there, or target another environment"
            )
            result.findings.append(finding("MG0204", message, **doc.at("kind")))
            continue
        if not served.get("served"):
            versions = ", ".join(served.get("servedVersions") or []) or "none"
            message = (
                f"{doc.obj.get('apiVersion')} is not served for {doc.kind} by the cluster of environment "
                f"{environment_name} (served: {versions}): write the object in a served version"
            )
            result.findings.append(finding("MG0207", message, **doc.at("apiVersion")))
            continue
        findings, cost = _checked(doc, served["schema"], budget=remaining)
        remaining = max(remaining - cost, 0)
        result.findings.extend(findings)
    return result


def _version_of(doc: ParsedDocument) -> str:
    api_version = doc.obj.get("apiVersion")
    return api_version.rpartition("/")[2] if isinstance(api_version, str) else ""


def check_document(doc: ParsedDocument, schema: Schema) -> list[Finding]:
    return _checked(doc, schema)[0]


def _checked(
    doc: ParsedDocument, schema: Schema, *, budget: int = limits.BUNDLE_RULE_BUDGET
) -> tuple[list[Finding], int]:
    """The findings of one object and the CEL cost they took (the bundle's rules share one budget)."""
    outcome = validate_custom_object(doc.obj, schema, rules_budget=min(budget, cel_limits.PER_OBJECT_BUDGET))
    rule_errors = {id(error) for error in outcome.rule_errors}
    findings = [
        _rule_error(doc, error) if id(error) in rule_errors else _field_error(doc, error, schema)
        for error in outcome.errors
    ]
    findings.extend(_unknown_field(doc, path, schema) for path in outcome.unknown_fields)
    return findings, outcome.rule_cost


def schema_at(schema: Schema, path: str) -> Schema | None:
    """The sub-schema describing the value at a field path, or None when the schema has none."""
    node: Schema | None = schema
    for name, index in _SEGMENT.findall(path):
        if node is None:
            return None
        if index:
            items = node.get("items")
            node = items if isinstance(items, dict) else None
            continue
        properties = node.get("properties") or {}
        additional = node.get("additionalProperties")
        node = properties.get(name, additional if isinstance(additional, dict) else None)
    return node


def _field_error(doc: ParsedDocument, error: Any, schema: Schema) -> Finding:
    path: str = error.field
    reason: str = error.type.reason
    where = doc.at(path)
    if reason == "FieldValueRequired":
        return finding("MG0202", f"required field {path} is missing: add it", **where)
    if reason == "FieldValueNotSupported":
        allowed = error.detail.removeprefix("supported values: ")
        message = f"{path} has the unsupported value {_show(error.value)}: use one of {allowed}"
        return finding("MG0201", message, **where)
    if reason == "FieldValueTypeInvalid":
        match = _EXPECTED_TYPE.search(error.detail)
        expected = match.group(1) if match else "another type"
        shape = _SHAPES.get(expected, expected)
        message = f"{path} must be of type {expected}, not {error.value}: write it as {shape}"
        return finding("MG0201", message, **where)
    if "(oneOf)" in error.detail:
        return finding("MG0201", _one_of_message(doc, path, schema, error.detail), **where)
    return finding("MG0201", f"{path}: {error.body()}; change the value", **where)


def _rule_error(doc: ParsedDocument, error: Any) -> Finding:
    """A CRD validation rule (CEL) the object breaks, worded as the API server words it."""
    where = doc.at(error.field)
    located = doc.position_of(_MAP_KEY.sub(r".\1", error.field))  # spec.matchLabels[app] is at ...matchLabels.app
    if located is not None:
        where.update(line=located[0], column=located[1])
    place = error.field or "the object"
    message = f"{place}: {error.detail} (the API server would refuse it: {error.type.reason})"
    return finding("MG0206", message, **where)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _one_of_message(doc: ParsedDocument, path: str, schema: Schema, detail: str) -> str:
    """Istio encodes "exactly one of these fields" as oneOf over `required`: name the fields."""
    sub = schema_at(schema, path) or {}
    alternatives: list[str] = []
    for option in _one_of_options(sub):
        alternatives.extend(name for name in option.get("required", []) if name not in alternatives)
    value = _value_at(doc.obj, path)
    present = [name for name in alternatives if isinstance(value, dict) and name in value]
    if alternatives and len(present) > 1:
        return f"{path} sets {' and '.join(present)}, which exclude each other: keep only one"
    if alternatives:
        return f"{path} must set exactly one of {', '.join(alternatives)}"
    return f"{path}: {detail.strip(chr(34))}; change the value"


def _one_of_options(sub: Schema) -> list[Schema]:
    options = list(sub.get("oneOf", []))
    for nested in sub.get("allOf", []):
        options.extend(nested.get("oneOf", []))
    return [option for option in options if isinstance(option, dict)]


def _value_at(obj: Any, path: str) -> Any:
    value = obj
    for name, index in _SEGMENT.findall(path):
        if index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        elif not index and isinstance(value, dict):
            value = value.get(name)
        else:
            return None
    return value


def _unknown_field(doc: ParsedDocument, path: str, schema: Schema) -> Finding:
    parent, _, name = path.rpartition(".")
    declared = sorted(((schema_at(schema, parent) or {}).get("properties") or {}).keys())
    guess = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
    if guess:
        message = f"unknown field {path}: did you mean {guess[0]}?"
    elif declared and len(declared) <= MAX_LISTED_FIELDS:
        message = (
            f"unknown field {path}: {parent or 'the object'} declares {', '.join(declared)}; "
            "remove it or correct its indentation"
        )
    else:
        message = f"unknown field {path}: the schema declares no such field; remove it or correct its indentation"
    return finding("MG0203", message, **doc.at(path))
