"""The engine's analysis without Prometheus and without an advance: meshsim's traffic is read over
the time that really elapsed between intervals, not over two scrapes a moment apart."""

import pytest

from integrations.prometheus import ScrapeHistory
from policies.rollout import analysis as an

pytestmark = pytest.mark.django_db

CONFIG = {"provider": "meshsim", "window": "5m", "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}]}


def context(org, interval_index: int) -> an.AnalysisContext:
    return an.AnalysisContext(
        rollout_id=1,
        environment_id=org.env.pk,
        prometheus_url="",
        strategy="canary",
        phase={
            "key": "w10",
            "label": "10 %",
            "weight": 10,
            "targets": {"canary": {"version": "v1"}, "stable": {"version": "v1"}},
        },
        interval_index=interval_index,
        interval_seconds=30,
        config=CONFIG,
        workloads=[{"namespace": "bookinfo", "service": "reviews"}],
    )


def test_an_interval_measures_the_traffic_since_the_previous_one(org, meshsim, monkeypatch):
    monkeypatch.setattr(ScrapeHistory, "_shared", {})
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    history = ScrapeHistory.shared(f"{meshsim.url}/metrics")
    first = an.metrics_analyzer(context(org, 0))  # nothing to compare with yet: scrape, wait, scrape
    assert first.verdict == an.NO_DATA, first.reason  # the traffic clock did not move meanwhile
    assert len(history) == 3  # the canary's window: scrape, wait, scrape; the stable's: one scrape
    meshsim.admin("POST", "traffic/advance", json={"seconds": 120}).raise_for_status()  # the interval passes
    second = an.metrics_analyzer(context(org, 1))
    # no bootstrap wait: the first interval's scrapes open both windows, one scrape each closes them
    assert len(history) == 3 + 2
    assert second.verdict == an.PASS, second.reason
    assert second.metrics["request-success-rate"]["canary"] > 0.95
