"""Hostile inputs through the API: each answered 4xx with what was wrong, never a 500."""

import pytest
from django.test import Client

from policies.models import Draft
from tests.api_testing import bearer_client, session_client, token_for
from tests.factories import UserFactory
from tests.policies.changes.helpers import make_change
from tests.policies.drafts.helpers import (
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
)

VALIDATE = "/api/v1/validate"
DRAFTS = "/api/v1/drafts/"


def _raw(client, url: str, body: str):
    return client.post(url, data=body, content_type="application/json")


def test_json_nested_3000_levels_is_a_400(cluster_org):
    client = session_client(cluster_org.author)
    response = _raw(client, VALIDATE, '{"environment": "staging", "x": ' + "[" * 3000 + "]" * 3000 + "}")
    assert response.status_code == 400 and "nested more than" in response.json()["message"]


def test_an_integer_over_4300_digits_in_a_body_is_a_400(cluster_org):
    client = session_client(cluster_org.author)
    response = _raw(client, VALIDATE, '{"environment": "staging", "x": ' + "9" * 5000 + "}")
    assert response.status_code == 400


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_json_numbers_without_a_json_meaning_are_a_400(cluster_org, constant):
    client = session_client(cluster_org.author)
    response = _raw(client, DRAFTS, '{"environment": "staging", "text": "x", "weight": ' + constant + "}")
    assert response.status_code == 400, response.content


# `1e400` is not among them: Kubernetes' YAML decoder keeps a float it cannot hold as the string "1e400"
# (tests/policies/validation/test_yaml_scalars.py), so a draft stores it as that string, no 409.
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "9" * 5000])
def test_manifest_numbers_json_cannot_hold_are_a_clear_finding_not_a_409(cluster_org, value):
    text = (
        REVIEWS_V2.replace("timeout: 5s", f"timeout: 5s\n    weightless: {value}")
        if "timeout: 5s" in REVIEWS_V2
        else REVIEWS_V2 + f"  extra: {value}\n"
    )
    client = session_client(cluster_org.author)
    response = client.post(DRAFTS, {"environment": "staging", "text": text}, format="json")
    assert response.status_code == 400, response.content
    findings = response.json()["details"]["findings"]
    assert any(f["code"] == "MG0011" and f["line"] for f in findings), findings
    assert not Draft.objects.exists()
    answer = client.post(VALIDATE, {"environment": "staging", "text": text, "filename": "vs.yaml"}, format="json")
    assert answer.status_code == 200 and answer.json()["valid"] is False


@pytest.mark.parametrize(
    "query",
    ["limit=" + "9" * 40, "limit=100000", "offset=" + "9" * 40, "limit=-1", "offset=1e400", "limit=" + "9" * 5000],
)
def test_pagination_parameters_out_of_range_are_a_400(org, query):
    client = bearer_client(token_for(org.author))
    for url in ("/api/v1/policies/", "/api/v1/changes/", "/api/v1/rollouts/"):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400, (url, query, response.content[:200])


def test_pages_are_capped_by_a_max_limit(org):
    response = bearer_client(token_for(org.author)).get("/api/v1/policies/?limit=500")
    assert response.status_code == 200


@pytest.mark.parametrize("value", ["9" * 40, "1e400", "-5", "9" * 5000])
def test_a_huge_change_filter_is_a_400(org, value):
    response = bearer_client(token_for(org.author)).get(f"/api/v1/rollouts/?change={value}")
    assert response.status_code == 400, response.content[:200]


def test_saving_a_team_in_the_django_admin_works(org):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    url = f"/admin/policies/team/{org.team_a.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = {
        "name": "Bookinfo renamed",
        "slug": org.team_a.slug,
        "description": "",
        "is_security": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    response = client.post(url, form)
    assert response.status_code in (200, 302), response.content[:300]
    assert response.status_code == 302, response.content.decode()[:2000]
    org.team_a.refresh_from_db()
    assert org.team_a.name == "Bookinfo renamed"


def test_refresh_plan_checks_the_actor(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    # The security team reads every change but owns none of its namespaces.
    response = session_client(org.sec).post(f"/api/v1/changes/{change.pk}/refresh-plan/")
    assert response.status_code == 403, response.content
    assert session_client(org.author).post(f"/api/v1/changes/{change.pk}/refresh-plan/").status_code == 202


def test_promote_answers_403_before_409_to_outsiders(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)  # a draft change: promoting it is a 409
    response = session_client(org.sec).post(f"/api/v1/changes/{change.pk}/promote/")
    assert response.status_code == 403, response.content
    assert session_client(org.author).post(f"/api/v1/changes/{change.pk}/promote/").status_code == 409
