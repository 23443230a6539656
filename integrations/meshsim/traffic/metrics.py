"""Exposition: the model's counters as Istio metrics in the Prometheus text format (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .spec import DRY_RUN_LABELS, DURATION_BUCKETS_MS, EJECTION_LABELS, ISTIO_LABELS, UNKNOWN
from .state import ModelState


class MetricsExport(ModelState):
    """The ``/metrics`` half of ``TrafficModel`` (mixed into it)."""

    # exposition ---------------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            series = [(key, s.count, list(s.buckets), s.total_ms) for key, s in self._series.items()]
            dry_run = list(self._dry_run.items())
            clock = self.clock_s
            ejections = []
            for (cluster, (namespace, name)), state in self._ejections.items():
                workload = self._topology.workloads.get((namespace, name)) if self._topology else None
                _, _, subset, fqdn = (cluster.split("|") + ["", "", "", ""])[:4]
                service_name, _, rest = fqdn.partition(".")
                values: Sequence[str] = (
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
    def __init__(self, model: MetricsExport) -> None:
        self.model = model

    def collect(self) -> Iterable[Metric]:
        return self.model.collect()
