"""ObjectMeta validation: names, labels, annotations and unknown metadata fields."""

from __future__ import annotations

import re
from typing import Any

from integrations.kubernetes.structural import Outcome, json_type

from .errors import ErrorType, FieldError, invalid
from .resources import NameRule

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

NAME_RULES: dict[NameRule, tuple[str, int, str]] = {
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character "
        f"(e.g. 'example.com', regex used for validation is '{_SUBDOMAIN}')",
    ),
    "label": (
        _LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character "
        f"(e.g. 'my-name',  or '123-abc', regex used for validation is '{_LABEL}')",
    ),
    "dns1035": (
        _DNS1035,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
        "start with an alphabetic character, and end with an alphanumeric character "
        f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035}')",
    ),
}
_QUALIFIED_NAME_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_QUALIFIED_NAME}')"
)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)

SYSTEM_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_STRING_FIELDS = ("name", "generateName", "namespace")
_STRING_MAPS = ("labels", "annotations")
_LISTS = ("finalizers", "ownerReferences")
KNOWN_FIELDS = frozenset(SYSTEM_FIELDS + _STRING_FIELDS + _STRING_MAPS + _LISTS)


def name_errors(name: str, rule: NameRule, path: str = "metadata.name") -> list[FieldError]:
    expression, max_length, message = NAME_RULES[rule]
    errors = []
    if len(name) > max_length:
        errors.append(invalid(path, name, f"must be no more than {max_length} characters"))
    if not re.fullmatch(expression, name):
        errors.append(invalid(path, name, message))
    return errors


def _qualified_name_errors(key: str, path: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if prefix:
        errors.extend(name_errors(prefix, "subdomain", path))
    if not name or len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append(invalid(path, key, _QUALIFIED_NAME_MESSAGE))
    return errors


def _string_map_errors(values: dict[str, Any], path: str, labels: bool) -> list[FieldError]:
    errors = []
    for key, value in values.items():
        errors.extend(_qualified_name_errors(key, path))
        if not isinstance(value, str):
            detail = f'{path}.{key} in body must be of type string: "{json_type(value)}"'
            errors.append(FieldError(ErrorType.TYPE_INVALID, f"{path}.{key}", value, detail))
        elif labels and (len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value)):
            errors.append(invalid(path, value, _LABEL_VALUE_MESSAGE))
    return errors


def validate_metadata(meta: dict[str, Any]) -> Outcome:
    """Type-check ObjectMeta, validate labels/annotations and prune unknown fields."""
    outcome = Outcome({key: value for key, value in meta.items() if key in KNOWN_FIELDS})
    outcome.unknown_fields = [f"metadata.{key}" for key in meta if key not in KNOWN_FIELDS]
    for key in _STRING_FIELDS:
        if key in meta and not isinstance(meta[key], str):
            detail = f'metadata.{key} in body must be of type string: "{json_type(meta[key])}"'
            outcome.errors.append(FieldError(ErrorType.TYPE_INVALID, f"metadata.{key}", meta[key], detail))
    for key in _STRING_MAPS:
        values = meta.get(key)
        if values is None:
            continue
        if isinstance(values, dict):
            outcome.errors.extend(_string_map_errors(values, f"metadata.{key}", key == "labels"))
        else:
            detail = f'metadata.{key} in body must be of type object: "{json_type(values)}"'
            outcome.errors.append(FieldError(ErrorType.TYPE_INVALID, f"metadata.{key}", values, detail))
    return outcome
