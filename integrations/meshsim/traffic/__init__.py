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
  destination_workload_namespace, destination_cluster}`` (``namespace``/``policy``: the dry-run policy that
  would deny; ``source_principal`` as in ``istio_requests_total``).
- ``destination_canary`` (meshsim's own label) tells canary from stable traffic for
  policy canaries: ``"true"`` when the route's subset is named ``canary``/``*-canary``,
  carries the label ``meshgate.io/canary: "true"`` in its ``labels`` (ignored for
  endpoint selection), is listed in the DestinationRule annotation
  ``meshgate.io/canary-subsets``, or when the VirtualService http route is named
  ``canary``/``*-canary``.
"""

from __future__ import annotations

from .faults import TrafficFault, parse_fault
from .model import TrafficModel
from .spec import (
    BASE_LABELS,
    DRY_RUN_LABELS,
    DURATION_BUCKETS_MS,
    EJECTION_LABELS,
    ISTIO_LABELS,
    TICK_S,
    TrafficSpecError,
    parse_duration_ms,
    spec_sha256,
)
from .workloads import Topology, Workload

__all__ = [
    "BASE_LABELS",
    "DRY_RUN_LABELS",
    "DURATION_BUCKETS_MS",
    "EJECTION_LABELS",
    "ISTIO_LABELS",
    "TICK_S",
    "Topology",
    "TrafficFault",
    "TrafficModel",
    "TrafficSpecError",
    "Workload",
    "parse_duration_ms",
    "parse_fault",
    "spec_sha256",
]
