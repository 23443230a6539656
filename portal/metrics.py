"""Prometheus metrics of Meshgate itself, served on /metrics."""

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

HTTP_REQUESTS = Counter(
    "meshgate_http_requests_total", "HTTP requests answered by the portal", ["method", "view", "status"]
)
HTTP_LATENCY = Histogram("meshgate_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "view"])


def observe_request(method: str, view: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, view, str(status)).inc()
    HTTP_LATENCY.labels(method, view).observe(seconds)


class DatabaseStatsCollector:
    """Task outcomes (counted by the workers in the database) and cluster reachability."""

    def collect(self) -> Iterator[Metric]:
        # Imported here: this module is loaded by the logging setup (through portal.middleware),
        # before Django's app registry is ready to import models.
        from policies.models import Environment
        from portal.models import TaskStat

        tasks = CounterMetricFamily(
            "meshgate_celery_tasks", "Celery task outcomes recorded by the workers", labels=["task", "outcome"]
        )
        for stat in TaskStat.objects.all():
            tasks.add_metric([stat.task, stat.outcome], stat.count)
        yield tasks
        reachable = GaugeMetricFamily(
            "meshgate_cluster_reachable",
            "1 if the last probe reached the environment's cluster API",
            labels=["environment"],
        )
        for environment in Environment.objects.only("name", "cluster_reachable"):
            reachable.add_metric([environment.name], 1.0 if environment.cluster_reachable else 0.0)
        yield reachable


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_LATENCY):
            registry.register(collector)
    registry.register(DatabaseStatsCollector())
    return generate_latest(registry)
