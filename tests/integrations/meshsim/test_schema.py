"""Unit tests of the structural-schema validator on hand-written schemas (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.kubernetes.structural import validate_custom_object


def _check(spec: Any, schema: dict[str, Any]) -> tuple[Any, list[tuple[str, str, str]], list[str]]:
    outcome = validate_custom_object(
        {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "x"}, "spec": spec},
        {"type": "object", "properties": {"spec": schema}},
    )
    errors = [(e.type.reason, e.field, e.body()) for e in outcome.errors]
    return outcome.value.get("spec"), errors, outcome.unknown_fields


def test_int_or_string() -> None:
    schema = {"x-kubernetes-int-or-string": True}
    assert _check(8080, schema)[1] == []
    assert _check("http", schema)[1] == []
    assert _check(True, schema)[1] == [
        (
            "FieldValueTypeInvalid",
            "spec",
            'Invalid value: "boolean": spec in body must be of type integer,string: "boolean"',
        )
    ]


def test_number_accepts_integers_and_integer_accepts_integral_floats() -> None:
    assert _check(3, {"type": "number"})[1] == []
    assert _check(3.0, {"type": "integer"})[1] == []
    assert _check(3.5, {"type": "integer"})[1][0][0] == "FieldValueTypeInvalid"


def test_nullable_and_null_pruning() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "nullable": True}, "b": {"type": "string"}},
    }
    value, errors, _ = _check({"a": None, "b": None}, schema)
    assert value == {"a": None} and errors == []
    items = {"type": "array", "items": {"type": "string"}}
    assert _check([None], items)[1][0][1] == "spec[0]"


def test_unknown_fields_are_pruned_except_where_preserved() -> None:
    schema = {
        "type": "object",
        "properties": {
            "known": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    value, errors, unknown = _check(
        {"known": "k", "extra": 1, "free": {"anything": [1]}, "map": {"a": 1, "b": "two"}}, schema
    )
    assert value == {"known": "k", "free": {"anything": [1]}, "map": {"a": 1, "b": "two"}}
    assert unknown == ["spec.extra"]
    assert [e[1] for e in errors] == ["spec.map.b"]


@pytest.mark.parametrize(
    ("value", "schema", "reason", "body"),
    [
        ("abcd", {"type": "string", "maxLength": 3}, "FieldValueTooLong", "Too long: may not be more than 3 bytes"),
        (
            "ab",
            {"type": "string", "minLength": 3},
            "FieldValueInvalid",
            'Invalid value: "ab": spec in body should be at least 3 chars long',
        ),
        (
            "A",
            {"type": "string", "pattern": "^[a-z]+$"},
            "FieldValueInvalid",
            "Invalid value: \"A\": spec in body should match '^[a-z]+$'",
        ),
        (
            "yesterday",
            {"type": "string", "format": "date-time"},
            "FieldValueInvalid",
            'Invalid value: "yesterday": spec in body must be of type date-time: "yesterday"',
        ),
        (
            "%%%",
            {"type": "string", "format": "byte"},
            "FieldValueInvalid",
            'Invalid value: "%%%": spec in body must be of type byte: "%%%"',
        ),
        (
            11,
            {"type": "integer", "maximum": 10},
            "FieldValueInvalid",
            "Invalid value: 11: spec in body should be less than or equal to 10",
        ),
        ([1, 2, 3], {"type": "array", "maxItems": 2}, "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        (
            [],
            {"type": "array", "minItems": 1},
            "FieldValueInvalid",
            "Invalid value: 0: spec in body should have at least 1 items",
        ),
        (
            {"a": "1", "b": "2"},
            {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
            "FieldValueTooMany",
            "Too many: 2: must have at most 1 items",
        ),
        (
            "C",
            {"type": "string", "enum": ["A", "B"]},
            "FieldValueNotSupported",
            'Unsupported value: "C": supported values: "A", "B"',
        ),
        ([1, 1], {"type": "array", "x-kubernetes-list-type": "set"}, "FieldValueDuplicate", "Duplicate value: 1"),
    ],
)
def test_value_validations(value: Any, schema: dict[str, Any], reason: str, body: str) -> None:
    errors = _check(value, schema)[1]
    assert [(e[0], e[2]) for e in errors] == [(reason, body)]


def test_list_map_keys_must_be_unique() -> None:
    schema = {
        "type": "array",
        "items": {"type": "object", "properties": {"number": {"type": "integer"}}},
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["number"],
    }
    errors = _check([{"number": 80}, {"number": 443}, {"number": 80}], schema)[1]
    assert errors == [("FieldValueDuplicate", "spec[2]", 'Duplicate value: {"number":80}')]


def test_istio_style_one_of_with_not_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"simple": {"type": "string"}, "hash": {"type": "object"}},
        "oneOf": [
            {"not": {"anyOf": [{"required": ["simple"]}, {"required": ["hash"]}]}},
            {"required": ["simple"]},
            {"required": ["hash"]},
        ],
    }
    assert _check({}, schema)[1] == []
    assert _check({"simple": "RANDOM"}, schema)[1] == []
    errors = _check({"simple": "RANDOM", "hash": {}}, schema)[1]
    assert errors == [
        (
            "FieldValueInvalid",
            "spec",
            'Invalid value: "": "spec" must validate one and only one schema (oneOf). Found 2 valid alternatives',
        )
    ]


def test_all_of_and_any_of() -> None:
    schema = {
        "type": "object",
        "allOf": [{"required": ["a"]}],
        "anyOf": [{"required": ["b"]}, {"required": ["c"]}],
        "properties": {k: {"type": "string"} for k in "abc"},
    }
    assert _check({"a": "1", "c": "1"}, schema)[1] == []
    errors = _check({"b": "1"}, schema)[1]
    assert errors == [("FieldValueRequired", "spec.a", "Required value")]
    errors = _check({"a": "1"}, schema)[1]
    assert errors[0][2].endswith('"spec" must validate at least one schema (anyOf)')
