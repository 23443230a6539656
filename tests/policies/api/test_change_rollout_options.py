"""API of a change's rollout plan: `GET/POST /api/v1/changes/{id}/rollout-options/`, and the options
and effective plan on the change's detail."""

import pytest
from django.urls import reverse

from policies.choices import ChangeState
from policies.models import ChangeRequest, Review
from policies.rollout.strategies import DEFAULT_STEPS
from policies.services.changes import change_create
from policies.services.drafts import draft_delete_policy
from policies.services.reviews import review_approve
from policies.services.rollouts import DEFAULT_ANALYSIS
from portal.choices import TokenScope
from tests.api_testing import TeamScopedObjectContract, assert_error, session_client
from tests.policies.changes.helpers import cluster_org, make_change, submitted_change  # noqa: F401 - fixture

QUERY = 'sum(rate(app_errors_total{namespace="{namespace}"}[{interval}]))'
OPTIONS = {
    "strategy": "canary",
    "steps": [10, 50, 100],
    "analysis": {
        "interval_seconds": 30,
        "failure_limit": 2,
        "judge": "mann-whitney",
        "metrics": [
            {"kind": "success_rate", "min": 0.995},
            {"kind": "custom", "name": "app-errors", "direction": "lower", "max": 3, "query": QUERY},
        ],
    },
    "gates": [1],
}
DEFAULT_PLAN = {
    "strategy": "canary",
    "steps": DEFAULT_STEPS,
    "analysis": DEFAULT_ANALYSIS,
    "gates": [],
    "phases": ["canary 5 %", "canary 10 %", "canary 25 %", "canary 50 %", "promote 100 %"],
}


def url(pk) -> str:
    return reverse("api:change-rollout-options", kwargs={"pk": pk})


def test_url():
    assert url(3) == "/api/v1/changes/3/rollout-options/"


def shop_change(org) -> ChangeRequest:
    """A change of team Shop, which Bookinfo's members must not see."""
    draft = draft_delete_policy(author=org.other, policy=org.policy_b)
    return change_create(author=org.other, environment=org.env, drafts=[draft], title="Retire payments")


class ClusterContract:
    @pytest.fixture(autouse=True)
    def _arrange(self, cluster_org):
        self.arrange(cluster_org)

    def arrange(self, org):
        self.change = make_change(author=org.author, environment=org.env)

    def url(self, org):
        return url(self.change.pk)

    def foreign_url(self, org):
        return url(shop_change(org).pk)

    def missing_url(self, org):
        return url(99999)


class TestRolloutOptionsRead(ClusterContract, TeamScopedObjectContract):
    def check_response(self, response, org):
        assert response.json() == {"options": {}, "plan": DEFAULT_PLAN}


class TestRolloutOptionsSet(ClusterContract, TeamScopedObjectContract):
    method = "post"
    scope = TokenScope.WRITE

    def payload(self, org):
        return OPTIONS

    def check_response(self, response, org):
        assert response.json() == {
            "options": OPTIONS,
            "plan": {
                "strategy": "canary",
                "steps": [10, 50, 100],
                "analysis": {**DEFAULT_ANALYSIS, **OPTIONS["analysis"]},
                "gates": [1],
                "phases": ["canary 10 %", "canary 50 %", "promote 100 %"],
            },
        }


def test_round_trip_through_the_change_detail(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client = session_client(org.author)
    detail = client.get(reverse("api:change-detail", kwargs={"pk": change.pk})).json()
    assert detail["rollout_options"] == {} and detail["rollout_plan"] == DEFAULT_PLAN

    assert client.post(url(change.pk), OPTIONS, format="json").status_code == 200
    detail = client.get(reverse("api:change-detail", kwargs={"pk": change.pk})).json()
    assert detail["rollout_options"] == OPTIONS
    assert detail["rollout_plan"]["steps"] == [10, 50, 100] and detail["rollout_plan"]["gates"] == [1]
    assert detail["rollout_plan"]["analysis"]["metrics"][1]["name"] == "app-errors"

    # {} restores every default
    assert client.post(url(change.pk), {}, format="json").json() == {"options": {}, "plan": DEFAULT_PLAN}


def test_invalid_options_are_a_400_naming_each_field_path(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client = session_client(org.author)
    response = client.post(
        url(change.pk),
        {
            "steps": [50, 25],
            "speed": "fast",
            "analysis": {
                "failure_limit": 0,
                "metrics": [
                    {"kind": "success_rate"},
                    {"kind": "custom", "name": "x", "direction": "lower", "max": 1, "query": "up{service={service}}"},
                ],
            },
            "gates": ["one"],
        },
        format="json",
    )
    details = assert_error(response, 400, code="invalid", message="the request is invalid")
    assert details == {
        "speed": ["unknown rollout option (use strategy, steps, analysis, gates)"],
        "steps[1]": ["weights must increase: 25 comes after 50", "the last step must be 100 (all traffic), not 25"],
        "analysis.failure_limit": ["must be from 1 to 100, not 0"],
        "analysis.metrics[1].query": ['{service} must be inside a quoted label value, e.g. "{service}"'],
        "gates[0]": ["a phase index (a whole number), not 'one'"],
    }
    for body in (["canary"], "canary", 3):
        details = assert_error(client.post(url(change.pk), body, format="json"), 400, code="invalid")
        assert details == {"options": ["an object with any of strategy, steps, analysis, gates"]}
    change.refresh_from_db()
    assert change.rollout_options == {}


def test_only_the_author_sets_the_plan_and_only_before_the_rollout(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    assert_error(
        session_client(org.approver).post(url(change.pk), OPTIONS, format="json"), 403, code="permission_denied"
    )
    assert session_client(org.approver).get(url(change.pk)).status_code == 200  # reading is for everyone
    ChangeRequest.objects.filter(pk=change.pk).update(state=ChangeState.ROLLING_OUT)
    details = assert_error(
        session_client(org.author).post(url(change.pk), OPTIONS, format="json"), 409, code="illegal_transition"
    )
    assert details["state"] == "rolling_out"


def test_setting_the_plan_voids_the_approvals(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    response = session_client(org.author).post(url(change.pk), {"analysis": {"failure_limit": 3}}, format="json")
    assert response.status_code == 200
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    assert (
        Review.objects.get(change=change).voided_reason == "the rollout plan was changed by alice after this approval"
    )
