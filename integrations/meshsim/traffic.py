"""Simulated mesh traffic driven by the LIVE Istio objects, exported as Istio metrics.

Every tick (``TICK_S`` of simulated time) the model draws, per caller → service →
operation flow, a Poisson number of requests, routes them with the VirtualService and
DestinationRule in the store, applies PeerAuthentication, AuthorizationPolicy, fault
injection, connection-pool limits and outlier detection, lets each version answer
from its response model (success probability, log-normal latency) plus the runtime
fault profiles, and adds the outcome to ``istio_requests_total`` and
``istio_request_duration_milliseconds`` (``reporter="destination"``, Istio's labels,
plus ``destination_canary``). Store writes mark the topology dirty; it is rebuilt at
the next tick, so a policy applied through the Kubernetes API changes traffic at once.

The clock advances in real time when started (``--traffic``) and on demand
(``POST /meshsim/traffic/advance``); the RNG is seeded (``--traffic-seed``) and
re-seeded on reset, so a run driven only by ``advance`` is deterministic.

HTTP (server.py): ``GET /metrics`` (Prometheus text format, no token needed);
admin, token-protected like the other ``/meshsim/`` endpoints:
``GET /meshsim/traffic`` (rates, callers, routing split per service, faults),
``POST /meshsim/traffic/advance {"seconds": 30}``, ``POST /meshsim/traffic/reset``,
``POST /meshsim/traffic/rates {"namespace", "service", "rps"[, "source"]}`` (``rps: null``
drops the override), ``GET|POST|DELETE /meshsim/traffic/faults`` and
``DELETE /meshsim/traffic/faults/<id>``. A fault is ``{"service", "namespace", at most one
of "version" / "subset" / "canary": true, "source", "error_rate", "status" (503),
"extra_latency_ms", "policy": {"kind", "namespace", "name", "spec_sha256"}}``; with
``policy`` it applies only while that object exists (with that spec hash, see
``spec_sha256``). ``POST /meshsim/reset`` also resets the traffic model.

Metrics: ``istio_requests_total`` and ``istio_request_duration_milliseconds`` (Istio's
default buckets) with Istio's standard labels (``ISTIO_LABELS``), ``reporter="destination"``
only, plus ``destination_canary``; ``meshsim_authz_dry_run_denials_total``;
``meshsim_outlier_ejected`` (gauge) and ``meshsim_traffic_simulated_seconds``.

Approximations (meshsim reports only ``reporter="destination"``):

- Failures a real mesh records at the source only are recorded on the destination
  side with the would-be destination: VirtualService fault aborts (``response_flags
  "FI"``), connection-pool overflow (503 ``"UO"``), no route (404 ``"NR"``), an unknown
  subset (503 ``"NC"``) or a subset/host without endpoints (503 ``"UH"``).
- A plaintext caller to a STRICT workload (or an ISTIO_MUTUAL caller to a DISABLE one)
  is recorded as ``response_code="0"``, ``response_flags="UF"`` (connection reset);
  a real sidecar would reject the handshake and record nothing.
- Callers without a sidecar have no peer metadata: their ``source_*`` labels are
  ``"unknown"``, as in Istio; ``connection_security_policy="none"``.
- Ingress-gateway calls are routed like mesh calls (gateway-bound VirtualServices are
  not followed); VirtualService ``retries``/``mirror`` and ``when`` keys meshsim does not
  know are ignored; headers/query matches never match (simulated requests carry none).
- Connection-pool overflow: in-flight = rate × mean latency per (caller, cluster),
  capacity = ``tcp.maxConnections`` + ``http.http1MaxPendingRequests`` (capped by
  ``http.http2MaxRequests``); the excess fraction answers 503 ``UO``.
- Outlier detection: a run of ``consecutive5xxErrors`` (or ``consecutiveGatewayErrors``)
  5xx answers of one version ejects it from that cluster for ``baseEjectionTime`` ×
  ejections (max ``maxEjectionTime``), within ``maxEjectionPercent`` (at least one
  host); below 50 % healthy the cluster panics and uses every host, as Envoy does.
  A subset with a single version therefore keeps its traffic.
- AuthorizationPolicy dry-run (``istio.io/dry-run: "true"``): Istio reports shadow
  results through proxy stats; meshsim counts a request the policies would deny if
  the dry-run ones were enforced (and which the enforced ones allow) in
  ``meshsim_authz_dry_run_denials_total{namespace, policy, source_workload,
  source_workload_namespace, source_principal, destination_workload,
  destination_workload_namespace}`` (``namespace``/``policy``: the dry-run policy that
  would deny; ``source_principal`` as in ``istio_requests_total``).
- ``destination_canary`` (meshsim's own label) tells canary from stable traffic for
  policy canaries: ``"true"`` when the route's subset is named ``canary``/``*-canary``,
  carries the label ``meshgate.io/canary: "true"`` in its ``labels`` (ignored for
  endpoint selection), is listed in the DestinationRule annotation
  ``meshgate.io/canary-subsets``, or when the VirtualService http route is named
  ``canary``/``*-canary``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .resources import NAMESPACES, PODS, SERVICES
from .scenarios import (
    CALLERS_ANNOTATION,
    DEMO,
    GATEWAY_APP,
    ROOT_NAMESPACE,
    RPS_ANNOTATION,
    Operation,
    ResponseModel,
    Scenario,
)
from .store import Event, Obj

if TYPE_CHECKING:
    from .cluster import Cluster

TICK_S = 0.25
MAX_ADVANCE_S = 3600.0
MAX_CATCH_UP_TICKS = 40
REPRESENTATIVES = 256  # latencies sampled individually per group; beyond, weighted samples
DURATION_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
BASE_LABELS = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "grpc_response_status",
    "connection_security_policy",
    "destination_canary",
)
ISTIO_LABELS = (*BASE_LABELS, "response_code", "response_flags")
DRY_RUN_LABELS = (
    "namespace",
    "policy",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
)
EJECTION_LABELS = (
    "destination_service_namespace",
    "destination_service_name",
    "destination_version",
    "destination_subset",
)

VIRTUAL_SERVICES = "networking.istio.io/virtualservices"
DESTINATION_RULES = "networking.istio.io/destinationrules"
AUTHORIZATION_POLICIES = "security.istio.io/authorizationpolicies"
PEER_AUTHENTICATIONS = "security.istio.io/peerauthentications"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
CANARY_LABEL = "meshgate.io/canary"
CANARY_SUBSETS_ANNOTATION = "meshgate.io/canary-subsets"
UNKNOWN = "unknown"
TRUST_DOMAIN = "cluster.local"

# Latency (ms) of answers that never reach the application.
LOCAL_REPLY_MS = {"FI": 0.0, "UO": 0.2, "UF": 1.0, "NR": 0.1, "NC": 0.1, "UH": 0.1, "403": 0.8}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DEPLOYMENT_POD = re.compile(r"^(?P<workload>.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$")
_FORTY_BIT = 2**32 - 1  # Envoy's "unlimited" circuit breaker default


class TrafficSpecError(ValueError):
    """A traffic admin request (fault, rate, advance) is malformed."""


# sampling --------------------------------------------------------------------------------------


class Sampler:
    """Poisson, binomial and log-normal draws from one seeded ``random.Random``.

    Large counts use the normal approximation (no numpy here).
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam < 30:
            limit, k, product = math.exp(-lam), 0, self.rng.random()
            while product > limit:
                k += 1
                product *= self.rng.random()
            return k
        return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))

    def binomial(self, n: int, p: float) -> int:
        if n <= 0 or p <= 0:
            return 0
        if p >= 1:
            return n
        if n < 64:
            return sum(1 for _ in range(n) if self.rng.random() < p)
        mean, var = n * p, n * p * (1 - p)
        if var < 9:  # skewed: exact draws are still cheap enough
            return sum(1 for _ in range(n) if self.rng.random() < p)
        return min(n, max(0, round(self.rng.gauss(mean, math.sqrt(var)))))

    def multinomial(self, n: int, weights: list[float]) -> list[int]:
        total = sum(weights)
        counts = [0] * len(weights)
        if n <= 0 or total <= 0:
            return counts
        remaining, rest = n, total
        for index, weight in enumerate(weights):
            if remaining == 0:
                break
            if index == len(weights) - 1 or rest <= weight:
                counts[index] = remaining
                break
            drawn = self.binomial(remaining, weight / rest)
            counts[index] = drawn
            remaining -= drawn
            rest -= weight
        return counts

    def lognormal(self, model: ResponseModel) -> float:
        return self.rng.lognormvariate(model.mu, model.sigma)


# small parsers ---------------------------------------------------------------------------------


def parse_duration_ms(value: Any, default: float | None = None) -> float | None:
    """Istio durations (``"1.5s"``, ``"100ms"``, ``"1m30s"``) in milliseconds."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return float(value) * 1000
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        return default
    return sum(float(n) * _DURATION_MS[u] for n, u in parts)


def _percentage(spec: dict[str, Any]) -> float:
    """A fault's probability: ``percentage.value`` (0-100), legacy ``percent``, else 100 %."""
    percentage = spec.get("percentage")
    if isinstance(percentage, dict) and isinstance(percentage.get("value"), int | float):
        return min(max(float(percentage["value"]) / 100, 0.0), 1.0)
    if isinstance(spec.get("percent"), int | float):
        return min(max(float(spec["percent"]) / 100, 0.0), 1.0)
    return 1.0


def _int_setting(spec: Any, key: str, default: int) -> int:
    value = spec.get(key) if isinstance(spec, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _istio_match(pattern: Any, value: str) -> bool:
    """Istio's AuthorizationPolicy string match: exact, ``prefix*``, ``*suffix``, ``*``."""
    pattern = str(pattern)
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1]) and value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:]) and value != ""
    return value == pattern


def _string_match(spec: Any, value: str) -> bool:
    """A VirtualService StringMatch (``exact``/``prefix``/``regex``)."""
    if not isinstance(spec, dict):
        return False
    if "exact" in spec:
        return value == spec["exact"]
    if "prefix" in spec:
        return value.startswith(str(spec["prefix"]))
    if "regex" in spec:
        try:
            return re.fullmatch(str(spec["regex"]), value) is not None
        except re.error:
            return False
    return True


def _labels_match(selector: Any, labels: dict[str, str]) -> bool:
    if not isinstance(selector, dict):
        return True
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _annotation(obj: Obj, key: str) -> str | None:
    value = (_meta(obj).get("annotations") or {}).get(key)
    return None if value is None else str(value)


def spec_sha256(obj: Obj) -> str:
    """The hash a policy-scoped fault compares with: sha256 of the canonical JSON spec."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _is_canary_name(name: str) -> bool:
    return name == "canary" or name.endswith("-canary")


# topology --------------------------------------------------------------------------------------


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
    if operations and not any(
        _operation_matches(o.get("operation") or {}, call) for o in operations
    ):
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
                if selector
                and w.namespace == meta["namespace"]
                and _labels_match(selector, w.label_map)
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
        candidates.sort(
            key=lambda vs: (
                order.index(_meta(vs)["namespace"]) if _meta(vs)["namespace"] in order else 2
            )
        )
        return candidates[0] if candidates else None

    def destination_rule(self, source: Workload, service: ServiceInfo) -> Obj | None:
        candidates = [
            dr
            for dr in self.destination_rules
            if self.host_covers(
                str((dr.get("spec") or {}).get("host", "")), _meta(dr)["namespace"], service
            )
        ]
        order = (source.namespace, service.namespace, ROOT_NAMESPACE)
        candidates.sort(
            key=lambda dr: (
                order.index(_meta(dr)["namespace"]) if _meta(dr)["namespace"] in order else 3
            )
        )
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


@dataclass
class TrafficFault:
    """A runtime fault on a service's version, subset, canary traffic or all of it."""

    id: int
    namespace: str
    service: str
    version: str | None
    subset: str | None
    canary: bool | None
    source: str | None
    error_rate: float
    status: int
    extra_latency_ms: float
    policy: dict[str, str] | None
    active: bool = True

    def matches(
        self, service: ServiceInfo, target: Target, workload: Workload, source: Workload
    ) -> bool:
        return (
            self.active
            and (self.namespace, self.service) == service.key
            and (self.version is None or self.version == workload.version)
            and (self.subset is None or self.subset == target.subset)
            and (self.canary is None or self.canary == target.canary)
            and (self.source is None or self.source in (source.app, source.name))
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "service": self.service,
            "version": self.version,
            "subset": self.subset,
            "canary": self.canary,
            "source": self.source,
            "error_rate": self.error_rate,
            "status": self.status,
            "extra_latency_ms": self.extra_latency_ms,
            "policy": self.policy,
            "active": self.active,
        }


def _text(spec: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = spec.get(key)
    if value is None:
        if required:
            raise TrafficSpecError(f"{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise TrafficSpecError(f"{key} must be a non-empty string")
    return value


def _number(spec: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = spec.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise TrafficSpecError(f"{key} must be a number between {low:g} and {high:g}")
    return float(value)


def parse_fault(spec: Any, fault_id: int) -> TrafficFault:
    if not isinstance(spec, dict):
        raise TrafficSpecError("a traffic fault must be a JSON object")
    known = {
        "service", "namespace", "version", "subset", "canary", "source",
        "error_rate", "status", "extra_latency_ms", "policy",
    }  # fmt: skip
    unknown = sorted(set(spec) - known)
    if unknown:
        raise TrafficSpecError(f"unknown fields: {', '.join(unknown)}")
    canary = spec.get("canary")
    if canary is not None and not isinstance(canary, bool):
        raise TrafficSpecError("canary must be true or false")
    if sum(spec.get(k) is not None for k in ("version", "subset", "canary")) > 1:
        raise TrafficSpecError("give at most one of version, subset and canary")
    status = spec.get("status", 503)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise TrafficSpecError("status must be an integer between 400 and 599")
    policy = spec.get("policy")
    if policy is not None:
        if not isinstance(policy, dict) or not all(
            isinstance(policy.get(k), str) and policy.get(k) for k in ("kind", "name")
        ):
            raise TrafficSpecError("policy must be an object with kind, name (and namespace)")
        policy = {
            k: str(v)
            for k, v in policy.items()
            if k in ("kind", "namespace", "name", "spec_sha256")
        }
    fault = TrafficFault(
        id=fault_id,
        namespace=_text(spec, "namespace") or "default",
        service=_text(spec, "service", required=True) or "",
        version=_text(spec, "version"),
        subset=_text(spec, "subset"),
        canary=canary,
        source=_text(spec, "source"),
        error_rate=_number(spec, "error_rate", 0, 1, 0),
        status=status,
        extra_latency_ms=_number(spec, "extra_latency_ms", 0, 3_600_000, 0),
        policy=policy,
    )
    if fault.error_rate == 0 and fault.extra_latency_ms == 0:
        raise TrafficSpecError("a traffic fault needs an error_rate, an extra_latency_ms or both")
    return fault


# the model -------------------------------------------------------------------------------------


@dataclass
class _Series:
    count: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_MS) + 1))
    total_ms: float = 0.0


@dataclass
class _Ejection:
    until: float = 0.0
    times: int = 0
    streak: int = 0


class TrafficModel:
    """Simulated requests and their Istio metrics for one cluster."""

    def __init__(self, cluster: Cluster, seed: int = 1, scenario: Scenario = DEMO) -> None:
        self.cluster = cluster
        self.seed = seed
        self.scenario = scenario
        self.lock = threading.RLock()
        self._dirty = True
        self._topology: Topology | None = None
        self._flows: list[Flow] = []
        self._faults: list[TrafficFault] = []
        self._next_fault_id = 1
        self._rates: dict[tuple[str, str, str | None], float] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reset_state()
        cluster.store.subscribe(self._on_write)

    # lifecycle ----------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.sampler = Sampler(self.seed)
        self.clock_s = 0.0
        self._series: dict[tuple[tuple[str, ...], str, str], _Series] = {}
        self._dry_run: dict[tuple[str, ...], int] = {}
        self._ejections: dict[tuple[str, tuple[str, str]], _Ejection] = {}
        self._requests_by_version: dict[tuple[str, str, str], int] = {}

    def reset(self) -> None:
        """Counters, ejections, faults and rate overrides cleared; the RNG re-seeded."""
        with self.lock:
            self._reset_state()
            self._faults.clear()
            self._rates.clear()
            self._dirty = True

    def _on_write(self, event: Event) -> None:
        self._dirty = True  # called under the store lock: only flag, rebuild at the next tick

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Advance the clock with real time in a background thread."""
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="meshsim-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        last, owed = time.monotonic(), 0.0
        while not self._stopping.wait(TICK_S):
            current = time.monotonic()
            owed += current - last
            last = current
            ticks = min(int(owed / TICK_S), MAX_CATCH_UP_TICKS)
            owed = min(owed - ticks * TICK_S, TICK_S)
            if ticks:
                try:
                    self.advance_ticks(ticks)
                except Exception:  # keep ticking: one bad object must not stop the traffic
                    traceback.print_exc(file=sys.stderr)

    def advance(self, seconds: Any) -> dict[str, Any]:
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not 0 < seconds <= MAX_ADVANCE_S
        ):
            raise TrafficSpecError(f"seconds must be a number in (0, {MAX_ADVANCE_S:g}]")
        ticks = max(1, round(seconds / TICK_S))
        self.advance_ticks(ticks)
        return {"advanced_seconds": ticks * TICK_S, "simulated_seconds": self.clock_s}

    def advance_ticks(self, ticks: int) -> None:
        with self.lock:
            for _ in range(ticks):
                self._tick(TICK_S)

    # admin --------------------------------------------------------------------------------------

    def add_fault(self, spec: Any) -> dict[str, Any]:
        with self.lock:
            fault = parse_fault(spec, self._next_fault_id)
            self._next_fault_id += 1
            self._faults.append(fault)
            self._refresh_fault_scopes()
            return fault.to_dict()

    def faults(self) -> list[dict[str, Any]]:
        with self.lock:
            self._refresh_fault_scopes()
            return [fault.to_dict() for fault in self._faults]

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def remove_fault(self, fault_id: int) -> bool:
        with self.lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) < before

    def set_rate(self, spec: Any) -> dict[str, Any]:
        """Override a service's rate (``rps``; ``null`` drops the override), or one caller's."""
        if not isinstance(spec, dict):
            raise TrafficSpecError("a rate must be a JSON object")
        service = _text(spec, "service", required=True) or ""
        namespace = _text(spec, "namespace") or "default"
        source = _text(spec, "source")
        if "rps" not in spec:
            raise TrafficSpecError("rps is required (null removes the override)")
        with self.lock:
            key = (namespace, service, source)
            if spec["rps"] is None:
                self._rates.pop(key, None)
            else:
                self._rates[key] = _number(spec, "rps", 0, 100_000, 0)
            self._dirty = True
            return self.summary(namespace=namespace, service=service)

    def summary(self, namespace: str | None = None, service: str | None = None) -> dict[str, Any]:
        """Rates, callers and the routing split per service, as JSON."""
        with self.lock:
            self._refresh()
            services: dict[tuple[str, str], dict[str, Any]] = {}
            for flow in self._flows:
                key = flow.service.key
                if (namespace, service) != (None, None) and key != (namespace, service):
                    continue
                entry = services.setdefault(
                    key,
                    {
                        "namespace": key[0],
                        "service": key[1],
                        "rps": 0.0,
                        "callers": {},
                        "routing": {},
                    },
                )
                entry["rps"] += flow.rps
                caller = entry["callers"].setdefault(
                    (flow.source.namespace, flow.source.name),
                    {
                        "source_workload": flow.source.name,
                        "source_namespace": flow.source.namespace,
                        "sidecar": flow.source.sidecar,
                        "rps": 0.0,
                    },
                )
                caller["rps"] += flow.rps
                for target in flow.targets:
                    healthy = self._healthy(target)
                    total = sum(w.pods for w in healthy) or 1
                    for workload in healthy or [None]:
                        version = workload.version if workload else UNKNOWN
                        route = entry["routing"].setdefault(
                            (version, target.subset, target.canary),
                            {
                                "version": version,
                                "subset": target.subset or None,
                                "canary": target.canary,
                                "rps": 0.0,
                                "requests": self._requests_by_version.get(
                                    (key[0], key[1], version), 0
                                ),
                            },
                        )
                        share = (workload.pods / total) if workload else 1.0
                        route["rps"] += flow.rps * target.weight * share
                        if workload is not None:
                            route["ejected"] = self._is_ejected(target.cluster, workload)
            result = []
            for entry in services.values():
                rps = entry["rps"]
                entry["callers"] = list(entry["callers"].values())
                routing = list(entry["routing"].values())
                for route in routing:
                    route["share"] = round(route["rps"] / rps, 6) if rps else 0.0
                    route["rps"] = round(route["rps"], 6)
                entry["routing"] = routing
                entry["rps"] = round(rps, 6)
                result.append(entry)
            return {
                "running": self.running,
                "seed": self.seed,
                "scenario": self.scenario.name,
                "tick_seconds": TICK_S,
                "simulated_seconds": self.clock_s,
                "services": result,
                "rate_overrides": [
                    {"namespace": ns, "service": svc, "source": src, "rps": rps}
                    for (ns, svc, src), rps in self._rates.items()
                ],
                "faults": [fault.to_dict() for fault in self._faults],
            }

    # topology -----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        if not self._dirty and self._topology is not None:
            return
        self._dirty = False
        store = self.cluster.store
        keys = (
            NAMESPACES.key, SERVICES.key, PODS.key, VIRTUAL_SERVICES, DESTINATION_RULES,
            AUTHORIZATION_POLICIES, PEER_AUTHENTICATIONS,
        )  # fmt: skip
        topology = Topology({key: store.list_objects(key) for key in keys}, self.scenario)
        self._topology = topology
        self._flows = list(self._build_flows(topology))
        self._refresh_fault_scopes()

    def _refresh_fault_scopes(self) -> None:
        for fault in self._faults:
            if fault.policy is None:
                continue
            kinds = [t for t in self.cluster.registry.types if t.kind == fault.policy["kind"]]
            found = None
            for resource in kinds:
                found = self.cluster.store.get(
                    resource.key, fault.policy.get("namespace", ""), fault.policy["name"]
                )
                if found is not None:
                    break
            wanted = fault.policy.get("spec_sha256")
            fault.active = found is not None and (not wanted or spec_sha256(found) == wanted)

    def _service_rps(self, service: ServiceInfo) -> float:
        override = self._rates.get((service.namespace, service.name, None))
        if override is not None:
            return override
        annotated = dict(service.annotations).get(RPS_ANNOTATION)
        if annotated is not None:
            try:
                return max(float(annotated), 0.0)
            except ValueError:
                pass
        return self.scenario.rps.get(service.key, 0.0)

    def _edges(
        self, service: ServiceInfo
    ) -> list[tuple[str, str, float, tuple[Operation, ...], tuple[str, ...]]]:
        table = [
            e
            for e in self.scenario.edges
            if (e.destination_namespace, e.destination) == service.key
        ]
        if table:
            return [
                (e.source, e.source_namespace, e.share, e.operations, e.source_versions)
                for e in table
                if not e.clusters or self.cluster.config.name in e.clusters
            ]
        names = dict(service.annotations).get(CALLERS_ANNOTATION)
        callers = [c.strip() for c in (names or "").split(",") if c.strip()]
        if not callers:
            return [(GATEWAY_APP, ROOT_NAMESPACE, 1.0, (Operation(),), ())]
        share = 1.0 / len(callers)
        result = []
        for caller in callers:
            ns, _, app = caller.rpartition("/")
            result.append((app, ns or service.namespace, share, (Operation(),), ()))
        return result

    def _build_flows(self, topology: Topology) -> Iterator[Flow]:
        for service in topology.services.values():
            total = self._service_rps(service)
            if total <= 0 and not any(k[:2] == service.key and k[2] for k in self._rates):
                continue
            for app, source_ns, share, operations, versions in self._edges(service):
                edge_rps = self._rates.get((service.namespace, service.name, app), total * share)
                sources = topology.sources(app, source_ns, versions)
                pods = sum(s.pods for s in sources)
                op_total = sum(op.share for op in operations) or 1.0
                for source in sources:
                    for operation in operations:
                        rps = edge_rps * (source.pods / pods) * (operation.share / op_total)
                        if rps <= 0:
                            continue
                        flow = Flow(
                            source,
                            service,
                            operation,
                            rps,
                            self._route(topology, source, service, operation),
                        )
                        self._plan(topology, flow)
                        yield flow

    def _route(
        self, topology: Topology, source: Workload, service: ServiceInfo, operation: Operation
    ) -> list[Target]:
        vs = topology.virtual_service(source, service)
        if vs is None:
            return [self._target(topology, source, service, service.name, "", False, 1.0, {}, None)]
        namespace = _meta(vs)["namespace"]
        routes = (vs.get("spec") or {}).get("http") or []
        if not routes:  # a TCP/TLS-only VirtualService: plain service routing for HTTP
            return [self._target(topology, source, service, service.name, "", False, 1.0, {}, None)]
        for route in routes:
            if not self._route_matches(route, source, service, operation):
                continue
            route_canary = _is_canary_name(str(route.get("name") or ""))
            fault = route.get("fault") or {}
            timeout = parse_duration_ms(route.get("timeout"))
            if route.get("directResponse") or route.get("redirect"):
                status = int((route.get("directResponse") or {}).get("status") or 301)
                return [self._local(service, service.name, 1.0, route_canary, status, "-")]
            destinations = [d for d in route.get("route") or [] if isinstance(d, dict)]
            if not destinations:
                break
            weights = [float(d.get("weight") or 0) for d in destinations]
            if not any(weights):
                weights = [1.0] * len(destinations)
            total = sum(weights)
            targets = []
            for destination, weight in zip(destinations, weights, strict=True):
                if weight <= 0:
                    continue
                spec = destination.get("destination") or {}
                host = str(spec.get("host") or "")
                subset = str(spec.get("subset") or "")
                resolved = topology.resolve_host(host, namespace)
                if resolved is None:
                    targets.append(
                        self._local(service, host, weight / total, route_canary, 503, "UH")
                    )
                    continue
                targets.append(
                    self._target(
                        topology, source, resolved, host, subset, route_canary,
                        weight / total, fault, timeout,
                    )
                )  # fmt: skip
            return targets
        return [self._local(service, service.name, 1.0, False, 404, "NR")]

    @staticmethod
    def _route_matches(
        route: dict[str, Any], source: Workload, service: ServiceInfo, op: Operation
    ) -> bool:
        matches = route.get("match") or []
        if not matches:
            return True
        for match in matches:
            if not isinstance(match, dict):
                continue
            if match.get("headers") or match.get("queryParams"):
                continue
            if "uri" in match and not _string_match(match["uri"], op.path):
                continue
            if "method" in match and not _string_match(match["method"], op.method):
                continue
            if "scheme" in match and not _string_match(match["scheme"], "http"):
                continue
            if "authority" in match and not _string_match(match["authority"], service.name):
                continue
            if "port" in match and int(match["port"] or 0) != service.port:
                continue
            if "sourceLabels" in match and not _labels_match(
                match["sourceLabels"], source.label_map
            ):
                continue
            if "sourceNamespace" in match and match["sourceNamespace"] != source.namespace:
                continue
            if "mesh" not in (match.get("gateways") or ["mesh"]):
                continue
            return True
        return False

    def _local(
        self, service: ServiceInfo, host: str, weight: float, canary: bool, code: int, flags: str
    ) -> Target:
        return Target(weight, service, host, "", canary, (), "", {}, {}, None, code, flags)

    def _target(
        self,
        topology: Topology,
        source: Workload,
        service: ServiceInfo,
        host: str,
        subset: str,
        route_canary: bool,
        weight: float,
        fault: dict[str, Any],
        timeout_ms: float | None,
    ) -> Target:
        rule = topology.destination_rule(source, service)
        spec = (rule or {}).get("spec") or {}
        policy = dict(spec.get("trafficPolicy") or {})
        endpoints = service.endpoints
        canary = route_canary
        if subset:
            found = next(
                (
                    s
                    for s in spec.get("subsets") or []
                    if isinstance(s, dict) and s.get("name") == subset
                ),
                None,
            )
            if found is None:
                return replace(self._local(service, host, weight, canary, 503, "NC"), subset=subset)
            labels = {str(k): str(v) for k, v in (found.get("labels") or {}).items()}
            listed = (_annotation(rule or {}, CANARY_SUBSETS_ANNOTATION) or "").split(",")
            # The marker label selects no pod: always taken out of the subset's selector.
            marked = labels.pop(CANARY_LABEL, "").lower() == "true"
            canary = (
                canary
                or _is_canary_name(subset)
                or marked
                or subset in [name.strip() for name in listed]
            )
            endpoints = tuple(w for w in endpoints if _labels_match(labels, w.label_map))
            policy.update(found.get("trafficPolicy") or {})
        if not endpoints:
            return replace(self._local(service, host, weight, canary, 503, "UH"), subset=subset)
        return Target(
            weight=weight,
            service=service,
            host=host,
            subset=subset,
            canary=canary,
            endpoints=endpoints,
            cluster=f"outbound|{service.port}|{subset}|{service.fqdn}",
            policy=policy,
            fault=fault,
            timeout_ms=timeout_ms,
        )

    def _plan(self, topology: Topology, flow: Flow) -> None:
        """Labels, mTLS and authorization of each (target, endpoint) of a flow."""
        source, op = flow.source, flow.operation
        for index, target in enumerate(flow.targets):
            if target.local_code is not None:
                flow.local_labels[index] = self._labels(source, target, None, target.service, False)
                continue
            assert target.service is not None
            for workload in target.endpoints:
                mode = topology.peer_authentication_mode(workload, target.service.target_port)
                client_tls = str((target.policy.get("tls") or {}).get("mode") or "")
                if not source.sidecar or client_tls in ("DISABLE", "SIMPLE", "MUTUAL"):
                    mtls = False
                elif client_tls == "ISTIO_MUTUAL":
                    mtls = True
                else:  # auto mTLS: to sidecars, unless their PeerAuthentication disables it
                    mtls = workload.sidecar and mode != "DISABLE"
                if not workload.sidecar:
                    mtls, failure = False, False
                else:
                    failure = (mode == "STRICT" and not mtls) or (mode == "DISABLE" and mtls)
                denier = dry_denier = None
                if workload.sidecar and not failure:
                    call = Call(
                        principal=source.principal if mtls else "",
                        namespace=source.namespace if mtls else "",
                        request_principal=op.request_principal,
                        method=op.method,
                        path=op.path,
                        hosts=(target.service.name, target.service.fqdn),
                        port=target.service.target_port,
                    )
                    policies = topology.authz_policies(workload)
                    enforced = [p for p in policies if not p.dry_run]
                    denier = _first_denier(enforced, call)
                    if denier is None and len(enforced) < len(policies):
                        shadow = _first_denier(policies, call)
                        dry_denier = shadow if shadow is not None and shadow.dry_run else None
                flow.plans[(index, workload.key)] = EndpointPlan(
                    workload=workload,
                    weight=float(workload.pods),
                    labels=self._labels(source, target, workload, target.service, mtls),
                    response=self.scenario.response(
                        target.service.namespace, target.service.name, workload.version
                    ),
                    mtls_failure=failure,
                    denier=denier,
                    dry_run_denier=dry_denier,
                )

    def _labels(
        self,
        source: Workload,
        target: Target,
        workload: Workload | None,
        service: ServiceInfo | None,
        mtls: bool,
    ) -> tuple[str, ...]:
        cluster = self.cluster.config.name
        known = source.sidecar  # peer metadata comes from the caller's sidecar
        s_app = source.app if known else UNKNOWN
        s_version = source.version if known else UNKNOWN
        d_app = workload.app if workload else UNKNOWN
        d_version = workload.version if workload else UNKNOWN
        values = {
            "reporter": "destination",
            "source_workload": source.name if known else UNKNOWN,
            "source_canonical_service": s_app,
            "source_canonical_revision": s_version if s_version != UNKNOWN else "latest",
            "source_workload_namespace": source.namespace if known else UNKNOWN,
            "source_principal": f"spiffe://{source.principal}" if mtls else UNKNOWN,
            "source_app": s_app,
            "source_version": s_version,
            "source_cluster": cluster if known else UNKNOWN,
            "destination_workload": workload.name if workload else UNKNOWN,
            "destination_workload_namespace": workload.namespace if workload else UNKNOWN,
            "destination_principal": f"spiffe://{workload.principal}"
            if workload and mtls
            else UNKNOWN,
            "destination_app": d_app,
            "destination_version": d_version,
            "destination_service": service.fqdn if service else target.host,
            "destination_canonical_service": d_app,
            "destination_canonical_revision": d_version if d_version != UNKNOWN else "latest",
            "destination_service_name": service.name if service else target.host,
            "destination_service_namespace": service.namespace if service else UNKNOWN,
            "destination_cluster": cluster,
            "request_protocol": "http",
            "grpc_response_status": "",
            "connection_security_policy": ("mutual_tls" if mtls else "none")
            if workload
            else UNKNOWN,
            "destination_canary": "true" if target.canary else "false",
        }
        return tuple(values[name] for name in BASE_LABELS)

    # simulation ---------------------------------------------------------------------------------

    def _is_ejected(self, cluster: str, workload: Workload) -> bool:
        ejection = self._ejections.get((cluster, workload.key))
        return ejection is not None and ejection.until > self.clock_s

    def _healthy(self, target: Target) -> list[Workload]:
        if not target.endpoints:
            return []
        healthy = [w for w in target.endpoints if not self._is_ejected(target.cluster, w)]
        if len(healthy) * 2 < len(target.endpoints):  # Envoy's panic threshold (50 %)
            return list(target.endpoints)
        return healthy

    def _tick(self, dt: float) -> None:
        self._refresh()
        self.clock_s += dt
        pressure: dict[tuple[tuple[str, str], str], float] = {}
        active = [f for f in self._faults if f.active]
        for flow in self._flows:
            for target in flow.targets:
                if target.local_code is None:
                    latency = sum(
                        self._mean_latency_ms(flow, target, w, active) for w in target.endpoints
                    ) / len(target.endpoints)
                    key = (flow.source.key, target.cluster)
                    pressure[key] = (
                        pressure.get(key, 0.0) + flow.rps * target.weight * latency / 1000
                    )
        observed: dict[tuple[str, tuple[str, str]], list[Any]] = {}
        for flow in self._flows:
            n = self.sampler.poisson(flow.rps * dt)
            if n == 0:
                continue
            counts = self.sampler.multinomial(n, [t.weight for t in flow.targets])
            for index, (target, count) in enumerate(zip(flow.targets, counts, strict=True)):
                if count == 0:
                    continue
                if target.local_code is not None:
                    flags = target.local_flags
                    self._record(
                        flow.local_labels[index], str(target.local_code), flags, count,
                        lambda f=flags: LOCAL_REPLY_MS.get(f, 0.1),
                    )  # fmt: skip
                    continue
                healthy = self._healthy(target)
                split = self.sampler.multinomial(count, [float(w.pods) for w in healthy])
                overflow = self._overflow(
                    target, pressure.get((flow.source.key, target.cluster), 0.0)
                )
                for workload, k in zip(healthy, split, strict=True):
                    if k:
                        plan = flow.plans[(index, workload.key)]
                        self._serve(flow, target, plan, k, overflow, active, observed)
        self._detect_outliers(observed)

    def _mean_latency_ms(
        self, flow: Flow, target: Target, workload: Workload, faults: list[TrafficFault]
    ) -> float:
        assert target.service is not None
        model = self.scenario.response(
            target.service.namespace, target.service.name, workload.version
        )
        extra = sum(
            f.extra_latency_ms
            for f in faults
            if f.matches(target.service, target, workload, flow.source)
        )
        return model.mean_ms + extra

    @staticmethod
    def _overflow(target: Target, in_flight: float) -> float:
        pool = target.policy.get("connectionPool") or {}
        tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
        capacity = _int_setting(tcp, "maxConnections", _FORTY_BIT) + _int_setting(
            http, "http1MaxPendingRequests", _FORTY_BIT
        )
        capacity = min(capacity, _int_setting(http, "http2MaxRequests", _FORTY_BIT))
        if in_flight <= capacity or in_flight <= 0:
            return 0.0
        return 1.0 - capacity / in_flight

    def _serve(
        self,
        flow: Flow,
        target: Target,
        plan: EndpointPlan,
        k: int,
        overflow: float,
        faults: list[TrafficFault],
        observed: dict[tuple[str, tuple[str, str]], list[Any]],
    ) -> None:
        sampler, labels, workload = self.sampler, plan.labels, plan.workload
        assert target.service is not None
        service = target.service
        self._requests_by_version[(service.namespace, service.name, workload.version)] = (
            self._requests_by_version.get((service.namespace, service.name, workload.version), 0)
            + k
        )
        abort = target.fault.get("abort") if isinstance(target.fault.get("abort"), dict) else None
        if abort and abort.get("httpStatus"):
            aborted = sampler.binomial(k, _percentage(abort))
            self._record(
                labels, str(abort["httpStatus"]), "FI", aborted, lambda: LOCAL_REPLY_MS["FI"]
            )
            k -= aborted
        if overflow > 0 and k:
            rejected = sampler.binomial(k, overflow)
            self._record(labels, "503", "UO", rejected, lambda: LOCAL_REPLY_MS["UO"])
            k -= rejected
        if not k:
            return
        seen = observed.setdefault((target.cluster, workload.key), [0, 0, target])
        if plan.mtls_failure:
            self._record(labels, "0", "UF", k, lambda: LOCAL_REPLY_MS["UF"])
            seen[0] += k
            seen[1] += k
            return
        if plan.dry_run_denier is not None:
            policy = plan.dry_run_denier
            key = (
                policy.namespace, policy.name,
                labels[BASE_LABELS.index("source_workload")],
                labels[BASE_LABELS.index("source_workload_namespace")],
                labels[BASE_LABELS.index("source_principal")],
                workload.name, workload.namespace,
            )  # fmt: skip
            self._dry_run[key] = self._dry_run.get(key, 0) + k
        if plan.denier is not None:
            self._record(labels, "403", "-", k, lambda: LOCAL_REPLY_MS["403"])
            return
        matching = [f for f in faults if f.matches(service, target, workload, flow.source)]
        fault_error = 1.0 - math.prod(1.0 - f.error_rate for f in matching)
        fault_status = next((str(f.status) for f in matching if f.error_rate > 0), "503")
        extra_ms = sum(f.extra_latency_ms for f in matching)
        delay = target.fault.get("delay") if isinstance(target.fault.get("delay"), dict) else None
        delay_ms = parse_duration_ms((delay or {}).get("fixedDelay"), 0.0) or 0.0
        delayed = sampler.binomial(k, _percentage(delay)) if delay and delay_ms else 0
        model = plan.response
        errors = 0
        for group, added, flags in ((k - delayed, 0.0, "-"), (delayed, delay_ms, "DI")):
            if not group:
                continue
            injected = sampler.binomial(group, fault_error)
            failed = sampler.binomial(group - injected, 1.0 - model.success)
            for count, code in (
                (injected, fault_status),
                (failed, "503"),
                (group - injected - failed, "200"),
            ):
                if count:
                    errors += self._record_app(
                        labels, code, flags, count, model, extra_ms + added, target.timeout_ms
                    )
        seen[0] += k
        seen[1] += errors

    def _record_app(
        self,
        labels: tuple[str, ...],
        code: str,
        flags: str,
        count: int,
        model: ResponseModel,
        extra_ms: float,
        timeout_ms: float | None,
    ) -> int:
        """Record ``count`` answers with sampled latencies; returns how many were 5xx."""
        errors = 0
        for weight, latency in self._representatives(
            count, lambda: self.sampler.lognormal(model) + extra_ms
        ):
            if timeout_ms is not None and latency > timeout_ms:
                timeout_flags = "UT" if flags == "-" else f"{flags},UT"
                self._add(labels, "504", timeout_flags, weight, timeout_ms)
                errors += weight
            else:
                self._add(labels, code, flags, weight, latency)
                errors += weight if code.startswith("5") else 0
        return errors

    def _representatives(
        self, count: int, sample: Callable[[], float]
    ) -> Iterator[tuple[int, float]]:
        """(weight, latency) pairs summing to ``count``: one per request up to REPRESENTATIVES."""
        if count <= REPRESENTATIVES:
            for _ in range(count):
                yield 1, sample()
            return
        base, extra = divmod(count, REPRESENTATIVES)
        for index in range(REPRESENTATIVES):
            yield base + (1 if index < extra else 0), sample()

    def _record(
        self,
        labels: tuple[str, ...],
        code: str,
        flags: str,
        count: int,
        latency: Callable[[], float],
    ) -> None:
        if count:
            for weight, value in self._representatives(count, latency):
                self._add(labels, code, flags, weight, value)

    def _add(
        self, labels: tuple[str, ...], code: str, flags: str, weight: int, latency_ms: float
    ) -> None:
        series = self._series.get((labels, code, flags))
        if series is None:
            series = self._series[(labels, code, flags)] = _Series()
        series.count += weight
        series.buckets[bisect.bisect_left(DURATION_BUCKETS_MS, latency_ms)] += weight
        series.total_ms += latency_ms * weight

    def _detect_outliers(self, observed: dict[tuple[str, tuple[str, str]], list[Any]]) -> None:
        for (cluster, workload_key), (total, errors, target) in observed.items():
            detection = target.policy.get("outlierDetection")
            if not isinstance(detection, dict):
                continue
            needed = _int_setting(
                detection,
                "consecutive5xxErrors",
                _int_setting(detection, "consecutiveGatewayErrors", 5),
            )
            if needed <= 0:
                continue
            state = self._ejections.setdefault((cluster, workload_key), _Ejection())
            if state.until > self.clock_s:
                continue
            outcomes = [True] * errors + [False] * (total - errors)
            if total > 1024:  # a long run of k errors: approximate, don't walk the sequence
                p = errors / total
                if self.sampler.rng.random() < 1 - math.exp(-total * (1 - p) * p**needed):
                    state.streak = needed
            else:
                self.sampler.rng.shuffle(outcomes)
                for failed in outcomes:
                    state.streak = state.streak + 1 if failed else 0
                    if state.streak >= needed:
                        break
            if state.streak < needed:
                continue
            endpoints = target.endpoints
            ejected = sum(1 for w in endpoints if self._is_ejected(cluster, w))
            max_percent = _int_setting(detection, "maxEjectionPercent", 10)
            if ejected and (ejected + 1) * 100 > max_percent * len(endpoints):
                continue
            base_ms = parse_duration_ms(detection.get("baseEjectionTime"), 30_000.0) or 30_000.0
            max_ms = parse_duration_ms(detection.get("maxEjectionTime"), 300_000.0) or 300_000.0
            state.times += 1
            state.streak = 0
            state.until = self.clock_s + min(base_ms * state.times, max(max_ms, base_ms)) / 1000

    # exposition ---------------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            series = [
                (key, s.count, list(s.buckets), s.total_ms) for key, s in self._series.items()
            ]
            dry_run = list(self._dry_run.items())
            clock = self.clock_s
            ejections = []
            for (cluster, (namespace, name)), state in self._ejections.items():
                workload = (
                    self._topology.workloads.get((namespace, name)) if self._topology else None
                )
                _, _, subset, fqdn = (cluster.split("|") + ["", "", "", ""])[:4]
                service_name, _, rest = fqdn.partition(".")
                values = (
                    rest.partition(".")[0],
                    service_name,
                    workload.version if workload else UNKNOWN,
                    subset,
                )
                ejections.append((values, 1.0 if state.until > clock else 0.0))
        requests = CounterMetricFamily(
            "istio_requests_total",
            "Requests seen by the destination proxy (meshsim).",
            labels=ISTIO_LABELS,
        )
        durations = HistogramMetricFamily(
            "istio_request_duration_milliseconds",
            "Request duration seen by the destination proxy (meshsim).",
            labels=ISTIO_LABELS,
        )
        bounds = [str(b) for b in DURATION_BUCKETS_MS] + ["+Inf"]
        for (labels, code, flags), count, buckets, total_ms in series:
            values = [*labels, code, flags]
            requests.add_metric(values, count)
            cumulative, running = [], 0
            for bound, bucket in zip(bounds, buckets, strict=True):
                running += bucket
                cumulative.append((bound, running))
            durations.add_metric(values, cumulative, total_ms)
        yield requests
        yield durations
        denials = CounterMetricFamily(
            "meshsim_authz_dry_run_denials_total",
            "Requests a dry-run AuthorizationPolicy (istio.io/dry-run) would deny (meshsim).",
            labels=DRY_RUN_LABELS,
        )
        for key, count in dry_run:
            denials.add_metric(list(key), count)
        yield denials
        ejected = GaugeMetricFamily(
            "meshsim_outlier_ejected",
            "1 while outlier detection ejects the version from the cluster (meshsim).",
            labels=EJECTION_LABELS,
        )
        for values, value in ejections:
            ejected.add_metric(list(values), value)
        yield ejected
        yield GaugeMetricFamily(
            "meshsim_traffic_simulated_seconds", "The traffic model's simulated clock.", value=clock
        )

    def render_metrics(self) -> bytes:
        """Prometheus text exposition (format 0.0.4)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector:
    def __init__(self, model: TrafficModel) -> None:
        self.model = model

    def collect(self) -> Iterable[Metric]:
        return self.model.collect()
