"""A simplified server-side-apply field manager.

Ownership is tracked per leaf path: a path goes down through objects (maps),
while lists and scalars are atomic leaves (Istio CRD lists are atomic, so this
matches kube for them), as are the individual keys of ``metadata.labels`` and
``metadata.annotations``. Each manager entry (manager, operation, subresource)
owns a set of leaf paths, rendered as kube's ``FieldsV1`` in
``metadata.managedFields``.

- Update (POST/PUT/PATCH): the writer takes every leaf whose value changed
  (other entries lose those leaves); an Update never conflicts. A request that
  sets ``metadata.managedFields`` itself replaces the recorded ownership
  (kube's "directly updating managed fields"); an empty list keeps the live
  entries, a list of one empty entry clears them.
- Apply: the applier owns exactly the leaves of its intent. A leaf owned by any
  other entry whose value the intent changes is a conflict (409) unless
  ``force``; forcing moves the leaf to the applier. A leaf set to the value it
  already has is shared with its other owners. Leaves the applier owned
  before, left out of its intent and owned by nobody else, are removed.
- The first apply to an object that has no managedFields records the existing
  fields under an Update entry ``before-first-apply`` (kube's
  skipNonAppliedManager), so they can conflict.
- Apply with the manager ``kubectl`` to an object with the
  ``kubectl.kubernetes.io/last-applied-configuration`` annotation (kube's
  lastAppliedManager / lastAppliedUpdater): conflicts on fields the annotation
  lists are forced (the upgrade from client-side apply), and the annotation is
  rewritten to the applied configuration.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError

Path = tuple[str, ...]
_MISSING = object()
_TRACKED_METADATA = ("labels", "annotations")
_UNTRACKED_ROOT = ("apiVersion", "kind", "metadata")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BEFORE_FIRST_APPLY = "before-first-apply"
KUBECTL = "kubectl"


@dataclass
class ManagerEntry:
    """One ``metadata.managedFields`` entry with its owned leaf paths."""

    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str = ""
    paths: set[Path] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        """The manager as kube prints it in conflict messages."""
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version} at {self.time}"
        return text

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> ManagerEntry:
        return cls(
            manager=entry.get("manager", ""),
            operation=entry.get("operation", "Update"),
            api_version=entry.get("apiVersion", ""),
            time=entry.get("time", ""),
            subresource=entry.get("subresource", ""),
            paths=parse_fields_v1(entry.get("fieldsV1", {})),
        )


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Render leaf paths as ``FieldsV1`` (``{"f:spec": {"f:hosts": {}}}``)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for segment in path:
            node = node.setdefault(f"f:{segment}", {})
    return _mark_owned_parents(tree, set(paths))


def _mark_owned_parents(tree: dict[str, Any], paths: set[Path], prefix: Path = ()) -> dict[str, Any]:
    for key, child in tree.items():
        if key == ".":
            continue
        path = (*prefix, key[2:])
        if child and path in paths:
            child["."] = {}
        _mark_owned_parents(child, paths, path)
    return tree


def parse_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    if not tree or "." in tree:
        paths.add(prefix)
    for key, child in tree.items():
        if key.startswith("f:"):
            paths |= parse_fields_v1(child, (*prefix, key[2:]))
    return {path for path in paths if path}


def leaf_paths(obj: dict[str, Any], include_status: bool = True) -> set[Path]:
    """Owned-field paths of an object: spec-like leaves plus label/annotation keys."""
    paths: set[Path] = set()
    meta = obj.get("metadata") or {}
    for section in _TRACKED_METADATA:
        for key in meta.get(section) or {}:
            paths.add(("metadata", section, key))
    for key, value in obj.items():
        if key in _UNTRACKED_ROOT or (key == "status" and not include_status):
            continue
        _collect(value, (key,), paths)
    return paths


def _collect(value: Any, prefix: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _collect(item, (*prefix, key), out)
    else:
        out.add(prefix)


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return _MISSING
        node = node[segment]
    return node


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[path[-1]] = value


def _delete(obj: dict[str, Any], path: Path) -> None:
    """Remove a leaf, then any emptied parent map below the top level."""
    parents = [obj]
    for segment in path[:-1]:
        child = parents[-1].get(segment)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


def render_entries(entries: list[ManagerEntry], obj: dict[str, Any]) -> list[dict[str, Any]]:
    """``managedFields`` for ``obj``: ownership of vanished fields dropped, empty entries too."""
    existing = leaf_paths(obj)
    rendered = []
    for entry in entries:
        entry.paths &= existing
        if entry.paths:
            rendered.append(entry.to_dict())
    return rendered


def _entry(entries: list[ManagerEntry], template: ManagerEntry) -> ManagerEntry:
    for entry in entries:
        if entry.identity == template.identity:
            return entry
    entries.append(template)
    return template


def read_entries(obj: dict[str, Any] | None) -> list[ManagerEntry]:
    if not obj:
        return []
    raw = obj.get("metadata", {}).get("managedFields") or []
    return [ManagerEntry.from_dict(entry) for entry in raw]


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    writer: ManagerEntry,
) -> list[dict[str, Any]]:
    """managedFields after a non-apply write of ``new`` by ``writer`` (operation Update).

    Writes to the main resource never own status fields; writes to /status own only those.
    A main-resource write whose ``new`` carries non-empty ``metadata.managedFields`` sets the
    recorded ownership to those entries (a list of one empty entry: none) before its own changes
    are recorded; an empty or absent list keeps the live entries.
    """
    supplied = (new.get("metadata") or {}).get("managedFields") or []
    if supplied and writer.subresource == "":
        entries = [ManagerEntry.from_dict(entry) for entry in supplied if entry]
    else:
        entries = read_entries(old)
    status_write = writer.subresource == "status"
    changed = {
        path
        for path in leaf_paths(new)
        if (path[0] == "status") == status_write and value_at(old, path) != value_at(new, path)
    }
    for entry in entries:
        if entry.identity != writer.identity:
            entry.paths -= changed
    if changed:
        own = _entry(entries, writer)
        own.paths |= changed
        own.time, own.api_version = writer.time, writer.api_version
    return render_entries(entries, new)


@dataclass(frozen=True)
class Conflict:
    owner: ManagerEntry
    path: Path

    @property
    def field_path(self) -> str:
        return "." + ".".join(self.path)


def conflict_error(conflicts: list[Conflict]) -> ApiError:
    """The 409 kube answers for apply conflicts (``NewApplyConflict``)."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {c.owner.describe()}",
            "field": c.field_path,
        }
        for c in conflicts
    ]
    if len(conflicts) == 1:
        summary = f"conflict with {conflicts[0].owner.describe()}: {conflicts[0].field_path}"
    else:
        lines: list[str] = []
        for owner in sorted({c.owner.describe() for c in conflicts}):
            lines.append(f"conflicts with {owner}:")
            lines.extend(f"- {c.field_path}" for c in conflicts if c.owner.describe() == owner)
        summary = "\n".join(lines)
    plural = "s" if len(conflicts) > 1 else ""
    return ApiError(
        409,
        "Conflict",
        f"Apply failed with {len(conflicts)} conflict{plural}: {summary}",
        {"causes": causes},
    )


def apply(
    current: dict[str, Any] | None,
    intent: dict[str, Any],
    applier: ManagerEntry,
    force: bool,
) -> dict[str, Any]:
    """Merge ``intent`` into ``current`` for ``applier``; raises a 409 ApiError on conflicts.

    The result carries the new ``metadata.managedFields``.
    """
    entries = read_entries(current)
    base = copy.deepcopy(current) if current else {}
    if current and current.get("metadata", {}).get("uid") and not entries:
        # An object never applied nor tracked: its fields so far belong to "before-first-apply".
        entries = [
            ManagerEntry(
                BEFORE_FIRST_APPLY,
                "Update",
                applier.api_version,
                applier.time,
                paths=leaf_paths(base, include_status=False),
            )
        ]
    intent_paths = leaf_paths(intent, include_status=False)
    conflicts = [
        Conflict(entry, path)
        for entry in entries
        if entry.identity != applier.identity
        for path in sorted(entry.paths & intent_paths)
        if _changes(base, intent, path)
    ]
    if conflicts and not force and applier.manager == KUBECTL:
        allowed = _last_applied_paths(base)
        conflicts_left = [c for c in conflicts if c.path not in allowed]
        if not conflicts_left:
            force = True
    if conflicts and not force:
        raise conflict_error(conflicts)
    for conflict in conflicts:
        conflict.owner.paths.discard(conflict.path)
    own = _entry(entries, applier)
    others = set().union(*(e.paths for e in entries if e.identity != applier.identity))
    for path in own.paths - intent_paths - others:
        _delete(base, path)
    for path in intent_paths:
        value = value_at(intent, path)
        if value == {} and isinstance(value_at(base, path), dict):
            continue
        _set(base, path, copy.deepcopy(value))
    own.paths = set(intent_paths)
    own.time, own.api_version = applier.time, applier.api_version
    annotations = base.get("metadata", {}).get("annotations") or {}
    if applier.manager == KUBECTL and LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = _last_applied_text(intent)
    base.setdefault("metadata", {})["managedFields"] = render_entries(entries, base)
    return base


def _last_applied_paths(obj: dict[str, Any]) -> set[Path]:
    """The fields the client-side-apply annotation lists (what kubectl apply last set)."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return set()
    try:
        applied = json.loads(text)
    except ValueError:
        return set()
    return leaf_paths(applied, include_status=False) if isinstance(applied, dict) else set()


def _last_applied_text(intent: dict[str, Any]) -> str:
    """The annotation kube's lastAppliedUpdater writes: the applied object without the annotation."""
    applied = copy.deepcopy(intent)
    annotations = (applied.get("metadata") or {}).get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if not annotations:
        applied.get("metadata", {}).pop("annotations", None)
    return json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"


def _changes(current: dict[str, Any], intent: dict[str, Any], path: Path) -> bool:
    mine, theirs = value_at(intent, path), value_at(current, path)
    if mine == {} and isinstance(theirs, dict):
        return False
    return bool(mine != theirs)
