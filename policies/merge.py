"""Three-way merge of one Istio object: a change's own edit (base → new) carried onto another version.

Maps merge key by key; lists and scalars are atomic values (as server-side apply treats Istio's
lists). An edit is a path whose value differs between base and new (set, changed or removed). Onto
the target, an edit applies where the target still holds the base's value (or already holds the
new one); where the target holds a third value it is a conflict: reported, not applied, and the
target's value is kept. What the target has that the edit does not touch is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]
_MISSING: Any = object()


@dataclass(frozen=True)
class MergeConflict:
    path: str
    base: Any
    target: Any
    change: Any

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "base": self.base, "target": self.target, "change": self.change}


def _get(obj: Any, path: Path) -> Any:
    node = obj
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return _MISSING
        node = node[segment]
    return node


def _edits(base: Any, new: Any, prefix: Path = ()) -> list[Path]:
    if isinstance(base, dict) and isinstance(new, dict):
        paths: list[Path] = []
        for key in [*base, *(k for k in new if k not in base)]:
            paths += _edits(base.get(key, _MISSING), new.get(key, _MISSING), (*prefix, key))
        return paths
    return [] if base == new else [prefix]


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for segment in path[:-1]:
        if not isinstance(node.get(segment), dict):
            node[segment] = {}
        node = node[segment]
    if value is not _MISSING:
        node[path[-1]] = copy.deepcopy(value)
        return
    node.pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):  # maps the removal emptied go too
        parent = _get(obj, path[: depth - 1])
        if isinstance(parent, dict) and parent.get(path[depth - 1]) == {}:
            parent.pop(path[depth - 1])
        else:
            break


def _plain(value: Any) -> Any:
    return None if value is _MISSING else value


def three_way(
    *, base: dict[str, Any] | None, new: dict[str, Any], target: dict[str, Any]
) -> tuple[dict[str, Any], list[MergeConflict]]:
    """``target`` with the edit base → new applied, and the conflicts left unapplied."""
    result = copy.deepcopy(target)
    conflicts = []
    for path in _edits(base or {}, new):
        was, wanted, there = _get(base or {}, path), _get(new, path), _get(target, path)
        if there == wanted:
            continue
        if there == was:
            _set(result, path, wanted)
        else:
            conflicts.append(MergeConflict(".".join(path), _plain(was), _plain(there), _plain(wanted)))
    return result, conflicts


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 (a per-environment override)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
