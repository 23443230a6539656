"""Who serves and who calls: workloads (pods by deployment), services, authorization policies and
the topology the model routes over, rebuilt from the store's live objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..resources import PODS, SERVICES
from ..scenarios import ROOT_NAMESPACE, Operation, ResponseModel, Scenario
from ..store import Obj
from .spec import (
    _DEPLOYMENT_POD,
    AUTHORIZATION_POLICIES,
    DESTINATION_RULES,
    DRY_RUN_ANNOTATION,
    PEER_AUTHENTICATIONS,
    TRUST_DOMAIN,
    UNKNOWN,
    VIRTUAL_SERVICES,
    _annotation,
    _istio_match,
    _labels_match,
    _meta,
)


@dataclass(frozen=True)
class Workload:
    """Pods of one deployment (same namespace and workload name)."""

    name: str
    namespace: str
    app: str
    version: str
    service_account: str
    labels: tuple[tuple[str, str], ...]
    sidecar: bool
    pods: int = 1

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def principal(self) -> str:
        return f"{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    namespace: str
    port: int
    target_port: str
    annotations: tuple[tuple[str, str], ...]
    endpoints: tuple[Workload, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class AuthzPolicy:
    namespace: str
    name: str
    action: str
    selector: dict[str, str] | None
    rules: tuple[dict[str, Any], ...]
    dry_run: bool

    def applies_to(self, workload: Workload) -> bool:
        if self.namespace not in (workload.namespace, ROOT_NAMESPACE):
            return False
        if self.selector is None:
            return True
        return _labels_match(self.selector, workload.label_map)

    def matches(self, call: Call) -> bool:
        return any(_rule_matches(rule, call) for rule in self.rules)


@dataclass(frozen=True)
class Call:
    """What an AuthorizationPolicy sees of one request."""

    principal: str
    namespace: str
    request_principal: str
    method: str
    path: str
    hosts: tuple[str, ...]
    port: str


def _check(spec: dict[str, Any], key: str, not_key: str, value: str, match: Callable) -> bool:
    if key in spec and not any(match(p, value) for p in spec.get(key) or []):
        return False
    if not_key in spec and any(match(p, value) for p in spec.get(not_key) or []):
        return False
    return True


def _any_host(pattern: Any, hosts: str) -> bool:
    return any(_istio_match(pattern, host) for host in hosts.split(","))


def _rule_matches(rule: Any, call: Call) -> bool:
    if not isinstance(rule, dict):
        return False
    sources = rule.get("from") or []
    if sources and not any(_source_matches(s.get("source") or {}, call) for s in sources):
        return False
    operations = rule.get("to") or []
    if operations and not any(_operation_matches(o.get("operation") or {}, call) for o in operations):
        return False
    return all(_condition_matches(c, call) for c in rule.get("when") or [])


def _source_matches(source: dict[str, Any], call: Call) -> bool:
    return (
        _check(source, "principals", "notPrincipals", call.principal, _istio_match)
        and _check(
            source,
            "requestPrincipals",
            "notRequestPrincipals",
            call.request_principal,
            _istio_match,
        )
        and _check(source, "namespaces", "notNamespaces", call.namespace, _istio_match)
        and _check(source, "ipBlocks", "notIpBlocks", "", _istio_match)
        and _check(source, "remoteIpBlocks", "notRemoteIpBlocks", "", _istio_match)
    )


def _operation_matches(operation: dict[str, Any], call: Call) -> bool:
    return (
        _check(operation, "hosts", "notHosts", ",".join(call.hosts), _any_host)
        and _check(operation, "ports", "notPorts", call.port, _istio_match)
        and _check(operation, "methods", "notMethods", call.method, _istio_match)
        and _check(operation, "paths", "notPaths", call.path, _istio_match)
    )


def _condition_matches(condition: Any, call: Call) -> bool:
    if not isinstance(condition, dict):
        return True
    value = {
        "source.principal": call.principal,
        "source.namespace": call.namespace,
        "request.auth.principal": call.request_principal,
        "destination.port": call.port,
    }.get(str(condition.get("key")), "")
    return _check(condition, "values", "notValues", value, _istio_match)


def _first_denier(policies: list[AuthzPolicy], call: Call) -> AuthzPolicy | None:
    """The policy denying ``call`` (a matching DENY, or an unmatched ALLOW list), or None."""
    for policy in policies:
        if policy.action == "DENY" and policy.matches(call):
            return policy
    allows = [p for p in policies if p.action == "ALLOW"]
    if allows and not any(p.matches(call) for p in allows):
        return next((p for p in allows if p.dry_run), allows[0])
    return None


@dataclass(frozen=True)
class Target:
    """Where a share of a flow goes: one route destination (or a local reply)."""

    weight: float
    service: ServiceInfo | None
    host: str
    subset: str
    canary: bool
    endpoints: tuple[Workload, ...]
    cluster: str
    policy: dict[str, Any]
    fault: dict[str, Any]
    timeout_ms: float | None
    local_code: int | None = None
    local_flags: str = "-"


@dataclass
class EndpointPlan:
    """The static part of serving a flow's requests at one endpoint."""

    workload: Workload
    weight: float
    labels: tuple[str, ...]
    response: ResponseModel
    mtls_failure: bool
    denier: AuthzPolicy | None
    dry_run_denier: AuthzPolicy | None


@dataclass
class Flow:
    source: Workload
    service: ServiceInfo
    operation: Operation
    rps: float
    targets: list[Target]
    plans: dict[tuple[int, tuple[str, str]], EndpointPlan] = field(default_factory=dict)
    local_labels: dict[int, tuple[str, ...]] = field(default_factory=dict)


def _workload_name(pod: Obj) -> str:
    name = _meta(pod).get("name", "")
    found = _DEPLOYMENT_POD.match(name)
    return found.group("workload") if found else name


def _workloads(pods: list[Obj]) -> dict[tuple[str, str], Workload]:
    found: dict[tuple[str, str], Workload] = {}
    for pod in pods:
        meta, spec = _meta(pod), pod.get("spec") or {}
        if (pod.get("status") or {}).get("phase", "Running") != "Running":
            continue
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        key = (meta.get("namespace", ""), _workload_name(pod))
        if key in found:
            found[key] = replace(found[key], pods=found[key].pods + 1)
            continue
        found[key] = Workload(
            name=key[1],
            namespace=key[0],
            app=labels.get("app", UNKNOWN),
            version=labels.get("version", UNKNOWN),
            service_account=spec.get("serviceAccountName") or "default",
            labels=tuple(sorted(labels.items())),
            sidecar=any(c.get("name") == "istio-proxy" for c in spec.get("containers") or []),
        )
    return found


class Topology:
    """The live mesh as the traffic model needs it, rebuilt after every store write."""

    def __init__(self, objects: dict[str, list[Obj]], scenario: Scenario) -> None:
        self.scenario = scenario
        self.workloads = _workloads(objects[PODS.key])
        self.services: dict[tuple[str, str], ServiceInfo] = {}
        for svc in objects[SERVICES.key]:
            meta, spec = _meta(svc), svc.get("spec") or {}
            selector = spec.get("selector")
            endpoints = tuple(
                w
                for w in self.workloads.values()
                if selector and w.namespace == meta["namespace"] and _labels_match(selector, w.label_map)
            )
            ports = spec.get("ports") or [{}]
            port = ports[0]
            info = ServiceInfo(
                name=meta["name"],
                namespace=meta["namespace"],
                port=int(port.get("port") or 0),
                target_port=str(port.get("targetPort", port.get("port", ""))),
                annotations=tuple(sorted((meta.get("annotations") or {}).items())),
                endpoints=endpoints,
            )
            self.services[info.key] = info
        self.virtual_services = sorted(objects[VIRTUAL_SERVICES], key=self._age)
        self.destination_rules = sorted(objects[DESTINATION_RULES], key=self._age)
        self.peer_authentications = sorted(objects[PEER_AUTHENTICATIONS], key=self._age)
        self.authorization_policies = [
            AuthzPolicy(
                namespace=_meta(ap)["namespace"],
                name=_meta(ap)["name"],
                action=str((ap.get("spec") or {}).get("action") or "ALLOW"),
                selector=((ap.get("spec") or {}).get("selector") or {}).get("matchLabels")
                if (ap.get("spec") or {}).get("selector")
                else None,
                rules=tuple((ap.get("spec") or {}).get("rules") or []),
                dry_run=(_annotation(ap, DRY_RUN_ANNOTATION) or "").lower() == "true",
            )
            for ap in objects[AUTHORIZATION_POLICIES]
            if not (ap.get("spec") or {}).get("targetRef")
            and not (ap.get("spec") or {}).get("targetRefs")
            and (ap.get("spec") or {}).get("action", "ALLOW") in ("ALLOW", "DENY", "AUDIT")
        ]
        self.authorization_policies.sort(key=lambda p: (p.namespace, p.name))

    @staticmethod
    def _age(obj: Obj) -> tuple[str, str, str]:
        meta = _meta(obj)
        return (meta.get("creationTimestamp", ""), meta.get("namespace", ""), meta.get("name", ""))

    # hosts --------------------------------------------------------------------------------------

    def resolve_host(self, host: str, namespace: str) -> ServiceInfo | None:
        parts = host.split(".")
        if len(parts) == 1:
            return self.services.get((namespace, host))
        if len(parts) == 2 or host.endswith(".svc") or host.endswith(".svc.cluster.local"):
            return self.services.get((parts[1], parts[0]))
        return None

    def host_covers(self, host: str, namespace: str, service: ServiceInfo) -> bool:
        if host == "*":
            return True
        if host.startswith("*."):
            return service.fqdn.endswith(host[1:])
        return self.resolve_host(host, namespace) == service

    # policies -----------------------------------------------------------------------------------

    def virtual_service(self, source: Workload, service: ServiceInfo) -> Obj | None:
        candidates = [
            vs
            for vs in self.virtual_services
            if "mesh" in ((vs.get("spec") or {}).get("gateways") or ["mesh"])
            and any(
                self.host_covers(str(h), _meta(vs)["namespace"], service)
                for h in (vs.get("spec") or {}).get("hosts") or []
            )
        ]
        order = (source.namespace, service.namespace)
        candidates.sort(key=lambda vs: order.index(_meta(vs)["namespace"]) if _meta(vs)["namespace"] in order else 2)
        return candidates[0] if candidates else None

    def destination_rule(self, source: Workload, service: ServiceInfo) -> Obj | None:
        candidates = [
            dr
            for dr in self.destination_rules
            if self.host_covers(str((dr.get("spec") or {}).get("host", "")), _meta(dr)["namespace"], service)
        ]
        order = (source.namespace, service.namespace, ROOT_NAMESPACE)
        candidates.sort(key=lambda dr: order.index(_meta(dr)["namespace"]) if _meta(dr)["namespace"] in order else 3)
        return candidates[0] if candidates else None

    def peer_authentication_mode(self, workload: Workload, port: str) -> str:
        """STRICT / PERMISSIVE / DISABLE: workload → namespace → mesh, default PERMISSIVE."""
        levels = [
            [
                pa
                for pa in self.peer_authentications
                if _meta(pa)["namespace"] == workload.namespace
                and ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
                and _labels_match(pa["spec"]["selector"]["matchLabels"], workload.label_map)
            ],
            [
                pa
                for pa in self.peer_authentications
                if _meta(pa)["namespace"] == workload.namespace
                and not ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
            ],
            [
                pa
                for pa in self.peer_authentications
                if _meta(pa)["namespace"] == ROOT_NAMESPACE
                and not ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
            ],
        ]
        for level in levels:
            if not level:
                continue
            spec = level[0].get("spec") or {}
            ports = {str(k): v for k, v in (spec.get("portLevelMtls") or {}).items()}
            port_mode = (ports.get(port) or {}).get("mode")
            mode = port_mode or (spec.get("mtls") or {}).get("mode")
            if mode and mode != "UNSET":
                return str(mode)
        return "PERMISSIVE"

    def authz_policies(self, workload: Workload) -> list[AuthzPolicy]:
        return [p for p in self.authorization_policies if p.applies_to(workload)]

    # callers ------------------------------------------------------------------------------------

    def sources(self, app: str, namespace: str, versions: tuple[str, ...]) -> list[Workload]:
        found = [
            w
            for w in self.workloads.values()
            if w.namespace == namespace and w.app == app and (not versions or w.version in versions)
        ]
        if found or versions:
            return found
        external = self.scenario.external(app, namespace)
        if external is None:
            return []
        return [
            Workload(
                name=external.name,
                namespace=external.namespace,
                app=external.name,
                version=UNKNOWN,
                service_account=external.service_account,
                labels=(("app", external.name),),
                sidecar=external.sidecar,
            )
        ]


# fault profiles --------------------------------------------------------------------------------
