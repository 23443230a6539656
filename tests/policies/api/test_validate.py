import json

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policies.models import Draft
from portal.choices import TokenScope
from tests.api_testing import EndpointContract, assert_error, bearer_client, session_client, token_for
from tests.policies.drafts.helpers import (
    RATINGS_NEW,
    REVIEWS_MISSING_SUBSET,
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
    tar_gz,
)

URL = "/api/v1/validate"


def test_url_is_named():
    assert reverse("api:validate") == URL


class TestValidateContract(EndpointContract):
    """Any authenticated caller may validate; a token needs only `read`, even for this POST."""

    method = "post"
    scope = TokenScope.READ

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster_org):
        pass

    def url(self, org):
        return URL

    def payload(self, org):
        return {"environment": "staging", "text": REVIEWS_V2, "filename": "reviews.yaml"}

    def check_response(self, response, org):
        body = response.json()
        assert body["valid"] is True, body
        assert body["documents"] == [
            {
                "file": "reviews.yaml",
                "index": 0,
                "kind": "VirtualService",
                "namespace": "bookinfo",
                "name": "reviews",
                "line": 2,
            },
        ]


def test_json_text_with_findings_is_answered_200_with_their_location(cluster_org):
    response = session_client(cluster_org.author).post(
        URL, {"environment": "staging", "text": REVIEWS_MISSING_SUBSET, "filename": "vs.yaml"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    finding = next(f for f in body["findings"] if f["code"] == "MG0302")
    assert finding == {
        "code": "MG0302",
        "level": "error",
        "message": finding["message"],
        "layer": "semantic",
        "file": "vs.yaml",
        "document": 0,
        "line": 13,
        "column": finding["column"],
        "path": "spec.http[0].route[0].destination.subset",
        "object": "VirtualService bookinfo/reviews",
        "istio_code": "IST0101",
    }
    assert "v9" in finding["message"]
    assert not Draft.objects.exists()  # validation stores nothing


def test_syntax_error_is_a_finding_not_an_error_answer(cluster_org):
    response = session_client(cluster_org.author).post(
        URL, {"environment": "staging", "text": "apiVersion: v1\nkind: x: y\n", "filename": "bad.yaml"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and body["documents"] == []
    assert body["findings"][0]["code"] == "MG0004" and body["findings"][0]["file"] == "bad.yaml"
    assert (body["findings"][0]["line"], body["findings"][0]["column"]) == (2, 8)


def test_multipart_files_and_archives(cluster_org):
    archive = tar_gz({"routes/ratings.yaml": RATINGS_NEW.encode(), "routes/README": b"skip me"})
    response = session_client(cluster_org.author).post(
        URL,
        {
            "environment": "staging",
            "files": [
                SimpleUploadedFile("reviews.yaml", REVIEWS_MISSING_SUBSET.encode()),
                SimpleUploadedFile("routes.tar.gz", archive),
            ],
        },
        format="multipart",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(d["file"], d["name"]) for d in body["documents"]] == [
        ("reviews.yaml", "reviews"),
        ("routes/ratings.yaml", "ratings"),
    ]
    assert body["valid"] is False
    assert {f["file"] for f in body["findings"] if f["level"] == "error"} == {"reviews.yaml"}


def test_multipart_with_unsafe_archive_reports_it(cluster_org):
    archive = tar_gz({"../escape.yaml": REVIEWS_V2.encode()})
    response = session_client(cluster_org.author).post(
        URL, {"environment": "staging", "files": [SimpleUploadedFile("b.tgz", archive)]}, format="multipart"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert [(f["code"], f["file"]) for f in body["findings"]] == [("MG0020", "b.tgz")]


def test_read_token_may_validate(cluster_org):
    client = bearer_client(token_for(cluster_org.author, scopes=[TokenScope.READ]))
    response = client.post(URL, {"environment": "staging", "text": REVIEWS_V2}, format="json")
    assert response.status_code == 200 and response.json()["valid"] is True


def test_unknown_environment_is_400_naming_the_field(org):
    response = session_client(org.author).post(URL, {"environment": "nowhere", "text": REVIEWS_V2}, format="json")
    details = assert_error(response, 400, code="invalid")
    assert details == {"environment": ["no environment is named 'nowhere'"]}


def test_missing_fields_are_named(org):
    details = assert_error(session_client(org.author).post(URL, {}, format="json"), 400, code="invalid")
    assert set(details) == {"environment", "text"}
    response = session_client(org.author).post(URL, {"environment": "staging"}, format="multipart")
    assert set(assert_error(response, 400, code="invalid")) == {"files"}


def test_twenty_megabyte_body_is_refused_with_413_json(org):
    body = json.dumps({"environment": "staging", "text": "a: b\n" * (4 * 1024 * 1024)})
    assert len(body) > 20 * 1024 * 1024
    response = session_client(org.author).post(URL, body, content_type="application/json")
    details = assert_error(response, 413, code="request_too_large")
    assert details["limit_bytes"] == 12 * 1024 * 1024
    assert "MiB" in response.json()["message"]


def test_more_files_than_django_parses_is_a_json_400(org):
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
    files = [SimpleUploadedFile(f"f{n}.yaml", b"a: 1\n") for n in range(limit + 1)]
    response = session_client(org.author).post(URL, {"environment": "staging", "files": files}, format="multipart")
    details = assert_error(response, 400, code="invalid")
    assert "archive" in details["files"][0]


def test_findings_carry_the_matching_istioctl_code(cluster_org):
    text = REVIEWS_V2.replace("host: reviews\n", "host: reviews\n        subset: v9\n")
    response = session_client(cluster_org.author).post(URL, {"environment": "staging", "text": text}, format="json")
    assert response.status_code == 200
    subsets = [f for f in response.json()["findings"] if f["code"] == "MG0302"]
    assert [f["istio_code"] for f in subsets] == ["IST0101"]
    schema = session_client(cluster_org.author).get("/api/schema/?format=json").json()
    assert "istio_code" in schema["components"]["schemas"]["Finding"]["properties"]


# --- the checks a change would meet: role in the namespace, guardrails ---------------------------

ALLOW_ALL = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: open
  namespace: bookinfo
spec:
  rules:
  - {}
"""


def test_validate_runs_what_submit_runs_unless_asked_for_content_only(cluster_org):
    from policies.services.guardrails import guardrails_seed_builtins

    guardrails_seed_builtins()
    client = session_client(cluster_org.author)
    body = client.post(
        URL, {"environment": "staging", "text": ALLOW_ALL, "filename": "authz.yaml"}, format="json"
    ).json()
    blocked = next(f for f in body["findings"] if f["code"] == "MG1501")
    assert blocked["level"] == "error" and blocked["layer"] == "guardrail" and blocked["file"] == "authz.yaml"
    assert "No allow-all AuthorizationPolicy" in blocked["message"] and body["valid"] is False
    content_only = client.post(
        URL, {"environment": "staging", "text": ALLOW_ALL, "checks": "content"}, format="json"
    ).json()
    assert not [f for f in content_only["findings"] if f["code"] == "MG1501"]


def test_validate_says_when_the_caller_may_not_author_the_namespace(cluster_org):
    body = (
        session_client(cluster_org.other)
        .post(  # carol is in team Shop, not Bookinfo
            URL, {"environment": "staging", "text": REVIEWS_V2, "filename": "reviews.yaml"}, format="json"
        )
        .json()
    )
    denied = next(f for f in body["findings"] if f["code"] == "MG0110")
    assert denied["path"] == "metadata.namespace" and body["valid"] is False
