"""The rollout pages: list, live page (reason first, steps, controls), polled partial, chart data,
and the control forms. Rollouts are built straight from the models: no worker, no cluster."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from policies.choices import ChangeState, DraftOperation, RolloutEventKind, RolloutState
from policies.models import ChangeItem, ChangeRequest, Rollout, RolloutEvent

PHASES = [
    {"key": "w10", "label": "10 %", "weight": 10, "gate": False, "writes": []},
    {"key": "w50", "label": "50 %", "weight": 50, "gate": True, "writes": []},
    {"key": "w100", "label": "100 %", "weight": 100, "gate": False, "writes": []},
]


def make_rollout(
    org, *, namespace: str = "bookinfo", state: str = RolloutState.RUNNING, title: str = "canary reviews", **fields
) -> Rollout:
    """A canary rollout of a one-item change touching `namespace`, at its first step, with an apply
    and a failed analysis interval in its timeline."""
    change = ChangeRequest.objects.create(
        environment=org.env, title=title, author=org.author, state=ChangeState.ROLLING_OUT
    )
    ChangeItem.objects.create(
        change=change,
        position=0,
        kind="VirtualService",
        namespace=namespace,
        name="reviews",
        operation=DraftOperation.UPDATE,
        content={},
        content_hash="",
    )
    now = timezone.now()
    rollout = Rollout.objects.create(
        change=change,
        environment=org.env,
        strategy="canary",
        steps=[10, 50, 100],
        phases=PHASES,
        state=state,
        current_weight=10,
        started_at=now,
        analysis={"interval_seconds": 60, "failure_limit": 1},
        **fields,
    )
    RolloutEvent.objects.create(rollout=rollout, kind=RolloutEventKind.STARTED, message="started", at=now)
    RolloutEvent.objects.create(
        rollout=rollout,
        kind=RolloutEventKind.APPLY,
        message="10 %: 1 write(s)",
        data={"written": ["VirtualService/bookinfo/reviews"], "weight": 10},
        step_key="apply:0:w10",
        at=now + dt.timedelta(seconds=1),
    )
    RolloutEvent.objects.create(
        rollout=rollout,
        kind=RolloutEventKind.ANALYSIS,
        message="10 %, interval 1: fail",
        data={
            "verdict": "fail",
            "reason": "success rate 0.80 below 0.99",
            "metric": "request-success-rate",
            "observed": 0.8,
            "threshold": 0.99,
            "action": "rollback",
            "decision": "failure limit reached",
            "metrics": {
                "request-success-rate": {"verdict": "fail", "canary": 0.8, "stable": 0.995, "threshold": "0.99"},
                "latency-p99": {"verdict": "pass", "canary": 120.0, "stable": 110.0, "threshold": 500},
            },
        },
        step_key="analyze:0:0",
        at=now + dt.timedelta(seconds=61),
    )
    return rollout


ROLLED_BACK_REASON = {
    "summary": "request-success-rate failed at 10 %: success rate 0.80 below 0.99",
    "metric": "request-success-rate",
    "observed": 0.8,
    "threshold": 0.99,
    "interval": 1,
    "phase": "w10",
    "weight": 10,
    "failures": 1,
    "failure_limit": 1,
    "metrics": {"request-success-rate": {"canary": 0.8, "stable": 0.995, "threshold": 0.99}},
    "final_state": "rolled_back",
    "left_out_of_band": [],
}


@pytest.fixture
def rollout(org):
    return make_rollout(org)


def test_pages_require_login(client, rollout):
    for url in (
        reverse("rollouts:list"),
        reverse("rollouts:detail", args=[rollout.pk]),
        reverse("rollouts:status", args=[rollout.pk]),
        reverse("rollouts:data", args=[rollout.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_another_teams_rollout_is_not_found(client, org, rollout):
    client.force_login(org.other)
    for name in ("detail", "status", "data"):
        assert client.get(reverse(f"rollouts:{name}", args=[rollout.pk])).status_code == 404
    assert client.post(reverse("rollouts:control", args=[rollout.pk, "pause"])).status_code == 404
    assert rollout.change.title not in client.get(reverse("rollouts:list")).content.decode()


def test_list_shows_active_first(client, org):
    make_rollout(org, state=RolloutState.COMPLETED, title="finished one")
    make_rollout(org, state=RolloutState.RUNNING, title="running one")
    client.force_login(org.author)
    body = client.get(reverse("rollouts:list")).content.decode()
    assert body.index("running one") < body.index("finished one")
    assert 'data-state="running"' in body and "10 %" in body


def test_rolled_back_reason_comes_first(client, org):
    rolled = make_rollout(
        org, state=RolloutState.ROLLED_BACK, rollback_reason=ROLLED_BACK_REASON, finished_at=timezone.now()
    )
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[rolled.pk])).content.decode()
    reason = body.index("mg-rollout-reason")
    assert reason < body.index("mg-rollout-steps") and reason < body.index("mg-title")
    assert "request-success-rate" in body[reason : body.index("mg-title")]
    assert "vs stable 0.995" in body and "0.99" in body
    # finished: no polling any more
    assert 'hx-trigger="every 2s"' not in body and 'data-active="false"' in body


def test_paused_reason_shown(client, org):
    paused = make_rollout(
        org, state=RolloutState.PAUSED, pause_reason="VirtualService/bookinfo/reviews was changed outside Meshgate"
    )
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[paused.pk])).content.decode()
    assert body.index("changed outside Meshgate") < body.index("mg-rollout-steps")


def test_live_page_polls_while_active(client, org, rollout):
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in body and reverse("rollouts:status", args=[rollout.pk]) in body
    assert "build/rollout.js" in body and reverse("rollouts:data", args=[rollout.pk]) in body
    assert "step 1/3" in body and "gate" in body
    partial = client.get(reverse("rollouts:status", args=[rollout.pk])).content.decode()
    assert 'id="mg-rollout-status"' in partial and "<html" not in partial
    assert 'id="mg-analysis-rows" hx-swap-oob="true"' in partial and "latency-p99" in partial


def test_buttons_only_for_allowed_users(client, org, rollout):
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert "mg-rollout-controls" not in body
    client.force_login(org.approver)
    body = client.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert reverse("rollouts:control", args=[rollout.pk, "pause"]) in body
    assert reverse("rollouts:control", args=[rollout.pk, "abort"]) in body
    assert reverse("rollouts:control", args=[rollout.pk, "resume"]) not in body
    assert "csrfmiddlewaretoken" in body


def test_pause_by_a_non_allowed_user_is_refused(client, org, rollout):
    client.force_login(org.author)
    response = client.post(reverse("rollouts:control", args=[rollout.pk, "pause"]))
    assert response.status_code == 403
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING


def test_pause_and_resume_by_an_approver(client, org, rollout):
    client.force_login(org.approver)
    response = client.post(reverse("rollouts:control", args=[rollout.pk, "pause"]), {"reason": "look first"})
    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PAUSED and "look first" in rollout.pause_reason
    client.post(reverse("rollouts:control", args=[rollout.pk, "resume"]))
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING


def test_illegal_control_is_a_4xx_with_a_message(client, org, rollout):
    client.force_login(org.approver)
    response = client.post(reverse("rollouts:control", args=[rollout.pk, "resume"]))
    assert response.status_code == 409
    assert "cannot resume a rollout that is running" in response.content.decode()
    assert client.get(reverse("rollouts:control", args=[rollout.pk, "pause"])).status_code == 405
    assert client.post(reverse("rollouts:control", args=[rollout.pk, "explode"])).status_code == 404


def test_data_json_shape(client, org, rollout):
    client.force_login(org.author)
    data = client.get(reverse("rollouts:data", args=[rollout.pk])).json()
    assert {"id", "state", "active", "current_weight", "step", "steps", "weights", "analysis_runs"} <= set(data)
    assert data["active"] is True and data["step"] == 1 and data["steps"] == 3
    assert [p["weight"] for p in data["weights"]] == [0, 10]
    run = data["analysis_runs"][0]
    assert run["verdict"] == "fail" and run["interval"] == 1 and run["phase"] == "0"
    assert run["metrics"]["request-success-rate"] == {
        "verdict": "fail",
        "canary": 0.8,
        "stable": 0.995,
        "threshold": 0.99,
        "threshold_min": None,
        "threshold_max": None,
        "threshold_text": "0.99",
        "reason": "",
        "explain": {},
        "explanation": "",
    }


def test_thresholds_recorded_as_text_are_read_as_bounds(client, org, rollout):
    """Intervals recorded before the analysis stored its bounds as numbers still draw their lines."""
    event = rollout.events.get(kind=RolloutEventKind.ANALYSIS)
    event.data["metrics"] = {
        "a": {"canary": 0.9, "threshold": ">= 0.95"},
        "b": {"canary": 80, "threshold": "<= 500"},
        "c": {"canary": 0.5, "threshold": "[0.1, 0.9]"},
    }
    RolloutEvent.objects.filter(pk=event.pk).update(data=event.data)
    client.force_login(org.author)
    metrics = client.get(reverse("rollouts:data", args=[rollout.pk])).json()["analysis_runs"][0]["metrics"]
    assert {name: (m["threshold"], m["threshold_min"], m["threshold_max"]) for name, m in metrics.items()} == {
        "a": (0.95, 0.95, None),
        "b": (500, None, 500),
        "c": (None, 0.1, 0.9),
    }


def test_steps_of_an_aborted_rollout(client, org):
    aborted = make_rollout(org, state=RolloutState.ABORTED, finished_at=timezone.now())
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[aborted.pk])).content.decode()
    steps = body[body.index("mg-rollout-steps") : body.index("mg-rollout-timeline")]
    assert steps.count('data-status="aborted"') == 1 and steps.count('data-status="not_reached"') == 2


def test_query_counts_are_bounded(client, org):
    for index in range(3):
        make_rollout(org, title=f"rollout {index}")
    client.force_login(org.approver)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("rollouts:list"))
    for index in range(5):
        make_rollout(org, title=f"more {index}")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("rollouts:list"))
    assert len(many) == len(few) <= 10
    target = Rollout.objects.order_by("-pk").first()
    with CaptureQueriesContext(connection) as page:
        assert client.get(reverse("rollouts:detail", args=[target.pk])).status_code == 200
    assert len(page) <= 15


def test_gate_buttons_for_a_waiting_rollout(client, org):
    gated = make_rollout(org, state=RolloutState.WAITING_GATE)
    client.force_login(org.approver)
    body = client.get(reverse("rollouts:detail", args=[gated.pk])).content.decode()
    assert reverse("rollouts:control", args=[gated.pk, "confirm-gate"]) in body
    assert reverse("rollouts:control", args=[gated.pk, "promote"]) in body
    response = client.post(reverse("rollouts:control", args=[gated.pk, "confirm-gate"]))
    assert response.status_code == 302
    gated.refresh_from_db()
    assert gated.state == RolloutState.RUNNING


def test_a_verdict_explains_itself_on_the_page_and_in_the_api(client, org):
    """Method, samples on each side, the effect with its interval and why: under the analysis row and
    in the rollout's API detail."""
    rollout = make_rollout(org)
    explain = {
        "method": "mSPRT on Mantel-Haenszel rate ratios (always-valid p-values)",
        "why": "not enough traffic",
        "minutes_left": 4,
        "n_canary": 40.0,
        "n_stable": 760.0,
        "tests": [
            {"test": "errors", "against": "stable", "ratio": 1.4, "ratio_low": 0.3, "ratio_high": 6.1, "p_value": 1.0}
        ],
    }
    RolloutEvent.objects.create(
        rollout=rollout,
        kind=RolloutEventKind.ANALYSIS,
        message="10 %, interval 2: inconclusive",
        data={
            "verdict": "inconclusive",
            "reason": "not enough traffic yet",
            "action": "wait",
            "decision": "",
            "metrics": {
                "request-success-rate": {
                    "verdict": "inconclusive",
                    "canary": 1.0,
                    "stable": 0.999,
                    "threshold": ">= 0.99",
                    "explain": explain,
                }
            },
        },
        step_key="analyze:0:1",
        at=timezone.now() + dt.timedelta(seconds=121),
    )
    client.force_login(org.author)
    body = client.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert "not enough traffic yet, about 4 more minutes at this rate" in body
    assert "samples canary 40 / stable 760" in body and "errors vs stable: ×1.40 [0.30, 6.10]" in body
    data = client.get(reverse("rollouts:data", args=[rollout.pk])).json()
    metric = data["analysis_runs"][-1]["metrics"]["request-success-rate"]
    assert metric["explain"]["n_canary"] == 40.0 and metric["explain"]["tests"][0]["ratio_high"] == 6.1
