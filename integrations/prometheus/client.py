"""Typed functions over the Prometheus HTTP API, plus the built-in canary analysis queries.

``query`` / ``query_range`` return floats as Prometheus gives them (``NaN``, ``+Inf`` and
``-Inf`` included); "no data" is an empty list, never 0. ``request_success_rate`` and
``request_latency_p99`` answer the two built-in analysis metrics for a destination
service, by version or by ``destination_canary`` (meshsim's label for policy canaries),
and return None when there is no data (an empty vector or NaN, e.g. no requests).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import requests

from integrations.prometheus.exceptions import PrometheusError, PrometheusUnavailable, QueryError

# Settings (from the environment) ----------------------------------------------------------------
TIMEOUT_SECONDS = float(os.environ.get("PROMETHEUS_TIMEOUT_SECONDS", "10"))
READY_TIMEOUT_SECONDS = float(os.environ.get("PROMETHEUS_READY_TIMEOUT_SECONDS", "2"))
DEFAULT_INTERVAL = os.environ.get("PROMETHEUS_DEFAULT_INTERVAL", "1m")

# PromQL templates for str.format (literal braces doubled); fill them through
# success_rate_query() / latency_p99_query(), which escape the values.
SELECTOR_BY_VERSION = (
    'reporter="destination",destination_service_namespace="{namespace}",'
    'destination_service_name="{service}",destination_version="{version}"'
)
SELECTOR_BY_CANARY = (
    'reporter="destination",destination_service_namespace="{namespace}",'
    'destination_service_name="{service}",destination_canary="{canary}"'
)
SELECTOR_BY_SERVICE = (
    'reporter="destination",destination_service_namespace="{namespace}",destination_service_name="{service}"'
)


def _success_rate_template(selector: str) -> str:
    return (
        f'sum(rate(istio_requests_total{{{{{selector},response_code!~"5.."}}}}[{{interval}}]))'
        f" / sum(rate(istio_requests_total{{{{{selector}}}}}[{{interval}}]))"
    )


def _latency_p99_template(selector: str) -> str:
    return (
        "histogram_quantile(0.99, sum(rate("
        f"istio_request_duration_milliseconds_bucket{{{{{selector}}}}}[{{interval}}])) by (le))"
    )


SUCCESS_RATE_QUERY = _success_rate_template(SELECTOR_BY_VERSION)
SUCCESS_RATE_CANARY_QUERY = _success_rate_template(SELECTOR_BY_CANARY)
SUCCESS_RATE_SERVICE_QUERY = _success_rate_template(SELECTOR_BY_SERVICE)
LATENCY_P99_QUERY = _latency_p99_template(SELECTOR_BY_VERSION)
LATENCY_P99_CANARY_QUERY = _latency_p99_template(SELECTOR_BY_CANARY)
LATENCY_P99_SERVICE_QUERY = _latency_p99_template(SELECTOR_BY_SERVICE)

_INTERVAL = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_INTERVAL_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_INTERVAL_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}

Timestamp = float | datetime


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)


# HTTP API --------------------------------------------------------------------------------------


def ready(base_url: str, *, timeout: float = READY_TIMEOUT_SECONDS) -> bool:
    """True when ``/-/ready`` answers 200 (Prometheus is up and has loaded its TSDB)."""
    try:
        return requests.get(f"{base_url.rstrip('/')}/-/ready", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def query(
    base_url: str, promql: str, *, time: Timestamp | None = None, timeout: float = TIMEOUT_SECONDS
) -> list[Sample]:
    """An instant query: the vector's samples, or one unlabelled sample for a scalar."""
    params = {"query": promql, "timeout": f"{timeout:g}s"}
    if time is not None:
        params["time"] = _unix(time)
    data = _call(base_url, "/api/v1/query", params, timeout)
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        return [
            Sample(dict(item.get("metric") or {}), _float(item["value"][1]), float(item["value"][0]))
            for item in result or []
        ]
    if kind == "scalar" and isinstance(result, list):
        return [Sample({}, _float(result[1]), float(result[0]))]
    raise QueryError(
        f"an instant query must give a vector or a scalar, not a {kind} (use query_range)",
        error_type="bad_data",
    )


def query_range(
    base_url: str,
    promql: str,
    *,
    start: Timestamp,
    end: Timestamp,
    step: float | timedelta,
    timeout: float = TIMEOUT_SECONDS,
) -> list[Series]:
    """A range query: one series per label set, with (time, value) points."""
    seconds = step.total_seconds() if isinstance(step, timedelta) else float(step)
    params = {
        "query": promql,
        "start": _unix(start),
        "end": _unix(end),
        "step": f"{seconds:g}",
        "timeout": f"{timeout:g}s",
    }
    data = _call(base_url, "/api/v1/query_range", params, timeout)
    if data.get("resultType") != "matrix":
        raise QueryError(f"a range query gave a {data.get('resultType')}", error_type="bad_data")
    return [
        Series(
            dict(item.get("metric") or {}),
            [(float(ts), _float(value)) for ts, value in item.get("values") or []],
        )
        for item in data.get("result") or []
    ]


def _call(base_url: str, path: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}{path}"
    try:
        # POST (form-encoded) so that long queries do not hit URL length limits.
        response = requests.post(url, data=params, timeout=timeout + 1)
    except requests.Timeout as exc:
        raise PrometheusUnavailable(f"Prometheus at {base_url} did not answer in {timeout:g}s") from exc
    except requests.RequestException as exc:
        raise PrometheusUnavailable(f"cannot reach Prometheus at {base_url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    message = body.get("error") if isinstance(body, dict) else None
    if status >= 500:
        raise PrometheusUnavailable(
            f"Prometheus at {base_url} answered {status}: {message or response.text[:200]}",
            status=status,
        )
    if status in (400, 422) or (isinstance(body, dict) and body.get("status") == "error"):
        raise QueryError(
            message or f"Prometheus rejected the query ({status})",
            status=status,
            error_type=str(body.get("errorType", "")) if isinstance(body, dict) else "",
        )
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise PrometheusError(f"unexpected answer from {url}: {status} {response.text[:200]}", status=status)
    return body["data"]


def _float(value: Any) -> float:
    return float(value)  # Prometheus sends "NaN", "+Inf", "-Inf": float() reads them all


def _unix(value: Timestamp) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("pass an aware datetime (naive datetimes are ambiguous)")
        return f"{value.timestamp():.3f}"
    return f"{float(value):.3f}"


# built-in analysis queries ---------------------------------------------------------------------


def interval_seconds(interval: str) -> float:
    """A PromQL duration (``30s``, ``1m30s``, ``5m``) in seconds; ValueError if malformed."""
    if not _INTERVAL.match(interval or ""):
        raise ValueError(f"not a PromQL duration: {interval!r} (e.g. 30s, 1m, 1m30s)")
    return sum(int(n) * _INTERVAL_SECONDS[unit] for n, unit in _INTERVAL_PART.findall(interval))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(
    templates: tuple[str, str, str],
    namespace: str,
    service: str,
    version: str | None,
    canary: bool | None,
    interval: str,
) -> str:
    interval_seconds(interval)
    by_version, by_canary, by_service = templates
    values = {"namespace": _escape(namespace), "service": _escape(service), "interval": interval}
    if version is not None and canary is not None:
        raise ValueError("select by version or by canary, not both")
    if version is not None:
        return by_version.format(version=_escape(version), **values)
    if canary is not None:
        return by_canary.format(canary="true" if canary else "false", **values)
    return by_service.format(**values)


def success_rate_query(
    *,
    namespace: str,
    service: str,
    version: str | None = None,
    canary: bool | None = None,
    interval: str = DEFAULT_INTERVAL,
) -> str:
    """The PromQL of the non-5xx share of requests (by version, by canary, or all)."""
    templates = (SUCCESS_RATE_QUERY, SUCCESS_RATE_CANARY_QUERY, SUCCESS_RATE_SERVICE_QUERY)
    return _render(templates, namespace, service, version, canary, interval)


def latency_p99_query(
    *,
    namespace: str,
    service: str,
    version: str | None = None,
    canary: bool | None = None,
    interval: str = DEFAULT_INTERVAL,
) -> str:
    """The PromQL of the 99th percentile request duration in milliseconds."""
    templates = (LATENCY_P99_QUERY, LATENCY_P99_CANARY_QUERY, LATENCY_P99_SERVICE_QUERY)
    return _render(templates, namespace, service, version, canary, interval)


def _single_value(samples: list[Sample]) -> float | None:
    if not samples or math.isnan(samples[0].value):
        return None
    return samples[0].value


def request_success_rate(
    base_url: str,
    *,
    namespace: str,
    service: str,
    version: str | None = None,
    canary: bool | None = None,
    interval: str = DEFAULT_INTERVAL,
    time: Timestamp | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> float | None:
    """Share of non-5xx answers in [0, 1], or None without requests in the interval."""
    promql = success_rate_query(namespace=namespace, service=service, version=version, canary=canary, interval=interval)
    return _single_value(query(base_url, promql, time=time, timeout=timeout))


def request_latency_p99(
    base_url: str,
    *,
    namespace: str,
    service: str,
    version: str | None = None,
    canary: bool | None = None,
    interval: str = DEFAULT_INTERVAL,
    time: Timestamp | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> float | None:
    """99th percentile duration (ms, interpolated in histogram buckets), or None without data."""
    promql = latency_p99_query(namespace=namespace, service=service, version=version, canary=canary, interval=interval)
    return _single_value(query(base_url, promql, time=time, timeout=timeout))


class MetricsProvider(Protocol):
    """The two built-in analysis metrics; ``PrometheusMetrics`` and the meshsim fallback."""

    def request_success_rate(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None: ...

    def request_latency_p99(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None: ...


@dataclass(frozen=True)
class PrometheusMetrics:
    """``MetricsProvider`` over a Prometheus server."""

    base_url: str
    timeout: float = TIMEOUT_SECONDS

    def request_success_rate(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None:
        return request_success_rate(
            self.base_url,
            namespace=namespace,
            service=service,
            version=version,
            canary=canary,
            interval=interval,
            timeout=self.timeout,
        )

    def request_latency_p99(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None:
        return request_latency_p99(
            self.base_url,
            namespace=namespace,
            service=service,
            version=version,
            canary=canary,
            interval=interval,
            timeout=self.timeout,
        )
