"""YAML reading as kube-apiserver reads it (sigs.k8s.io/yaml): JSON values, go-yaml's plain scalars.

``1:20``, ``001:db8::`` and ``2024-01-01`` stay strings, ``yes`` is true, ``0o17`` is 15 (see
``integrations.kubernetes.yamlscalars``); keys are strings; NaN and infinities are refused.
"""

from __future__ import annotations

from typing import Any

import yaml

from integrations.kubernetes.yamlscalars import (
    FLOW_COLON_PROBLEM,
    PLAIN_TAG,
    GoFlowScannerMixin,
    KubernetesResolver,
    is_json_number,
    key_text,
    resolve_plain,
)

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


def _plain(loader: Any, node: yaml.ScalarNode) -> Any:
    value = resolve_plain(node.value)
    if not is_json_number(value):
        raise ValueError(f"json: unsupported value: {node.value} (line {node.start_mark.line + 1})")
    return value


class _KubernetesLoader(KubernetesResolver, _BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader with Kubernetes' scalar rules."""


class _FlowLoader(KubernetesResolver, GoFlowScannerMixin, yaml.SafeLoader):
    """The pure-Python loader, for texts LibYAML refuses over a ``:`` in a flow plain scalar."""


for _loader in (_KubernetesLoader, _FlowLoader):
    _loader.add_constructor(PLAIN_TAG, _plain)
    # an explicit !!timestamp stays its text, as in JSON
    _loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key if isinstance(key, str) else key_text(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _load_all(text: str | bytes, loader: type) -> list[Any]:
    return [_jsonable(doc) for doc in yaml.load_all(text, Loader=loader) if doc is not None]


def load_documents(text: str | bytes) -> list[Any]:
    """Every non-empty document of a multi-document YAML (or JSON) text."""
    try:
        return _load_all(text, _KubernetesLoader)
    except yaml.MarkedYAMLError as exc:
        if FLOW_COLON_PROBLEM not in str(exc.problem):
            raise
        return _load_all(text, _FlowLoader)


def load_document(text: str | bytes) -> Any:
    """A single YAML (or JSON) document."""
    try:
        return _jsonable(yaml.load(text, Loader=_KubernetesLoader))
    except yaml.MarkedYAMLError as exc:
        if FLOW_COLON_PROBLEM not in str(exc.problem):
            raise
        return _jsonable(yaml.load(text, Loader=_FlowLoader))
