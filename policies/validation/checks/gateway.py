"""Gateway: its selector must match gateway pods, its servers must not clash with other Gateways'."""
from __future__ import annotations

from collections.abc import Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, labels_text, mapping, strings, text
from policies.validation.context import MeshObject, ValidationContext, hosts_overlap, selector_key, server_host

GATEWAY = PolicyKind.GATEWAY
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
GATEWAY_LABEL = "istio"


@check("MG0501", GATEWAY, needs_cluster=True)
def selector_matches_pods(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = mapping(obj.spec.get("selector"))
    if selector and not ctx.workloads(selector):
        known = sorted({w.labels[GATEWAY_LABEL] for w in ctx.workloads({}) if GATEWAY_LABEL in w.labels})
        hint = f" (pods carry {GATEWAY_LABEL}={', '.join(known)})" if known else ""
        yield ("spec.selector", f"no pod in any namespace carries {labels_text(selector)}, so no gateway proxy serves "
                                f"this Gateway{hint}: use the labels of your gateway deployment")


@check("MG0502", GATEWAY)
def servers_unique(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = selector_key(obj.spec.get("selector"))
    for server_path, server in entries(obj.spec, "servers", "spec"):
        port = mapping(server.get("port")).get("number")
        for path, host in strings(server, "hosts", server_path):
            clashes = sorted({
                other.ref for other_host, other in ctx.gateway_servers.get((selector, port), [])
                if other.identity != obj.identity and hosts_overlap(server_host(host), other_host)
            })
            if clashes:
                yield (path, f"Gateway {', '.join(clashes)} selects the same workloads and also serves {host} on port "
                             f"{port}: the proxy can serve only one of them; merge the servers into one Gateway or "
                             "use another host or port")


@check("MG0503", GATEWAY)
def credentials_on_tls_servers(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for server_path, server in entries(obj.spec, "servers", "spec"):
        tls = mapping(server.get("tls"))
        protocol = text(mapping(server.get("port")).get("protocol")).upper()
        if (tls.get("credentialName") or tls.get("credentialNames")) and protocol not in TLS_PROTOCOLS:
            field = "credentialName" if tls.get("credentialName") else "credentialNames"
            yield (f"{server_path}.tls.{field}",
                   f"tls.{field} is ignored on a {protocol or 'plain'} server: set port.protocol to HTTPS (or TLS), "
                   "or remove the tls block")
