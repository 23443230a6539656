"""Every analysis query is scoped to its environment's cluster: staging's analysis never reads prod.

The Prometheus HTTP API is served by a small local server (the network edge) holding one healthy
cluster and one failing cluster under Istio's ``destination_cluster`` label; the demo fallback
(meshsim's own /metrics) is checked against a real meshsim."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from policies.analysis import MeshsimProvider, Target, success_rate
from policies.models import Environment
from policies.rollout import analysis as an
from tests.fixtures.meshsim import MeshsimProcess

SERIES = {  # (cluster, version) -> {response_code: requests in the window}
    ("staging", "v1"): {"200": 5000.0, "503": 5.0},
    ("staging", "v2"): {"200": 5000.0, "503": 5.0},
    ("prod", "v1"): {"200": 9000.0, "503": 1.0},
    ("prod", "v2"): {"503": 9000.0},  # prod's canary answers nothing but 503
}
QUERIES: list[str] = []


class _Prometheus(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        promql = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())["query"][0]
        QUERIES.append(promql)
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', promql))
        out: dict[str, float] = {}
        for (cluster, version), codes in SERIES.items():
            labels = {"destination_cluster": cluster, "destination_version": version}
            if any(wanted.get(k, v) != v for k, v in labels.items()):
                continue
            if "istio_requests_total" in promql:
                for code, n in codes.items():
                    out[code] = out.get(code, 0.0) + n
            else:  # every request in the 50 ms bucket
                total = sum(codes.values())
                for le in ("25", "50", "+Inf"):
                    out[le] = out.get(le, 0.0) + (0.0 if le == "25" else total)
        key = "response_code" if "istio_requests_total" in promql else "le"
        body = json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"metric": {key: k}, "value": [0, str(v)]} for k, v in out.items()],
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def prometheus_edge() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    QUERIES.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _context(url: str, scope: dict[str, str]) -> an.AnalysisContext:
    phase = {
        "key": "w50",
        "label": "canary 50 %",
        "weight": 50,
        "canary": True,
        "check": "",
        "targets": {"canary": {"version": "v2"}, "stable": {"version": "v1"}},
    }
    return an.AnalysisContext(
        rollout_id=1,
        environment_id=1,
        prometheus_url=url,
        strategy="canary",
        phase=phase,
        interval_index=1,
        interval_seconds=60.0,
        config={},
        cluster_labels=scope,
        workloads=[{"namespace": "bookinfo", "service": "reviews"}],
        phases_left=1,
    )


def test_a_staging_analysis_ignores_prod_traffic(prometheus_edge: str) -> None:
    outcome = an.metrics_analyzer(_context(prometheus_edge, {"destination_cluster": "staging"}))
    assert outcome.verdict != an.FAIL, outcome.reason
    assert all('destination_cluster="staging"' in q for q in QUERIES)
    assert outcome.metrics["request-success-rate"]["canary"] == pytest.approx(5000 / 5005)
    # the same analysis unscoped reads prod's failing canary too, and fails
    unscoped = an.metrics_analyzer(_context(prometheus_edge, {}))
    assert unscoped.verdict == an.FAIL and unscoped.metric == "request-success-rate"


def test_the_environment_names_its_cluster_label(db) -> None:
    env = Environment(name="staging")
    assert env.metrics_scope() == {"destination_cluster": "staging"}
    env.metrics_cluster_label, env.metrics_cluster = "cluster", "eu-west-1"
    assert env.metrics_scope() == {"cluster": "eu-west-1"}
    env.metrics_cluster_label = ""
    assert env.metrics_scope() == {}


def test_the_meshsim_fallback_honours_the_scope(meshsim: MeshsimProcess) -> None:
    """meshsim labels its series with its own cluster name (``destination_cluster``)."""
    now = [0.0]
    target = Target("shop", "catalog", version="v1")
    providers = {scope: MeshsimProvider(meshsim.url, bootstrap_wait_s=0, clock=lambda: now[0],
                                        scope={"destination_cluster": scope})
                 for scope in (meshsim.name, "prod")}  # fmt: skip
    for provider in providers.values():
        provider.fallback.scrape()
    assert meshsim.admin("POST", "traffic/advance", json={"seconds": 60}).ok
    now[0] = 60.0
    assert providers[meshsim.name].sample(success_rate(), target, "2m") is not None
    assert providers["prod"].sample(success_rate(), target, "2m") is None


def test_a_new_attempt_measures_from_its_own_phase_start(prometheus_edge: str) -> None:
    """The window never reaches back before the phase was applied (a retry does not inherit the
    previous attempt's samples), whatever the configured window; the judge's evidence starts empty."""
    context = _context(prometheus_edge, {"destination_cluster": "staging"})
    first = an.AnalysisContext(
        **{**context.__dict__, "interval_index": 0, "config": {"window": "10m", "warmup_intervals": 0}}
    )
    outcome = an.metrics_analyzer(first)
    assert QUERIES and all("[60s]" in q for q in QUERIES), QUERIES
    strata = outcome.evidence["bookinfo/reviews|request-success-rate"]["strata"]
    assert len(strata) == 1 and strata[0]["phase"] == "w50"
    QUERIES.clear()
    later = an.AnalysisContext(**{**context.__dict__, "interval_index": 20, "config": {"window": "10m"}})
    an.metrics_analyzer(later)
    assert all("[10m]" in q for q in QUERIES)  # the configured window, once the phase is older


def test_custom_queries_and_the_dry_run_gate_are_scoped_too(prometheus_edge: str) -> None:
    """A custom PromQL template and the dry-run denial counter select the environment's cluster."""
    from policies.analysis import PrometheusProvider
    from policies.analysis.metrics import Direction, custom

    provider = PrometheusProvider(prometheus_edge, scope={"destination_cluster": "staging"})
    metric = custom(
        "errors",
        'sum(rate(istio_requests_total{destination_service_name="{service}",response_code=~"5.."}[{interval}]))'
        ' / sum(rate(istio_requests_total{destination_service_name="{service}"}[{interval}]))',
        direction=Direction.LOWER_IS_BETTER,
        max=0.01,
    )
    try:
        provider.sample(metric, Target("bookinfo", "reviews", version="v2"), "1m")
    except Exception:  # noqa: BLE001 - the edge answers ranges as vectors; the query sent is what matters
        pass
    assert QUERIES[0] == (
        'sum(rate(istio_requests_total{destination_cluster="staging",destination_service_name="reviews",'
        'response_code=~"5.."}[1m])) / sum(rate(istio_requests_total{destination_cluster="staging",'
        'destination_service_name="reviews"}[1m]))'
    )
    QUERIES.clear()
    provider.counts("meshsim_authz_dry_run_denials_total", {"namespace": "bookinfo"}, by=("policy",), window="1m")
    assert QUERIES == [
        'sum by (policy) (increase(meshsim_authz_dry_run_denials_total{namespace="bookinfo",'
        'destination_cluster="staging"}[1m]))'
    ]


@pytest.mark.parametrize(
    ("query", "scoped"),
    [
        ("up", 'up{c="s"}'),
        ('rate(errors_total{app="a"}[5m])', 'rate(errors_total{c="s",app="a"}[5m])'),
        (  # strings holding braces, ranges, grouping lists and aggregations are not selectors
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="}{"}[5m:1m])))',
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{c="s",a="}{"}[5m:1m])))',
        ),
        ("a / on (app) group_left (team) b offset 5m", 'a{c="s"} / on (app) group_left (team) b{c="s"} offset 5m'),
        ('{__name__=~"x.*"} > bool 1e-3', '{c="s",__name__=~"x.*"} > bool 1e-3'),
        ('x{c="prod"} - y{}', 'x{c="prod"} - y{c="s"}'),  # a selector that chose its cluster keeps it
        ("count(x) by (a) # up\n", 'count(x{c="s"}) by (a) # up\n'),
    ],
)
def test_scope_query_scopes_every_selector_and_nothing_else(query: str, scoped: str) -> None:
    from policies.analysis.metrics import scope_query

    assert scope_query(query, {"c": "s"}) == scoped


def test_scope_query_refuses_what_it_cannot_parse() -> None:
    from policies.analysis.metrics import TemplateError, scope_query

    for bad in ('rate(x{a="b"[5m])', 'x{a="b}', "x[5m"):
        with pytest.raises(TemplateError):
            scope_query(bad, {"c": "s"})
    with pytest.raises(TemplateError, match="not a label name"):
        scope_query("x", {"a b": "s"})
