"""VirtualService: destinations, subsets, ports, gateways, weights, shadowed routes, hosts, regexes."""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, items, mapping, strings, text
from policies.validation.checks.hosts import (
    EXPORT_ALL,
    HostEntry,
    export_scopes,
    host_registry,
    lookup_scopes,
    not_visible_message,
    unknown_host_message,
)
from policies.validation.context import (
    MESH_GATEWAY,
    ROOT_NAMESPACE,
    MeshObject,
    ValidationContext,
    bound_gateways,
    fqdn,
    gateway_ref,
    hosts_overlap,
    match_labels,
    selects,
)

VS = PolicyKind.VIRTUAL_SERVICE
SECTIONS = ("http", "tcp", "tls")
STRING_MATCH_FIELDS = ("uri", "scheme", "method", "authority")
STRING_MATCH_MAPS = ("headers", "queryParams", "withoutHeaders")
# Constructs Python's `re` accepts but RE2 (Envoy's engine) does not.
RE2_UNSUPPORTED = (
    (re.compile(r"\(\?<?[=!]"), "lookahead/lookbehind"),
    (re.compile(r"\\[1-9]"), "backreferences"),
    (re.compile(r"\(\?>"), "atomic groups"),
)


def destinations(obj: MeshObject) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, destination) of every route destination and mirror."""
    for section in SECTIONS:
        for route_path, route in entries(obj.spec, section, "spec"):
            for weighted_path, weighted in entries(route, "route", route_path):
                destination = mapping(weighted.get("destination"))
                if destination:
                    yield f"{weighted_path}.destination", destination
            if mapping(route.get("mirror")):
                yield f"{route_path}.mirror", mapping(route.get("mirror"))
            for mirror_path, mirror in entries(route, "mirrors", route_path):
                if mapping(mirror.get("destination")):
                    yield f"{mirror_path}.destination", mapping(mirror.get("destination"))


def _resolved(obj: MeshObject, destination: Mapping[str, Any]) -> str:
    host = text(destination.get("host"))
    return "" if not host or "*" in host else fqdn(host, obj.namespace)


Resolved = tuple[str, Mapping[str, Any], str, HostEntry | None]


def resolved_destinations(obj: MeshObject, ctx: ValidationContext) -> list[Resolved]:
    """(path, destination, FQDN host or "", the host's entry as the VirtualService sees it), computed once."""

    def compute() -> list[Resolved]:
        registry, lookup = host_registry(ctx), lookup_scopes(obj)
        found: list[Resolved] = []
        for path, destination in destinations(obj):
            host = _resolved(obj, destination)
            found.append((path, destination, host, registry.resolve(host, lookup, obj.namespace) if host else None))
        return found

    return ctx.memo(("destinations", obj.identity), compute)


@check("MG0301", VS, needs_cluster=True)
def destination_host_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    registry = host_registry(ctx)
    for path, destination, host, entry in resolved_destinations(obj, ctx):
        if host and entry is None:
            hidden = registry.hidden(host)
            if hidden:
                yield (
                    f"{path}.host",
                    not_visible_message(destination["host"], hidden, obj.namespace, what="destination host"),
                )
            else:
                yield (
                    f"{path}.host",
                    unknown_host_message(destination["host"], obj.namespace, ctx, what="destination host"),
                )


@check("MG0302", VS)
def subset_defined(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    # Reported whether or not the host exists, as istioctl does (the host is MG0301's concern).
    for path, destination, host, _ in resolved_destinations(obj, ctx):
        subset = text(destination.get("subset"))
        if not host or not subset:
            continue
        defined = ctx.subsets_for(host)
        if subset not in defined:
            rules = ctx.destination_rules_for(host)
            yield f"{path}.subset", _subset_message(destination["host"], host, subset, rules, defined)


def _subset_message(host: str, resolved: str, subset: str, rules: list[MeshObject], defined: list[str]) -> str:
    if not rules:
        return (
            f"subset {subset!r} of {host} is not defined: no DestinationRule exists for {resolved}; "
            f"add one with a subset named {subset}"
        )
    close = difflib.get_close_matches(subset, defined, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    names = ", ".join(name for name in defined if name) or "none"
    return (
        f"subset {subset!r} of {host} is not defined by DestinationRule "
        f"{', '.join(rule.ref for rule in rules)} (subsets: {names}): {hint}add it there or correct the name"
    )


@check("MG0303", VS, needs_cluster=True)
def destination_port_served(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination, _, entry in resolved_destinations(obj, ctx):
        number = mapping(destination.get("port")).get("number")
        if entry and entry.ports and type(number) is int and number not in entry.ports:
            ports = ", ".join(map(str, entry.ports))
            yield (
                f"{path}.port.number",
                f"port {number} is not a port of {entry.label} (ports: {ports}): use one of them",
            )


@check("MG0304", VS, needs_cluster=True)
def destination_port_given(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination, _, entry in resolved_destinations(obj, ctx):
        if entry and len(entry.ports) > 1 and "port" not in destination:
            ports = ", ".join(map(str, entry.ports))
            yield (
                path,
                f"{entry.label} has several ports ({ports}) and the destination names none: set "
                "destination.port.number",
            )


def gateway_references(obj: MeshObject) -> Iterator[tuple[str, str]]:
    """(path, reference) of spec.gateways and of the gateways of every route match."""
    yield from strings(obj.spec, "gateways", "spec")
    for section in SECTIONS:
        for route_path, route in entries(obj.spec, section, "spec"):
            for match_path, match in entries(route, "match", route_path):
                yield from strings(match, "gateways", match_path)


INTERNAL_GATEWAY_MARKS = ("-istio-autogenerated-k8s-gateway-", "~istio-autogenerated-k8s-gateway~")


def is_internal_gateway(reference: str) -> bool:
    return any(mark in reference.rpartition("/")[2] for mark in INTERNAL_GATEWAY_MARKS)


@check("MG0316", VS)
def gateways_not_internal(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, reference in strings(obj.spec, "gateways", "spec"):
        if is_internal_gateway(reference):
            yield (
                path,
                f"gateway {reference!r} is the Gateway Istio generates for a Gateway API Gateway, an "
                "implementation detail that changes: attach routes with an HTTPRoute, or bind to an Istio "
                "Gateway of your own",
            )


@check("MG0305", VS)
def gateway_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, reference in gateway_references(obj):
        if reference == MESH_GATEWAY or is_internal_gateway(reference):
            continue
        namespace, _, name = gateway_ref(reference, obj.namespace).partition("/")
        if not ctx.gateway_exists(namespace, name):
            message = _gateway_message(reference, namespace, name, ctx)
            # istioctl checks spec.gateways only, not the gateways of route matches.
            yield (path, message) if path.startswith("spec.gateways") else (path, message, "")


def _gateway_message(reference: str, namespace: str, name: str, ctx: ValidationContext) -> str:
    names = [gateway.name for gateway in ctx.of_kind(PolicyKind.GATEWAY) if gateway.namespace == namespace]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"gateway {reference!r} not found: there is no Gateway {name} in namespace {namespace}{hint}; "
        "correct the reference (namespace/name for another namespace, mesh for the sidecars) or create it"
    )


def _gateway_hosts(gateway: MeshObject, namespace: str) -> list[str]:
    """The Gateway's server hosts that a VirtualService of `namespace` may bind to (istioctl's reading)."""
    found: list[str] = []
    for server_path, server in entries(gateway.spec, "servers", "spec"):
        for _, host in strings(server, "hosts", server_path):
            scope, slash, name = host.partition("/")
            if not slash:
                found.append(host)
            elif scope == "*" or scope == namespace or (scope == "." and gateway.namespace == namespace):
                found.append(name)
    return found


@check("MG0313", VS)
def hosts_served_by_gateways(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    hosts = [host for _, host in strings(obj.spec, "hosts", "spec")]
    for path, reference in strings(obj.spec, "gateways", "spec"):
        if reference == MESH_GATEWAY or is_internal_gateway(reference):
            continue
        namespace, _, name = gateway_ref(reference, obj.namespace).partition("/")
        gateway = ctx.get(PolicyKind.GATEWAY, namespace, name)
        if gateway is None:
            # istioctl reports the missing Gateway (MG0305) and, with it, that it serves none of the hosts.
            yield (
                path,
                f"Gateway {namespace}/{name} does not exist, so none of the hosts {', '.join(hosts)} is "
                "served: create the Gateway or correct the reference",
            )
            continue
        served = _gateway_hosts(gateway, obj.namespace)
        if hosts and not any(hosts_overlap(host, other) for host in hosts for other in served):
            listed = ", ".join(served) or "none for this namespace"
            yield (
                path,
                f"none of the hosts {', '.join(hosts)} is served by Gateway {gateway.ref} (its hosts: "
                f"{listed}), so it sends this VirtualService no traffic: add the host to the Gateway or "
                "correct the hosts",
            )


def _subset_routed_hosts(ctx: ValidationContext) -> dict[str, list[MeshObject]]:
    """Host (as written) → the VirtualServices for that host that route it to subsets."""
    index: dict[str, list[MeshObject]] = defaultdict(list)
    for service in ctx.of_kind(VS):
        hosts = {host for _, host in strings(service.spec, "hosts", "spec")}
        for route_path, route in entries(service.spec, "http", "spec"):
            for _, weighted in entries(route, "route", route_path):
                destination = mapping(weighted.get("destination"))
                host = text(destination.get("host"))
                if text(destination.get("subset")) and host in hosts and service not in index[host]:
                    index[host].append(service)
    return index


@check("MG0314", VS)
def gateway_routes_see_subsets(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if not items(obj.spec.get("gateways")):
        return
    index = ctx.memo("subset-routed-hosts", lambda: _subset_routed_hosts(ctx))
    for route_path, route in entries(obj.spec, "http", "spec"):
        for path, weighted in entries(route, "route", route_path):
            destination = mapping(weighted.get("destination"))
            host = text(destination.get("host"))
            splitting = sorted(service.ref for service in index.get(host, []))
            if host and not text(destination.get("subset")) and splitting:
                yield (
                    f"{path}.destination",
                    f"{host} is split by subsets in VirtualService {', '.join(splitting)}, "
                    "but this gateway route sends to it without a subset, so the split does "
                    "not apply to gateway traffic: route to the subsets here as well",
                )


JWT_CLAIM = "@request.auth.claims"


def _claim_key(obj: MeshObject) -> str:
    for route_path, route in entries(obj.spec, "http", "spec"):
        for _, match in entries(route, "match", route_path):
            for field in ("headers", "withoutHeaders"):
                for key in mapping(match.get(field)):
                    if str(key).startswith(JWT_CLAIM):
                        return str(key)
    return ""


@check("MG0315", VS, needs_cluster=True)
def claim_routing_has_request_authentication(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    key = _claim_key(obj)
    if not key:
        return
    for path, reference in strings(obj.spec, "gateways", "spec"):
        if reference == MESH_GATEWAY:
            continue
        namespace, _, name = gateway_ref(reference, obj.namespace).partition("/")
        gateway = ctx.get(PolicyKind.GATEWAY, namespace, name)
        if gateway is None:
            continue
        for pod in ctx.workloads(mapping(gateway.spec.get("selector"))):
            policies = [*ctx.of_kind(PolicyKind.REQUEST_AUTHENTICATION)]
            if not any(
                policy.namespace in (ROOT_NAMESPACE, pod.namespace) and selects(match_labels(policy), pod.labels)
                for policy in policies
            ):
                yield (
                    path,
                    f"the routes match on {key}, but no RequestAuthentication selects the pod "
                    f"{pod.namespace}/{pod.name} of Gateway {gateway.ref}, so the claim is never set: add a "
                    "RequestAuthentication for the gateway pods",
                )
                break


@check("MG0306", VS)
def weights_add_up(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for section in SECTIONS:
        for route_path, route in entries(obj.spec, section, "spec"):
            weighted = [item for _, item in entries(route, "route", route_path)]
            weights = [item.get("weight", 0) for item in weighted]
            if len(weighted) < 2 or not all(type(weight) is int for weight in weights):
                continue
            total = sum(weights)
            if total != 100:
                unset = " (destinations without weight count as 0)" if any("weight" not in w for w in weighted) else ""
                yield (
                    f"{route_path}.route",
                    f"the weights of {route_path}.route add up to {total}{unset}, not 100: set a weight on every "
                    "destination so that they add up to 100",
                )


# --- unreachable routes and ineffective matches (istioctl's analysis, for http, tcp and tls) -------

GET = "exact:GET"


@dataclass(frozen=True)
class _Prefix:
    """An HTTP match with a URI prefix, reduced to what istioctl compares for coverage."""

    path: str
    prefix: str
    port: Any
    method: str
    authority: str
    headers: Mapping[str, str]
    query_params: Mapping[str, str]
    without_headers: Mapping[str, str]


def _exact_or_prefix(value: Any) -> str:
    value = mapping(value)
    if text(value.get("exact")):
        return "exact:" + value["exact"]
    if text(value.get("prefix")):
        return "prefix:" + value["prefix"]
    return ""


def _prefix_match(path: str, match: Mapping[str, Any]) -> _Prefix | None:
    prefix = text(mapping(match.get("uri")).get("prefix"))
    if not prefix:
        return None

    def conditions(key: str) -> dict[str, str]:
        return {str(name): _exact_or_prefix(value) for name, value in mapping(match.get(key)).items()}

    return _Prefix(
        path,
        prefix,
        match.get("port") or 0,
        _exact_or_prefix(match.get("method")) or GET,
        _exact_or_prefix(match.get("authority")),
        conditions("headers"),
        conditions("queryParams"),
        conditions("withoutHeaders"),
    )


def _covers_values(earlier: str, later: str) -> bool:
    return earlier == later or earlier.startswith(later)


def _covers_maps(earlier: Mapping[str, str], later: Mapping[str, str]) -> bool:
    return len(earlier) == len(later) and all(
        key in later and _covers_values(value, later[key]) for key, value in earlier.items()
    )


def _covers(a: _Prefix, b: _Prefix) -> bool:
    """istioctl's rule: the earlier prefix match `a` takes every request of the later `b`."""
    return (
        b.prefix.startswith(a.prefix)
        and a.port == b.port
        and _covers_values(a.method, b.method)
        and _covers_values(a.authority, b.authority)
        and _covers_maps(a.headers, b.headers)
        and _covers_maps(a.query_params, b.query_params)
        and _covers_maps(a.without_headers, b.without_headers)
    )


# (code, path, message, Istio code or None for the catalogue's)
RouteHit = tuple[str, str, str, str | None]


def _section_analysis(obj: MeshObject, section: str) -> Iterator[RouteHit]:
    seen: dict[str, str] = {}
    catch_all = ""
    prefixes: list[_Prefix] = []
    for route_path, route in entries(obj.spec, section, "spec"):
        matches = items(route.get("match"))
        if not matches:
            if catch_all:
                yield (
                    "MG0307",
                    route_path,
                    f"{route_path} is never used: {catch_all} before it has no match and "
                    f"takes every request (only the last route may have no match); "
                    f"remove one of them or give {catch_all} a match",
                    None,
                )
            catch_all = route_path
            continue
        repeated = 0
        for match_path, match in entries(route, "match", route_path):
            key = json.dumps({name: value for name, value in match.items() if name != "name"}, sort_keys=True)
            if key in seen:
                repeated += 1
                yield (
                    "MG0308",
                    match_path,
                    f"{match_path} is never used: {seen[key]} has exactly the same match; remove it or make it differ",
                    None,
                )
                continue
            seen[key] = match_path
            found = _prefix_match(match_path, match) if section == "http" else None
            if found:
                prefixes.append(found)
        if repeated == len(matches):
            yield (
                "MG0307",
                route_path,
                f"{route_path} is never used: every match of it is already used by earlier "
                "routes; remove it or make its matches differ",
                None,
            )
        elif catch_all:
            # istioctl does not report this one; Meshgate does, without an Istio code.
            yield (
                "MG0307",
                route_path,
                f"{route_path} is never used: {catch_all} before it has no match and takes "
                f"every request; move {catch_all} to the end or give it a match",
                "",
            )
    covered: set[str] = set()
    for position, earlier in enumerate(prefixes):
        for later in prefixes[position + 1 :]:
            if later.path in covered or later.prefix == earlier.prefix or not _covers(earlier, later):
                continue
            covered.add(later.path)
            yield (
                "MG0312",
                later.path,
                f"{later.path} is never used: {earlier.path} before it matches the prefix "
                f"{earlier.prefix!r}, which covers {later.prefix!r} with the same or broader "
                "conditions; put the more specific match first or remove it",
                None,
            )


def route_analysis(obj: MeshObject, ctx: ValidationContext) -> list[RouteHit]:
    return ctx.memo(
        ("route-analysis", obj.identity),
        lambda: [hit for section in SECTIONS for hit in _section_analysis(obj, section)],
    )


def _route_hits(code: str, obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for hit_code, path, message, istio_code in route_analysis(obj, ctx):
        if hit_code == code:
            yield (path, message) if istio_code is None else (path, message, istio_code)


@check("MG0307", VS)
def routes_reachable(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    yield from _route_hits("MG0307", obj, ctx)


@check("MG0308", VS)
def matches_distinct(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    yield from _route_hits("MG0308", obj, ctx)


@check("MG0312", VS)
def matches_not_covered(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    yield from _route_hits("MG0312", obj, ctx)


# --- hosts bound to the sidecars by several VirtualServices ---------------------------------------


@dataclass(frozen=True)
class _MeshHosts:
    """VirtualServices bound to `mesh`, by export scope: exported everywhere, or to named namespaces."""

    everywhere: Mapping[str, list[MeshObject]]
    scoped: Mapping[tuple[str, str], list[MeshObject]]
    scoped_by_host: Mapping[str, list[MeshObject]]


def _mesh_scopes(obj: MeshObject) -> frozenset[str] | None:
    """The export scopes of a VirtualService bound to the sidecars, None when it is not bound to them."""
    if MESH_GATEWAY not in bound_gateways(obj) and items(obj.spec.get("gateways")):
        return None
    return export_scopes(obj.spec.get("exportTo"), obj.namespace)


def _mesh_hosts(ctx: ValidationContext) -> _MeshHosts:
    def build() -> _MeshHosts:
        everywhere: dict[str, list[MeshObject]] = defaultdict(list)
        scoped: dict[tuple[str, str], list[MeshObject]] = defaultdict(list)
        scoped_by_host: dict[str, list[MeshObject]] = defaultdict(list)
        for service in ctx.of_kind(VS):
            scopes = _mesh_scopes(service)
            if scopes is None:
                continue
            for _, host in strings(service.spec, "hosts", "spec"):
                name = fqdn(host, service.namespace)
                if EXPORT_ALL in scopes:
                    everywhere[name].append(service)
                    continue
                scoped_by_host[name].append(service)
                for scope in scopes:
                    scoped[(scope, name)].append(service)
        return _MeshHosts(everywhere, scoped, scoped_by_host)

    return ctx.memo("mesh-hosts", build)


def _overlapping(host: str, index: Mapping[str, list[MeshObject]]) -> Iterator[MeshObject]:
    if "*" not in host:
        yield from index.get(host, [])
        # wildcard hosts of the index that cover this one
        labels = host.split(".")
        for start in range(len(labels)):
            yield from index.get("*." + ".".join(labels[start + 1 :]) if start + 1 < len(labels) else "*", [])
        return
    for other, services in index.items():
        if hosts_overlap(host, other):
            yield from services


@check("MG0309", VS)
def hosts_bound_once(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    scopes = _mesh_scopes(obj)
    if scopes is None:
        return
    index = _mesh_hosts(ctx)
    conflicts: dict[str, list[str]] = {}
    first_path = ""
    for path, host in strings(obj.spec, "hosts", "spec"):
        name = fqdn(host, obj.namespace)
        others: list[MeshObject] = []
        if EXPORT_ALL in scopes:
            others += index.everywhere.get(name, [])
            others += _overlapping(name, index.scoped_by_host)
        else:
            for scope in scopes:
                others += index.scoped.get((scope, name), [])
            others += _overlapping(name, index.everywhere)
        refs = sorted({other.ref for other in others if other.identity != obj.identity})
        if refs:
            conflicts[host] = refs
            first_path = first_path or path
    if conflicts:
        described = "; ".join(f"{host} by VirtualService {', '.join(refs)}" for host, refs in conflicts.items())
        yield (
            first_path,
            f"hosts are also bound to the sidecars (mesh) and visible in a common namespace: "
            f"{described}; Istio uses only one of them: merge the routes into one VirtualService, "
            "use delegation, or narrow exportTo",
        )


@check("MG0310", VS)
def hosts_present(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if not items(obj.spec.get("hosts")) and (obj.namespace, obj.name) not in ctx.delegates:
        yield (
            "spec.hosts",
            "spec.hosts is empty, so the VirtualService applies to nothing: list the hosts its routes "
            "apply to (e.g. the Service name), or delegate to it from another VirtualService",
        )


def regex_problem(expression: str) -> str | None:
    for pattern, construct in RE2_UNSUPPORTED:
        if pattern.search(expression):
            return f"uses {construct}, which RE2 (Envoy's engine) does not support"
    try:
        re.compile(expression)
    except re.error as exc:
        return f"does not compile: {exc}"
    return None


def _regexes(match_path: str, match: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for field in STRING_MATCH_FIELDS:
        yield f"{match_path}.{field}.regex", mapping(match.get(field)).get("regex")
    for field in STRING_MATCH_MAPS:
        for name, string_match in mapping(match.get(field)).items():
            yield f"{match_path}.{field}.{name}.regex", mapping(string_match).get("regex")


@check("MG0311", VS)
def regexes_compile(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for route_path, route in entries(obj.spec, "http", "spec"):
        for match_path, match in entries(route, "match", route_path):
            for path, expression in _regexes(match_path, match):
                problem = regex_problem(expression) if isinstance(expression, str) else None
                if problem:
                    yield path, f"regex {expression!r} {problem}: correct it (RE2 syntax)"


@check("MG0317", VS)
def fault_delay_percent_deprecated(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    """istioctl's deprecation analyzer: `http[].fault.delay.percent` above 0 (0, or absent, is not reported)."""
    for path, route in entries(obj.spec, "http", "spec"):
        percent = mapping(mapping(route.get("fault")).get("delay")).get("percent")
        if isinstance(percent, int | float) and not isinstance(percent, bool) and percent > 0:
            yield (
                f"{path}.fault.delay.percent",
                f"fault.delay.percent is deprecated: use fault.delay.percentage instead, "
                f"e.g. `percentage: {{value: {percent}}}`",
            )
