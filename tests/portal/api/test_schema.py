"""The OpenAPI document describes every endpoint and generates without a warning."""

import pytest
import yaml
from django.core.management import call_command

from tests.api_testing import anonymous_client, session_client

EXPECTED_PATHS = {
    "/api/v1/environments/": {"get"},
    "/api/v1/environments/{name}/": {"get"},
    "/api/v1/teams/": {"get"},
    "/api/v1/teams/{slug}/": {"get"},
    "/api/v1/policies/": {"get"},
    "/api/v1/policies/{id}/": {"get"},
    "/api/v1/policies/{id}/drift/": {"get"},
    "/api/v1/policies/{id}/drift/adopt/": {"post"},
    "/api/v1/policies/{id}/drift/reapply/": {"post"},
    "/api/v1/policies/{id}/overrides/": {"get", "post"},
    "/api/v1/policies/{id}/overrides/{environment}/": {"get", "put", "delete"},
    "/api/v1/policies/{policy_id}/revisions/": {"get"},
    "/api/v1/policies/{policy_id}/revisions/{number}/": {"get"},
    "/api/v1/me/": {"get"},
    "/api/v1/tokens/": {"get", "post"},
    "/api/v1/tokens/{key_id}/": {"get", "delete"},
    "/api/v1/drafts/": {"get", "post"},
    "/api/v1/drafts/{id}/": {"get", "patch", "delete"},
    "/api/v1/drafts/bundle/": {"post"},
    "/api/v1/validate": {"post"},
    "/api/v1/changes/": {"get", "post"},
    "/api/v1/changes/{id}/": {"get", "patch", "delete"},
    "/api/v1/changes/{id}/items/": {"put"},
    "/api/v1/changes/{id}/withdraw/": {"post"},
    "/api/v1/changes/{id}/retry/": {"post"},
    "/api/v1/changes/{id}/submit/": {"post"},
    "/api/v1/changes/{id}/approve/": {"post"},
    "/api/v1/changes/{id}/request-changes/": {"post"},
    "/api/v1/changes/{id}/comment/": {"post"},
    "/api/v1/changes/{id}/reject/": {"post"},
    "/api/v1/changes/{id}/rebase/": {"post"},
    "/api/v1/changes/{id}/schedule/": {"post"},
    "/api/v1/changes/{id}/promote/": {"post"},
    "/api/v1/changes/{id}/refresh-plan/": {"post"},
    "/api/v1/rollouts/": {"get"},
    "/api/v1/rollouts/{id}/": {"get"},
    "/api/v1/rollouts/{id}/pause/": {"post"},
    "/api/v1/rollouts/{id}/resume/": {"post"},
    "/api/v1/rollouts/{id}/abort/": {"post"},
    "/api/v1/rollouts/{id}/promote/": {"post"},
    "/api/v1/rollouts/{id}/confirm-gate/": {"post"},
    "/api/v1/rollouts/{id}/continue-on-live/": {"post"},
    "/api/v1/changes/{id}/status/": {"get"},
    "/api/v1/changes/{id}/rollout-options/": {"get", "post"},
    "/api/v1/channels/": {"get", "post"},
    "/api/v1/channels/{id}/": {"get", "delete"},
    "/api/v1/channels/{id}/deliveries/": {"get"},
    "/api/v1/channels/{id}/test/": {"post"},
    "/api/v1/service-accounts/": {"get", "post"},
    "/api/v1/service-accounts/{name}/": {"get", "delete"},
    "/api/v1/service-accounts/{name}/tokens/": {"get", "post"},
    "/api/v1/changes/{id}/events/stream/": {"get"},
    "/api/v1/approval-rules/": {"get", "post"},
    "/api/v1/approval-rules/{id}/": {"get", "put", "patch", "delete"},
    "/api/v1/teams/{slug}/members/": {"get", "post"},
    "/api/v1/teams/{slug}/members/{username}/": {"get", "patch", "delete"},
}


def fetch_schema(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def test_schema_documents_every_endpoint(org):
    paths = fetch_schema(session_client(org.author))["paths"]
    assert {path: set(ops) - {"parameters"} for path, ops in paths.items()} == EXPECTED_PATHS


def test_schema_documents_filters_bearer_auth_and_the_token_secret(org):
    schema = fetch_schema(session_client(org.author))
    params = {p["name"] for p in schema["paths"]["/api/v1/policies/"]["get"]["parameters"]}
    assert {"environment", "kind", "namespace", "team", "live_state", "q", "limit", "offset"} <= params
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    created = schema["paths"]["/api/v1/tokens/"]["post"]["responses"]["201"]
    ref = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "token" in schema["components"]["schemas"][ref]["properties"]
    environment = schema["components"]["schemas"]["Environment"]["properties"]
    assert "api_token" not in environment and "ca_certificate" not in environment


def test_schema_is_public(db):
    """Decision: the API description holds no data, so tools may fetch it without credentials."""
    assert "/api/v1/policies/" in fetch_schema(anonymous_client())["paths"]


def test_schema_generates_without_warnings_and_validates(db, tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/policies/" in yaml.safe_load(target.read_text())["paths"]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_interactive_docs_load(db, url):
    assert anonymous_client().get(url).status_code == 200
