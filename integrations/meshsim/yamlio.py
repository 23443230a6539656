"""YAML reading that keeps JSON semantics (timestamps stay strings)."""

from __future__ import annotations

from typing import Any

import yaml

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class _JsonCompatibleLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader without the implicit timestamp type: ``2024-01-01`` stays a string."""


_JsonCompatibleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(text: str | bytes) -> list[Any]:
    """Every non-empty document of a multi-document YAML (or JSON) text."""
    return [doc for doc in yaml.load_all(text, Loader=_JsonCompatibleLoader) if doc is not None]


def load_document(text: str | bytes) -> Any:
    """A single YAML (or JSON) document."""
    return yaml.load(text, Loader=_JsonCompatibleLoader)
