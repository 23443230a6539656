"""A thin, typed client for the Prometheus HTTP API and the built-in analysis metrics.

``fallback.MeshsimMetricsProvider`` answers the two built-in metrics from meshsim's
``/metrics`` when no Prometheus is installed (demo only).
"""

from integrations.prometheus.client import (
    LATENCY_P99_CANARY_QUERY,
    LATENCY_P99_QUERY,
    LATENCY_P99_SERVICE_QUERY,
    SUCCESS_RATE_CANARY_QUERY,
    SUCCESS_RATE_QUERY,
    SUCCESS_RATE_SERVICE_QUERY,
    MetricsProvider,
    PrometheusMetrics,
    Sample,
    Series,
    interval_seconds,
    latency_p99_query,
    query,
    query_range,
    ready,
    request_latency_p99,
    request_success_rate,
    success_rate_query,
)
from integrations.prometheus.exceptions import PrometheusError, PrometheusUnavailable, QueryError
from integrations.prometheus.fallback import MeshsimMetricsProvider, ScrapeHistory

__all__ = [
    "LATENCY_P99_CANARY_QUERY",
    "LATENCY_P99_QUERY",
    "LATENCY_P99_SERVICE_QUERY",
    "SUCCESS_RATE_CANARY_QUERY",
    "SUCCESS_RATE_QUERY",
    "SUCCESS_RATE_SERVICE_QUERY",
    "MeshsimMetricsProvider",
    "MetricsProvider",
    "PrometheusError",
    "PrometheusMetrics",
    "PrometheusUnavailable",
    "QueryError",
    "Sample",
    "ScrapeHistory",
    "Series",
    "interval_seconds",
    "latency_p99_query",
    "query",
    "query_range",
    "ready",
    "request_latency_p99",
    "request_success_rate",
    "success_rate_query",
]
