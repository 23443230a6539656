"""Server-side transformations of read answers, chosen by the ``Accept`` header as kube does:

- ``application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`` (and ``as=PartialObjectMetadata``
  for one object): the objects' metadata only;
- ``application/json;as=Table;g=meta.k8s.io;v=v1``: ``kubectl get`` columns, each row with the
  object's metadata (``includeObject=Metadata``, the default), the whole object (``Object``) or
  nothing (``None``).

A client asking for a Secret's metadata this way never receives its data.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .resources import SECRETS, ResourceType
from .store import Obj

META_API_VERSION = "meta.k8s.io/v1"
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def requested_form(accept: str) -> str:
    """ "Table", "PartialObjectMetadata", "PartialObjectMetadataList" or "" (plain JSON)."""
    for media in accept.split(","):
        params = dict(part.strip().split("=", 1) for part in media.split(";")[1:] if "=" in part)
        if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            form = params.get("as", "")
            if form in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                return form
    return ""


def partial(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": META_API_VERSION, "metadata": obj["metadata"]}


def partial_list(listing: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": META_API_VERSION,
        "metadata": listing["metadata"],
        "items": [partial(item) for item in listing["items"]],
    }


def _column(name: str, type_: str, description: str, format_: str = "") -> Obj:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": 0}


def _columns(resource: ResourceType) -> list[Obj]:
    name = _column("Name", "string", "Name must be unique within a namespace.", "name")
    if resource is SECRETS:
        return [
            name,
            _column("Type", "string", "The type of the secret"),
            _column("Data", "string", "The number of keys in the secret"),
            _column("Age", "string", "CreationTimestamp of the object"),
        ]
    return [name, _column("Created At", "date", "CreationTimestamp of the object")]


def _cells(resource: ResourceType, obj: Obj) -> list[Any]:
    meta = obj["metadata"]
    if resource is SECRETS:
        return [meta["name"], obj.get("type", "Opaque"), len(obj.get("data") or {}), meta.get("creationTimestamp", "")]
    return [meta["name"], meta.get("creationTimestamp", "")]


def table(resource: ResourceType, objects: list[Obj], list_meta: Obj, include_object: str | None) -> Obj:
    include = include_object or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise errors.bad_request(
            f'includeObject: Unsupported value: "{include}": supported values: "None", "Metadata", "Object"'
        )
    rows = []
    for obj in objects:
        row: Obj = {"cells": _cells(resource, obj)}
        if include == "Metadata":
            row["object"] = partial(obj)
        elif include == "Object":
            row["object"] = obj
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": META_API_VERSION,
        "metadata": {"resourceVersion": list_meta.get("resourceVersion", "")},
        "columnDefinitions": _columns(resource),
        "rows": rows,
    }
