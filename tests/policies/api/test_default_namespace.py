"""`namespace` (body field or `?namespace=`): the default namespace of objects without one, as `kubectl -n`."""

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile

from policies.models import ChangeRequest, Draft
from policies.validation.parse import parse_bundle
from tests.api_testing import session_client
from tests.policies.drafts.helpers import RATINGS_NEW, cluster_org  # noqa: F401 - fixture

WITHOUT_NAMESPACE = RATINGS_NEW.replace("  namespace: bookinfo\n", "")


def test_validate_without_a_namespace_is_refused(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/validate", {"environment": "staging", "text": WITHOUT_NAMESPACE}, format="json"
    )
    assert response.status_code == 200
    assert "MG0105" in [f["code"] for f in response.json()["findings"]]


@pytest.mark.parametrize("how", ["body", "query"])
def test_validate_with_a_default_namespace(cluster_org, how):
    body = {"environment": "staging", "text": WITHOUT_NAMESPACE}
    url = "/api/v1/validate"
    if how == "body":
        body["namespace"] = "bookinfo"
    else:
        url += "?namespace=bookinfo"
    response = session_client(cluster_org.author).post(url, body, format="json")
    assert response.status_code == 200
    answer = response.json()
    assert answer["valid"] is True, answer["findings"]
    assert answer["documents"][0]["namespace"] == "bookinfo"


def test_the_body_wins_over_the_query_and_a_written_namespace_wins_over_both(cluster_org):
    text = WITHOUT_NAMESPACE + "---\n" + RATINGS_NEW.replace("name: ratings", "name: details")
    response = session_client(cluster_org.author).post(
        "/api/v1/validate?namespace=shop",
        {"environment": "staging", "text": text, "namespace": "bookinfo"},
        format="json",
    )
    assert [d["namespace"] for d in response.json()["documents"]] == ["bookinfo", "bookinfo"]


def test_validate_multipart_with_a_default_namespace(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/validate?namespace=bookinfo",
        {"environment": "staging", "files": [SimpleUploadedFile("ratings.yaml", WITHOUT_NAMESPACE.encode())]},
        format="multipart",
    )
    assert response.json()["documents"][0]["namespace"] == "bookinfo"


def test_an_invalid_namespace_is_400_naming_the_field(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/validate?namespace=Not_A_Namespace",
        {"environment": "staging", "text": WITHOUT_NAMESPACE},
        format="json",
    )
    assert response.status_code == 400
    assert "namespace" in response.json()["details"]


def test_bundle_drafts_hold_the_default_namespace(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/drafts/bundle/?namespace=bookinfo",
        {"environment": "staging", "text": WITHOUT_NAMESPACE},
        format="json",
    )
    assert response.status_code == 201, response.content
    draft = Draft.objects.get()
    assert draft.namespace == "bookinfo"
    written = yaml.safe_load(draft.source_text)
    assert written["metadata"]["namespace"] == "bookinfo"
    [document], findings = parse_bundle([("d.yaml", draft.source_text.encode())])
    assert findings == [] and document.namespace == "bookinfo"


def test_bundle_in_a_namespace_the_author_may_not_draft_in_is_403(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/drafts/bundle/",
        {"environment": "staging", "text": WITHOUT_NAMESPACE, "namespace": "shop"},
        format="json",
    )
    assert response.status_code == 403
    assert Draft.objects.count() == 0


def test_change_from_a_bundle_with_a_default_namespace(cluster_org):
    response = session_client(cluster_org.author).post(
        "/api/v1/changes/",
        {"environment": "staging", "title": "ratings", "text": WITHOUT_NAMESPACE, "namespace": "bookinfo"},
        format="json",
    )
    assert response.status_code == 201, response.content
    change = ChangeRequest.objects.get()
    assert [item.namespace for item in change.items.all()] == ["bookinfo"]


def test_the_openapi_schema_documents_the_parameter(db, cluster_org):
    schema = session_client(cluster_org.author).get("/api/schema/", {"format": "json"}).json()
    for path in ("/api/v1/validate", "/api/v1/drafts/bundle/", "/api/v1/changes/"):
        parameters = {p["name"] for p in schema["paths"][path]["post"].get("parameters", [])}
        assert "namespace" in parameters, path
    validate_body = schema["components"]["schemas"]["ValidateText"]["properties"]
    assert "namespace" in validate_body
