"""What cross-resource checks look at: the environment's live workloads and its Istio configuration.

A ValidationContext is built once per validation from (1) the cluster's namespaces, Services and Pods
read through the adapter, (2) the current revisions of the environment's policies in the database,
minus those the bundle replaces, and (3) the bundle's own objects, which override policies with the
same identity. Its indexes are computed on first use.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from integrations.kubernetes import ClusterConfig, KubernetesError, list_namespaces, list_pods, list_services
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
class Service:
    namespace: str
    name: str
    ports: tuple[int, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)
    export_to: tuple[str, ...] = ()  # annotation networking.istio.io/exportTo, split on commas; () is everywhere
    target_ports: tuple[int, ...] = ()  # numeric targetPorts of the TCP ports (a gateway proxy listens on them)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.{DOMAIN_SUFFIX}"


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveState:
    namespaces: frozenset[str]
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()


def read_live_state(cfg: ClusterConfig) -> LiveState:
    """Namespaces, Services and Pods of the cluster: three list calls, made concurrently.

    Raises KubernetesError (the first one, when several calls fail).
    """
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="meshgate-live-state") as pool:
        namespaces, services, pods = (pool.submit(read, cfg) for read in (list_namespaces, list_services, list_pods))
        return LiveState(
            frozenset(_meta(item).get("name", "") for item in namespaces.result()),
            tuple(_service(item) for item in services.result()),
            tuple(_workload(item) for item in pods.result()),
        )


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    return item.get("metadata") or {}


def _workload(item: dict[str, Any]) -> Workload:
    meta = _meta(item)
    return Workload(meta.get("namespace", ""), meta.get("name", ""), dict(meta.get("labels") or {}))


def _service(item: dict[str, Any]) -> Service:
    spec = item.get("spec") or {}
    ports = tuple(port["port"] for port in spec.get("ports") or [] if isinstance(port.get("port"), int))
    meta = _meta(item)
    export_to = str((meta.get("annotations") or {}).get(EXPORT_TO_ANNOTATION) or "")
    target_ports = tuple(
        port["targetPort"] for port in spec.get("ports") or []
        if type(port.get("targetPort")) is int and (port.get("protocol") or "TCP") == "TCP"
    )
    return Service(meta.get("namespace", ""), meta.get("name", ""), ports, dict(spec.get("selector") or {}),
                   tuple(part.strip() for part in export_to.split(",") if part.strip()), target_ports)


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
    """The current revisions of the environment's policies (one query)."""
    rows = (
        Policy.objects.filter(environment=environment, current_revision__isnull=False)
        .exclude(pk__in=list(exclude_policy_ids))
        .values_list("kind", "namespace", "name", "current_revision__content")
    )
    return [MeshObject(kind, namespace, name, _spec(content)) for kind, namespace, name, content in rows]


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
        return self.memo(("subsets", host), lambda: [
            subset["name"] for rule in self.destination_rules_for(host)
            for subset in _as_list(rule.spec.get("subsets"))
            if isinstance(subset, dict) and isinstance(subset.get("name"), str)
        ])

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
    environment: Environment, documents: list[ParsedDocument], *, exclude_policy_ids: Iterable[int] = (),
    read_cluster: bool = True,
) -> tuple[ValidationContext, list[Finding]]:
    """The context for validating `documents` (checkable ones) in `environment`."""
    findings: list[Finding] = []
    live: LiveState | None = None
    if read_cluster:
        try:
            live = read_live_state(cluster_config(environment))
        except KubernetesError as exc:
            findings.append(_not_read(exc.message))
    else:
        findings.append(_not_read("the cluster could not be reached"))
    objects = environment_objects(environment, exclude_policy_ids=exclude_policy_ids)
    objects.extend(document_object(doc) for doc in documents)
    return ValidationContext(live=live, objects=objects), findings


def _not_read(reason: str) -> Finding:
    message = (f"cluster state could not be read ({reason}): checks of hosts, ports, selectors and namespaces "
               "were skipped; check the environment's cluster connection and validate again")
    return finding("MG0300", message)
