"""The registry of cross-resource checks and the typed accessors they share.

A check is a small generator function registered with its finding code and the kinds it applies to.
It receives the bundle's object and the context and yields (field path, message) pairs; the level
comes from the code's catalogue entry. Objects may have failed the schema, so checks read fields
through `items`/`mapping`/`text`, which never raise on a value of the wrong type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policies.validation.codes import CATALOGUE
from policies.validation.context import MeshObject, ValidationContext

# (field path, message), or (field path, message, Istio code) where it differs from the catalogue's.
Hit = tuple[str, str] | tuple[str, str, str]
CheckFunction = Callable[[MeshObject, ValidationContext], Iterator[Hit]]


@dataclass(frozen=True)
class Check:
    code: str
    kinds: tuple[str, ...]
    function: CheckFunction
    needs_cluster: bool


REGISTRY: list[Check] = []


def check(code: str, *kinds: str, needs_cluster: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check. `needs_cluster`: skipped when the cluster's state could not be read."""
    if code not in CATALOGUE:
        raise KeyError(f"{code} has no entry in policies.validation.codes")

    def register(function: CheckFunction) -> CheckFunction:
        REGISTRY.append(Check(code, tuple(kinds), function, needs_cluster))
        return function

    return register


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def entries(parent: Mapping[str, Any], key: str, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, item) for each mapping in the list `parent[key]`, e.g. ("spec.http[0]", {...})."""
    prefix = f"{path}.{key}" if path else key
    for index, item in enumerate(items(parent.get(key))):
        if isinstance(item, dict):
            yield f"{prefix}[{index}]", item


def strings(parent: Mapping[str, Any], key: str, path: str) -> Iterator[tuple[str, str]]:
    """(path, value) for each string in the list `parent[key]`."""
    prefix = f"{path}.{key}" if path else key
    for index, item in enumerate(items(parent.get(key))):
        if isinstance(item, str):
            yield f"{prefix}[{index}]", item


def labels_text(labels: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in labels.items())
