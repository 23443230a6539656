"""The "Rollout plan" panel of the change page: the effective plan for everyone, the author's form
(plain POST and htmx), its errors next to the fields, and approvals voided by a new plan."""

import json

from django.urls import reverse

from policies.choices import ChangeState
from policies.models import ChangeRequest, Review
from policies.services.reviews import review_approve
from policies.services.rollout_options import change_set_rollout_options
from tests.policies.changes.helpers import make_change, submitted_change

HTMX = {"HTTP_HX_REQUEST": "true"}
QUERY = 'sum(rate(app_errors_total{namespace="{namespace}"}[{interval}]))'


def detail(change) -> str:
    return reverse("changes:detail", args=[change.pk])


def url(change) -> str:
    return reverse("changes:rollout-options", args=[change.pk])


def form_data(**values) -> dict:
    data = {
        "strategy": "",
        "steps": "",
        "interval_seconds": "",
        "intervals_per_step": "",
        "failure_limit": "",
        "no_data_limit": "",
        "inconclusive_limit": "",
        "judge": "",
        "window": "",
        "metrics": "",
        "gates": "",
    }
    data.update(values)
    return data


def test_url():
    assert reverse("changes:rollout-options", args=[4]) == "/changes/4/rollout-options/"


def test_everyone_sees_the_default_plan_only_the_author_gets_the_form(client, cluster_org):
    org = cluster_org
    change = submitted_change(org)
    client.force_login(org.approver)
    page = client.get(detail(change)).content.decode()
    assert 'id="rollout-plan"' in page and "Canary (traffic shifting)" in page and "(default for these kinds)" in page
    assert "5 → 10 → 25 → 50 → 100 %" in page
    assert "every 60 s over 60s, sequential (against stable, evidence over the attempt) judge" in page
    assert "request-success-rate</span> &gt;= 0.99" in page and "request-duration-p99</span> &lt;= 500 ms" in page
    assert "Edit rollout plan…" not in page
    client.force_login(org.author)
    page = client.get(detail(change)).content.decode()
    assert "Edit rollout plan…" in page and 'name="interval_seconds"' in page


def test_the_author_saves_a_plan_and_the_page_shows_it(client, cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client.force_login(org.author)
    metrics = [
        {"kind": "success_rate", "min": 0.995},
        {"kind": "custom", "name": "app-errors", "direction": "lower", "max": 3, "query": QUERY},
    ]
    response = client.post(
        url(change),
        form_data(
            steps="10, 50, 100",
            interval_seconds="30",
            failure_limit="2",
            judge="mann-whitney",
            metrics=json.dumps(metrics),
            gates="1",
        ),
    )
    assert response.status_code == 302 and response["Location"] == f"{detail(change)}#rollout-plan"
    change.refresh_from_db()
    assert change.rollout_options == {
        "steps": [10, 50, 100],
        "gates": [1],
        "analysis": {"interval_seconds": 30, "failure_limit": 2, "judge": "mann-whitney", "metrics": metrics},
    }
    page = client.get(detail(change)).content.decode()
    assert "set by the author" in page and "10 → 50 → 100 %" in page
    assert "every 30 s over 30s, Mann-Whitney against stable judge" in page
    assert "after 2 failed intervals" in page
    assert "app-errors</span> &lt;= 3" in page
    assert 'canary 50 % <span class="badge mg-state mg-state-warn mg-plan-gate">' in page
    # the form shows what is stored, and saving it unchanged keeps it
    assert 'value="10, 50, 100"' in page
    assert "changed the rollout plan" in page  # the timeline


def test_errors_are_shown_next_to_their_fields_with_htmx(client, cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client.force_login(org.author)
    bad_metrics = json.dumps(
        [
            {"kind": "success_rate"},
            {"kind": "custom", "name": "e", "direction": "lower", "max": 1, "query": "up{a={service}}"},
        ]
    )
    response = client.post(
        url(change), form_data(steps="10, 5", interval_seconds="1", metrics=bad_metrics, gates="9"), **HTMX
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert page.lstrip().startswith('<section class="card mg-card" id="rollout-plan"')
    assert 'id="rollout-plan-form" class="collapse show' in page
    assert "steps[1]: weights must increase: 5 comes after 10" in page
    assert "must be from 5 to 86400, not 1" in page
    assert "metrics[1].query: {service} must be inside a quoted label value" in page
    assert "gates[0]: phase 9 does not exist" in page
    assert 'value="10, 5"' in page  # what was typed is kept
    change.refresh_from_db()
    assert change.rollout_options == {}
    # text the form cannot read is refused before the service
    response = client.post(url(change), form_data(steps="ten", metrics="[{"), **HTMX)
    page = response.content.decode()
    assert response.status_code == 400
    assert "whole numbers separated by commas" in page and "not valid JSON" in page


def test_saving_with_htmx_redirects_and_voids_the_approvals(client, cluster_org):
    org = cluster_org
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    client.force_login(org.author)
    response = client.post(url(change), form_data(failure_limit="3"), **HTMX)
    assert response.status_code == 204 and response["HX-Refresh"] == "true"
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW and change.rollout_options == {"analysis": {"failure_limit": 3}}
    assert Review.objects.get(change=change).voided_at is not None
    page = client.get(detail(change)).content.decode()
    assert "The approvals were voided; it goes back to review." in page


def test_the_form_keeps_settings_it_does_not_show(client, cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    change_set_rollout_options(
        actor=org.author, change=change, options={"analysis": {"provider": "meshsim", "failure_limit": 2}}
    )
    client.force_login(org.author)
    client.post(url(change), form_data(failure_limit="4"))
    change.refresh_from_db()
    assert change.rollout_options == {"analysis": {"provider": "meshsim", "failure_limit": 4}}


def test_others_may_not_post_and_a_started_rollout_fixes_the_plan(client, cluster_org):
    org = cluster_org
    change = submitted_change(org)
    client.force_login(org.approver)
    assert client.post(url(change), form_data(failure_limit="3")).status_code == 403
    client.force_login(org.other)  # another team: the change does not exist for them
    assert client.post(url(change), form_data(failure_limit="3")).status_code == 404
    ChangeRequest.objects.filter(pk=change.pk).update(state=ChangeState.ROLLING_OUT)
    client.force_login(org.author)
    page = client.get(detail(change)).content.decode()
    assert "Edit rollout plan…" not in page and "Fixed once the rollout starts" in page
    response = client.post(url(change), form_data(failure_limit="3"), follow=True)
    assert "cannot change the rollout plan of a change that is in state rolling_out" in response.content.decode()
    change.refresh_from_db()
    assert change.rollout_options == {}


def test_without_htmx_errors_come_back_on_the_whole_page(client, cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    client.force_login(org.author)
    response = client.post(url(change), form_data(strategy="ramp", window="forever"))
    assert response.status_code == 400
    page = response.content.decode()
    assert '<h1 class="mg-title mb-0">#' in page and 'id="rollout-plan-form" class="collapse show' in page
    assert "ramp moves a PeerAuthentication to STRICT; this change has none" in page
    assert "a PromQL duration such as 2m or 1m30s, not &#x27;forever&#x27;" in page
