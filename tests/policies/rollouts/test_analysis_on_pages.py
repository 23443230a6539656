"""What the real analysis records, as the rollout page's chart data, its steps and the API show it:
a canary of reviews to v3 with a 503 fault, analysed over meshsim's own metrics, rolls back."""

import pytest
from django.urls import reverse

from policies.choices import DraftOperation, RolloutEventKind, RolloutState
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import REVIEWS_TO_V3, drive, scheduled_change

REAL = {
    "interval_seconds": 1,
    "provider": "meshsim",
    "meshsim_advance_seconds": 60,
    "window": "5m",
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}, {"kind": "latency_p99", "max": 1000}],
}


@pytest.fixture
def rolled_back(ro):
    ro.meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "subset": "v3", "error_rate": 0.5, "status": 503},
    ).raise_for_status()
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    rollout = drive(rollout_start(change=change, steps=[10, 50, 100], analysis=REAL))
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.pause_reason
    return rollout


def test_chart_data_and_api_carry_numeric_thresholds(client, ro, rolled_back):
    recorded = rolled_back.events.filter(kind=RolloutEventKind.ANALYSIS).first().data["metrics"]
    assert recorded["request-success-rate"]["threshold"] == ">= 0.95"  # the text a person reads stays
    client.force_login(ro.author)
    data = client.get(reverse("rollouts:data", args=[rolled_back.pk])).json()
    success = data["analysis_runs"][0]["metrics"]["request-success-rate"]
    assert success["threshold"] == 0.95 and success["threshold_min"] == 0.95 and success["threshold_max"] is None
    assert success["threshold_text"] == ">= 0.95" and success["canary"] < 0.95
    p99 = data["analysis_runs"][0]["metrics"]["request-duration-p99"]
    assert p99["threshold"] == 1000 and p99["threshold_max"] == 1000 and p99["threshold_min"] is None
    body = client.get(f"/api/v1/rollouts/{rolled_back.pk}/").json()
    metrics = body["analysis_runs"][0]["metrics"]
    assert metrics["request-success-rate"]["threshold"] == 0.95
    assert metrics["request-success-rate"]["threshold_min"] == 0.95
    assert metrics["request-duration-p99"]["threshold_max"] == 1000.0
    page = client.get(reverse("rollouts:detail", args=[rolled_back.pk])).content.decode()
    assert "&gt;= 0.95" in page  # the analysis table shows the text


def test_the_failed_step_is_shown_failed_and_later_ones_not_reached(client, ro, rolled_back):
    client.force_login(ro.author)
    body = client.get(f"/api/v1/rollouts/{rolled_back.pk}/").json()
    assert [(p["status"], p["verdict"]) for p in body["phases"]] == [
        ("failed", "fail"),
        ("not_reached", ""),
        ("not_reached", ""),
    ]
    page = client.get(reverse("rollouts:detail", args=[rolled_back.pk])).content.decode()
    steps = page[page.index("mg-rollout-steps") : page.index("mg-rollout-timeline")]
    assert 'data-status="failed"' in steps and 'data-status="not_reached"' in steps
    assert "pending" not in steps and "not reached" in steps
