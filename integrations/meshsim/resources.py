"""Resource types served by meshsim: core/v1, apps/v1, apiextensions and every CRD kind."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

NameRule = Literal["subdomain", "label", "dns1035"]

WRITE_VERBS = ("create", "delete", "get", "list", "patch", "update")
READ_VERBS = ("get", "list")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (``group/plural``) with its served versions."""

    group: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: tuple[str, ...]
    storage_version: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    custom: bool = False
    read_only: bool = False
    has_status: bool = True
    name_rule: NameRule = "subdomain"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def verbs(self) -> tuple[str, ...]:
        return READ_VERBS if self.read_only else WRITE_VERBS

    @property
    def tracks_generation(self) -> bool:
        return self.custom

    @property
    def allows_unconditional_update(self) -> bool:
        """CRs (like kube's customresource strategy) require a resourceVersion on PUT."""
        return not self.custom

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


NAMESPACES = ResourceType(
    group="",
    kind="Namespace",
    plural="namespaces",
    singular="namespace",
    namespaced=False,
    versions=("v1",),
    storage_version="v1",
    short_names=("ns",),
    name_rule="label",
)
SERVICES = ResourceType(
    group="",
    kind="Service",
    plural="services",
    singular="service",
    namespaced=True,
    versions=("v1",),
    storage_version="v1",
    short_names=("svc",),
    categories=("all",),
    name_rule="dns1035",
)
PODS = ResourceType(
    group="",
    kind="Pod",
    plural="pods",
    singular="pod",
    namespaced=True,
    versions=("v1",),
    storage_version="v1",
    short_names=("po",),
    categories=("all",),
)
SECRETS = ResourceType(
    group="",
    kind="Secret",
    plural="secrets",
    singular="secret",
    namespaced=True,
    versions=("v1",),
    storage_version="v1",
    has_status=False,
)
CONFIG_MAPS = ResourceType(
    group="",
    kind="ConfigMap",
    plural="configmaps",
    singular="configmap",
    namespaced=True,
    versions=("v1",),
    storage_version="v1",
    short_names=("cm",),
    has_status=False,
)
NODES = ResourceType(
    group="",
    kind="Node",
    plural="nodes",
    singular="node",
    namespaced=False,
    versions=("v1",),
    storage_version="v1",
    short_names=("no",),
)
DEPLOYMENTS = ResourceType(
    group="apps",
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    namespaced=True,
    versions=("v1",),
    storage_version="v1",
    short_names=("deploy",),
    categories=("all",),
)
CRDS = ResourceType(
    group="apiextensions.k8s.io",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    singular="customresourcedefinition",
    namespaced=False,
    versions=("v1",),
    storage_version="v1",
    short_names=("crd", "crds"),
    categories=("api-extensions",),
    read_only=True,
    has_status=False,
)
CORE_TYPES = (NAMESPACES, SERVICES, PODS, SECRETS, CONFIG_MAPS, NODES, DEPLOYMENTS)


def crd_resource_type(crd: Mapping[str, Any]) -> ResourceType:
    """The resource type a CustomResourceDefinition document declares."""
    spec = crd["spec"]
    names = spec["names"]
    served = [version for version in spec["versions"] if version.get("served", True)]
    storage = next(version["name"] for version in spec["versions"] if version.get("storage"))
    return ResourceType(
        group=spec["group"],
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular", names["kind"].lower()),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=tuple(version["name"] for version in served),
        storage_version=storage,
        short_names=tuple(names.get("shortNames", ())),
        categories=tuple(names.get("categories", ())),
        schemas={version["name"]: version.get("schema", {}).get("openAPIV3Schema", {}) for version in served},
        custom=True,
        has_status="status" in served[0].get("subresources", {}),
    )


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_STABILITY = {None: 2, "beta": 1, "alpha": 0}


def _priority(version: str) -> tuple[int, int, int]:
    major, stability, minor = _KUBE_VERSION.match(version).groups()  # type: ignore[union-attr]
    return (_STABILITY[stability], int(major), int(minor or 0))


def sort_versions(versions: Iterable[str]) -> list[str]:
    """``version.CompareKubeAwareVersionStrings`` order: v1 > v1beta1 > v1alpha3 > others."""
    unique = set(versions)
    kube = [version for version in unique if _KUBE_VERSION.match(version)]
    others = sorted(unique.difference(kube))
    return sorted(kube, key=_priority, reverse=True) + others


class Registry:
    """Lookup of resource types by group, version and plural."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self.types: list[ResourceType] = list(types)
        self._by_plural = {(t.group, t.plural): t for t in self.types}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        found = self._by_plural.get((group, plural))
        return found if found and version in found.versions else None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for candidate in self.types:
            if candidate.group == group and candidate.kind == kind and version in candidate.versions:
                return candidate
        return None

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and version in t.versions]

    def group_versions(self) -> dict[str, list[str]]:
        """Named API groups (not core) with their versions, preferred first."""
        groups: dict[str, set[str]] = {}
        for resource in self.types:
            if resource.group:
                groups.setdefault(resource.group, set()).update(resource.versions)
        return {group: sort_versions(versions) for group, versions in groups.items()}
