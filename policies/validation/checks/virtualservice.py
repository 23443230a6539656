"""VirtualService: destinations, subsets, ports, gateways, weights, shadowed routes, hosts, regexes."""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, items, mapping, strings, text
from policies.validation.checks.hosts import unknown_host_message
from policies.validation.context import MESH_GATEWAY, MeshObject, ValidationContext, bound_gateways, fqdn, gateway_ref

VS = PolicyKind.VIRTUAL_SERVICE
SECTIONS = ("http", "tcp", "tls")
STRING_MATCH_FIELDS = ("uri", "scheme", "method", "authority")
STRING_MATCH_MAPS = ("headers", "queryParams", "withoutHeaders")
NON_CONDITIONS = frozenset({"name", "ignoreUriCase"})
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


@check("MG0301", VS, needs_cluster=True)
def destination_host_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination in destinations(obj):
        host = _resolved(obj, destination)
        if host and not ctx.host_exists(host):
            message = unknown_host_message(destination["host"], obj.namespace, ctx, what="destination host")
            yield f"{path}.host", message


@check("MG0302", VS)
def subset_defined(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination in destinations(obj):
        host, subset = _resolved(obj, destination), text(destination.get("subset"))
        if not host or not subset or (ctx.live is not None and not ctx.host_exists(host)):
            continue  # an unknown host is reported once, by MG0301
        defined = ctx.subsets_for(host)
        if subset not in defined:
            rules = ctx.destination_rules_for(host)
            yield f"{path}.subset", _subset_message(destination["host"], host, subset, rules, defined)


def _subset_message(host: str, resolved: str, subset: str, rules: list[MeshObject], defined: list[str]) -> str:
    if not rules:
        return (f"subset {subset!r} of {host} is not defined: no DestinationRule exists for {resolved}; "
                f"add one with a subset named {subset}")
    close = difflib.get_close_matches(subset, defined, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    names = ", ".join(name for name in defined if name) or "none"
    return (f"subset {subset!r} of {host} is not defined by DestinationRule "
            f"{', '.join(rule.ref for rule in rules)} (subsets: {names}): {hint}add it there or correct the name")


@check("MG0303", VS, needs_cluster=True)
def destination_port_served(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination in destinations(obj):
        service = ctx.services.get(_resolved(obj, destination))
        number = mapping(destination.get("port")).get("number")
        if service and service.ports and isinstance(number, int) and number not in service.ports:
            ports = ", ".join(map(str, service.ports))
            yield (f"{path}.port.number",
                   f"port {number} is not a port of Service {service.namespace}/{service.name} (ports: {ports}): "
                   "use one of them")


@check("MG0304", VS, needs_cluster=True)
def destination_port_given(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, destination in destinations(obj):
        service = ctx.services.get(_resolved(obj, destination))
        if service and len(service.ports) > 1 and "port" not in destination:
            ports = ", ".join(map(str, service.ports))
            yield (path, f"Service {service.namespace}/{service.name} has several ports ({ports}) and the destination "
                         "names none: set destination.port.number")


def gateway_references(obj: MeshObject) -> Iterator[tuple[str, str]]:
    """(path, reference) of spec.gateways and of the gateways of every route match."""
    yield from strings(obj.spec, "gateways", "spec")
    for section in SECTIONS:
        for route_path, route in entries(obj.spec, section, "spec"):
            for match_path, match in entries(route, "match", route_path):
                yield from strings(match, "gateways", match_path)


@check("MG0305", VS)
def gateway_exists(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, reference in gateway_references(obj):
        if reference == MESH_GATEWAY:
            continue
        namespace, _, name = gateway_ref(reference, obj.namespace).partition("/")
        if not ctx.gateway_exists(namespace, name):
            yield path, _gateway_message(reference, namespace, name, ctx)


def _gateway_message(reference: str, namespace: str, name: str, ctx: ValidationContext) -> str:
    names = [gateway.name for gateway in ctx.of_kind(PolicyKind.GATEWAY) if gateway.namespace == namespace]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"gateway {reference!r} not found: there is no Gateway {name} in namespace {namespace}{hint}; "
            "correct the reference (namespace/name for another namespace, mesh for the sidecars) or create it")


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
                yield (f"{route_path}.route",
                       f"the weights of {route_path}.route add up to {total}{unset}, not 100: set a weight on every "
                       "destination so that they add up to 100")


def _is_catch_all(route: Mapping[str, Any]) -> bool:
    matches = items(route.get("match"))
    return not matches or any(isinstance(match, dict) and not set(match) - NON_CONDITIONS for match in matches)


@check("MG0307", VS)
def routes_reachable(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    routes = list(entries(obj.spec, "http", "spec"))
    for position, (path, route) in enumerate(routes):
        if _is_catch_all(route):
            for later, _ in routes[position + 1:]:
                yield (later, f"{later} is never used: {path} before it has no match and takes every request; "
                              f"move {path} to the end or give it a match")
            return


@check("MG0308", VS)
def matches_distinct(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    first: dict[str, tuple[int, str]] = {}
    for position, (route_path, route) in enumerate(entries(obj.spec, "http", "spec")):
        for match_path, match in entries(route, "match", route_path):
            conditions = {key: value for key, value in match.items() if key != "name"}
            if not conditions:
                continue
            key = json.dumps(conditions, sort_keys=True)
            earlier = first.setdefault(key, (position, match_path))
            if earlier[0] != position:
                yield (match_path, f"{match_path} is never used: {earlier[1]} has exactly the same match; "
                                   "remove it or make it differ")


@check("MG0309", VS)
def hosts_bound_once(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    gateways = bound_gateways(obj)
    for path, host in strings(obj.spec, "hosts", "spec"):
        resolved = fqdn(host, obj.namespace)
        for gateway in gateways:
            others = [other.ref for other in ctx.virtual_service_bindings.get((gateway, resolved), [])
                      if other.identity != obj.identity]
            if others:
                yield (path, f"host {host} is also bound on gateway {gateway} by VirtualService {', '.join(others)}: "
                             "Istio uses only one of them; merge the routes into one VirtualService or use delegation")
                break


@check("MG0310", VS)
def hosts_present(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if not items(obj.spec.get("hosts")) and (obj.namespace, obj.name) not in ctx.delegates:
        yield ("spec.hosts", "spec.hosts is empty, so the VirtualService applies to nothing: list the hosts its routes "
                             "apply to (e.g. the Service name), or delegate to it from another VirtualService")


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
