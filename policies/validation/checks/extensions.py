"""EnvoyFilter patch operations, and Telemetry against the mesh config and the other Telemetries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, entries, items, mapping, text
from policies.validation.context import (
    MeshObject,
    ValidationContext,
    match_labels,
    selects,
)

K = PolicyKind
RELATIVE = frozenset({"INSERT_BEFORE", "INSERT_AFTER", "REPLACE"})
RELATIVE_WITH_VERSION = RELATIVE | {"MERGE", "REMOVE"}
REPLACEABLE = frozenset({"HTTP_FILTER", "NETWORK_FILTER"})
ROUTES = frozenset({"ROUTE_CONFIGURATION", "HTTP_ROUTE"})
# Providers every Istio mesh config has, whatever it lists itself.
BUILT_IN_PROVIDERS = frozenset({"prometheus", "stackdriver", "envoy"})
TELEMETRY_SECTIONS = ("accessLogging", "tracing", "metrics")


def _patches(obj: MeshObject) -> Iterator[tuple[str, str, str, Mapping[str, Any]]]:
    """(path, applyTo, operation, patch) of every config patch."""
    for path, patch in entries(obj.spec, "configPatches", "spec"):
        yield (
            path,
            text(patch.get("applyTo")).upper(),
            text(mapping(patch.get("patch")).get("operation")).upper(),
            patch,
        )


def _priority(obj: MeshObject) -> int:
    priority = obj.spec.get("priority")
    return priority if isinstance(priority, int) else 0


def _proxy_version(patch: Mapping[str, Any]) -> str:
    return text(mapping(mapping(patch.get("match")).get("proxy")).get("proxyVersion"))


@check("MG1201", K.ENVOY_FILTER)
def relative_operation_has_priority(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if _priority(obj):
        return
    for path, _, operation, patch in _patches(obj):
        if operation in RELATIVE and not _proxy_version(patch):
            yield (
                f"{path}.patch.operation",
                (
                    f"{operation} is relative to another filter, and this EnvoyFilter has no priority: it may be "
                    "applied before the filter it depends on exists; set spec.priority or use INSERT_FIRST"
                ),
            )


@check("MG1202", K.ENVOY_FILTER)
def replace_on_filters(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, apply_to, operation, _ in _patches(obj):
        if operation == "REPLACE" and apply_to not in REPLACEABLE:
            yield (
                f"{path}.patch.operation",
                (
                    f"REPLACE is only valid for HTTP_FILTER and NETWORK_FILTER, not "
                    f"{apply_to or 'an unset applyTo'}: use MERGE"
                ),
            )


@check("MG1203", K.ENVOY_FILTER)
def add_on_routes(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, apply_to, operation, _ in _patches(obj):
        if operation == "ADD" and apply_to in ROUTES:
            yield f"{path}.patch.operation", f"ADD is ignored when applyTo is {apply_to}: use MERGE"


@check("MG1204", K.ENVOY_FILTER)
def remove_on_routes(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for path, apply_to, operation, _ in _patches(obj):
        if operation == "REMOVE" and apply_to in ROUTES:
            yield (
                f"{path}.patch.operation",
                (f"REMOVE is ignored when applyTo is {apply_to}: remove the route in its VirtualService instead"),
            )


@check("MG1205", K.ENVOY_FILTER)
def relative_operation_with_proxy_version(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if _priority(obj):
        return
    for path, _, operation, patch in _patches(obj):
        if operation in RELATIVE_WITH_VERSION and _proxy_version(patch):
            yield (
                f"{path}.patch.operation",
                (
                    f"{operation} on proxies of version {_proxy_version(patch)!r} without a priority: after an upgrade "
                    "the filters it depends on may be applied in another order; set spec.priority"
                ),
            )


# --- Telemetry ----------------------------------------------------------------------------------------


def _default_providers(mesh: Mapping[str, Any], section: str) -> list[Any]:
    return items(mapping(mesh.get("defaultProviders")).get(section))


@check("MG1206", K.TELEMETRY, needs_cluster=True)
def access_logging_has_provider(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    mesh = ctx.mesh_config
    if mesh is None or _default_providers(mesh, "accessLogging"):
        return
    for path, entry in entries(obj.spec, "accessLogging", "spec"):
        if not items(entry.get("providers")) and not entry.get("disabled"):
            yield (
                path,
                (
                    "this accessLogging entry names no provider and the mesh config has no default "
                    "(defaultProviders.accessLogging), so Istio ignores it: add providers: [{name: envoy}]"
                ),
            )


def _unscoped(obj: MeshObject) -> bool:
    return not match_labels(obj) and not items(obj.spec.get("targetRefs")) and not mapping(obj.spec.get("targetRef"))


@check("MG1208", K.TELEMETRY)
def one_namespace_wide_telemetry(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if not _unscoped(obj):
        return
    others = sorted(
        other.name
        for other in ctx.of_kind(K.TELEMETRY)
        if other.namespace == obj.namespace and other.identity != obj.identity and _unscoped(other)
    )
    if others:
        yield (
            "spec",
            (
                f"Telemetry {', '.join(others)} in namespace {obj.namespace} also has no selector: which one "
                "applies is undefined; keep one namespace-wide Telemetry"
            ),
        )


@check("MG1207", K.TELEMETRY, needs_cluster=True)
def telemetry_selectors_disjoint(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = match_labels(obj)
    if not selector:
        return
    pods = ctx.workloads(dict(selector), obj.namespace)
    for other in ctx.of_kind(K.TELEMETRY):
        other_selector = match_labels(other)
        if other.namespace != obj.namespace or other.identity == obj.identity or not other_selector:
            continue
        shared = [pod.name for pod in pods if selects(other_selector, pod.labels)]
        if shared:
            yield (
                "spec.selector",
                (
                    f"Telemetry {other.name} also selects pod {shared[0]} in namespace "
                    f"{obj.namespace}: which one applies is undefined; make the selectors disjoint"
                ),
            )


@check("MG1209", K.TELEMETRY, needs_cluster=True)
def providers_defined(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    mesh = ctx.mesh_config
    if mesh is None:
        return
    known = BUILT_IN_PROVIDERS | {text(mapping(p).get("name")) for p in items(mesh.get("extensionProviders"))}
    for section in TELEMETRY_SECTIONS:
        for entry_path, entry in entries(obj.spec, section, "spec"):
            for index, provider in enumerate(items(entry.get("providers"))):
                name = text(mapping(provider).get("name"))
                if name and name not in known:
                    yield (
                        f"{entry_path}.providers[{index}].name",
                        (
                            f"provider {name!r} is not defined in the mesh config (extensionProviders: "
                            f"{', '.join(sorted(known))}): add it there or correct the name"
                        ),
                    )
