"""Hosts as Istio sees them: exportTo visibility, and explaining a host that resolves to nothing."""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.choices import PolicyKind
from policies.validation.context import DOMAIN_SUFFIX, MeshObject, ValidationContext, fqdn

SVC_SUFFIX = f".{DOMAIN_SUFFIX}"  # ".svc.cluster.local"


def unknown_host_message(host: str, namespace: str, ctx: ValidationContext, *, what: str) -> str:
    """Why `host`, written in an object of `namespace`, is neither a Service nor a ServiceEntry host."""
    resolved = fqdn(host, namespace)
    if "." not in host:
        return (
            f"{what} {host!r} is neither a Service in namespace {namespace} ({resolved}) nor a ServiceEntry "
            f"host{_suggest(host, namespace, ctx)}: correct it, or write "
            f"<name>.<namespace>{SVC_SUFFIX} for a Service in another namespace"
        )
    if resolved.endswith(SVC_SUFFIX):
        name, _, service_namespace = resolved.removesuffix(SVC_SUFFIX).partition(".")
        if not ctx.namespace_exists(service_namespace):
            return f"{what} {host!r} names namespace {service_namespace!r}, which does not exist: correct it"
        return (
            f"{what} {host!r}: there is no Service {name} in namespace {service_namespace}"
            f"{_suggest(name, service_namespace, ctx)}: correct the host or deploy the Service first"
        )
    name, _, rest = host.partition(".")
    if rest and "." not in rest and fqdn(name, rest) in ctx.services:
        return (
            f"{what} {host!r} is taken as a fully qualified name, which Istio does not expand: write {fqdn(name, rest)}"
        )
    return (
        f"{what} {host!r} is outside the cluster and no ServiceEntry declares it: add a ServiceEntry "
        f"with this host, or correct it"
    )


def _suggest(name: str, namespace: str, ctx: ValidationContext) -> str:
    names = [service.name for service in ctx.services_in(namespace)]
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- exportTo: where Istio sees a host ------------------------------------------------------------

EXPORT_ALL = "*"


def _export_values(export_to: Any) -> list[str]:
    return [value for value in export_to if isinstance(value, str)] if isinstance(export_to, list | tuple) else []


def export_scopes(export_to: Any, namespace: str) -> frozenset[str]:
    """The namespaces an object (or Service annotation) exports to: {"*"} for all, "." is its own, "~" none."""
    values = _export_values(export_to)
    if not values or EXPORT_ALL in values:
        return frozenset({EXPORT_ALL})
    return frozenset(namespace if value == "." else value for value in values)


def lookup_scopes(obj: MeshObject) -> frozenset[str]:
    """Where istioctl looks up a VirtualService's destinations: its exportTo namespaces, its own by default."""
    values = _export_values(obj.spec.get("exportTo"))
    if not values:
        return frozenset({obj.namespace})
    return frozenset(obj.namespace if value == "." else value for value in values)


def visible_together(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two export scopes share a namespace that sees both objects."""
    return EXPORT_ALL in a or EXPORT_ALL in b or bool(a & b)


@dataclass(frozen=True)
class HostEntry:
    """A host as the mesh knows it: a Kubernetes Service or one host of a ServiceEntry."""

    host: str
    scopes: frozenset[str]
    ports: tuple[int, ...]
    label: str  # "Service ns/name" or "ServiceEntry ns/name"


@dataclass(frozen=True)
class HostRegistry:
    exact: Mapping[str, list[HostEntry]]
    wildcards: list[HostEntry]

    def resolve(self, host: str, lookup: frozenset[str], namespace: str) -> HostEntry | None:
        """The entry of `host` visible to an object of `namespace` looking it up in `lookup` (istioctl's rules:
        exact hosts exported everywhere or to a lookup namespace; wildcard hosts exported everywhere or to
        `namespace`)."""
        for entry in self.exact.get(host, []):
            if EXPORT_ALL in entry.scopes or entry.scopes & lookup:
                return entry
        bare = host.removeprefix("*")
        for entry in self.wildcards:
            if (EXPORT_ALL in entry.scopes or namespace in entry.scopes) and bare.endswith(entry.host[1:]):
                return entry
        return None

    def hidden(self, host: str) -> list[HostEntry]:
        """Entries of exactly `host` however exported (to explain why it is not visible)."""
        return list(self.exact.get(host, []))


def _ports(spec: Mapping[str, Any]) -> tuple[int, ...]:
    ports = spec.get("ports")
    return (
        tuple(port["number"] for port in ports if isinstance(port, dict) and type(port.get("number")) is int)
        if isinstance(ports, list)
        else ()
    )


def host_registry(ctx: ValidationContext) -> HostRegistry:
    """Every Service and ServiceEntry host with its export scopes and ports, built once per validation."""

    def build() -> HostRegistry:
        exact: dict[str, list[HostEntry]] = defaultdict(list)
        wildcards: list[HostEntry] = []
        for entry in ctx.of_kind(PolicyKind.SERVICE_ENTRY):
            scopes = export_scopes(entry.spec.get("exportTo"), entry.namespace)
            ports = _ports(entry.spec)
            hosts = entry.spec.get("hosts")
            for host in hosts if isinstance(hosts, list) else []:
                if not isinstance(host, str) or not host:
                    continue
                item = HostEntry(fqdn(host, entry.namespace), scopes, ports, f"ServiceEntry {entry.ref}")
                if host.startswith("*"):
                    wildcards.append(item)
                else:
                    exact[item.host].append(item)
        for service in ctx.services.values():
            exact[service.fqdn].append(
                HostEntry(
                    service.fqdn,
                    export_scopes(list(service.export_to), service.namespace),
                    service.ports,
                    f"Service {service.namespace}/{service.name}",
                )
            )
        return HostRegistry(exact, wildcards)

    return ctx.memo("host-registry", build)


def not_visible_message(host: str, entries: list[HostEntry], namespace: str, *, what: str) -> str:
    where = "; ".join(
        f"{entry.label} is exported to {', '.join(sorted(entry.scopes)) or 'no namespace'}" for entry in entries
    )
    return (
        f"{what} {host!r} is not visible from namespace {namespace} ({where}): export it to {namespace} "
        "(exportTo, or the Service annotation networking.istio.io/exportTo) or correct the host"
    )
