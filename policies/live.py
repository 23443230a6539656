"""Reads of an environment's live workloads for the editor and the wizards to pre-fill from.

Services, their versions (the pods' ``version`` label) and service accounts come from the cluster
through the adapter, cached for a few seconds per cluster; subsets and the objects a wizard
starts from come from the environment's current revisions in the database. Only namespaces the
user's teams own are offered. Reading is best effort: a cluster that does not answer gives an
empty inventory and an error message, and the wizards fall back to what the user types.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache

from integrations import kubernetes as kube
from policies.choices import PolicyKind
from policies.cluster import cluster_config
from policies.models import Environment, NamespaceOwnership, Policy

logger = logging.getLogger(__name__)

LIVE_CACHE_SECONDS = 10
VERSION_LABEL = "version"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ServicePort:
    number: int
    name: str = ""


@dataclass(frozen=True)
class Subset:
    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> str:
        return dict(self.labels).get(VERSION_LABEL, "")


@dataclass(frozen=True)
class LiveService:
    namespace: str
    name: str
    ports: tuple[ServicePort, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    versions: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    subsets: tuple[Subset, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def selector_labels(self) -> dict[str, str]:
        return dict(self.selector)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass
class LiveSnapshot:
    """What a wizard may offer one user in one environment."""

    environment: str
    namespaces: list[str]
    services: list[LiveService] = field(default_factory=list)
    # Every (namespace, service account) that runs a pod, across the cluster: callers for access rules.
    service_accounts: list[tuple[str, str]] = field(default_factory=list)
    cluster_namespaces: list[str] = field(default_factory=list)
    # Current revisions' content in the owned namespaces, by (namespace, name).
    virtual_services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    destination_rules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    error: str = ""

    def service(self, key: str) -> LiveService | None:
        return next((s for s in self.services if s.key == key), None)

    def services_in(self, namespace: str) -> list[LiveService]:
        return [s for s in self.services if s.namespace == namespace]

    def virtual_service_for(self, service: LiveService) -> dict[str, Any] | None:
        """The current VirtualService in the service's namespace routing its host, if any."""
        for (namespace, _name), content in sorted(self.virtual_services.items()):
            spec = content.get("spec") or {}
            if (
                namespace == service.namespace
                and not spec.get("gateways")
                and any(_same_host(host, service.name, namespace) for host in spec.get("hosts") or [])
            ):
                return content
        return None

    def destination_rule_for(self, service: LiveService) -> dict[str, Any] | None:
        for (namespace, _name), content in sorted(self.destination_rules.items()):
            host = (content.get("spec") or {}).get("host", "")
            if namespace == service.namespace and _same_host(host, service.name, namespace):
                return content
        return None


def owned_namespaces(*, user: AbstractBaseUser | AnonymousUser, environment: Environment) -> list[str]:
    """Namespaces of the environment owned by a team the user belongs to (any role can author)."""
    if not user.is_authenticated:
        return []
    return list(
        NamespaceOwnership.objects.filter(environment=environment, team__memberships__user=user.pk)
        .order_by("namespace")
        .values_list("namespace", flat=True)
        .distinct()
    )


def live_snapshot(*, user: AbstractBaseUser | AnonymousUser, environment: Environment) -> LiveSnapshot:
    namespaces = owned_namespaces(user=user, environment=environment)
    snapshot = LiveSnapshot(environment=environment.name, namespaces=namespaces)
    if not namespaces:
        return snapshot
    _add_current_revisions(snapshot, environment)
    try:
        inventory = _cluster_inventory(environment)
    except kube.KubernetesError as exc:
        logger.info("live inventory of %s unavailable: %s", environment.name, exc)
        snapshot.error = f"The {environment.name} cluster did not answer ({exc.message}); type names yourself."
        return snapshot
    subsets = _subsets_by_host(snapshot)
    owned = set(namespaces)
    for svc in inventory["services"]:
        if svc["namespace"] not in owned:
            continue
        selector = svc["selector"]
        pods = [
            pod
            for pod in inventory["pods"]
            if pod["namespace"] == svc["namespace"] and selector and selector.items() <= pod["labels"].items()
        ]
        snapshot.services.append(
            LiveService(
                namespace=svc["namespace"],
                name=svc["name"],
                ports=tuple(ServicePort(number=p["number"], name=p["name"]) for p in svc["ports"]),
                selector=tuple(sorted(selector.items())),
                versions=tuple(sorted({p["labels"][VERSION_LABEL] for p in pods if p["labels"].get(VERSION_LABEL)})),
                service_accounts=tuple(sorted({p["service_account"] for p in pods if p["service_account"]})),
                subsets=subsets.get((svc["namespace"], svc["name"]), ()),
            )
        )
    snapshot.services.sort(key=lambda s: (s.namespace, s.name))
    pods = inventory["pods"]
    snapshot.service_accounts = sorted({(p["namespace"], p["service_account"]) for p in pods if p["service_account"]})
    snapshot.cluster_namespaces = sorted(
        {s["namespace"] for s in inventory["services"]} | {p["namespace"] for p in pods}
    )
    return snapshot


def _cache_key(environment: Environment) -> str:
    # The whole connection (URL, token, ...) goes into the key, hashed, so that a changed
    # endpoint never serves another cluster's inventory.
    identity = hashlib.sha256(repr(cluster_config(environment)).encode()).hexdigest()[:24]
    return f"meshgate:live:{environment.pk}:{identity}"


def _cluster_inventory(environment: Environment) -> dict[str, list[dict[str, Any]]]:
    """Services and pods of the whole cluster, reduced to what the wizards use, cached briefly."""
    key = _cache_key(environment)
    inventory = cache.get(key)
    if inventory is None:
        cfg = cluster_config(environment)
        inventory = {
            "services": [_service_summary(item) for item in kube.list_services(cfg)],
            "pods": [_pod_summary(item) for item in kube.list_pods(cfg)],
        }
        cache.set(key, inventory, LIVE_CACHE_SECONDS)
    return inventory


def _service_summary(item: dict[str, Any]) -> dict[str, Any]:
    metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
    return {
        "namespace": metadata.get("namespace", ""),
        "name": metadata.get("name", ""),
        "selector": dict(spec.get("selector") or {}),
        "ports": [
            {"number": int(p["port"]), "name": p.get("name") or ""}
            for p in spec.get("ports") or []
            if isinstance(p.get("port"), int)
        ],
    }


def _pod_summary(item: dict[str, Any]) -> dict[str, Any]:
    metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
    return {
        "namespace": metadata.get("namespace", ""),
        "labels": dict(metadata.get("labels") or {}),
        "service_account": spec.get("serviceAccountName") or spec.get("serviceAccount") or "",
    }


def _add_current_revisions(snapshot: LiveSnapshot, environment: Environment) -> None:
    rows = (
        Policy.objects.filter(
            environment=environment,
            namespace__in=snapshot.namespaces,
            kind__in=[PolicyKind.VIRTUAL_SERVICE, PolicyKind.DESTINATION_RULE],
            current_revision__isnull=False,
        )
        .select_related("current_revision")
        .order_by("namespace", "name")
    )
    for policy in rows:
        target = snapshot.virtual_services if policy.kind == PolicyKind.VIRTUAL_SERVICE else snapshot.destination_rules
        if policy.current_revision is not None:
            target[(policy.namespace, policy.name)] = policy.current_revision.content


def _subsets_by_host(snapshot: LiveSnapshot) -> dict[tuple[str, str], tuple[Subset, ...]]:
    found: dict[tuple[str, str], tuple[Subset, ...]] = {}
    for (namespace, _name), content in sorted(snapshot.destination_rules.items()):
        spec = content.get("spec") or {}
        host = _short_host(spec.get("host", ""), namespace)
        if not host:
            continue
        subsets = tuple(
            Subset(name=s["name"], labels=tuple(sorted((s.get("labels") or {}).items())))
            for s in spec.get("subsets") or []
            if isinstance(s, dict) and s.get("name")
        )
        found.setdefault((namespace, host), subsets)
    return found


def _short_host(host: str, namespace: str) -> str:
    """`reviews`, `reviews.bookinfo` and `reviews.bookinfo.svc.cluster.local` name the same service."""
    parts = host.split(".")
    if len(parts) == 1:
        return host
    if parts[1] == namespace and (len(parts) == 2 or parts[2:] == ["svc", *CLUSTER_DOMAIN.split(".")]):
        return parts[0]
    return ""


def _same_host(host: str, service: str, namespace: str) -> bool:
    return _short_host(host, namespace) == service
