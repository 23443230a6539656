"""Demo fallback: analysis counts straight from meshsim's ``/metrics``.

Used when no Prometheus is installed. ``MeshsimMetricsProvider`` has the same methods as
``client.PrometheusMetrics`` (``request_success_rate`` and ``request_latency_p99``, same
keyword arguments and meanings) but computes them from two scrapes of meshsim's
``/metrics``: the fresh one and the oldest kept scrape inside the interval. The scrapes are
kept per process and per meshsim URL (``ScrapeHistory.shared``), so successive analysis
intervals, each with a provider of its own, measure the time elapsed since an earlier
interval's scrape, as Prometheus' ``increase`` over the window would. Only with no earlier
scrape does it scrape, wait ``bootstrap_wait_s`` and scrape again. Counter resets
(meshsim reset) are handled like Prometheus does; ``p99`` uses Prometheus'
``histogram_quantile`` interpolation. ``counts(metric, interval=, match=, by=)`` answers
what ``sum by (<by>) (increase(<metric>{<match>}[<interval>]))`` answers in PromQL, for
any counter meshsim exports (e.g. ``meshsim_authz_dry_run_denials_total``); other custom
PromQL needs a real Prometheus. Results match Prometheus' within sampling noise, not
exactly (Prometheus extrapolates ``rate`` to the window edges and ignores series with a
single sample in the window).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import requests
from prometheus_client.parser import text_string_to_metric_families

from integrations.prometheus.client import DEFAULT_INTERVAL, interval_seconds
from integrations.prometheus.exceptions import PrometheusError, PrometheusUnavailable

REQUESTS = "istio_requests_total"
BUCKETS = "istio_request_duration_milliseconds_bucket"
Labels = frozenset[tuple[str, str]]


@dataclass
class Scrape:
    """The samples of one scrape: per sample name, the values keyed by their label sets."""

    at: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    @property
    def requests(self) -> dict[Labels, float]:
        """``istio_requests_total`` reported by the destination."""
        return _reported_by_destination(self.samples.get(REQUESTS, {}))

    @property
    def buckets(self) -> dict[Labels, float]:
        """Duration buckets reported by the destination (labels include ``le``)."""
        return _reported_by_destination(self.samples.get(BUCKETS, {}))


def _reported_by_destination(series: dict[Labels, float]) -> dict[Labels, float]:
    return {labels: v for labels, v in series.items() if ("reporter", "destination") in labels}


def parse_scrape(text: str, at: float) -> Scrape:
    scrape = Scrape(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series = scrape.samples.setdefault(sample.name, {})
            series[frozenset(sample.labels.items())] = sample.value
    return scrape


def _increase(new: dict[Labels, float], old: dict[Labels, float]) -> dict[Labels, float]:
    """Per series increase between two scrapes; a drop is a counter reset."""
    result = {}
    for labels, value in new.items():
        before = old.get(labels, 0.0)
        result[labels] = value - before if value >= before else value
    return result


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative (upper bound, count) buckets."""
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    monotonic, highest = [], 0.0
    for bound, count in ordered:  # ensureMonotonic
        highest = max(highest, count)
        monotonic.append((bound, highest))
    observations = monotonic[-1][1]
    if observations == 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * observations
    index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end, count = 0.0, monotonic[index][0], monotonic[index][1]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    return start + (end - start) * (rank / count)


# A scrape older than the window but no older than WINDOW_SLACK windows still opens it when
# nothing inside the window does: an interval that runs every `window` seconds comes a little late.
WINDOW_SLACK = 2.0
HISTORY_MAX_SCRAPES = 256
HISTORY_MIN_KEEP_S = 300.0


class ScrapeHistory:
    """Timestamped scrapes of one meshsim, oldest first, shared by the providers of one process.

    Bounded: at most ``max_scrapes``, and none older than ``WINDOW_SLACK`` times the longest
    window asked for so far (at least ``HISTORY_MIN_KEEP_S``, at most ``keep_s``).
    Thread-safe: the worker may analyse several rollouts of one cluster at once."""

    _shared: ClassVar[dict[str, ScrapeHistory]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, keep_s: float = 3600.0, max_scrapes: int = HISTORY_MAX_SCRAPES) -> None:
        self.keep_s = keep_s
        self.longest_window_s = 0.0
        self._scrapes: deque[Scrape] = deque(maxlen=max_scrapes)
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, url: str) -> ScrapeHistory:
        """The process-wide history of the meshsim whose ``/metrics`` is at ``url``."""
        with cls._shared_lock:
            return cls._shared.setdefault(url, cls())

    def __len__(self) -> int:
        with self._lock:
            return len(self._scrapes)

    def add(self, scrape: Scrape) -> None:
        with self._lock:
            position = len(self._scrapes)
            while position and self._scrapes[position - 1].at > scrape.at:  # a concurrent scrape
                position -= 1
            if len(self._scrapes) == self._scrapes.maxlen:
                self._scrapes.popleft()
                position = max(position - 1, 0)
            self._scrapes.insert(position, scrape)
            self._evict(self._scrapes[-1].at)

    def window_start(self, current: Scrape, seconds: float) -> Scrape | None:
        """The scrape that opens a window of ``seconds`` ending at ``current``: the oldest one
        inside it, else the newest one at most ``WINDOW_SLACK`` windows old, else None."""
        with self._lock:
            self.longest_window_s = max(self.longest_window_s, seconds)
            earlier = [s for s in self._scrapes if s is not current and s.at < current.at]
            inside = [s for s in earlier if current.at - s.at <= seconds]
            if inside:
                return inside[0]
            late = [s for s in earlier if current.at - s.at <= seconds * WINDOW_SLACK]
            return late[-1] if late else None

    def _evict(self, now: float) -> None:
        horizon = min(self.keep_s, max(self.longest_window_s * WINDOW_SLACK, HISTORY_MIN_KEEP_S))
        while len(self._scrapes) > 1 and now - self._scrapes[0].at > horizon:
            self._scrapes.popleft()


class MeshsimMetricsProvider:
    """``MetricsProvider`` reading meshsim's ``/metrics`` directly (no Prometheus).

    With the default clock its scrapes go to the process-wide history of ``meshsim_url``
    (``ScrapeHistory.shared``); another clock (tests, simulated time) or ``history=`` gives it
    a history of its own."""

    def __init__(
        self,
        meshsim_url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        bootstrap_wait_s: float = 2.0,
        keep_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        history: ScrapeHistory | None = None,
    ) -> None:
        self.url = f"{meshsim_url.rstrip('/')}/metrics"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.bootstrap_wait_s = bootstrap_wait_s
        self.keep_s = keep_s
        self._clock = clock
        self._sleep = sleep
        if history is None:
            history = ScrapeHistory.shared(self.url) if clock is time.monotonic else ScrapeHistory(keep_s=keep_s)
        self.history = history

    @property
    def shares_history(self) -> bool:
        """Whether the scrapes are the process-wide ones of this URL (windows then reach
        back into earlier intervals)."""
        return self.history is ScrapeHistory.shared(self.url)

    def scrape(self) -> Scrape:
        """Read ``/metrics`` now and keep the result in the history."""
        try:
            response = requests.get(self.url, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"cannot reach meshsim metrics at {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise PrometheusUnavailable(
                f"meshsim metrics at {self.url} answered {response.status_code}",
                status=response.status_code,
            )
        try:
            scrape = parse_scrape(response.text, self._clock())
        except ValueError as exc:
            raise PrometheusError(f"cannot parse {self.url}: {exc}") from exc
        self.history.add(scrape)
        return scrape

    def _window(self, interval: str) -> tuple[Scrape, Scrape] | None:
        seconds = interval_seconds(interval)
        current = self.scrape()
        start = self.history.window_start(current, seconds)
        if start is None and self.bootstrap_wait_s > 0:
            self._sleep(self.bootstrap_wait_s)
            start, current = current, self.scrape()
        return (start, current) if start is not None else None

    def counts(
        self,
        metric: str,
        *,
        interval: str,
        match: Mapping[str, str] | None = None,
        by: Sequence[str] = (),
    ) -> dict[tuple[str, ...], float] | None:
        """The increase of every series of the counter ``metric`` over ``interval`` whose
        labels equal ``match`` (an absent label equals ``""``, as in PromQL), summed by the
        values of the ``by`` labels: ``{("bookinfo", "reviews-v2"): 120.0}`` for
        ``by=("source_workload_namespace", "source_workload")``; ``{(): total}`` without
        ``by``. ``{}`` when no series matches; None without an earlier scrape in the
        interval (nothing can be said yet)."""
        window = self._window(interval)
        if window is None:
            return None
        old, new = window
        wanted = dict(match or {})
        result: dict[tuple[str, ...], float] = {}
        increases = _increase(new.samples.get(metric, {}), old.samples.get(metric, {}))
        for labels, increase in increases.items():
            found = dict(labels)
            if all(found.get(name, "") == value for name, value in wanted.items()):
                key = tuple(found.get(name, "") for name in by)
                result[key] = result.get(key, 0.0) + increase
        return result

    @staticmethod
    def _target(namespace: str, service: str, version: str | None, canary: bool | None) -> dict[str, str]:
        if version is not None and canary is not None:
            raise ValueError("select by version or by canary, not both")
        match = {
            "reporter": "destination",
            "destination_service_namespace": namespace,
            "destination_service_name": service,
        }
        if version is not None:
            match["destination_version"] = version
        if canary is not None:
            match["destination_canary"] = "true" if canary else "false"
        return match

    def request_success_rate(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None:
        """Share of non-5xx answers in [0, 1], or None without requests in the interval."""
        match = self._target(namespace, service, version, canary)
        by_code = self.counts(REQUESTS, interval=interval, match=match, by=("response_code",))
        total = ok = 0.0
        for (code,), increase in (by_code or {}).items():
            total += increase
            ok += 0.0 if (len(code) == 3 and code.startswith("5")) else increase
        return ok / total if total > 0 else None

    def request_latency_p99(
        self,
        *,
        namespace: str,
        service: str,
        version: str | None = None,
        canary: bool | None = None,
        interval: str = DEFAULT_INTERVAL,
    ) -> float | None:
        """99th percentile duration in ms (bucket interpolation), or None without requests."""
        match = self._target(namespace, service, version, canary)
        by_le = self.counts(BUCKETS, interval=interval, match=match, by=("le",))
        by_bound = {float(le): increase for (le,), increase in (by_le or {}).items() if le}
        value = bucket_quantile(0.99, by_bound.items())
        return None if math.isnan(value) else value
