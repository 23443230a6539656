"""Kubernetes REST semantics over the store: get/list/create/replace/patch/apply/delete.

Every write runs under ``store.lock``: validation, preconditions and the write
form one atomic step. Objects are stored in their storage version and
rendered in the requested version (served versions share one schema in Istio,
so conversion only rewrites ``apiVersion``).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from integrations.kubernetes.structural import validate_custom_object

from . import core, errors, fieldmanager
from .errors import ApiError, ErrorType, FieldError
from .objectmeta import SYSTEM_FIELDS, name_errors, validate_metadata
from .patches import PatchError, json_patch, merge_patch
from .resources import NAMESPACES, ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .store import Obj, Store
from .yamlio import load_document

FieldValidation = Literal["Strict", "Warn", "Ignore"]
FIELD_VALIDATIONS: tuple[FieldValidation, ...] = ("Strict", "Warn", "Ignore")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
CUSTOM_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
CORE_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# How often an idle watch that asked for bookmarks gets one (the API server: about a minute).
BOOKMARK_INTERVAL_S = float(os.environ.get("MESHSIM_BOOKMARK_SECONDS", "1.0"))
# A watch without timeoutSeconds ends after this long (the API server: 30 to 60 minutes).
WATCH_DEFAULT_TIMEOUT_S = 1800


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WriteOptions:
    """Query options shared by the write verbs."""

    field_manager: str
    dry_run: bool = False
    field_validation: FieldValidation = "Warn"
    force: bool = False
    subresource: str = ""


@dataclass
class Result:
    """A successful answer: HTTP code, JSON body and ``Warning`` texts."""

    code: int
    body: Obj
    warnings: list[str] = field(default_factory=list)


def render(resource: ResourceType, version: str, obj: Obj) -> Obj:
    """A copy of a stored object as seen through ``version`` (apiVersion first, like kube)."""
    rendered = {"apiVersion": resource.api_version(version), "kind": resource.kind}
    rendered.update((k, copy.deepcopy(v)) for k, v in obj.items() if k not in rendered)
    return rendered


def _name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _comparable(obj: Obj) -> Obj:
    """The object without volatile fields: a write that changes nothing else is a no-op."""
    result = copy.deepcopy(obj)
    meta = result.get("metadata", {})
    meta.pop("resourceVersion", None)
    for entry in meta.get("managedFields", []):
        entry.pop("time", None)
    return result


class Api:
    """The verbs of the Kubernetes API for every registered resource type."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # reads ----------------------------------------------------------------

    def get(self, resource: ResourceType, version: str, namespace: str, name: str) -> Obj:
        return render(resource, version, self._existing(resource, namespace, name))

    def list_collection(
        self, resource: ResourceType, version: str, namespace: str | None, query: dict[str, str]
    ) -> Obj:
        label_matches = parse_label_selector(query.get("labelSelector"))
        field_matches = parse_field_selector(query.get("fieldSelector"))
        with self.store.lock:
            revision = self.store.revision
            objects = self.store.list_objects(resource.key, namespace)
        selected = [obj for obj in objects if label_matches(obj["metadata"].get("labels") or {}) and field_matches(obj)]
        start = _decode_continue(query.get("continue"))
        selected = [obj for obj in selected if _position(obj) > start] if start else selected
        list_meta: Obj = {"resourceVersion": str(revision)}
        limit = _limit(query.get("limit"))
        if 0 < limit < len(selected):
            list_meta["continue"] = _encode_continue(_position(selected[limit - 1]))
            list_meta["remainingItemCount"] = len(selected) - limit
            selected = selected[:limit]
        items = [render(resource, version, obj) for obj in selected]
        if not resource.custom:
            for item in items:
                del item["apiVersion"], item["kind"]
        return {
            "apiVersion": resource.api_version(version),
            "kind": f"{resource.kind}List",
            "metadata": list_meta,
            "items": items,
        }

    def watch(
        self, resource: ResourceType, version: str, namespace: str | None, query: dict[str, str]
    ) -> Iterator[Obj]:
        """Watch events as the API server sends them: ADDED/MODIFIED/DELETED, BOOKMARK, ERROR.

        Without a resourceVersion (or "0") the current objects come first as ADDED events. A
        resourceVersion older than the watch history gets one ERROR event (a 410 Status).
        """
        label_matches = parse_label_selector(query.get("labelSelector"))
        field_matches = parse_field_selector(query.get("fieldSelector"))
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        timeout = _limit(query.get("timeoutSeconds")) or WATCH_DEFAULT_TIMEOUT_S
        deadline = time.monotonic() + timeout
        given = query.get("resourceVersion") or "0"
        try:
            revision = int(given)
        except ValueError as exc:
            raise errors.bad_request(f"resourceVersion: Invalid value: {given!r}") from exc

        def wanted(obj: Obj) -> bool:
            meta = obj["metadata"]
            return (
                (namespace is None or meta.get("namespace", "") == namespace)
                and label_matches(meta.get("labels") or {})
                and field_matches(obj)
            )

        def event(kind: str, obj: Obj) -> Obj:
            return {"type": kind, "object": render(resource, version, obj)}

        if revision == 0:
            with self.store.lock:
                revision = self.store.revision
                current = self.store.list_objects(resource.key, namespace)
            for obj in current:
                if wanted(obj):
                    yield event("ADDED", obj)
        last_bookmark = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            with self.store.lock:
                events = self.store.events_since(revision, resource.key)
                head = self.store.revision
            if events is None:
                gone = ApiError(410, "Expired", f"too old resource version: {revision} ({head})")
                yield {"type": "ERROR", "object": gone.status()}
                return
            for change in events:
                if wanted(change.object):
                    yield event(change.type, change.object)
            revision = head
            if bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_INTERVAL_S:
                last_bookmark = time.monotonic()
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": resource.api_version(version),
                        "kind": resource.kind,
                        "metadata": {"resourceVersion": str(revision)},
                    },
                }
            self.store.wait_for_change(revision, min(remaining, BOOKMARK_INTERVAL_S))

    # writes ---------------------------------------------------------------

    def create(self, resource: ResourceType, version: str, namespace: str, body: Any, options: WriteOptions) -> Result:
        obj = self._decode_object(resource, version, body)
        with self.store.lock:
            self._set_namespace(resource, obj, namespace)
            self._require_namespace(resource, namespace)
            meta = obj["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            if resource.has_status:
                obj.pop("status", None)
            obj, warnings = self._validate(resource, version, obj, options)
            writer = self._writer(resource, version, options, "Update")
            return self._commit_create(resource, version, obj, options, warnings, writer)

    def replace(
        self,
        resource: ResourceType,
        version: str,
        namespace: str,
        name: str,
        body: Any,
        options: WriteOptions,
    ) -> Result:
        obj = self._decode_object(resource, version, body)
        with self.store.lock:
            current = self._existing(resource, namespace, name)
            self._set_namespace(resource, obj, namespace)
            if _name_of(obj) != name:
                raise errors.bad_request(
                    f"the name of the object ({_name_of(obj)}) does not match the name on the URL ({name})"
                )
            self._check_resource_version(resource, obj, current, required=True)
            return self._commit_update(resource, version, current, obj, options, "Update")

    def patch(
        self,
        resource: ResourceType,
        version: str,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        options: WriteOptions,
    ) -> Result:
        accepted = CUSTOM_PATCH_TYPES if resource.custom else CORE_PATCH_TYPES
        if content_type not in accepted:
            raise errors.unsupported_media_type(content_type, accepted)
        if options.force and content_type != APPLY_PATCH:
            raise _patch_options_invalid("force", "Forbidden", "may not be specified for non-apply patch")
        if content_type == APPLY_PATCH:
            if options.subresource:
                raise errors.method_not_allowed()
            return self._apply(resource, version, namespace, name, raw, options)
        patch = _decode_json(raw)
        with self.store.lock:
            current = self._existing(resource, namespace, name)
            rendered = render(resource, version, current)
            try:
                if content_type == JSON_PATCH:
                    patched = json_patch(rendered, patch)
                else:
                    if not isinstance(patch, dict):
                        raise errors.bad_request("a merge patch must be a JSON object")
                    patched = merge_patch(rendered, patch)
            except PatchError as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": str(exc)}]},
                ) from exc
            if not isinstance(patched, dict) or _name_of(patched) != name:
                raise errors.bad_request("a patch may not change the name of the object")
            self._check_resource_version(resource, patched, current, required=False)
            return self._commit_update(resource, version, current, patched, options, "Update")

    def delete(
        self,
        resource: ResourceType,
        version: str,
        namespace: str,
        name: str,
        options: WriteOptions,
        preconditions: Obj,
    ) -> Result:
        with self.store.lock:
            current = self._existing(resource, namespace, name)
            self._check_preconditions(resource, current, preconditions)
            if resource is NAMESPACES and name in PROTECTED_NAMESPACES:
                raise errors.forbidden(resource.plural, resource.group, name, "this namespace may not be deleted")
            if resource is NAMESPACES:
                current["metadata"]["deletionTimestamp"] = now()
                current["status"] = {"phase": "Terminating"}
            if not options.dry_run:
                self.store.remove(resource.key, namespace, name)
                if resource is NAMESPACES:
                    for key, member in self.store.namespaced_keys(name):
                        self.store.remove(key, name, member)
            return Result(200, render(resource, version, current))

    # apply ----------------------------------------------------------------

    def _apply(
        self,
        resource: ResourceType,
        version: str,
        namespace: str,
        name: str,
        raw: bytes,
        options: WriteOptions,
    ) -> Result:
        if not options.field_manager:
            raise _patch_options_invalid("fieldManager", "Required", "is required for apply patch")
        intent = _decode_yaml(raw)
        if not isinstance(intent, dict):
            raise errors.bad_request("an apply patch must be a YAML or JSON object")
        api_version, kind = resource.api_version(version), resource.kind
        if intent.get("apiVersion") != api_version or intent.get("kind") != kind:
            raise errors.bad_request(
                f"apply patch must set apiVersion {api_version!r} and kind {kind!r}, got "
                f"{intent.get('apiVersion')!r} and {intent.get('kind')!r}"
            )
        meta = intent.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be a JSON object")
        if meta.get("managedFields"):
            raise errors.bad_request("metadata.managedFields must be nil")
        if meta.setdefault("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        with self.store.lock:
            self._set_namespace(resource, intent, namespace)
            current = self.store.get(resource.key, namespace, name)
            applier = self._writer(resource, version, options, "Apply")
            if current is None:
                self._require_namespace(resource, namespace)
                skeleton = {
                    "apiVersion": api_version,
                    "kind": kind,
                    "metadata": _untracked_meta(meta),
                }
                merged = fieldmanager.apply(skeleton, intent, applier, options.force)
                merged, warnings = self._validate(resource, version, merged, options)
                return self._commit_create(resource, version, merged, options, warnings, None)
            self._check_resource_version(resource, intent, current, required=False)
            merged = fieldmanager.apply(render(resource, version, current), intent, applier, options.force)
            return self._commit_update(resource, version, current, merged, options, "Apply")

    # shared steps ---------------------------------------------------------

    def _existing(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        found = self.store.get(resource.key, namespace if resource.namespaced else "", name)
        if found is None:
            raise errors.not_found(resource.plural, resource.group, name)
        return found

    def _decode_object(self, resource: ResourceType, version: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        api_version = resource.api_version(version)
        if resource.custom and not obj.get("kind"):
            raise errors.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)}'")
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", resource.kind)
        if obj["apiVersion"] != api_version:
            raise errors.bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match "
                f"the expected API version ({api_version})"
            )
        if obj["kind"] != resource.kind:
            raise errors.bad_request(
                f"the kind in the data ({obj['kind']}) does not match the expected kind ({resource.kind})"
            )
        return obj

    def _set_namespace(self, resource: ResourceType, obj: Obj, namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be a JSON object")
        if not resource.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace

    def _require_namespace(self, resource: ResourceType, namespace: str) -> None:
        if resource.namespaced and self.store.get(NAMESPACES.key, "", namespace) is None:
            raise errors.not_found(NAMESPACES.plural, NAMESPACES.group, namespace)

    def _check_resource_version(self, resource: ResourceType, obj: Obj, current: Obj, required: bool) -> None:
        given = (obj.get("metadata") or {}).get("resourceVersion")
        if not given:
            if required and not resource.allows_unconditional_update:
                raise self._invalid(
                    resource,
                    _name_of(current),
                    [errors.invalid("metadata.resourceVersion", 0, "must be specified for an update")],
                )
            return
        if str(given) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, resource.group, _name_of(current), errors.STALE_OBJECT)

    def _check_preconditions(self, resource: ResourceType, current: Obj, preconditions: Obj) -> None:
        meta = current["metadata"]
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            expected = preconditions.get(key)
            if expected and expected != meta.get(key):
                raise errors.conflict(
                    resource.plural,
                    resource.group,
                    meta["name"],
                    f"Precondition failed: {label} in precondition: {expected}, "
                    f"{label} in object meta: {meta.get(key)}",
                )

    def _invalid(self, resource: ResourceType, name: str, found: list[FieldError]) -> ApiError:
        return errors.invalid_object(resource.kind, resource.group, name, found)

    def _validate(
        self,
        resource: ResourceType,
        version: str,
        obj: Obj,
        options: WriteOptions,
        old: Obj | None = None,
    ) -> tuple[Obj, list[str]]:
        """Prune and validate ``obj`` (the CRD's CEL rules too; transition rules against ``old``,
        the stored object, on updates); returns it with the unknown-field warnings."""
        meta_outcome = validate_metadata(obj.get("metadata", {}))
        found = list(meta_outcome.errors)
        unknown = list(meta_outcome.unknown_fields)
        name = meta_outcome.value.get("name")
        if not name:
            found.insert(0, errors.required("metadata.name", "name or generateName is required"))
        elif isinstance(name, str):
            found.extend(name_errors(name, resource.name_rule))
        if resource.custom:
            outcome = validate_custom_object(obj, resource.schemas[version], old=old)
            obj, unknown = outcome.value, unknown + outcome.unknown_fields
            found.extend(outcome.errors)
        else:
            found.extend(core.validate(resource, obj))
        obj["metadata"] = meta_outcome.value
        if options.field_validation == "Strict":
            found.extend(
                FieldError(ErrorType.UNKNOWN_FIELD, path, detail=f'unknown field "{path}"') for path in unknown
            )
        if found:
            raise self._invalid(resource, str(name or ""), found)
        if options.field_validation == "Warn":
            return obj, [f'unknown field "{path}"' for path in unknown]
        return obj, []

    def _writer(
        self, resource: ResourceType, version: str, options: WriteOptions, operation: str
    ) -> fieldmanager.ManagerEntry:
        return fieldmanager.ManagerEntry(
            manager=options.field_manager,
            operation=operation,
            api_version=resource.api_version(version),
            time=now(),
            subresource=options.subresource,
        )

    def _namespace_labels(self, resource: ResourceType, namespace: str) -> dict[str, str]:
        if not resource.namespaced:
            return {}
        found = self.store.get(NAMESPACES.key, "", namespace) or {}
        return dict(found.get("metadata", {}).get("labels") or {})

    def _commit_create(
        self,
        resource: ResourceType,
        version: str,
        obj: Obj,
        options: WriteOptions,
        warnings: list[str],
        writer: fieldmanager.ManagerEntry | None,
    ) -> Result:
        """Store a validated new object; ``writer`` is None for apply (fields already owned)."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        if self.store.get(resource.key, namespace, meta["name"]) is not None:
            raise errors.already_exists(resource.plural, resource.group, meta["name"])
        for key in SYSTEM_FIELDS:
            if key != "managedFields":
                meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if resource.tracks_generation:
            meta["generation"] = 1
        obj["apiVersion"] = resource.api_version(resource.storage_version)
        core.apply_defaults(resource, obj, None, self._namespace_labels(resource, namespace))
        _set_managed_fields(obj, None, writer)
        stored = obj if options.dry_run else self.store.put(resource.key, obj)
        return Result(201, render(resource, version, stored), warnings)

    def _commit_update(
        self,
        resource: ResourceType,
        version: str,
        current: Obj,
        candidate: Obj,
        options: WriteOptions,
        operation: str,
    ) -> Result:
        """Validate ``candidate`` as the next state of ``current`` and store it."""
        if options.subresource == "status":
            candidate = {**copy.deepcopy(current), "status": candidate.get("status")}
        elif resource.has_status:
            candidate = {k: v for k, v in candidate.items() if k != "status"}
            if "status" in current:
                candidate["status"] = copy.deepcopy(current["status"])
        new, warnings = self._validate(resource, version, candidate, options, old=current)
        meta, old_meta = new["metadata"], current["metadata"]
        for key in SYSTEM_FIELDS:
            if key == "managedFields":
                continue
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["name"] = old_meta["name"]
        if resource.namespaced:
            meta["namespace"] = old_meta["namespace"]
        new["apiVersion"] = resource.api_version(resource.storage_version)
        namespace = old_meta.get("namespace", "")
        core.apply_defaults(resource, new, current, self._namespace_labels(resource, namespace))
        if resource.tracks_generation and _spec_part(new) != _spec_part(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        writer = self._writer(resource, version, options, operation) if operation == "Update" else None
        _set_managed_fields(new, current, writer)
        if _comparable(new) == _comparable(current):
            return Result(200, render(resource, version, current), warnings)
        stored = new if options.dry_run else self.store.put(resource.key, new)
        return Result(200, render(resource, version, stored), warnings)


_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
)


def _set_managed_fields(obj: Obj, previous: Obj | None, writer: fieldmanager.ManagerEntry | None) -> None:
    """Record a write by ``writer`` (Update), or prune the apply result (``writer`` None).

    Also puts metadata keys in kube's usual order, managedFields last.
    """
    if writer is not None:
        entries = fieldmanager.record_update(previous, obj, writer)
    else:
        entries = fieldmanager.render_entries(fieldmanager.read_entries(obj), obj)
    meta = obj["metadata"]
    meta.pop("managedFields", None)
    ordered = {key: meta.pop(key) for key in _META_ORDER if key in meta}
    ordered.update(meta)
    if entries:
        ordered["managedFields"] = entries
    obj["metadata"] = ordered


def _untracked_meta(meta: Obj) -> Obj:
    """Metadata an apply intent sets directly (everything but labels/annotations)."""
    return {k: copy.deepcopy(v) for k, v in meta.items() if k not in ("labels", "annotations")}


def _patch_options_invalid(field_name: str, kind: str, detail: str) -> ApiError:
    error_type = ErrorType.REQUIRED if kind == "Required" else ErrorType.FORBIDDEN
    return errors.invalid_object("PatchOptions", "meta.k8s.io", "", [FieldError(error_type, field_name, None, detail)])


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from exc


def _decode_yaml(raw: bytes) -> Any:
    try:
        return load_document(raw)
    except (yaml.YAMLError, ValueError) as exc:
        raise errors.bad_request(f"error decoding YAML: {exc}") from exc


def _limit(text: str | None) -> int:
    try:
        return max(int(text or 0), 0)
    except ValueError as exc:
        raise errors.bad_request(f"limit: Invalid value: {text!r}: must be an integer") from exc


def _position(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _encode_continue(position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"start": position}).encode()).decode()


def _decode_continue(token: str | None) -> str:
    if not token:
        return ""
    try:
        return str(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request("continue key is not valid") from exc
