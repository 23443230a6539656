"""Writes of the live inventory, from the watcher: a full list replaces a kind's rows, watch events
change single rows, and every call moves the (environment, kind) watermark.

The inventory mirrors the cluster (it is not a decision of anyone): its writes are not audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from policies.choices import PolicyKind
from policies.models import InventoryObject, InventoryWatermark
from policies.normalize import content_hash, normalize_object

BATCH = 1000


def trim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What the checks, plans and imports read of a live object: of Namespaces, Services and Pods
    their names, labels (a Service's ports and selector; a Pod's annotations, containers' names and
    Node); of the Istio kinds everything but the status (plans read managedFields: who owns which field)."""
    meta = obj.get("metadata") or {}
    kept_meta = {
        key: meta[key]
        for key in ("namespace", "name", "labels", "annotations", "resourceVersion", "uid", "generation")
        if key in meta
    }
    if kind == "Pod":
        # The checks read a pod's sidecar (its containers' names, the injection annotations) and its Node.
        spec = obj.get("spec") or {}
        pod_meta = {key: kept_meta[key] for key in ("namespace", "name", "labels", "annotations") if key in kept_meta}
        containers = [{"name": c.get("name", "")} for c in spec.get("containers") or [] if isinstance(c, dict)]
        pod_spec = {"containers": containers, **({"nodeName": spec["nodeName"]} if spec.get("nodeName") else {})}
        return {"metadata": pod_meta, "spec": pod_spec}
    if kind == "Namespace":
        return {"metadata": {key: kept_meta[key] for key in ("name", "labels") if key in kept_meta}}
    if kind == "Service":
        spec = obj.get("spec") or {}
        return {
            "metadata": kept_meta,
            "spec": {"ports": spec.get("ports") or [], "selector": spec.get("selector") or {}},
        }
    return {key: value for key, value in obj.items() if key != "status"}


def _identity(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rows(environment_id: int, kind: str, items: Iterable[dict[str, Any]]) -> list[InventoryObject]:
    rows = []
    hashed = kind in PolicyKind.values
    for item in items:
        namespace, name = _identity(item)
        content = trim(kind, item)
        rows.append(
            InventoryObject(
                environment_id=environment_id,
                kind=kind,
                namespace=namespace,
                name=name,
                resource_version=str((item.get("metadata") or {}).get("resourceVersion") or ""),
                content=content,
                content_hash=content_hash(normalize_object(content)) if hashed else "",
            )
        )
    return rows


def _upsert(rows: list[InventoryObject]) -> None:
    for start in range(0, len(rows), BATCH):
        InventoryObject.objects.bulk_create(
            rows[start : start + BATCH],
            update_conflicts=True,
            unique_fields=["environment", "kind", "namespace", "name"],
            update_fields=["resource_version", "content", "content_hash"],
        )


def _mark(environment_id: int, kind: str, resource_version: str, *, listed: bool) -> None:
    now = timezone.now()
    defaults: dict[str, Any] = {"resource_version": resource_version, "synced_at": now}
    if listed:
        defaults["listed_at"] = now
    InventoryWatermark.objects.update_or_create(
        environment_id=environment_id,
        kind=kind,
        defaults=defaults,
        create_defaults={**defaults, "listed_at": now},
    )


@transaction.atomic
def inventory_replace(environment_id: int, kind: str, items: list[dict[str, Any]], resource_version: str) -> None:
    """A list of the kind: its rows become exactly `items` (in one transaction)."""
    rows = _rows(environment_id, kind, items)
    keep = {(row.namespace, row.name) for row in rows}
    existing = InventoryObject.objects.filter(environment_id=environment_id, kind=kind)
    stale = [
        pk for pk, namespace, name in existing.values_list("pk", "namespace", "name") if (namespace, name) not in keep
    ]
    for start in range(0, len(stale), BATCH):
        InventoryObject.objects.filter(pk__in=stale[start : start + BATCH]).delete()
    _upsert(rows)
    _mark(environment_id, kind, resource_version, listed=True)


@transaction.atomic
def inventory_apply(
    environment_id: int,
    kind: str,
    events: list[tuple[str, dict[str, Any]]],
    resource_version: str,
) -> None:
    """Watch events (type, object), in order, then the watermark."""
    for event_type, obj in events:
        namespace, name = _identity(obj)
        if event_type == "DELETED":
            InventoryObject.objects.filter(
                environment_id=environment_id,
                kind=kind,
                namespace=namespace,
                name=name,
            ).delete()
        else:
            _upsert(_rows(environment_id, kind, [obj]))
    _mark(environment_id, kind, resource_version, listed=False)
