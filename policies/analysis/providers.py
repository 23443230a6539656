"""Where analysis samples come from: a ``MetricsProvider`` per metrics backend.

``sample(metric, target, window)`` answers one metric for one side over a PromQL duration
window, as a ``MetricSample`` (the aggregate a person reads and the samples a judge tests),
or None when there is no data (no requests, an empty vector, NaN). A backend that cannot
answer raises ``ProviderUnavailable`` (outage) or ``ProviderQueryError`` (bad query): the
interval records them as ``error``, never as a pass and never as a failed canary.

- ``PrometheusProvider``: a real Prometheus. Built-ins are read as counts over the window
  (``increase`` of ``istio_requests_total`` by response code, of the duration buckets by
  ``le``), so the judge gets per-request outcomes and bucketed latencies; a custom
  template gives its instant value and per-step values (``query_range``) as samples; its
  every selector is scoped to the cluster too (``metrics.scope_query``).
- ``MeshsimProvider``: the demo fallback reading meshsim's ``/metrics`` directly (built-in
  metrics and counts only); its scrapes are kept per process and meshsim across intervals.

``counts(metric, match, by=, window=)`` answers ``sum by (<by>) (increase(<metric>{<match>}
[<window>]))`` as ``{(by values...): count}`` (``{}`` when nothing matched): the counts the
rollout gates read (shadow denials, plaintext requests, 403s, refused connections).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from integrations.prometheus import (
    MeshsimMetricsProvider,
    PrometheusError,
    PrometheusUnavailable,
    QueryError,
    interval_seconds,
    query,
    query_range,
)
from integrations.prometheus.client import TIMEOUT_SECONDS
from integrations.prometheus.fallback import BUCKETS, REQUESTS
from policies.analysis.judges import Distribution, aggregate
from policies.analysis.metrics import (
    MetricDefinition,
    MetricKind,
    Target,
    TemplateError,
    escape_label_value,
    increase_query,
    render_template,
    scope_query,
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
    def sample(self, metric: MetricDefinition, target: Target, window: str) -> MetricSample | None: ...

    def series(
        self,
        metric: MetricDefinition,
        target: Target,
        *,
        window: str,
        start: float,
        end: float,
        step: float,
    ) -> list[tuple[float, float]]: ...

    def counts(
        self, metric: str, match: Mapping[str, str], *, by: Sequence[str] = (), window: str
    ) -> dict[tuple[str, ...], float]: ...


def target_labels(target: Target, scope: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``istio_requests_total`` labels (destination reporter) that select ``target``,
    within ``scope`` (the environment's cluster, e.g. ``{"destination_cluster": "staging"}``)."""
    labels = {
        "reporter": "destination",
        "destination_service_namespace": target.namespace,
        "destination_service_name": target.service,
    }
    if target.version is not None:
        labels["destination_version"] = target.version
    if target.canary is not None:
        labels["destination_canary"] = "true" if target.canary else "false"
    return {**labels, **dict(scope or {})}


def scoped(metric: str, scope: Mapping[str, str] | None) -> dict[str, str]:
    """The scope's matchers for ``metric``: every series the analysis reads carries the cluster
    label (Istio's metrics and meshsim's dry-run denial counter ``destination_cluster``; a label
    of the scrape configuration every series)."""
    return dict(scope or {})


def selector(target: Target, scope: Mapping[str, str] | None = None) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in target_labels(target, scope).items())


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
    """``scope``: labels every built-in and gate query adds (the environment's cluster)."""

    base_url: str
    timeout: float = TIMEOUT_SECONDS
    scope: Mapping[str, str] | None = None

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
                f"sum by (response_code) (increase(istio_requests_total{{{selector(target, self.scope)}}}[{window}]))"
            )
            by_code = {
                s.labels.get("response_code", ""): s.value for s in self._query(promql) if not math.isnan(s.value)
            }
            return outcomes_sample(by_code)
        if metric.kind == MetricKind.LATENCY_P99:
            promql = (
                "sum by (le) (increase(istio_request_duration_milliseconds_bucket"
                f"{{{selector(target, self.scope)}}}[{window}]))"
            )
            cumulative = {
                float(s.labels["le"]): s.value
                for s in self._query(promql)
                if "le" in s.labels and not math.isnan(s.value)
            }
            return buckets_sample(cumulative)
        promql = _render(metric, target, window, self.scope)
        found = [s.value for s in self._query(promql) if not math.isnan(s.value)]
        if not found:
            return None
        end = time.time()
        points = self.series(
            metric,
            target,
            window=window,
            start=end - interval_seconds(window),
            end=end,
            step=max(interval_seconds(window) / CUSTOM_STEPS, 1.0),
        )
        steps = Distribution.of(v for _, v in points)
        return MetricSample(found[0], steps if steps.total else Distribution.of(found[:1]))

    def series(
        self,
        metric: MetricDefinition,
        target: Target,
        *,
        window: str,
        start: float,
        end: float,
        step: float,
    ) -> list[tuple[float, float]]:
        """The metric over time (charts; per-step samples of custom queries)."""
        where = selector(target, self.scope)
        if metric.kind == MetricKind.SUCCESS_RATE:
            promql = (
                f'sum(rate(istio_requests_total{{{where},response_code!~"5.."}}[{window}]))'
                f" / sum(rate(istio_requests_total{{{where}}}[{window}]))"
            )
        elif metric.kind == MetricKind.LATENCY_P99:
            promql = (
                "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket"
                f"{{{where}}}[{window}])) by (le))"
            )
        else:
            promql = _render(metric, target, window, self.scope)
        try:
            found = query_range(self.base_url, promql, start=start, end=end, step=step, timeout=self.timeout)
        except PrometheusUnavailable as exc:
            raise ProviderUnavailable(exc.message) from exc
        except QueryError as exc:
            raise ProviderQueryError(f"{exc.message} (query: {promql})") from exc
        except PrometheusError as exc:
            raise ProviderUnavailable(exc.message) from exc
        if not found:
            return []
        return [(t, v) for t, v in found[0].points if not math.isnan(v)]

    def counts(
        self, metric: str, match: Mapping[str, str], *, by: Sequence[str] = (), window: str
    ) -> dict[tuple[str, ...], float]:
        try:
            promql = increase_query(metric, {**match, **scoped(metric, self.scope)}, window=window, by=by)
        except TemplateError as exc:
            raise ProviderQueryError(f"{metric}: {exc}") from exc
        return {
            tuple(s.labels.get(name, "") for name in by): s.value
            for s in self._query(promql)
            if not math.isnan(s.value)
        }


class MeshsimProvider:
    """Built-in metrics and counts from meshsim's ``/metrics`` (no Prometheus; demo only)."""

    def __init__(self, meshsim_url: str, *, scope: Mapping[str, str] | None = None, **kwargs: object) -> None:
        self.fallback = MeshsimMetricsProvider(meshsim_url, **kwargs)  # type: ignore[arg-type]
        self.scope = dict(scope or {})

    @property
    def shares_history(self) -> bool:
        """True when its windows reach back to scrapes of earlier intervals (see
        ``MeshsimMetricsProvider``), as a Prometheus window does."""
        return self.fallback.shares_history

    def counts(
        self, metric: str, match: Mapping[str, str], *, by: Sequence[str] = (), window: str
    ) -> dict[tuple[str, ...], float]:
        _check_window(window)
        try:
            found = self.fallback.counts(metric, interval=window, match={**match, **scoped(metric, self.scope)}, by=by)
        except PrometheusError as exc:  # PrometheusUnavailable included
            raise ProviderUnavailable(exc.message) from exc
        return found or {}

    def sample(self, metric: MetricDefinition, target: Target, window: str) -> MetricSample | None:
        _check_window(window)
        if metric.kind == MetricKind.SUCCESS_RATE:
            found = self.counts(REQUESTS, target_labels(target), by=("response_code",), window=window)
            return outcomes_sample({code: value for (code,), value in found.items()})
        if metric.kind == MetricKind.LATENCY_P99:
            found = self.counts(BUCKETS, target_labels(target), by=("le",), window=window)
            return buckets_sample({float(le): value for (le,), value in found.items() if le})
        raise ProviderQueryError(f"{metric.name}: custom PromQL needs a real Prometheus (meshsim fallback)")

    def series(
        self,
        metric: MetricDefinition,
        target: Target,
        *,
        window: str,
        start: float,
        end: float,
        step: float,
    ) -> list[tuple[float, float]]:
        """No history without Prometheus: the current value as one point."""
        found = self.sample(metric, target, window)
        value = None if found is None else aggregate(metric, found.samples)
        return [] if value is None else [(time.time(), value)]


def _check_window(window: str) -> None:
    try:
        interval_seconds(window)
    except ValueError as exc:
        raise ProviderQueryError(str(exc)) from exc


def _render(metric: MetricDefinition, target: Target, window: str, scope: Mapping[str, str] | None = None) -> str:
    """The custom template filled for ``target``, every selector scoped to the cluster."""
    try:
        return scope_query(render_template(metric.query or "", target, interval=window), scope)
    except TemplateError as exc:
        raise ProviderQueryError(f"{metric.name}: {exc}") from exc
