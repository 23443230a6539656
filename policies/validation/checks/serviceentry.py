"""ServiceEntry: resolution modes, addresses for TCP ports, and protocols agreeing across entries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, items, strings, text
from policies.validation.checks.hosts import export_scopes, visible_together
from policies.validation.context import MeshObject, ValidationContext, match_labels

SE = PolicyKind.SERVICE_ENTRY
DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})


@check("MG0701", SE)
def static_has_endpoints(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if (
        text(obj.spec.get("resolution")) == "STATIC"
        and not items(obj.spec.get("endpoints"))
        and not match_labels(obj, "workloadSelector")
    ):
        yield (
            "spec.resolution",
            "resolution STATIC needs endpoints (or a workloadSelector) to send traffic to: add "
            "endpoints, or use resolution DNS",
        )


@check("MG0702", SE)
def dns_hosts_not_wildcard(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    resolution = text(obj.spec.get("resolution"))
    if resolution not in DNS_RESOLUTIONS or items(obj.spec.get("endpoints")):
        return
    for path, host in strings(obj.spec, "hosts", "spec"):
        if "*" in host:
            yield (
                path,
                (
                    f"host {host!r} is a wildcard, which resolution {resolution} cannot look up: use resolution "
                    "NONE, or list concrete hosts"
                ),
            )


@check("MG0703", SE)
def addresses_for_tcp_ports(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if items(obj.spec.get("addresses")):
        return
    for path, port in entries(obj.spec, "ports", "spec"):
        protocol = text(port.get("protocol"))
        if protocol.upper() in ("", "TCP"):
            shown = protocol or "unset"
            yield (
                path,
                f"port {port.get('number')} has protocol {shown} and the ServiceEntry has no addresses, so the "
                "sidecar cannot tell its traffic from other TCP traffic on that port: add spec.addresses or "
                "set the port's protocol",
            )


def _protocol_index(ctx: ValidationContext) -> dict[tuple[str, int], list[tuple[str, MeshObject]]]:
    """(host, port) → [(protocol, ServiceEntry)] over every ServiceEntry."""
    index: dict[tuple[str, int], list[tuple[str, MeshObject]]] = defaultdict(list)
    for entry in ctx.of_kind(SE):
        for _, host in strings(entry.spec, "hosts", "spec"):
            for _, port in entries(entry.spec, "ports", "spec"):
                if type(port.get("number")) is int:
                    index[(host, port["number"])].append((text(port.get("protocol")).upper(), entry))
    return index


@check("MG0704", SE)
def protocols_agree(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    index = ctx.memo("service-entry-protocols", lambda: _protocol_index(ctx))
    scopes = export_scopes(obj.spec.get("exportTo"), obj.namespace)
    for path, host in strings(obj.spec, "hosts", "spec"):
        for _, port in entries(obj.spec, "ports", "spec"):
            number = port.get("number")
            if type(number) is not int:
                continue
            mine = text(port.get("protocol")).upper()
            others = sorted(
                {
                    (entry.ref, protocol)
                    for protocol, entry in index.get((host, number), [])
                    if entry.identity != obj.identity
                    and protocol != mine
                    and visible_together(scopes, export_scopes(entry.spec.get("exportTo"), entry.namespace))
                }
            )
            if others:
                described = ", ".join(f"{ref} ({protocol or 'unset'})" for ref, protocol in others)
                yield (
                    path,
                    f"ServiceEntry {described} also declares {host} port {number}, with another protocol "
                    f"than {mine or 'unset'}: the proxies use only one; use the same protocol or merge the "
                    "ServiceEntries",
                )
                return
