from django.urls import reverse
from django.utils import timezone

from tests.api_testing import EndpointContract, assert_error, results, session_client

API_TOKEN = "cluster-bearer-secret-value"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBsecretCA\n-----END CERTIFICATE-----"


class TestEnvironmentList(EndpointContract):
    def url(self, org):
        return reverse("api:environment-list")

    def check_response(self, response, org):
        (item,) = results(response)
        assert item["name"] == "staging"
        assert item["url"].endswith(reverse("api:environment-detail", kwargs={"name": "staging"}))


class TestEnvironmentDetail(EndpointContract):
    def url(self, org):
        return reverse("api:environment-detail", kwargs={"name": "staging"})

    def check_response(self, response, org):
        assert response.json()["name"] == "staging"


def test_cluster_credentials_are_never_exposed(org):
    org.env.api_token = API_TOKEN
    org.env.ca_certificate = CA_PEM
    org.env.save()
    client = session_client(org.author)
    for url in (reverse("api:environment-list"), reverse("api:environment-detail", kwargs={"name": "staging"})):
        response = client.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        assert API_TOKEN not in body and "MIIBsecretCA" not in body
        assert "api_token" not in body and "ca_certificate" not in body


def test_reachability_and_last_import_are_shown(org):
    checked = timezone.now()
    org.env.cluster_reachable = False
    org.env.cluster_error = "connection refused"
    org.env.cluster_checked_at = checked
    org.env.last_import_at = checked
    org.env.save()
    body = session_client(org.author).get(reverse("api:environment-detail", kwargs={"name": "staging"})).json()
    assert body["cluster_reachable"] is False
    assert body["cluster_error"] == "connection refused"
    assert body["cluster_checked_at"] == checked.isoformat().replace("+00:00", "Z")
    assert body["last_import_at"] == body["cluster_checked_at"]


def test_never_probed_environment_has_unknown_reachability(org):
    body = session_client(org.author).get(reverse("api:environment-detail", kwargs={"name": "staging"})).json()
    assert body["cluster_reachable"] is None
    assert body["cluster_checked_at"] is None


def test_unknown_environment_is_not_found(org):
    response = session_client(org.author).get(reverse("api:environment-detail", kwargs={"name": "nowhere"}))
    assert_error(response, 404, code="not_found")
