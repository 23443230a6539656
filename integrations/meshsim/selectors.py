"""Label selectors (``labelSelector``) and field selectors (``fieldSelector``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = r"(?P<key>[^\s!=<>(),]+)"
_SET_REQUIREMENT = re.compile(_KEY + r"\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_BINARY_REQUIREMENT = re.compile(_KEY + r"\s*(?P<op>==|!=|=|<|>)\s*(?P<value>[^\s!=<>(),]*)$")
_EXISTS = re.compile(r"(?P<neg>!?)\s*" + _KEY + "$")

SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace")

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Labels) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "==" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case ">" | "<":
                return present and _compare(value, self.operator, self.values[0])
        return False


def _compare(value: str | None, operator: str, bound: str) -> bool:
    try:
        left, right = int(value or ""), int(bound)
    except ValueError:
        return False
    return left > right if operator == ">" else left < right


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _parse_requirement(text: str) -> Requirement:
    if match := _SET_REQUIREMENT.match(text):
        values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
        return Requirement(match["key"], match["op"], values)
    if match := _BINARY_REQUIREMENT.match(text):
        if match["op"] in "<>" and not match["value"].lstrip("-").isdigit():
            raise bad_request(f"unable to parse requirement: {text}: value must be an integer")
        return Requirement(match["key"], match["op"], (match["value"],))
    if match := _EXISTS.match(text):
        return Requirement(match["key"], "!" if match["neg"] else "exists")
    raise bad_request(f"unable to parse requirement: found '{text}', expected a valid selector")


def parse_label_selector(text: str | None) -> Callable[[Labels], bool]:
    """A predicate over labels; raises a 400 ApiError for an unparsable selector."""
    requirements = [_parse_requirement(part) for part in _split_top_level(text or "")]
    return lambda labels: all(requirement.matches(labels) for requirement in requirements)


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over objects for ``metadata.name`` / ``metadata.namespace`` terms."""
    terms = []
    for part in _split_top_level(text or ""):
        match = re.match(r"^([^!=]+?)\s*(==|!=|=)\s*(.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field_name, operator, value = match.groups()
        if field_name not in SUPPORTED_FIELDS:
            supported = ", ".join(f'"{name}"' for name in SUPPORTED_FIELDS)
            raise bad_request(f'"{field_name}" is not a known field selector: only {supported}')
        terms.append((field_name.split(".", 1)[1], operator == "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return all((meta.get(key, "") == value) != negated for key, negated, value in terms)

    return matches
