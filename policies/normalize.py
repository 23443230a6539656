"""Canonical form of an Istio object: what a revision stores and what diffs compare."""

import hashlib
import json
from typing import Any

from policies.constants import SERVER_MANAGED_ANNOTATIONS, SERVER_MANAGED_METADATA


def normalize_object(obj: dict[str, Any]) -> dict[str, Any]:
    """Drops server-managed metadata and status; sorts keys. The input is not modified: `_sorted`
    rebuilds every dict and list (JSON leaves are immutable), and the server-managed metadata
    (managedFields, the largest part of a live object) is dropped before anything is copied."""
    result = {key: value for key, value in obj.items() if key != "status"}
    metadata = {k: v for k, v in (result.get("metadata") or {}).items() if k not in SERVER_MANAGED_METADATA}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in SERVER_MANAGED_ANNOTATIONS}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    if not metadata.get("labels"):
        metadata.pop("labels", None)
    result["metadata"] = metadata
    return _sorted(result)


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
