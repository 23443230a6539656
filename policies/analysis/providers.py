"""Where analysis samples come from: a ``MetricsProvider`` per metrics backend.

``sample(metric, target, window)`` answers one metric for one side over a PromQL duration
window, as a ``MetricSample`` (the aggregate a person reads and the samples a judge tests),
or None when there is no data (no requests, an empty vector, NaN). A backend that cannot
answer raises ``ProviderUnavailable`` (outage) or ``ProviderQueryError`` (bad query): the
interval records them as ``error``, never as a pass and never as a failed canary.

- ``PrometheusProvider``: a real Prometheus. Built-ins are read as counts over the window
  (``increase`` of ``istio_requests_total`` by response code, of the duration buckets by
  ``le``), so the judge gets per-request outcomes and bucketed latencies; a custom
  template gives its instant value and per-step values (``query_range``) as samples.
- ``MeshsimProvider``: the demo fallback reading meshsim's ``/metrics`` directly (built-in
  metrics only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from integrations.prometheus import (
    MeshsimMetricsProvider,
    PrometheusError,
    PrometheusUnavailable,
    QueryError,
    interval_seconds,
    latency_p99_query,
    query,
    query_range,
    success_rate_query,
)
from integrations.prometheus.client import TIMEOUT_SECONDS
from integrations.prometheus.fallback import _increase
from policies.analysis.judges import Distribution, aggregate
from policies.analysis.metrics import (
    MetricDefinition,
    MetricKind,
    Target,
    TemplateError,
    escape_label_value,
    render_template,
)

CUSTOM_STEPS = 10  # per-step samples of a custom query over the window


class ProviderError(Exception):
    """The metrics backend could not answer (see the subclasses)."""


class ProviderUnavailable(ProviderError):
    """Outage: connection refused, timeout, 5xx."""


class ProviderQueryError(ProviderError):
    """The backend rejected the query, or the metric cannot be asked of this backend."""


@dataclass(frozen=True)
class MetricSample:
    value: float | None  # the aggregate (success share, p99 ms, custom value)
    samples: Distribution  # what the judge tests (per request, per bucket, per step)

    @property
    def requests(self) -> float:
        return self.samples.total


class MetricsProvider(Protocol):
    def sample(
        self, metric: MetricDefinition, target: Target, window: str
    ) -> MetricSample | None: ...

    def series(
        self, metric: MetricDefinition, target: Target, *, window: str, start: float,
        end: float, step: float,
    ) -> list[tuple[float, float]]: ...  # fmt: skip


def selector(target: Target) -> str:
    parts = [
        'reporter="destination"',
        f'destination_service_namespace="{escape_label_value(target.namespace)}"',
        f'destination_service_name="{escape_label_value(target.service)}"',
    ]
    if target.version is not None:
        parts.append(f'destination_version="{escape_label_value(target.version)}"')
    if target.canary is not None:
        parts.append(f'destination_canary="{"true" if target.canary else "false"}"')
    return ",".join(parts)


def _is_5xx(code: str) -> bool:
    return len(code) == 3 and code.startswith("5")


def outcomes_sample(by_code: dict[str, float]) -> MetricSample | None:
    total = sum(by_code.values())
    if total <= 0:
        return None
    errors = sum(v for code, v in by_code.items() if _is_5xx(code))
    return MetricSample((total - errors) / total, Distribution.outcomes(total - errors, errors))


def buckets_sample(cumulative: dict[float, float]) -> MetricSample | None:
    """From cumulative ``le`` counts to per-bucket counts (valued at the upper bound)."""
    values, counts, previous = [], [], 0.0
    for bound in sorted(cumulative):
        count = max(cumulative[bound] - previous, 0.0)
        previous = max(previous, cumulative[bound])
        if count > 0:
            values.append(bound)
            counts.append(count)
    samples = Distribution(tuple(values), tuple(counts))
    if samples.total <= 0:
        return None
    return MetricSample(samples.quantile(0.99), samples)


@dataclass(frozen=True)
class PrometheusProvider:
    base_url: str
    timeout: float = TIMEOUT_SECONDS

    def _query(self, promql: str) -> list:
        try:
            return query(self.base_url, promql, timeout=self.timeout)
        except PrometheusUnavailable as exc:
            raise ProviderUnavailable(exc.message) from exc
        except QueryError as exc:
            raise ProviderQueryError(f"{exc.message} (query: {promql})") from exc
        except PrometheusError as exc:
            raise ProviderUnavailable(exc.message) from exc

    def sample(self, metric: MetricDefinition, target: Target, window: str) -> MetricSample | None:
        _check_window(window)
        if metric.kind == MetricKind.SUCCESS_RATE:
            promql = (
                f"sum by (response_code) (increase(istio_requests_total{{{selector(target)}}}"
                f"[{window}]))"
            )
            by_code = {
                s.labels.get("response_code", ""): s.value
                for s in self._query(promql) if not math.isnan(s.value)
            }  # fmt: skip
            return outcomes_sample(by_code)
        if metric.kind == MetricKind.LATENCY_P99:
            promql = (
                "sum by (le) (increase(istio_request_duration_milliseconds_bucket"
                f"{{{selector(target)}}}[{window}]))"
            )
            cumulative = {
                float(s.labels["le"]): s.value
                for s in self._query(promql) if "le" in s.labels and not math.isnan(s.value)
            }  # fmt: skip
            return buckets_sample(cumulative)
        promql = _render(metric, target, window)
        found = [s.value for s in self._query(promql) if not math.isnan(s.value)]
        if not found:
            return None
        end = time.time()
        points = self.series(
            metric, target, window=window, start=end - interval_seconds(window), end=end,
            step=max(interval_seconds(window) / CUSTOM_STEPS, 1.0),
        )  # fmt: skip
        steps = Distribution.of(v for _, v in points)
        return MetricSample(found[0], steps if steps.total else Distribution.of(found[:1]))

    def series(
        self, metric: MetricDefinition, target: Target, *, window: str, start: float,
        end: float, step: float,
    ) -> list[tuple[float, float]]:  # fmt: skip
        """The metric over time (charts; per-step samples of custom queries)."""
        by = {"namespace": target.namespace, "service": target.service,
              "version": target.version, "canary": target.canary, "interval": window}  # fmt: skip
        if metric.kind == MetricKind.SUCCESS_RATE:
            promql = success_rate_query(**by)
        elif metric.kind == MetricKind.LATENCY_P99:
            promql = latency_p99_query(**by)
        else:
            promql = _render(metric, target, window)
        try:
            found = query_range(
                self.base_url, promql, start=start, end=end, step=step, timeout=self.timeout
            )
        except PrometheusUnavailable as exc:
            raise ProviderUnavailable(exc.message) from exc
        except QueryError as exc:
            raise ProviderQueryError(f"{exc.message} (query: {promql})") from exc
        except PrometheusError as exc:
            raise ProviderUnavailable(exc.message) from exc
        if not found:
            return []
        return [(t, v) for t, v in found[0].points if not math.isnan(v)]


class MeshsimProvider:
    """Built-in metrics from meshsim's ``/metrics`` (no Prometheus; demo only)."""

    def __init__(self, meshsim_url: str, **kwargs: object) -> None:
        self.fallback = MeshsimMetricsProvider(meshsim_url, **kwargs)  # type: ignore[arg-type]

    def _counts(self, target: Target, window: str, which: str) -> dict:
        try:
            found = self.fallback._window(window)
        except PrometheusUnavailable as exc:
            raise ProviderUnavailable(exc.message) from exc
        except PrometheusError as exc:
            raise ProviderUnavailable(exc.message) from exc
        if found is None:
            return {}
        old, new = found
        increases = _increase(getattr(new, which), getattr(old, which))
        return {
            labels: value
            for labels, value in increases.items()
            if self.fallback._selected(
                labels, target.namespace, target.service, target.version, target.canary
            )
        }

    def sample(self, metric: MetricDefinition, target: Target, window: str) -> MetricSample | None:
        _check_window(window)
        if metric.kind == MetricKind.SUCCESS_RATE:
            by_code: dict[str, float] = {}
            for labels, value in self._counts(target, window, "requests").items():
                code = dict(labels).get("response_code", "")
                by_code[code] = by_code.get(code, 0.0) + value
            return outcomes_sample(by_code)
        if metric.kind == MetricKind.LATENCY_P99:
            cumulative: dict[float, float] = {}
            for labels, value in self._counts(target, window, "buckets").items():
                bound = float(dict(labels)["le"])
                cumulative[bound] = cumulative.get(bound, 0.0) + value
            return buckets_sample(cumulative)
        raise ProviderQueryError(
            f"{metric.name}: custom PromQL needs a real Prometheus (meshsim fallback)"
        )

    def series(
        self, metric: MetricDefinition, target: Target, *, window: str, start: float,
        end: float, step: float,
    ) -> list[tuple[float, float]]:  # fmt: skip
        """No history without Prometheus: the current value as one point."""
        found = self.sample(metric, target, window)
        value = None if found is None else aggregate(metric, found.samples)
        return [] if value is None else [(time.time(), value)]


def _check_window(window: str) -> None:
    try:
        interval_seconds(window)
    except ValueError as exc:
        raise ProviderQueryError(str(exc)) from exc


def _render(metric: MetricDefinition, target: Target, window: str) -> str:
    try:
        return render_template(metric.query or "", target, interval=window)
    except TemplateError as exc:
        raise ProviderQueryError(f"{metric.name}: {exc}") from exc
