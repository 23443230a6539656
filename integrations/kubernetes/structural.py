"""Structural-schema validation and pruning of custom objects (``openAPIV3Schema``).

Mirrors the apiextensions-apiserver pipeline: null values of non-nullable fields
and fields not declared in the schema are pruned (reported as unknown fields), absent
fields whose schema has a ``default`` get it (the Gateway API CRDs have defaults),
then the value validations of kube-openapi are applied. Error texts follow
go-openapi/kube-openapi (``<path> in body must be of type string: "integer"``).

``x-kubernetes-validations`` (CEL rules) are evaluated on the pruned object by
``integrations.kubernetes.cel`` (transition rules against ``old`` on updates), and ``pattern`` uses
RE2 semantics (Go's regexp, which kube-openapi uses), through google-re2.
Integer formats (int32, uint32, int64, double) are not range-checked, as in
kube-openapi (Istio declares ``format: int32`` on fields whose maximum is
4294967295); only string formats (date-time, byte) are checked, loosely.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2

from integrations.kubernetes import cel
from integrations.kubernetes.fielderrors import (
    ErrorType,
    FieldError,
    invalid,
    not_supported,
    required,
)

Schema = dict[str, Any]

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass
class Outcome:
    """A pruned value with the errors and unknown fields found in it."""

    value: Any
    errors: list[FieldError] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)
    rule_errors: list[FieldError] = field(default_factory=list)
    """The subset of ``errors`` that CEL validation rules gave."""
    rule_cost: int = 0
    """Cost units the rules spent (see ``cel``)."""


def validate_custom_object(
    obj: dict[str, Any],
    schema: Schema,
    *,
    old: dict[str, Any] | None = None,
    rules: bool = True,
    rules_budget: int = cel.PER_OBJECT_BUDGET,
) -> Outcome:
    """Validate everything but apiVersion/kind/metadata against the version's schema, then its CEL rules.

    ``old`` is the stored object on an update (transition rules compare against it); ``rules=False``
    skips the CEL rules; ``rules_budget`` caps their cost for this object.
    """
    body = {key: value for key, value in obj.items() if key not in ROOT_FIELDS}
    validator = _Validator(prune=True)
    pruned = validator.check(body, {**schema, "type": "object"}, "")
    rule_errors: list[FieldError] = []
    cost = 0
    if rules:
        rule_errors, cost = cel.validate_with_cost(
            _rule_view(pruned, obj), schema, old=_rule_view(old, old) if old else None, budget=rules_budget
        )
    for key in ROOT_FIELDS:
        if key in obj:
            pruned[key] = obj[key]
    return Outcome(pruned, [*validator.errors, *rule_errors], validator.unknown_fields, rule_errors, cost)


def _rule_view(body: dict[str, Any] | None, obj: dict[str, Any] | None) -> dict[str, Any]:
    """What ``self`` holds at the root: the body, apiVersion, kind and metadata.name/generateName."""
    view = {key: value for key, value in (body or {}).items() if key not in ROOT_FIELDS}
    source = obj or {}
    for key in ("apiVersion", "kind"):
        if key in source:
            view[key] = source[key]
    metadata = source.get("metadata")
    if isinstance(metadata, dict):
        view["metadata"] = {key: metadata[key] for key in ("name", "generateName") if key in metadata}
    return view


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@lru_cache(maxsize=1024)
def _pattern(expression: str) -> Any:
    """The RE2 program of a schema pattern; None when RE2 refuses it (no API server would serve it)."""
    try:
        return re2.compile(expression)
    except re2.error:
        return None


class _Validator:
    """One validation pass; ``prune`` is off when probing oneOf/anyOf/not branches."""

    def __init__(self, prune: bool) -> None:
        self.prune = prune
        self.errors: list[FieldError] = []
        self.unknown_fields: list[str] = []

    def check(self, value: Any, schema: Schema, path: str) -> Any:
        if value is None:
            if schema.get("type") and not schema.get("nullable"):
                self._type_error(value, schema["type"], path)
            return value
        if not self._type_matches(value, schema, path):
            return value
        if isinstance(value, dict):
            value = self._object(value, schema, path)
        elif isinstance(value, list):
            value = self._array(value, schema, path)
        elif isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._numeric(value, schema, path)
        if "enum" in schema and value not in schema["enum"]:
            self.errors.append(not_supported(path, value, schema["enum"]))
        self._combinators(value, schema, path)
        return value

    def _type_error(self, value: Any, expected: str, path: str) -> None:
        actual = json_type(value)
        detail = f'{path} in body must be of type {expected}: "{actual}"'
        self.errors.append(FieldError(ErrorType.TYPE_INVALID, path, actual, detail))

    def _type_matches(self, value: Any, schema: Schema, path: str) -> bool:
        actual = json_type(value)
        if schema.get("x-kubernetes-int-or-string"):
            if actual in ("integer", "string"):
                return True
            self._type_error(value, "integer,string", path)
            return False
        expected = schema.get("type")
        if not expected or expected == actual:
            return True
        if expected == "number" and actual == "integer":
            return True
        if expected == "integer" and isinstance(value, float) and value.is_integer():
            return True
        self._type_error(value, expected, path)
        return False

    def _object(self, value: dict[str, Any], schema: Schema, path: str) -> dict[str, Any]:
        properties: dict[str, Schema] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        result: dict[str, Any] = {}
        for key, item in value.items():
            child = _join(path, key)
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if sub is None:
                if keeps_unknown or not self.prune:
                    result[key] = item
                else:
                    self.unknown_fields.append(child)
                continue
            if item is None and self.prune and not sub.get("nullable"):
                continue
            result[key] = self.check(item, sub, child)
        if self.prune:
            for name, sub in properties.items():
                if name not in result and isinstance(sub, dict) and "default" in sub:
                    result[name] = self.check(copy.deepcopy(sub["default"]), sub, _join(path, name))
        for name in schema.get("required", []):
            if name not in result:
                self.errors.append(required(_join(path, name)))
        self._count(len(result), schema, "Properties", "properties", path)
        return result

    def _array(self, value: list[Any], schema: Schema, path: str) -> list[Any]:
        items = schema.get("items")
        result = (
            [self.check(item, items, f"{path}[{index}]") for index, item in enumerate(value)]
            if isinstance(items, dict)
            else value
        )
        self._count(len(result), schema, "Items", "items", path)
        self._list_type(result, schema, path)
        return result

    def _count(self, count: int, schema: Schema, suffix: str, noun: str, path: str) -> None:
        maximum = schema.get(f"max{suffix}")
        minimum = schema.get(f"min{suffix}")
        if maximum is not None and count > maximum:
            detail = f"must have at most {maximum} items"
            self.errors.append(FieldError(ErrorType.TOO_MANY, path, count, detail))
        if minimum is not None and count < minimum:
            detail = f"{path} in body should have at least {minimum} {noun}"
            self.errors.append(invalid(path, count, detail))

    def _list_type(self, value: list[Any], schema: Schema, path: str) -> None:
        list_type = schema.get("x-kubernetes-list-type")
        if list_type not in ("set", "map"):
            return
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for index, item in enumerate(value):
            identity = {key: item.get(key) for key in keys} if list_type == "map" and isinstance(item, dict) else item
            token = json.dumps(identity, sort_keys=True)
            if token in seen:
                self.errors.append(FieldError(ErrorType.DUPLICATE, f"{path}[{index}]", identity))
            seen.add(token)

    def _string(self, value: str, schema: Schema, path: str) -> None:
        max_length = schema.get("maxLength")
        if max_length is not None and len(value) > max_length:
            detail = f"may not be more than {max_length} bytes"
            self.errors.append(FieldError(ErrorType.TOO_LONG, path, value, detail))
        min_length = schema.get("minLength")
        if min_length is not None and len(value) < min_length:
            detail = f"{path} in body should be at least {min_length} chars long"
            self.errors.append(invalid(path, value, detail))
        pattern = schema.get("pattern")
        compiled = _pattern(pattern) if pattern is not None else None
        if compiled is not None and not compiled.search(value):
            self.errors.append(invalid(path, value, f"{path} in body should match '{pattern}'"))
        fmt = schema.get("format")
        if fmt and not _format_matches(fmt, value):
            detail = f'{path} in body must be of type {fmt}: "{value}"'
            self.errors.append(invalid(path, value, detail))

    def _numeric(self, value: float, schema: Schema, path: str) -> None:
        minimum = schema.get("minimum")
        if minimum is not None:
            exclusive = schema.get("exclusiveMinimum", False)
            if value < minimum or (exclusive and value == minimum):
                relation = "greater than" if exclusive else "greater than or equal to"
                detail = f"{path} in body should be {relation} {_number(minimum)}"
                self.errors.append(invalid(path, value, detail))
        maximum = schema.get("maximum")
        if maximum is not None:
            exclusive = schema.get("exclusiveMaximum", False)
            if value > maximum or (exclusive and value == maximum):
                relation = "less than" if exclusive else "less than or equal to"
                detail = f"{path} in body should be {relation} {_number(maximum)}"
                self.errors.append(invalid(path, value, detail))
        multiple = schema.get("multipleOf")
        if multiple and (value / multiple) != int(value / multiple):
            detail = f"{path} in body should be a multiple of {_number(multiple)}"
            self.errors.append(invalid(path, value, detail))

    def _combinators(self, value: Any, schema: Schema, path: str) -> None:
        for sub in schema.get("allOf", []):
            probe = _Validator(prune=False)
            probe.check(value, sub, path)
            self.errors.extend(probe.errors)
        if "anyOf" in schema and not any(_matches(value, sub, path) for sub in schema["anyOf"]):
            self._composite(path, "must validate at least one schema (anyOf)")
        if "oneOf" in schema:
            valid = sum(_matches(value, sub, path) for sub in schema["oneOf"])
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                self._composite(path, f"must validate one and only one schema (oneOf). {found}")
        if "not" in schema and _matches(value, schema["not"], path):
            self._composite(path, "must not validate the schema (not)")

    def _composite(self, path: str, text: str) -> None:
        self.errors.append(invalid(path, "", f'"{path}" {text}'))


def _matches(value: Any, schema: Schema, path: str) -> bool:
    probe = _Validator(prune=False)
    probe.check(value, schema, path)
    return not probe.errors


def _format_matches(fmt: str, value: str) -> bool:
    if fmt == "date-time":
        return bool(_DATE_TIME.match(value))
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
    return True
