"""What cross-resource checks look at: the environment's live workloads and its Istio configuration.

A ValidationContext is built once per validation from (1) the cluster's live state: namespaces (with
their labels), Services and Pods from the live inventory (policies/inventory.py; listed through the
adapter when the inventory is stale, with a notice), and what only the cross-resource checks read,
listed through the adapter each time (`read_live_extras`: Nodes, whose topology labels go onto their
pods, Deployments, Secrets' metadata and type, never their data, Istio's mesh config and the
Kubernetes Gateway API objects), (2) the current revisions of the environment's policies in the
database, minus those the bundle replaces, and (3) the bundle's own objects, which override policies
with the same identity. Its indexes are computed on first use.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import yaml
from django.db.models import Count, Sum

from integrations.kubernetes import (
    CONTEXT_KINDS,
    ClusterConfig,
    KubernetesError,
    NotFound,
    get_config_map,
    list_context_objects,
    list_deployments,
    list_namespaces,
    list_nodes,
    list_pods,
    list_secret_metadata,
    list_services,
)
from policies import inventory
from policies.choices import PolicyKind
from policies.cluster import cluster_config
from policies.models import Environment, Policy
from policies.validation.codes import finding
from policies.validation.findings import Finding
from policies.validation.parse import ParsedDocument

DOMAIN_SUFFIX = "svc.cluster.local"
ROOT_NAMESPACE = "istio-system"
MESH_GATEWAY = "mesh"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
MESH_CONFIG_MAP = "istio"
# Node labels Istio copies onto the workloads running there (locality), so subsets may select by them.
TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")
PROXY_CONTAINER = "istio-proxy"
INJECT = "sidecar.istio.io/inject"
INJECTION_STATUS = "sidecar.istio.io/status"

Identity = tuple[str, str, str]
Labels = Mapping[str, str]
T = TypeVar("T")


# --- hosts ----------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def fqdn(host: str, namespace: str) -> str:
    """Istio's resolution: a name without dots is a Service in `namespace`; anything else is as written."""
    if not host or "." in host or "*" in host:
        return host
    return f"{host}.{namespace}.{DOMAIN_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    """`*` matches everything, `*.example.com` its subdomains; otherwise names must be equal."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or host == pattern
    return pattern == host


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def selects(selector: Labels, labels: Labels) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- what the cluster runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    protocol: str = "TCP"
    target_port: int | str | None = None
    app_protocol: str = ""

    @property
    def target(self) -> int | str:
        """The port the workload listens on: targetPort, else the port itself."""
        return self.target_port if self.target_port not in (None, "", 0) else self.port


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    ports: tuple[int, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)
    export_to: tuple[str, ...] = ()  # annotation networking.istio.io/exportTo, split on commas; () is everywhere
    target_ports: tuple[int, ...] = ()  # numeric targetPorts of the TCP ports (a gateway proxy listens on them)
    port_specs: tuple[ServicePort, ...] = ()
    type: str = "ClusterIP"
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.{DOMAIN_SUFFIX}"


@dataclass(frozen=True)
class Workload:
    """A Pod. `labels` include the topology labels of its Node, as Istio sees them."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    node: str = ""

    @property
    def has_proxy(self) -> bool:
        return PROXY_CONTAINER in self.containers or INJECTION_STATUS in self.annotations

    @property
    def opted_out(self) -> bool:
        """Injection turned off for this pod (annotation or label `sidecar.istio.io/inject: "false"`)."""
        return "false" in (str(self.annotations.get(INJECT, "")).lower(), str(self.labels.get(INJECT, "")).lower())


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    selector: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    run_as_users: tuple[int, ...] = ()  # securityContext.runAsUser of the pod and its containers
    labels: Mapping[str, str] = field(default_factory=dict)  # the Deployment's own metadata.labels
    # Names of the containers' environment variables set to a non-empty literal `value` (never the values).
    env_set: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SecretInfo:
    """A Secret's identity and type: Meshgate never reads a Secret's data."""

    namespace: str
    name: str
    type: str = ""


@dataclass(frozen=True)
class GatewayApiObject:
    """A Kubernetes Gateway API object (gateway.networking.k8s.io), read as context."""

    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveState:
    """What the cluster runs. A part that could not be read (e.g. no permission) is None, and the
    checks needing it are skipped; the Gateway API is an empty mapping when its CRDs are absent."""

    namespaces: frozenset[str]
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    deployments: tuple[Deployment, ...] | None = ()
    secrets: tuple[SecretInfo, ...] | None = ()
    mesh_config: Mapping[str, Any] | None = field(default_factory=dict)
    node_labels: Mapping[str, Mapping[str, str]] | None = field(default_factory=dict)
    gateway_api: Mapping[str, tuple[GatewayApiObject, ...]] = field(default_factory=dict)


def read_live_state(cfg: ClusterConfig) -> LiveState:
    """Everything the checks read from the cluster, in concurrent list calls: namespaces, Services and
    Pods (required), and the extras of `read_live_extras`.

    Raises KubernetesError (the first one, when a required call fails).
    """
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="meshgate-live-state") as pool:
        namespaces, services, pods = (pool.submit(read, cfg) for read in (list_namespaces, list_services, list_pods))
        extras = pool.submit(read_live_extras, cfg)
        base = live_state_from(namespaces.result(), services.result(), pods.result())
        return with_extras(base, extras.result())


@dataclass(frozen=True)
class LiveExtras:
    """What the cross-resource checks read besides namespaces, Services and Pods. None: not read (refused)."""

    node_labels: Mapping[str, Mapping[str, str]] | None = None
    deployments: tuple[Deployment, ...] | None = None
    secrets: tuple[SecretInfo, ...] | None = None
    mesh_config: Mapping[str, Any] | None = None
    gateway_api: Mapping[str, tuple[GatewayApiObject, ...]] = field(default_factory=dict)


def read_live_extras(cfg: ClusterConfig) -> LiveExtras:
    """Nodes, Deployments, Secrets' metadata, the mesh config and the Gateway API objects, in concurrent
    list calls; each optional: refused or absent, it is left out and the checks needing it are skipped.
    (Not watched by the inventory yet: the one function to move behind it.)"""
    optional: dict[str, Callable[[], Any]] = {
        "deployments": lambda: list_deployments(cfg),
        "nodes": lambda: list_nodes(cfg),
        "secrets": lambda: list_secret_metadata(cfg),
        "mesh": lambda: _mesh_config_map(cfg),
        **{f"gateway-api/{kind}": _gateway_api_reader(cfg, kind) for kind in CONTEXT_KINDS},
    }
    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="meshgate-live-extras") as pool:
        futures = {key: pool.submit(_optional, read) for key, read in optional.items()}
        found = {key: future.result() for key, future in futures.items()}
    nodes, deployments, secrets = found["nodes"], found["deployments"], found["secrets"]
    return LiveExtras(
        node_labels=None
        if nodes is None
        else {_meta(node).get("name", ""): dict(_meta(node).get("labels") or {}) for node in nodes},
        deployments=None if deployments is None else tuple(_deployment(item) for item in deployments),
        secrets=None if secrets is None else tuple(SecretInfo(s.namespace, s.name, s.type) for s in secrets),
        mesh_config=found["mesh"],
        gateway_api={
            kind: tuple(_gateway_api_object(kind, item) for item in found[f"gateway-api/{kind}"] or [])
            for kind in CONTEXT_KINDS
        },
    )


def with_extras(live: LiveState, extras: LiveExtras) -> LiveState:
    """`live` with the extras, its pods carrying their Node's topology labels."""
    node_labels = extras.node_labels or {}
    workloads = (
        tuple(
            dataclasses.replace(workload, labels={**_topology(node_labels, workload.node), **workload.labels})
            for workload in live.workloads
        )
        if node_labels
        else live.workloads
    )
    return dataclasses.replace(
        live,
        workloads=workloads,
        deployments=extras.deployments,
        secrets=extras.secrets,
        mesh_config=extras.mesh_config,
        node_labels=extras.node_labels,
        gateway_api=extras.gateway_api,
    )


def _topology(node_labels: Mapping[str, Mapping[str, str]], node: str) -> dict[str, str]:
    return {key: value for key, value in (node_labels.get(node) or {}).items() if key in TOPOLOGY_LABELS}


def _optional(read: Callable[[], T]) -> T | None:
    """A read the checks can do without: None when refused or failing; a list of a kind the cluster does
    not serve (NotFound: e.g. no Gateway API CRDs) is empty."""
    try:
        return read()
    except NotFound:
        return []  # type: ignore[return-value]
    except KubernetesError:  # Unauthorized (RBAC without it), Unreachable, ...
        return None


def _gateway_api_reader(cfg: ClusterConfig, kind: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: list_context_objects(cfg, kind)


def _mesh_config_map(cfg: ClusterConfig) -> dict[str, Any]:
    """Istio's mesh config (ConfigMap `istio` in istio-system, key `mesh`); {} when absent or unreadable."""
    try:
        config_map = get_config_map(cfg, ROOT_NAMESPACE, MESH_CONFIG_MAP)
    except NotFound:
        return {}
    try:
        mesh = yaml.safe_load((config_map.get("data") or {}).get("mesh") or "")
    except yaml.YAMLError:
        return {}
    return mesh if isinstance(mesh, dict) else {}


LIVE_KINDS = ("Namespace", "Service", "Pod")


def live_state_from(
    namespaces: Iterable[dict[str, Any]], services: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]]
) -> LiveState:
    """Namespaces (and their labels), Services and Pods; the extras not read yet (see `with_extras`)."""
    namespace_items = list(namespaces)
    return LiveState(
        frozenset(_meta(item).get("name", "") for item in namespace_items),
        tuple(_service(item) for item in services),
        tuple(_workload(item) for item in pods),
        namespace_labels={
            _meta(item).get("name", ""): dict(_meta(item).get("labels") or {}) for item in namespace_items
        },
        deployments=None,
        secrets=None,
        mesh_config=None,
        node_labels=None,
    )


def inventory_live_state(environment: Environment) -> tuple[LiveState | None, inventory.Freshness]:
    """The live state from the inventory when it is fresh (None and the freshness otherwise)."""
    state = inventory.freshness(environment, LIVE_KINDS)
    if not state.fresh:
        return None, state
    live = inventory.snapshot(
        environment,
        state,
        "live-state",
        lambda: live_state_from(*(inventory.items(environment, kind) for kind in LIVE_KINDS)),
    )
    return live, state


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("metadata") or {}


def _workload(item: dict[str, Any]) -> Workload:
    meta = _meta(item)
    spec = item.get("spec") or {}
    containers = tuple(str(c.get("name", "")) for c in spec.get("containers") or [] if isinstance(c, dict))
    return Workload(
        meta.get("namespace", ""),
        meta.get("name", ""),
        dict(meta.get("labels") or {}),
        dict(meta.get("annotations") or {}),
        containers,
        str(spec.get("nodeName") or ""),
    )


def _service(item: dict[str, Any]) -> Service:
    spec = item.get("spec") or {}
    ports = tuple(port["port"] for port in spec.get("ports") or [] if isinstance(port.get("port"), int))
    specs = tuple(
        ServicePort(
            port["port"],
            str(port.get("name") or ""),
            str(port.get("protocol") or "TCP"),
            port.get("targetPort"),
            str(port.get("appProtocol") or ""),
        )
        for port in spec.get("ports") or []
        if isinstance(port.get("port"), int)
    )
    meta = _meta(item)
    export_to = str((meta.get("annotations") or {}).get(EXPORT_TO_ANNOTATION) or "")
    target_ports = tuple(
        port["targetPort"]
        for port in spec.get("ports") or []
        if type(port.get("targetPort")) is int and (port.get("protocol") or "TCP") == "TCP"
    )
    return Service(
        meta.get("namespace", ""),
        meta.get("name", ""),
        ports,
        dict(spec.get("selector") or {}),
        tuple(part.strip() for part in export_to.split(",") if part.strip()),
        target_ports,
        port_specs=specs,
        type=str(spec.get("type") or "ClusterIP"),
        annotations=dict(meta.get("annotations") or {}),
    )


def _deployment(item: dict[str, Any]) -> Deployment:
    meta, spec = _meta(item), item.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    contexts = [pod_spec.get("securityContext") or {}] + [
        c.get("securityContext") or {}
        for c in pod_spec.get("containers") or []
        if isinstance(c, dict) and c.get("name") != PROXY_CONTAINER
    ]
    users = tuple(ctx["runAsUser"] for ctx in contexts if isinstance(ctx.get("runAsUser"), int))
    env_set = frozenset(
        str(variable.get("name"))
        for container in pod_spec.get("containers") or []
        if isinstance(container, dict)
        for variable in container.get("env") or []
        if isinstance(variable, dict) and variable.get("name") and variable.get("value")
    )
    return Deployment(
        meta.get("namespace", ""),
        meta.get("name", ""),
        dict(selector),
        dict((template.get("metadata") or {}).get("labels") or {}),
        dict((template.get("metadata") or {}).get("annotations") or {}),
        users,
        labels=dict(meta.get("labels") or {}),
        env_set=env_set,
    )


def _gateway_api_object(kind: str, item: dict[str, Any]) -> GatewayApiObject:
    meta = _meta(item)
    spec = item.get("spec")
    return GatewayApiObject(
        kind,
        meta.get("namespace", ""),
        meta.get("name", ""),
        spec if isinstance(spec, dict) else {},
        dict(meta.get("labels") or {}),
    )


# --- Istio configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshObject:
    """One Istio object the checks consider: from the bundle (`document` set) or the environment."""

    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any]
    document: ParsedDocument | None = None

    @property
    def identity(self) -> Identity:
        return self.kind, self.namespace, self.name

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _spec(content: Any) -> Mapping[str, Any]:
    spec = content.get("spec") if isinstance(content, dict) else None
    return spec if isinstance(spec, dict) else {}


def environment_objects(environment: Environment, *, exclude_policy_ids: Iterable[int] = ()) -> list[MeshObject]:
    """The current revisions of the environment's policies.

    Loaded once per process while the set of current revisions stays the same (a new revision has
    a new id, so their count and sum of ids tell): a validation then costs one aggregate query,
    not the decoding of every policy's content."""
    current = Policy.objects.filter(environment=environment, current_revision__isnull=False)
    stamp = current.aggregate(count=Count("pk"), ids=Sum("current_revision_id"))

    def load() -> dict[int, MeshObject]:
        rows = current.values_list("pk", "kind", "namespace", "name", "current_revision__content")
        return {pk: MeshObject(kind, namespace, name, _spec(content)) for pk, kind, namespace, name, content in rows}

    objects = inventory.memoized(("environment-objects", environment.pk, stamp["count"], stamp["ids"]), load)
    excluded = set(exclude_policy_ids)
    return [obj for pk, obj in objects.items() if pk not in excluded]


def document_object(doc: ParsedDocument) -> MeshObject:
    return MeshObject(doc.kind, doc.namespace, doc.name, _spec(doc.obj), doc)


class ValidationContext:
    def __init__(self, *, live: LiveState | None, objects: Iterable[MeshObject]):
        self.live = live
        self.objects: dict[Identity, MeshObject] = {}
        for obj in objects:
            self.objects[obj.identity] = obj
        self._memo: dict[Hashable, Any] = {}

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """A value derived from the context, computed once per validation (for checks' own indexes)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def get(self, kind: str, namespace: str, name: str) -> MeshObject | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[MeshObject]:
        return self._by_kind.get(kind, [])

    @cached_property
    def _by_kind(self) -> dict[str, list[MeshObject]]:
        index: dict[str, list[MeshObject]] = defaultdict(list)
        for obj in self.objects.values():
            index[obj.kind].append(obj)
        return index

    # live state

    def namespace_exists(self, namespace: str) -> bool:
        return self.live is None or namespace in self.live.namespaces

    @cached_property
    def services(self) -> dict[str, Service]:
        return {service.fqdn: service for service in self.live.services} if self.live else {}

    def services_in(self, namespace: str) -> list[Service]:
        return [service for service in self.services.values() if service.namespace == namespace]

    @cached_property
    def _workloads_by_namespace(self) -> dict[str, list[Workload]]:
        index: dict[str, list[Workload]] = defaultdict(list)
        for workload in self.live.workloads if self.live else ():
            index[workload.namespace].append(workload)
        return index

    def workloads(self, selector: Labels, namespace: str | None = None) -> list[Workload]:
        """Pods carrying all of `selector`'s labels, in one namespace or (None) anywhere."""
        if namespace is None:
            pool: Iterable[Workload] = self.live.workloads if self.live else ()
        else:
            pool = self._workloads_by_namespace.get(namespace, [])
        return [workload for workload in pool if selects(selector, workload.labels)]

    def service_workloads(self, service: Service, extra: Labels | None = None) -> list[Workload]:
        if not service.selector:
            return []
        return self.workloads({**service.selector, **(extra or {})}, service.namespace)

    # what else the cluster holds: namespace labels, Deployments, Secrets, mesh config, Gateway API

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return (self.live.namespace_labels.get(namespace) or {}) if self.live else {}

    def injection_enabled(self, namespace: str) -> bool:
        """Sidecar injection is on for the namespace: `istio-injection=enabled`, or an `istio.io/rev` label
        (unless `istio-injection=disabled`)."""
        labels = self.namespace_labels(namespace)
        if labels.get("istio-injection") == "enabled":
            return True
        return "istio.io/rev" in labels and labels.get("istio-injection") != "disabled"

    @property
    def deployments(self) -> tuple[Deployment, ...] | None:
        """None when the cluster's Deployments could not be read."""
        return self.live.deployments if self.live else None

    @property
    def secrets_read(self) -> bool:
        return self.live is not None and self.live.secrets is not None

    @cached_property
    def _secrets(self) -> dict[tuple[str, str], SecretInfo]:
        secrets = self.live.secrets if self.live else None
        return {(secret.namespace, secret.name): secret for secret in secrets or ()}

    def secret(self, namespace: str, name: str) -> SecretInfo | None:
        return self._secrets.get((namespace, name))

    @property
    def mesh_config(self) -> Mapping[str, Any] | None:
        """Istio's mesh config as the cluster holds it ({} when there is none); None when not read."""
        return self.live.mesh_config if self.live else None

    def gateway_api(self, kind: str) -> tuple[GatewayApiObject, ...]:
        """The Gateway API objects of `kind` (Gateway, HTTPRoute, GRPCRoute, ReferenceGrant) in the cluster."""
        return self.live.gateway_api.get(kind, ()) if self.live else ()

    def gateway_api_gateway(self, namespace: str, name: str) -> GatewayApiObject | None:
        return next((g for g in self.gateway_api("Gateway") if (g.namespace, g.name) == (namespace, name)), None)

    def gateway_exists(self, namespace: str, name: str) -> bool:
        """An Istio Gateway, or a Kubernetes Gateway API Gateway (which Istio also binds VirtualServices to)."""
        return self.get(PolicyKind.GATEWAY, namespace, name) is not None or (
            self.gateway_api_gateway(namespace, name) is not None
        )

    # hosts

    @cached_property
    def _service_entry_hosts(self) -> tuple[dict[str, MeshObject], list[tuple[str, MeshObject]]]:
        """(exact host → entry, [(wildcard host, entry)])."""
        exact: dict[str, MeshObject] = {}
        wildcards: list[tuple[str, MeshObject]] = []
        for entry in self.of_kind(PolicyKind.SERVICE_ENTRY):
            hosts = entry.spec.get("hosts")
            for host in hosts if isinstance(hosts, list) else []:
                if isinstance(host, str):
                    if "*" in host:
                        wildcards.append((host, entry))
                    else:
                        exact.setdefault(fqdn(host, entry.namespace), entry)
        return exact, wildcards

    def service_entry_for(self, host: str) -> MeshObject | None:
        exact, wildcards = self._service_entry_hosts
        if host in exact:
            return exact[host]
        return next((entry for pattern, entry in wildcards if host_matches(pattern, host)), None)

    def host_exists(self, host: str) -> bool:
        return host in self.services or self.service_entry_for(host) is not None

    @cached_property
    def _destination_rules(self) -> tuple[dict[str, list[MeshObject]], list[tuple[str, MeshObject]]]:
        """(FQDN host → rules, [(wildcard host, rule)])."""
        exact: dict[str, list[MeshObject]] = defaultdict(list)
        wildcards: list[tuple[str, MeshObject]] = []
        for rule in self.of_kind(PolicyKind.DESTINATION_RULE):
            host = rule.spec.get("host")
            if isinstance(host, str) and host:
                if "*" in host:
                    wildcards.append((host, rule))
                else:
                    exact[fqdn(host, rule.namespace)].append(rule)
        return exact, wildcards

    def destination_rules_for(self, host: str) -> list[MeshObject]:
        """The rules applying to a host: for it exactly, then by wildcard."""
        exact, wildcards = self._destination_rules
        return [*exact.get(host, []), *(rule for pattern, rule in wildcards if host_matches(pattern, host))]

    def subsets_for(self, host: str) -> list[str]:
        """The subset names the DestinationRules of a host define."""
        return self.memo(
            ("subsets", host),
            lambda: [
                subset["name"]
                for rule in self.destination_rules_for(host)
                for subset in _as_list(rule.spec.get("subsets"))
                if isinstance(subset, dict) and isinstance(subset.get("name"), str)
            ],
        )

    def destination_rules_exactly_for(self, host: str) -> list[MeshObject]:
        return self._destination_rules[0].get(host, [])

    # gateways and virtual services

    @cached_property
    def virtual_service_bindings(self) -> dict[tuple[str, str], list[MeshObject]]:
        """(gateway "ns/name" or "mesh", FQDN host) → the VirtualServices binding that host there."""
        index: dict[tuple[str, str], list[MeshObject]] = defaultdict(list)
        for service in self.of_kind(PolicyKind.VIRTUAL_SERVICE):
            hosts = service.spec.get("hosts")
            for gateway in bound_gateways(service):
                for host in hosts if isinstance(hosts, list) else []:
                    if isinstance(host, str):
                        index[(gateway, fqdn(host, service.namespace))].append(service)
        return index

    @cached_property
    def delegates(self) -> set[tuple[str, str]]:
        """(namespace, name) of every VirtualService another one delegates to."""
        found: set[tuple[str, str]] = set()
        for service in self.of_kind(PolicyKind.VIRTUAL_SERVICE):
            routes = service.spec.get("http")
            for route in routes if isinstance(routes, list) else []:
                delegate = route.get("delegate") if isinstance(route, dict) else None
                if isinstance(delegate, dict) and isinstance(delegate.get("name"), str):
                    found.add((delegate.get("namespace") or service.namespace, delegate["name"]))
        return found

    @cached_property
    def gateway_servers(self) -> dict[tuple[tuple[tuple[str, str], ...], Any], list[tuple[str, MeshObject]]]:
        """(selector, port number) → [(host without namespace part, Gateway)] over all Gateways."""
        index: dict[tuple[tuple[tuple[str, str], ...], Any], list[tuple[str, MeshObject]]] = defaultdict(list)
        for gateway in self.of_kind(PolicyKind.GATEWAY):
            selector = selector_key(gateway.spec.get("selector"))
            servers = gateway.spec.get("servers")
            for server in servers if isinstance(servers, list) else []:
                if not isinstance(server, dict):
                    continue
                port = (server.get("port") or {}).get("number") if isinstance(server.get("port"), dict) else None
                hosts = server.get("hosts")
                for host in hosts if isinstance(hosts, list) else []:
                    if isinstance(host, str):
                        index[(selector, port)].append((server_host(host), gateway))
        return index

    # mutual TLS

    @cached_property
    def _peer_authentications(self) -> dict[str, list[MeshObject]]:
        index: dict[str, list[MeshObject]] = defaultdict(list)
        for policy in self.of_kind(PolicyKind.PEER_AUTHENTICATION):
            index[policy.namespace].append(policy)
        return index

    def peer_authentications(self, namespace: str) -> list[MeshObject]:
        return self._peer_authentications.get(namespace, [])

    def mtls_mode(self, workload: Workload) -> tuple[str, MeshObject | None]:
        """The effective PeerAuthentication mode of a workload and the policy that sets it."""
        scopes = (
            [p for p in self.peer_authentications(workload.namespace) if _selects_workload(p, workload)],
            [p for p in self.peer_authentications(workload.namespace) if not _selector(p)],
            [p for p in self.peer_authentications(ROOT_NAMESPACE) if not _selector(p)],
        )
        for policies in scopes:
            for policy in policies:
                mode = mtls_mode_of(policy)
                if mode not in ("", "UNSET"):
                    return mode, policy
        return "PERMISSIVE", None


def bound_gateways(service: MeshObject) -> list[str]:
    """The gateways a VirtualService binds to, as "ns/name" or "mesh"."""
    gateways = service.spec.get("gateways")
    if not isinstance(gateways, list) or not gateways:
        return [MESH_GATEWAY]
    return [gateway_ref(gateway, service.namespace) for gateway in gateways if isinstance(gateway, str)]


def gateway_ref(gateway: str, namespace: str) -> str:
    if gateway == MESH_GATEWAY or "/" in gateway:
        return gateway
    return f"{namespace}/{gateway}"


def selector_key(selector: Any) -> tuple[tuple[str, str], ...]:
    """A hashable form of a label selector mapping."""
    return tuple(sorted((str(k), str(v)) for k, v in selector.items())) if isinstance(selector, dict) else ()


def server_host(host: str) -> str:
    """A Gateway server host without its optional `namespace/` part."""
    return host.rpartition("/")[2]


def _selector(policy: MeshObject) -> Labels:
    selector = policy.spec.get("selector")
    labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    return labels if isinstance(labels, dict) else {}


def _selects_workload(policy: MeshObject, workload: Workload) -> bool:
    selector = _selector(policy)
    return bool(selector) and selects(selector, workload.labels)


def mtls_mode_of(policy: MeshObject) -> str:
    mtls = policy.spec.get("mtls")
    mode = mtls.get("mode") if isinstance(mtls, dict) else None
    return mode if isinstance(mode, str) else ""


def match_labels(obj: MeshObject, key: str = "selector") -> Labels:
    """`spec.<key>.matchLabels` (security kinds) or `spec.<key>.labels` (workloadSelector), else {}."""
    selector = obj.spec.get(key)
    if not isinstance(selector, dict):
        return {}
    labels = selector.get("matchLabels", selector.get("labels"))
    return labels if isinstance(labels, dict) else {}


# --- building it ----------------------------------------------------------------------------------


def build_context(
    environment: Environment,
    documents: list[ParsedDocument],
    *,
    exclude_policy_ids: Iterable[int] = (),
    read_cluster: bool = True,
) -> tuple[ValidationContext, list[Finding]]:
    """The context for validating `documents` (checkable ones) in `environment`."""
    findings: list[Finding] = []
    live: LiveState | None = None
    if read_cluster:
        live, state = inventory_live_state(environment)
        if live is None:
            if state.watched:
                findings.append(finding("MG0399", state.stale_notice()))
            try:
                live = read_live_state(cluster_config(environment))
            except KubernetesError as exc:
                findings.append(_not_read(exc.message))
        else:
            live = with_extras(live, read_live_extras(cluster_config(environment)))
    else:
        findings.append(_not_read("the cluster could not be reached"))
    objects = environment_objects(environment, exclude_policy_ids=exclude_policy_ids)
    objects.extend(document_object(doc) for doc in documents)
    return ValidationContext(live=live, objects=objects), findings


def _not_read(reason: str) -> Finding:
    message = (
        f"cluster state could not be read ({reason}): checks of hosts, ports, selectors and namespaces "
        "were skipped; check the environment's cluster connection and validate again"
    )
    return finding("MG0300", message)
