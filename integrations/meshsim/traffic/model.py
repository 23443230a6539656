"""The traffic model: its state, clock, admin operations and the simulation of each tick; routing
and metrics exposition are mixed in from `routing` and `metrics` (package docstring: the whole)."""

from __future__ import annotations

import bisect
import functools
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..scenarios import DEMO, ResponseModel, Scenario
from ..store import Event
from .faults import TrafficFault, _number, _text, parse_fault
from .metrics import MetricsExport
from .routing import Routing
from .spec import (
    _FORTY_BIT,
    BASE_LABELS,
    DURATION_BUCKETS_MS,
    LOCAL_REPLY_MS,
    MAX_ADVANCE_S,
    MAX_CATCH_UP_TICKS,
    REPRESENTATIVES,
    TICK_S,
    UNKNOWN,
    Sampler,
    TrafficSpecError,
    _int_setting,
    _percentage,
    local_reply_ms,
    parse_duration_ms,
)
from .state import _Ejection, _Series
from .workloads import EndpointPlan, Flow, Target, Topology, Workload

if TYPE_CHECKING:
    from ..cluster import Cluster


class TrafficModel(Routing, MetricsExport):
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
                except Exception:  # noqa: BLE001 - keep ticking: one bad object must not stop the traffic
                    traceback.print_exc(file=sys.stderr)

    def advance(self, seconds: Any) -> dict[str, Any]:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds <= MAX_ADVANCE_S:
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
                    candidates: list[Workload | None] = [*healthy] or [None]
                    for workload in candidates:
                        version = workload.version if workload else UNKNOWN
                        route = entry["routing"].setdefault(
                            (version, target.subset, target.canary),
                            {
                                "version": version,
                                "subset": target.subset or None,
                                "canary": target.canary,
                                "rps": 0.0,
                                "requests": self._requests_by_version.get((key[0], key[1], version), 0),
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
                    latency = sum(self._mean_latency_ms(flow, target, w, active) for w in target.endpoints) / len(
                        target.endpoints
                    )
                    key = (flow.source.key, target.cluster)
                    pressure[key] = pressure.get(key, 0.0) + flow.rps * target.weight * latency / 1000
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
                        flow.local_labels[index],
                        str(target.local_code),
                        flags,
                        count,
                        functools.partial(local_reply_ms, flags),
                    )
                    continue
                healthy = self._healthy(target)
                split = self.sampler.multinomial(count, [float(w.pods) for w in healthy])
                overflow = self._overflow(target, pressure.get((flow.source.key, target.cluster), 0.0))
                for workload, k in zip(healthy, split, strict=True):
                    if k:
                        plan = flow.plans[(index, workload.key)]
                        self._serve(flow, target, plan, k, overflow, active, observed)
        self._detect_outliers(observed)

    def _mean_latency_ms(self, flow: Flow, target: Target, workload: Workload, faults: list[TrafficFault]) -> float:
        assert target.service is not None
        model = self.scenario.response(target.service.namespace, target.service.name, workload.version)
        extra = sum(f.extra_latency_ms for f in faults if f.matches(target.service, target, workload, flow.source))
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
            self._requests_by_version.get((service.namespace, service.name, workload.version), 0) + k
        )
        abort = target.fault.get("abort") if isinstance(target.fault.get("abort"), dict) else None
        if abort and abort.get("httpStatus"):
            aborted = sampler.binomial(k, _percentage(abort))
            self._record(labels, str(abort["httpStatus"]), "FI", aborted, lambda: LOCAL_REPLY_MS["FI"])
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
                policy.namespace,
                policy.name,
                labels[BASE_LABELS.index("source_workload")],
                labels[BASE_LABELS.index("source_workload_namespace")],
                labels[BASE_LABELS.index("source_principal")],
                workload.name,
                workload.namespace,
                labels[BASE_LABELS.index("destination_cluster")],
            )
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
                    errors += self._record_app(labels, code, flags, count, model, extra_ms + added, target.timeout_ms)
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
        for weight, latency in self._representatives(count, lambda: self.sampler.lognormal(model) + extra_ms):
            if timeout_ms is not None and latency > timeout_ms:
                timeout_flags = "UT" if flags == "-" else f"{flags},UT"
                self._add(labels, "504", timeout_flags, weight, timeout_ms)
                errors += weight
            else:
                self._add(labels, code, flags, weight, latency)
                errors += weight if code.startswith("5") else 0
        return errors

    def _representatives(self, count: int, sample: Callable[[], float]) -> Iterator[tuple[int, float]]:
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

    def _add(self, labels: tuple[str, ...], code: str, flags: str, weight: int, latency_ms: float) -> None:
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
