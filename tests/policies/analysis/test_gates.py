"""Rollout gates: the PromQL they send (escaping) and their verdicts over given counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from policies.analysis import PrometheusProvider, ProviderQueryError, ProviderUnavailable, Verdict
from policies.analysis.gates import Subject, judge_gate, subjects_of
from policies.analysis.metrics import TemplateError, increase_query
from policies.rollout import analysis as an

RATINGS_AP = Subject("AuthorizationPolicy", "bookinfo", "ratings-viewer", {"app": "ratings"})
SHOP_PA = Subject("PeerAuthentication", "shop", "default")
REVIEWS = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"


def _request(
    code: str = "200", tls: str = "mutual_tls", workload: str = "reviews-v2", namespace: str = "bookinfo", **extra: str
) -> dict[str, str]:
    return {
        "reporter": "destination",
        "destination_workload_namespace": "bookinfo",
        "destination_app": "ratings",
        "response_code": code,
        "connection_security_policy": tls,
        "source_workload": workload,
        "source_workload_namespace": namespace,
        **extra,
    }


class Counts:
    """A provider answering ``counts`` from fixed series, as Prometheus would sum them."""

    def __init__(self, series: Mapping[str, list[tuple[dict[str, str], float]]]) -> None:
        self.series, self.asked = series, []

    def counts(
        self, metric: str, match: Mapping[str, str], *, by: Sequence[str] = (), window: str
    ) -> dict[tuple[str, ...], float]:
        self.asked.append((metric, dict(match), tuple(by), window))
        result: dict[tuple[str, ...], float] = {}
        for labels, value in self.series.get(metric, []):
            if all(labels.get(k, "") == v for k, v in match.items()):
                key = tuple(labels.get(name, "") for name in by)
                result[key] = result.get(key, 0.0) + value
        return result


class Down:
    def counts(self, *args: object, **kwargs: object) -> dict:
        raise ProviderUnavailable("connection refused")


# PromQL ------------------------------------------------------------------------------------------


def test_increase_query_escapes_label_values() -> None:
    promql = increase_query(
        "meshsim_authz_dry_run_denials_total",
        {"namespace": 'book"info', "policy": "a\\b}\nc"},
        window="30s",
        by=("source_workload_namespace", "source_workload"),
    )
    assert promql == (
        "sum by (source_workload_namespace,source_workload) "
        '(increase(meshsim_authz_dry_run_denials_total{namespace="book\\"info",'
        'policy="a\\\\b}\\nc"}[30s]))'
    )


def test_increase_query_without_matchers_or_grouping() -> None:
    assert increase_query("istio_requests_total", {}, window="5m") == ("sum (increase(istio_requests_total[5m]))")


@pytest.mark.parametrize(
    ("metric", "match", "by", "window"),
    [
        ("istio_requests_total} or vector(1", {}, (), "1m"),
        ("istio_requests_total", {'x="1"': "v"}, (), "1m"),
        ("istio_requests_total", {}, ("le) or (x",), "1m"),
        ("istio_requests_total", {}, (), "1m] or vector(1"),
    ],
)
def test_increase_query_refuses_what_it_cannot_escape(metric, match, by, window) -> None:
    with pytest.raises(TemplateError):
        increase_query(metric, match, window=window, by=by)


def test_prometheus_counts_refuse_a_bad_name_before_asking() -> None:
    provider = PrometheusProvider("http://127.0.0.1:9")  # nothing listens: never asked
    with pytest.raises(ProviderQueryError, match="not a label name"):
        provider.counts("istio_requests_total", {"a b": "x"}, window="1m")


# subjects ----------------------------------------------------------------------------------------


def test_subject_selects_its_workloads() -> None:
    assert RATINGS_AP.workload_labels() == {
        "reporter": "destination",
        "destination_workload_namespace": "bookinfo",
        "destination_app": "ratings",
    }
    assert SHOP_PA.workload_labels() == {"reporter": "destination", "destination_workload_namespace": "shop"}
    assert Subject("PeerAuthentication", "istio-system", "default").workload_labels() == {"reporter": "destination"}
    assert RATINGS_AP.policy_labels() == {"namespace": "bookinfo", "policy": "ratings-viewer"}


def test_subjects_fall_back_to_the_workloads() -> None:
    found = subjects_of(None, [{"namespace": "bookinfo", "service": "ratings"}])
    assert found == [Subject("", "bookinfo", "", {"app": "ratings"})]
    assert found[0].policy_labels() == {"namespace": "bookinfo"}
    stored = [{"kind": "PeerAuthentication", "namespace": "shop", "name": "default", "selector": {}}]
    assert subjects_of(stored, []) == [SHOP_PA]


# dry run -----------------------------------------------------------------------------------------


def _denials(*entries: tuple[str, str, float]) -> list[tuple[dict[str, str], float]]:
    return [
        (
            {
                "namespace": "bookinfo",
                "policy": "ratings-viewer",
                "source_workload": workload,
                "source_workload_namespace": "bookinfo",
                "source_principal": principal,
            },
            value,
        )
        for workload, principal, value in entries
    ]


def test_shadow_denials_fail_naming_metric_count_threshold_and_callers() -> None:
    provider = Counts(
        {
            "istio_requests_total": [(_request(), 120.0)],
            "meshsim_authz_dry_run_denials_total": _denials(
                ("reviews-v2", REVIEWS, 80.4), ("reviews-v3", REVIEWS, 39.6)
            ),
        }
    )
    result = judge_gate("authz_dry_run", provider=provider, subjects=[RATINGS_AP], window="1m")
    assert result.verdict == Verdict.FAIL and result.metric == "authz-dry-run-denials"
    assert result.canary == 120.0 and result.threshold == "<= 0"
    assert result.reason == (
        "meshsim_authz_dry_run_denials_total: 120 requests in the last 1m that the dry-run "
        "AuthorizationPolicy bookinfo/ratings-viewer would deny (max 0), from "
        f"bookinfo/reviews-v2 as {REVIEWS} (80), bookinfo/reviews-v3 as {REVIEWS} (40)"
    )
    assert provider.asked[0] == (
        "meshsim_authz_dry_run_denials_total",
        {"namespace": "bookinfo", "policy": "ratings-viewer"},
        ("source_workload_namespace", "source_workload", "source_principal"),
        "1m",
    )


def test_shadow_denials_within_the_configured_maximum_pass() -> None:
    provider = Counts(
        {
            "istio_requests_total": [(_request(), 120.0)],
            "meshsim_authz_dry_run_denials_total": _denials(("reviews-v2", REVIEWS, 3.0)),
        }
    )
    result = judge_gate(
        "authz_dry_run", provider=provider, subjects=[RATINGS_AP], window="1m", config={"max_shadow_denials": 5}
    )
    assert result.verdict == Verdict.PASS, result.reason


def test_no_denials_pass_only_with_traffic() -> None:
    quiet = Counts({"istio_requests_total": [(_request(), 0.0)]})
    result = judge_gate("authz_dry_run", provider=quiet, subjects=[RATINGS_AP], window="1m")
    assert result.verdict == Verdict.NO_DATA
    assert result.reason.startswith("authz-dry-run-denials: no requests to bookinfo/ratings")
    busy = Counts({"istio_requests_total": [(_request(), 50.0)]})
    result = judge_gate("authz_dry_run", provider=busy, subjects=[RATINGS_AP], window="1m")
    assert result.verdict == Verdict.PASS and result.canary == 0


def test_a_provider_outage_is_an_error_not_a_pass() -> None:
    result = judge_gate("authz_dry_run", provider=Down(), subjects=[RATINGS_AP], window="1m")
    assert result.verdict == Verdict.ERROR and "unavailable" in result.reason


def test_enforced_403s_fail() -> None:
    provider = Counts({"istio_requests_total": [(_request(), 90.0), (_request("403"), 10.0)]})
    result = judge_gate("authz_enforced", provider=provider, subjects=[RATINGS_AP], window="1m")
    assert result.verdict == Verdict.FAIL and result.canary == pytest.approx(0.1)
    assert result.reason.startswith('authz-403-rate 0.1 > 0: istio_requests_total{response_code="403"}')
    assert "from bookinfo/reviews-v2 (10)" in result.reason
    relaxed = judge_gate(
        "authz_enforced", provider=provider, subjects=[RATINGS_AP], window="1m", config={"max_forbidden_rate": 0.2}
    )
    assert relaxed.verdict == Verdict.PASS


# ramp --------------------------------------------------------------------------------------------


def test_plaintext_holds_the_gate() -> None:
    legacy = _request(tls="none", workload="unknown", namespace="unknown", destination_workload_namespace="shop")
    provider = Counts({"istio_requests_total": [(legacy, 40.0), (_request(), 500.0)]})
    result = judge_gate("no_plaintext", provider=provider, subjects=[SHOP_PA], window="2m")
    assert result.verdict == Verdict.INCONCLUSIVE and result.canary == 40.0
    assert result.reason.startswith(
        "40 plaintext requests from callers without a sidecar (source unknown) (40) in the last 2m; "
        "STRICT would break them"
    )


def test_plaintext_hold_waits_then_pauses_and_never_rolls_back() -> None:
    outcome = an.Outcome(an.INCONCLUSIVE, "40 plaintext requests ...; STRICT would break them")
    config = {"inconclusive_limit": 2}
    action, reason, state = an.decide(config, None, outcome)
    assert action == "wait"
    action, reason, state = an.decide(config, state, outcome)
    assert action == "pause" and "STRICT would break them" in reason and state["failures"] == 0


def test_no_plaintext_with_traffic_passes() -> None:
    provider = Counts({"istio_requests_total": [(_request(destination_workload_namespace="shop"), 9.0)]})
    result = judge_gate("no_plaintext", provider=provider, subjects=[SHOP_PA], window="2m")
    assert result.verdict == Verdict.PASS
    assert judge_gate("no_plaintext", provider=Counts({}), subjects=[SHOP_PA], window="2m").verdict == Verdict.NO_DATA


def test_strict_refusing_plaintext_fails() -> None:
    refused = _request("0", tls="none", workload="unknown", namespace="unknown", destination_workload_namespace="shop")
    ok = _request(destination_workload_namespace="shop")
    provider = Counts({"istio_requests_total": [(refused, 7.0), (ok, 300.0)]})
    result = judge_gate("strict", provider=provider, subjects=[SHOP_PA], window="1m")
    assert result.verdict == Verdict.FAIL and result.canary == 7.0
    assert "7 plaintext requests from callers without a sidecar (source unknown) (7) refused" in result.reason
    calm = judge_gate(
        "strict", provider=Counts({"istio_requests_total": [(ok, 300.0)]}), subjects=[SHOP_PA], window="1m"
    )
    assert calm.verdict == Verdict.PASS
