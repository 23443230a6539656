"""Routing: flows from callers to services, resolved through VirtualServices and DestinationRules
into weighted endpoint plans (the topology half of ``TrafficModel``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..resources import NAMESPACES, PODS, SERVICES
from ..scenarios import CALLERS_ANNOTATION, GATEWAY_APP, ROOT_NAMESPACE, RPS_ANNOTATION, Operation
from .spec import (
    AUTHORIZATION_POLICIES,
    BASE_LABELS,
    CANARY_LABEL,
    CANARY_SUBSETS_ANNOTATION,
    DESTINATION_RULES,
    PEER_AUTHENTICATIONS,
    UNKNOWN,
    VIRTUAL_SERVICES,
    _annotation,
    _is_canary_name,
    _labels_match,
    _meta,
    _string_match,
    parse_duration_ms,
    spec_sha256,
)
from .state import ModelState
from .workloads import Call, EndpointPlan, Flow, ServiceInfo, Target, Topology, Workload, _first_denier


class Routing(ModelState):
    """Builds the flows and their endpoint plans from the live objects (mixed into TrafficModel)."""

    # topology -----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        if not self._dirty and self._topology is not None:
            return
        self._dirty = False
        store = self.cluster.store
        keys = (
            NAMESPACES.key,
            SERVICES.key,
            PODS.key,
            VIRTUAL_SERVICES,
            DESTINATION_RULES,
            AUTHORIZATION_POLICIES,
            PEER_AUTHENTICATIONS,
        )
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
                found = self.cluster.store.get(resource.key, fault.policy.get("namespace", ""), fault.policy["name"])
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

    def _edges(self, service: ServiceInfo) -> list[tuple[str, str, float, tuple[Operation, ...], tuple[str, ...]]]:
        table = [e for e in self.scenario.edges if (e.destination_namespace, e.destination) == service.key]
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
        result: list[tuple[str, str, float, tuple[Operation, ...], tuple[str, ...]]] = []
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

    def _route(self, topology: Topology, source: Workload, service: ServiceInfo, operation: Operation) -> list[Target]:
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
                    targets.append(self._local(service, host, weight / total, route_canary, 503, "UH"))
                    continue
                targets.append(
                    self._target(
                        topology,
                        source,
                        resolved,
                        host,
                        subset,
                        route_canary,
                        weight / total,
                        fault,
                        timeout,
                    )
                )
            return targets
        return [self._local(service, service.name, 1.0, False, 404, "NR")]

    @staticmethod
    def _route_matches(route: dict[str, Any], source: Workload, service: ServiceInfo, op: Operation) -> bool:
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
            if "sourceLabels" in match and not _labels_match(match["sourceLabels"], source.label_map):
                continue
            if "sourceNamespace" in match and match["sourceNamespace"] != source.namespace:
                continue
            if "mesh" not in (match.get("gateways") or ["mesh"]):
                continue
            return True
        return False

    def _local(self, service: ServiceInfo, host: str, weight: float, canary: bool, code: int, flags: str) -> Target:
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
                (s for s in spec.get("subsets") or [] if isinstance(s, dict) and s.get("name") == subset),
                None,
            )
            if found is None:
                return replace(self._local(service, host, weight, canary, 503, "NC"), subset=subset)
            labels = {str(k): str(v) for k, v in (found.get("labels") or {}).items()}
            listed = (_annotation(rule or {}, CANARY_SUBSETS_ANNOTATION) or "").split(",")
            # The marker label selects no pod: always taken out of the subset's selector.
            marked = labels.pop(CANARY_LABEL, "").lower() == "true"
            canary = canary or _is_canary_name(subset) or marked or subset in [name.strip() for name in listed]
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
                    response=self.scenario.response(target.service.namespace, target.service.name, workload.version),
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
            "destination_principal": f"spiffe://{workload.principal}" if workload and mtls else UNKNOWN,
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
            "connection_security_policy": ("mutual_tls" if mtls else "none") if workload else UNKNOWN,
            "destination_canary": "true" if target.canary else "false",
        }
        return tuple(values[name] for name in BASE_LABELS)
