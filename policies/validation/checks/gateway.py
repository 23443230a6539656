"""Gateway: its selector must match gateway pods, its servers must not clash with other Gateways'."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, labels_text, mapping, strings, text
from policies.validation.context import (
    MeshObject,
    ValidationContext,
    hosts_overlap,
    selector_key,
    selects,
    server_host,
)

GATEWAY = PolicyKind.GATEWAY
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
GATEWAY_LABEL = "istio"


@check("MG0501", GATEWAY, needs_cluster=True)
def selector_matches_pods(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = mapping(obj.spec.get("selector"))
    if selector and not ctx.workloads(selector):
        known = sorted({w.labels[GATEWAY_LABEL] for w in ctx.workloads({}) if GATEWAY_LABEL in w.labels})
        hint = f" (pods carry {GATEWAY_LABEL}={', '.join(known)})" if known else ""
        yield (
            "spec.selector",
            f"no pod in any namespace carries {labels_text(selector)}, so no gateway proxy serves "
            f"this Gateway{hint}: use the labels of your gateway deployment",
        )


def _selected_pods(gateway: MeshObject, ctx: ValidationContext) -> frozenset[tuple[str, str]]:
    """The pods (namespace, name) a Gateway's selector matches in any namespace; none for an empty selector."""
    selector = mapping(gateway.spec.get("selector"))
    if not selector:
        return frozenset()
    return ctx.memo(
        ("gateway-pods", selector_key(selector)),
        lambda: frozenset((pod.namespace, pod.name) for pod in ctx.workloads(selector)),
    )


def _same_pods(a: MeshObject, b: MeshObject, ctx: ValidationContext) -> bool:
    """Both Gateways configure one gateway proxy: the same selector, one within the other, or selectors
    matching a common running pod."""
    first, second = mapping(a.spec.get("selector")), mapping(b.spec.get("selector"))
    if first == second or (first and second and (_selector_within(first, second) or _selector_within(second, first))):
        return True  # one selects at least the other's labels: a pod matching the narrower matches both
    return bool(_selected_pods(a, ctx) & _selected_pods(b, ctx))


@dataclass(frozen=True)
class _PortServers:
    """The server hosts of every Gateway on one port: exact hosts by name, wildcard hosts in a list."""

    exact: dict[str, list[MeshObject]] = field(default_factory=lambda: defaultdict(list))
    wildcards: list[tuple[str, MeshObject]] = field(default_factory=list)

    def overlapping(self, host: str) -> Iterator[MeshObject]:
        if "*" in host:
            for other_host, gateways in self.exact.items():
                if hosts_overlap(host, other_host):
                    yield from gateways
        else:
            yield from self.exact.get(host, [])
        for other_host, gateway in self.wildcards:
            if hosts_overlap(host, other_host):
                yield gateway


def _servers_by_port(ctx: ValidationContext) -> dict[int, _PortServers]:
    def build() -> dict[int, _PortServers]:
        index: dict[int, _PortServers] = defaultdict(_PortServers)
        for gateway in ctx.of_kind(GATEWAY):
            for server_path, server in entries(gateway.spec, "servers", "spec"):
                port = mapping(server.get("port")).get("number")
                if type(port) is int:
                    for _, host in strings(server, "hosts", server_path):
                        name = server_host(host)
                        if "*" in name:
                            index[port].wildcards.append((name, gateway))
                        else:
                            index[port].exact[name].append(gateway)
        return index

    return ctx.memo("gateway-servers-by-port", build)


@check("MG0502", GATEWAY)
def servers_unique(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    index = _servers_by_port(ctx)
    for server_path, server in entries(obj.spec, "servers", "spec"):
        port = mapping(server.get("port")).get("number")
        if type(port) is not int or port not in index:
            continue
        for path, host in strings(server, "hosts", server_path):
            clashes = sorted(
                {
                    other.ref
                    for other in index[port].overlapping(server_host(host))
                    if other.identity != obj.identity and _same_pods(obj, other, ctx)
                }
            )
            if clashes:
                yield (
                    path,
                    f"Gateway {', '.join(clashes)} configures the same gateway pods and also serves {host} on "
                    f"port {port}: the proxy can serve only one of them; merge the servers into one Gateway "
                    "or use another host or port",
                )


def _selector_within(inner: Mapping[str, Any], outer: Mapping[str, Any]) -> bool:
    return all(outer.get(key) == value for key, value in inner.items())


def _certificate(tls: Mapping[str, Any]) -> tuple[str, ...]:
    if text(tls.get("credentialName")):
        return ("credential", tls["credentialName"])
    if text(tls.get("serverCertificate")) and text(tls.get("privateKey")):
        return ("files", tls["serverCertificate"], tls["privateKey"])
    return ()


def _certificates(gateway: MeshObject) -> set[tuple[str, ...]]:
    found = set()
    for _, server in entries(gateway.spec, "servers", "spec"):
        certificate = _certificate(mapping(server.get("tls")))
        if certificate:
            found.add(certificate)
    return found


@check("MG0504", GATEWAY)
def certificates_not_shared(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    mine = _certificates(obj)
    if not mine:
        return
    index = ctx.memo("gateway-certificates", lambda: _certificate_index(ctx))
    selector = mapping(obj.spec.get("selector"))
    sharing = sorted(
        {
            other.ref
            for certificate in mine
            for other in index.get(certificate, [])
            if other.identity != obj.identity and _selector_within(selector, mapping(other.spec.get("selector")))
        }
    )
    if sharing:
        yield (
            "spec.servers",
            f"Gateway {', '.join(sharing)} on the same gateway pods uses the same TLS certificate, so "
            "clients re-using an HTTP/2 connection get 404s for the other Gateway's hosts: serve "
            "them from one Gateway or use distinct certificates",
        )


def _certificate_index(ctx: ValidationContext) -> dict[tuple[str, ...], list[MeshObject]]:
    index: dict[tuple[str, ...], list[MeshObject]] = defaultdict(list)
    for gateway in ctx.of_kind(GATEWAY):
        for certificate in _certificates(gateway):
            index[certificate].append(gateway)
    return index


def _service_ports_of(pods: frozenset[tuple[str, str]], ctx: ValidationContext) -> set[int]:
    """Ports and numeric targetPorts of every Service selecting one of `pods`."""
    labels = {(pod.namespace, pod.name): pod.labels for pod in ctx.workloads({})}
    found: set[int] = set()
    for service in ctx.services.values():
        if service.selector and any(
            namespace == service.namespace and selects(service.selector, labels.get((namespace, name), {}))
            for namespace, name in pods
        ):
            found.update(service.ports)
            found.update(service.target_ports)
    return found


@check("MG0505", GATEWAY, needs_cluster=True)
def ports_on_gateway_service(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    pods = _selected_pods(obj, ctx)
    if not pods:
        return  # MG0501
    offered = ctx.memo(
        ("gateway-service-ports", selector_key(obj.spec.get("selector"))), lambda: _service_ports_of(pods, ctx)
    )
    for server_path, server in entries(obj.spec, "servers", "spec"):
        number = mapping(server.get("port")).get("number")
        if type(number) is int and number not in offered:
            ports = ", ".join(map(str, sorted(offered))) or "none"
            yield (
                f"{server_path}.port.number",
                f"port {number} is not a port of the Services of the gateway pods (ports and target ports: {ports}), "
                "so traffic cannot reach the gateway on it: use one of them or add it to the gateway Service",
            )


@check("MG0503", GATEWAY)
def credentials_on_tls_servers(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for server_path, server in entries(obj.spec, "servers", "spec"):
        tls = mapping(server.get("tls"))
        protocol = text(mapping(server.get("port")).get("protocol")).upper()
        if (tls.get("credentialName") or tls.get("credentialNames")) and protocol not in TLS_PROTOCOLS:
            field = "credentialName" if tls.get("credentialName") else "credentialNames"
            yield (
                f"{server_path}.tls.{field}",
                f"tls.{field} is ignored on a {protocol or 'plain'} server: set port.protocol to HTTPS (or TLS), "
                "or remove the tls block",
            )
