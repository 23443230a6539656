"""What the workloads a policy applies to look like: sidecar injection, port naming, their Deployments,
selectors of the extension kinds, WorkloadEntry reachability.

These checks read the cluster's wider state (namespace labels, pod annotations and containers, Node
topology labels, Deployments), all loaded by `context.read_live_state`. Findings about a namespace or a
Service are given once per bundle, on the first object of the bundle concerned with it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import (
    Hit,
    check,
    entries,
    items,
    labels_text,
    mapping,
    text,
)
from policies.validation.context import (
    ROOT_NAMESPACE,
    Deployment,
    MeshObject,
    Service,
    ValidationContext,
    Workload,
    fqdn,
    match_labels,
    selects,
)

K = PolicyKind
ALL_KINDS = tuple(PolicyKind.values)
# Namespaces istioctl leaves out of its injection and port-naming checks.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage", ROOT_NAMESPACE})
AMBIENT_LABEL = "istio.io/dataplane-mode"
PROXY_UID = 1337
# Port name prefixes (before the first '-') Istio reads as protocols; `appProtocol` takes precedence.
PROTOCOLS = frozenset(
    {
        "tcp",
        "udp",
        "grpc",
        "grpc-web",
        "http",
        "http_proxy",
        "http2",
        "https",
        "tls",
        "mongo",
        "redis",
        "mysql",
    }
)
# Kinds whose `selector` (or EnvoyFilter's `workloadSelector`) picks the pods they apply to.
SELECTOR_KINDS = (K.TELEMETRY, K.WASM_PLUGIN, K.PROXY_CONFIG, K.TRAFFIC_EXTENSION, K.ENVOY_FILTER)


def _once(ctx: ValidationContext, key: tuple[str, ...]) -> bool:
    """True the first time `key` is asked for in this validation."""
    seen: set[tuple[str, ...]] = ctx.memo("workloads.reported", set)
    if key in seen:
        return False
    seen.add(key)
    return True


def _checked_namespace(ctx: ValidationContext, namespace: str) -> bool:
    return (
        namespace not in SYSTEM_NAMESPACES
        and ctx.namespace_exists(namespace)
        and ctx.namespace_labels(namespace).get(AMBIENT_LABEL) != "ambient"
    )


# --- sidecar injection --------------------------------------------------------------------------


@check("MG1001", *ALL_KINDS, needs_cluster=True)
def namespace_injected(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    namespace = obj.namespace
    if not _checked_namespace(ctx, namespace) or ctx.injection_enabled(namespace):
        return
    if _once(ctx, ("MG1001", namespace)):
        yield (
            "metadata.namespace",
            (
                f"namespace {namespace} is not enabled for Istio injection, so its pods run without sidecar: run "
                f"`kubectl label namespace {namespace} istio-injection=enabled` (or `istio.io/rev=<revision>`) "
                "and restart its workloads"
            ),
        )


@check("MG1002", *ALL_KINDS, needs_cluster=True)
def one_injection_label(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    labels = ctx.namespace_labels(obj.namespace)
    if "istio-injection" in labels and "istio.io/rev" in labels and _once(ctx, ("MG1002", obj.namespace)):
        yield (
            "metadata.namespace",
            (
                f"namespace {obj.namespace} has both istio-injection={labels['istio-injection']} and "
                f"istio.io/rev={labels['istio.io/rev']}: keep one of the two labels"
            ),
        )


def selected_workloads(obj: MeshObject, ctx: ValidationContext) -> list[Workload]:
    """The pods a policy applies to: by its selector (root namespace: everywhere), the whole namespace
    for a namespace-wide policy of a workload kind, the pods behind the hosts of a route or rule."""
    return ctx.memo(("workloads.selected", obj.identity), lambda: _selected_workloads(obj, ctx))


def _selected_workloads(obj: MeshObject, ctx: ValidationContext) -> list[Workload]:
    if obj.kind in (K.VIRTUAL_SERVICE, K.DESTINATION_RULE):
        return [pod for service in target_services(obj, ctx) for pod in ctx.service_workloads(service)]
    if obj.kind in (K.GATEWAY, K.SERVICE_ENTRY, K.WORKLOAD_ENTRY, K.WORKLOAD_GROUP):
        return []
    selector = selector_of(obj)
    scope = None if obj.namespace == ROOT_NAMESPACE else obj.namespace
    if selector:
        return ctx.workloads(selector, scope)
    if items(obj.spec.get("targetRefs")) or mapping(obj.spec.get("targetRef")):
        return []
    return ctx.workloads({}, scope)


def selector_of(obj: MeshObject) -> dict[str, str]:
    key = "workloadSelector" if obj.kind in (K.ENVOY_FILTER, K.SIDECAR, K.DESTINATION_RULE) else "selector"
    labels = match_labels(obj, key)
    return {str(k): str(v) for k, v in labels.items()}


@check("MG1003", *ALL_KINDS, needs_cluster=True)
def selected_pods_have_proxy(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for pod in selected_workloads(obj, ctx):
        if (
            pod.has_proxy
            or pod.opted_out
            or not _checked_namespace(ctx, pod.namespace)
            or not ctx.injection_enabled(pod.namespace)
        ):
            continue
        if _once(ctx, ("MG1003", pod.namespace, pod.name)):
            yield (
                "metadata.name",
                (
                    f"pod {pod.namespace}/{pod.name} is missing the Istio proxy although its namespace is injected, "
                    f"so this {obj.kind} does not apply to it: restart or redeploy the workload"
                ),
            )


# --- the Services and Deployments behind a policy -----------------------------------------------


def target_services(obj: MeshObject, ctx: ValidationContext) -> list[Service]:
    """The Services a policy is about: the hosts it routes to or configures, or those in front of the
    pods it selects."""
    return ctx.memo(("workloads.services", obj.identity), lambda: _target_services(obj, ctx))


def _target_services(obj: MeshObject, ctx: ValidationContext) -> list[Service]:
    hosts: list[str] = []
    if obj.kind == K.DESTINATION_RULE:
        hosts.append(text(obj.spec.get("host")))
    elif obj.kind == K.VIRTUAL_SERVICE:
        hosts.extend(text(host) for host in items(obj.spec.get("hosts")))
        for section in ("http", "tcp", "tls"):
            for _, route in entries(obj.spec, section, "spec"):
                for _, destination in entries(route, "route", ""):
                    hosts.append(text(mapping(destination.get("destination")).get("host")))
    else:
        pods = selected_workloads(obj, ctx)
        return _services_of_pods(ctx, pods)
    found = {
        ctx.services[fqdn(host, obj.namespace)].fqdn: ctx.services[fqdn(host, obj.namespace)]
        for host in hosts
        if host and fqdn(host, obj.namespace) in ctx.services
    }
    return list(found.values())


def _services_of_pods(ctx: ValidationContext, pods: Iterable[Workload]) -> list[Service]:
    found: dict[str, Service] = {}
    for pod in pods:
        for service in ctx.services_in(pod.namespace):
            if service.selector and selects(service.selector, pod.labels):
                found.setdefault(service.fqdn, service)
    return list(found.values())


def port_protocol(name: str, app_protocol: str) -> str:
    """The protocol Istio reads from a Service port, "" when it cannot tell."""
    if app_protocol:
        return app_protocol.lower()
    lowered = name.lower()
    if lowered in PROTOCOLS:
        return lowered
    prefix = lowered.split("-", 1)[0]
    if lowered.startswith("grpc-web"):
        return "grpc-web"
    return prefix if prefix in PROTOCOLS and "-" in lowered else ""


@check("MG1004", *ALL_KINDS, needs_cluster=True)
def port_naming(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for service in target_services(obj, ctx):
        if service.namespace in SYSTEM_NAMESPACES or service.type == "ExternalName":
            continue
        for port in service.port_specs:
            if port_protocol(port.name, port.app_protocol) or not _once(ctx, ("MG1004", service.fqdn, str(port.port))):
                continue
            label = f"{port.name!r}" if port.name else "(unnamed)"
            yield (
                "metadata.name",
                (
                    f"port {label} (port {port.port}, targetPort {port.target}) of Service "
                    f"{service.namespace}/{service.name} does not follow Istio's naming convention: name it "
                    "<protocol>[-<suffix>] (e.g. http-web, grpc, tcp-db) or set appProtocol"
                ),
            )


def _deployments_behind(obj: MeshObject, ctx: ValidationContext) -> list[tuple[Deployment, list[Service]]]:
    """Each Deployment in front of which one of the policy's Services stands, with every Service selecting it."""
    services = {service.fqdn for service in target_services(obj, ctx)}
    return [
        (deployment, selecting)
        for deployment, selecting in _deployment_services(ctx)
        if any(service.fqdn in services for service in selecting)
    ]


def _deployment_services(ctx: ValidationContext) -> list[tuple[Deployment, list[Service]]]:
    """Every Deployment outside the system namespaces with the Services selecting its pods (once per validation)."""

    def compute() -> list[tuple[Deployment, list[Service]]]:
        found = []
        for deployment in ctx.deployments or ():
            if deployment.namespace not in SYSTEM_NAMESPACES:
                selecting = [
                    s
                    for s in ctx.services_in(deployment.namespace)
                    if s.selector and selects(s.selector, deployment.pod_labels)
                ]
                found.append((deployment, selecting))
        return found

    return ctx.memo("workloads.deployment_services", compute)


@check("MG1005", *ALL_KINDS, needs_cluster=True)
def deployment_protocols(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for deployment, services in _deployments_behind(obj, ctx):
        if len(services) < 2:
            continue
        protocols: dict[int, set[str]] = defaultdict(set)
        for service in services:
            for port in service.port_specs:
                protocols[port.port].add(port.protocol or "TCP")
        for number, used in sorted(protocols.items()):
            if len(used) > 1 and _once(ctx, ("MG1005", deployment.namespace, deployment.name, str(number))):
                yield (
                    "metadata.name",
                    (
                        f"Deployment {deployment.namespace}/{deployment.name} is behind several Services using port "
                        f"{number} with different protocols ({', '.join(sorted(used))}): use one protocol per port"
                    ),
                )


@check("MG1006", *ALL_KINDS, needs_cluster=True)
def deployment_ports(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for deployment, services in _deployments_behind(obj, ctx):
        if len(services) < 2:
            continue
        ports: dict[str, set[int]] = defaultdict(set)
        names: dict[str, set[str]] = defaultdict(set)
        for service in services:
            for port in service.port_specs:
                ports[str(port.target)].add(port.port)
                names[str(port.target)].add(service.name)
        for target, numbers in sorted(ports.items()):
            if len(numbers) > 1 and _once(ctx, ("MG1006", deployment.namespace, deployment.name, target)):
                yield (
                    "metadata.name",
                    (
                        f"Deployment {deployment.namespace}/{deployment.name} is behind Services "
                        f"{', '.join(sorted(names[target]))} sending targetPort {target} to different ports "
                        f"({', '.join(str(n) for n in sorted(numbers))}): use one Service port per targetPort"
                    ),
                )


@check("MG1007", *ALL_KINDS, needs_cluster=True)
def deployment_uid(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    for deployment, _ in _deployments_behind(obj, ctx):
        if PROXY_UID in deployment.run_as_users and _once(ctx, ("MG1007", deployment.namespace, deployment.name)):
            yield (
                "metadata.name",
                (
                    f"Deployment {deployment.namespace}/{deployment.name} runs as user ID {PROXY_UID}, which Istio "
                    "reserves for the sidecar: its traffic bypasses the proxy; run it under another user ID"
                ),
            )


# --- selectors of the extension kinds -------------------------------------------------------------


@check("MG1008", *SELECTOR_KINDS, needs_cluster=True)
def selector_matches_workloads(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    selector = selector_of(obj)
    scope = None if obj.namespace == ROOT_NAMESPACE else obj.namespace
    if selector and not ctx.workloads(selector, scope):
        where = "any namespace" if scope is None else f"namespace {obj.namespace}"
        key = "workloadSelector.labels" if obj.kind == K.ENVOY_FILTER else "selector.matchLabels"
        yield (
            f"spec.{key}",
            (
                f"no pod in {where} carries {labels_text(selector)}, so this {obj.kind} applies "
                "to nothing: correct the labels, or deploy the workload first"
            ),
        )


# --- WorkloadEntry ------------------------------------------------------------------------------------

_LABEL_KEY = re.compile(r"^[A-Za-z0-9./_-]+$")


@check("MG1301", K.WORKLOAD_ENTRY)
def workload_entry_selected(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    labels = mapping(obj.spec.get("labels"))
    if not labels:
        return
    entries_labels = {str(k): str(v) for k, v in labels.items() if _LABEL_KEY.match(str(k))}
    for entry in ctx.of_kind(K.SERVICE_ENTRY):
        if entry.namespace != obj.namespace:
            continue
        selector = mapping(mapping(entry.spec.get("workloadSelector")).get("labels"))
        if selector and selects({str(k): str(v) for k, v in selector.items()}, entries_labels):
            return
    yield (
        "spec.labels",
        (
            f"no ServiceEntry in namespace {obj.namespace} selects {labels_text(labels)}, so no host "
            "routes to this WorkloadEntry: add a ServiceEntry whose workloadSelector matches its labels"
        ),
    )
