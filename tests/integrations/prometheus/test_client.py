"""The Prometheus client against a real Prometheus scraping meshsim (traffic in real time),
and the meshsim fallback provider against the same data."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import requests

from integrations.prometheus import (
    SUCCESS_RATE_QUERY,
    MeshsimMetricsProvider,
    PrometheusMetrics,
    PrometheusUnavailable,
    QueryError,
    Sample,
    ScrapeHistory,
    interval_seconds,
    latency_p99_query,
    query,
    query_range,
    ready,
    request_latency_p99,
    request_success_rate,
    success_rate_query,
)
from integrations.prometheus.fallback import Scrape, bucket_quantile
from tests.fixtures.meshsim import MeshsimProcess
from tests.fixtures.prometheus import PrometheusProcess

REVIEWS = {"namespace": "bookinfo", "service": "reviews"}
WARM_UP_S = 8.0


class Warm:
    """Prometheus with a few seconds of meshsim traffic, and a fallback provider that
    scraped meshsim when Prometheus started."""

    def __init__(self, meshsim: MeshsimProcess, prom: PrometheusProcess) -> None:
        self.meshsim, self.prom = meshsim, prom
        self.fallback = MeshsimMetricsProvider(meshsim.url, bootstrap_wait_s=0)
        self.reset_at = time.time()  # Prometheus' samples after this are of the fresh counters


@pytest.fixture(scope="module")
def warm(_meshsim_traffic_server: MeshsimProcess, prometheus_traffic: PrometheusProcess) -> Warm:
    _meshsim_traffic_server.reset()  # seeds back, counters from zero
    state = Warm(_meshsim_traffic_server, prometheus_traffic)
    prometheus_traffic.wait_for_target_up()  # Prometheus' discovery takes up to 5 s at start
    state.fallback.scrape()
    started = time.monotonic()
    promql = success_rate_query(version="v1", interval="1m", **REVIEWS)
    while time.monotonic() - started < WARM_UP_S or not query(prometheus_traffic.url, promql):
        assert time.monotonic() - started < 60, "no reviews v1 data in Prometheus after 60 s"
        time.sleep(0.5)
    return state


# without Prometheus ----------------------------------------------------------------------------


def test_query_templates() -> None:
    assert SUCCESS_RATE_QUERY.format(namespace="bookinfo", service="reviews", version="v1", interval="1m") == (
        'sum(rate(istio_requests_total{reporter="destination",'
        'destination_service_namespace="bookinfo",destination_service_name="reviews",'
        'destination_version="v1",response_code!~"5.."}[1m]))'
        ' / sum(rate(istio_requests_total{reporter="destination",'
        'destination_service_namespace="bookinfo",destination_service_name="reviews",'
        'destination_version="v1"}[1m]))'
    )
    assert latency_p99_query(canary=True, interval="30s", **REVIEWS) == (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
        'reporter="destination",destination_service_namespace="bookinfo",'
        'destination_service_name="reviews",destination_canary="true"}[30s])) by (le))'
    )
    assert 'destination_service_name="a\\"b"' in success_rate_query(namespace="x", service='a"b')
    with pytest.raises(ValueError):
        success_rate_query(version="v1", canary=True, **REVIEWS)
    with pytest.raises(ValueError):
        latency_p99_query(interval="1 minute", **REVIEWS)
    assert interval_seconds("1m30s") == 90 and interval_seconds("500ms") == 0.5


def test_bucket_quantile_interpolates_like_prometheus() -> None:
    buckets = [(10.0, 50.0), (100.0, 90.0), (250.0, 100.0), (math.inf, 100.0)]
    assert bucket_quantile(0.5, buckets) == 10.0
    assert bucket_quantile(0.99, buckets) == pytest.approx(100 + 150 * 0.9)
    assert bucket_quantile(0.99, [(10.0, 0.0), (math.inf, 0.0)]) != bucket_quantile(0.5, [])  # NaN
    assert bucket_quantile(0.99, [(10.0, 1.0), (math.inf, 100.0)]) == 10.0  # rank in +Inf


def test_unreachable_prometheus_is_unavailable() -> None:
    assert ready("http://127.0.0.1:9") is False
    with pytest.raises(PrometheusUnavailable, match="cannot reach Prometheus"):
        query("http://127.0.0.1:9", "up")


def test_stopped_prometheus_is_unavailable(
    meshsim: MeshsimProcess, prometheus: Callable[[Sequence[str]], PrometheusProcess]
) -> None:
    prom = prometheus([meshsim.url])
    assert ready(prom.url) is True
    assert query(prom.url, "vector(1)")[0].value == 1.0
    prom.stop()
    assert ready(prom.url) is False
    with pytest.raises(PrometheusUnavailable) as raised:
        query(prom.url, "vector(1)")
    assert prom.url in raised.value.message
    with pytest.raises(PrometheusUnavailable):
        PrometheusMetrics(prom.url).request_success_rate(version="v1", **REVIEWS)


# against Prometheus ----------------------------------------------------------------------------


def test_success_rate_of_reviews_v1(warm: Warm) -> None:
    samples = query(warm.prom.url, success_rate_query(version="v1", interval="1m", **REVIEWS))
    assert len(samples) == 1 and samples[0].labels == {}
    assert 0.9 < samples[0].value <= 1.0
    assert samples[0].timestamp == pytest.approx(time.time(), abs=5)
    value = request_success_rate(warm.prom.url, version="v1", interval="1m", **REVIEWS)
    assert value is not None and 0.9 < value <= 1.0


def test_latency_p99_and_canary_variant(warm: Warm) -> None:
    p99 = request_latency_p99(warm.prom.url, version="v1", interval="1m", **REVIEWS)
    assert p99 is not None and 10 < p99 <= 250  # reviews v1: median 8 ms, p99 60 ms
    stable = PrometheusMetrics(warm.prom.url).request_success_rate(canary=False, interval="1m", **REVIEWS)
    assert stable is not None and 0.9 < stable <= 1.0
    # no canary traffic: "no data" is None, never 0
    assert PrometheusMetrics(warm.prom.url).request_success_rate(canary=True, **REVIEWS) is None


def test_vector_scalar_nan_inf_and_no_data(warm: Warm) -> None:
    by_version = query(
        warm.prom.url,
        'sum by (destination_version) (rate(istio_requests_total{destination_service_name="reviews"}[1m]))',
    )
    rates = {s.labels["destination_version"]: s.value for s in by_version}
    # the seed routes reviews 90/10 to v1/v2; a rollout test before this one may have left v3 traffic in the window
    assert {"v1", "v2"} <= set(rates) and rates["v1"] > rates["v2"] > 0
    assert query(warm.prom.url, "scalar(vector(1.5))") == [Sample({}, 1.5, pytest.approx(time.time(), abs=5))]
    assert math.isnan(query(warm.prom.url, "0 / 0")[0].value)
    assert query(warm.prom.url, "vector(1) / 0")[0].value == math.inf
    assert query(warm.prom.url, "-1 / 0")[0].value == -math.inf
    assert query(warm.prom.url, 'istio_requests_total{destination_service_name="nope"}') == []
    at = datetime.now(UTC) - timedelta(hours=2)  # before any scrape
    assert query(warm.prom.url, "istio_requests_total", time=at) == []
    assert request_success_rate(warm.prom.url, namespace="bookinfo", service="nope") is None


def test_query_range(warm: Warm) -> None:
    end = time.time()
    series = query_range(
        warm.prom.url,
        'sum(istio_requests_total{destination_service_name="reviews"})',
        start=end - 4,
        end=end,
        step=timedelta(seconds=1),
    )
    assert len(series) == 1
    points = series[0].points
    assert len(points) == 5 and [t for t, _ in points] == sorted(t for t, _ in points)
    assert points[-1][1] >= points[0][1] > 0


def test_bad_promql_is_a_query_error_with_prometheus_message(warm: Warm) -> None:
    with pytest.raises(QueryError) as raised:
        query(warm.prom.url, "sum(rate(istio_requests_total[1m]")
    assert raised.value.status == 400 and raised.value.error_type == "bad_data"
    assert "parse error" in raised.value.message
    with pytest.raises(QueryError, match="not a matrix"):
        query(warm.prom.url, "istio_requests_total[1m]")
    with pytest.raises(ValueError):
        query(warm.prom.url, "up", time=datetime(2030, 1, 1))  # naive


def _prometheus_window(prom_url: str, at: datetime, window: str) -> tuple[Scrape, Scrape]:
    """The first and the last sample Prometheus holds of every reviews series in the window
    ending at ``at``, as two scrapes: the very data its ``rate`` over that window reads."""
    selector = (
        '{__name__=~"istio_requests_total|istio_request_duration_milliseconds_bucket",'
        'reporter="destination",destination_service_name="reviews"}'
    )
    response = requests.get(
        f"{prom_url}/api/v1/query",
        params={"query": f"{selector}[{window}]", "time": at.timestamp()},
        timeout=10,
    )
    response.raise_for_status()
    series = response.json()["data"]["result"]
    assert series, "Prometheus holds no reviews samples"
    first, last = Scrape(math.inf), Scrape(0.0)
    for item in series:
        labels = dict(item["metric"])
        name = labels.pop("__name__")
        key = frozenset(labels.items())
        (t0, v0), (t1, v1) = item["values"][0], item["values"][-1]
        first.samples.setdefault(name, {})[key] = float(v0)
        last.samples.setdefault(name, {})[key] = float(v1)
        first.at, last.at = min(first.at, float(t0)), max(last.at, float(t1))
    return first, last


def test_fallback_answers_like_prometheus(warm: Warm) -> None:
    """The fallback's arithmetic against Prometheus' on the same samples: both read the window
    Prometheus stored (pinned at one instant), so live traffic between two reads cannot move
    one answer and not the other."""
    at = datetime.now(UTC)
    # a window that starts after the counters' reset (the fallback compares a window's first and
    # last sample only, while Prometheus adds up across a reset inside the window)
    window = f"{int(at.timestamp() - warm.reset_at) - 1}s"
    first, last = _prometheus_window(warm.prom.url, at, window)
    history = ScrapeHistory()
    history.add(first)
    fallback = MeshsimMetricsProvider(warm.meshsim.url, bootstrap_wait_s=0, clock=lambda: last.at, history=history)

    def scrape() -> Scrape:  # the second read is the last sample Prometheus holds
        history.add(last)
        return last

    fallback.scrape = scrape  # type: ignore[method-assign]
    selection = {"version": "v1", "interval": window, **REVIEWS}
    promql_rate = success_rate_query(**selection)
    from_prometheus = query(warm.prom.url, promql_rate, time=at)[0].value
    from_meshsim = fallback.request_success_rate(**selection)
    assert from_meshsim is not None
    assert 0.9 < from_meshsim <= 1.0
    # Prometheus extrapolates each series to the window's edges; series of one scrape share
    # their sample times, so the ratios agree but for series born inside the window
    assert from_meshsim == pytest.approx(from_prometheus, abs=0.005)

    p99_prometheus = query(warm.prom.url, latency_p99_query(**selection), time=at)[0].value
    p99_meshsim = fallback.request_latency_p99(**selection)
    assert p99_meshsim is not None
    assert p99_meshsim == pytest.approx(p99_prometheus, rel=0.02), (p99_meshsim, p99_prometheus)
    assert fallback.request_success_rate(canary=True, interval=window, **REVIEWS) is None


def test_fallback_windows_follow_its_scrapes(meshsim: MeshsimProcess) -> None:
    """Simulated time only (no --traffic): the provider's clock follows meshsim's advances."""
    now = [0.0]
    waits: list[float] = []

    def advance(seconds: float) -> None:
        meshsim.admin("POST", "traffic/advance", json={"seconds": seconds})
        now[0] += seconds

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        advance(30)

    provider = MeshsimMetricsProvider(meshsim.url, bootstrap_wait_s=2.0, clock=lambda: now[0], sleep=sleep)
    # no earlier scrape: scrape, "wait", scrape again
    rate = provider.request_success_rate(version="v1", interval="1m", **REVIEWS)
    assert waits == [2.0] and rate is not None and 0.9 < rate <= 1.0
    meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "version": "v1", "error_rate": 0.5},
    )
    advance(30)
    provider.scrape()  # t=60: the fault is on since t=30
    advance(30)
    # t=90, window 45 s: the oldest scrape inside it is t=60, so only faulty traffic counts
    faulty = provider.request_success_rate(version="v1", interval="45s", **REVIEWS)
    assert waits == [2.0] and faulty is not None and 0.35 < faulty < 0.65
    # window 2 m: from t=0, a mix
    mixed = provider.request_success_rate(version="v1", interval="2m", **REVIEWS)
    assert mixed is not None and faulty < mixed < rate
    p99 = provider.request_latency_p99(version="v1", interval="2m", **REVIEWS)
    assert p99 is not None and 25 < p99 <= 100
    with pytest.raises(PrometheusUnavailable):
        MeshsimMetricsProvider("http://127.0.0.1:9").scrape()


def test_fallback_providers_of_one_process_share_their_scrapes(meshsim: MeshsimProcess, monkeypatch) -> None:
    """Each analysis interval builds its own provider: the next one's window reaches back to the
    previous one's scrape instead of scraping twice a moment apart."""
    monkeypatch.setattr(ScrapeHistory, "_shared", {})
    waits: list[float] = []
    first = MeshsimMetricsProvider(meshsim.url, sleep=waits.append)
    assert first.request_success_rate(version="v1", interval="1m", **REVIEWS) is None  # no traffic yet
    assert waits == [2.0] and first.shares_history
    meshsim.admin("POST", "traffic/advance", json={"seconds": 30}).raise_for_status()
    second = MeshsimMetricsProvider(meshsim.url, sleep=waits.append)
    by_code = second.counts(
        "istio_requests_total",
        interval="1m",
        match={"reporter": "destination", "destination_service_name": "reviews", "destination_version": "v1"},
        by=("response_code",),
    )
    assert waits == [2.0], "the second provider waited instead of using the first one's scrape"
    assert by_code and by_code[("200",)] > 0
    assert second.history is first.history and len(second.history) == 3
    # another meshsim, or another clock, keeps scrapes of its own
    assert MeshsimMetricsProvider("http://127.0.0.1:9").history is not first.history
    assert not MeshsimMetricsProvider(meshsim.url, clock=lambda: 0.0).shares_history


def test_scrape_history_is_bounded_by_the_longest_window() -> None:
    history = ScrapeHistory(max_scrapes=50)
    for at in range(0, 1000, 10):
        history.add(Scrape(float(at)))
    assert len(history) == 31  # at least HISTORY_MIN_KEEP_S (300 s) are kept, the rest went
    current = Scrape(1000.0)
    history.add(current)
    assert history.window_start(current, 60).at == 940.0  # the oldest scrape inside the window
    assert history.window_start(current, 5) is not None and history.window_start(current, 5).at == 990.0
    assert history.window_start(current, 4) is None  # nothing inside, nothing within two windows
    history.window_start(current, 400)
    for at in range(1010, 1500, 10):
        history.add(Scrape(float(at)))
    assert len(history) == 50  # max_scrapes
    history.add(Scrape(1485.0))  # a concurrent scrape, read a little earlier, added later
    latest = Scrape(1500.0)
    history.add(latest)
    assert history.window_start(latest, 16).at == 1485.0  # kept in order
