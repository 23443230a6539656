import pytest

from tests.factories import EnvironmentFactory


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_broker_and_clusters_answer(client, meshsim):
    EnvironmentFactory(name="staging", api_url=meshsim.url)
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failed"] == []
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["cluster:staging"]["ok"]


@pytest.mark.django_db
def test_readyz_names_the_cluster_that_failed(client, meshsim):
    EnvironmentFactory(name="staging", api_url=meshsim.url)
    EnvironmentFactory(name="prod", api_url="http://127.0.0.1:9")
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["cluster:prod"]
    assert "127.0.0.1:9" in body["checks"]["cluster:prod"]["error"]


@pytest.mark.django_db
def test_metrics_count_requests(client):
    client.get("/healthz")
    text = client.get("/metrics").content.decode()
    assert 'meshgate_http_requests_total{method="GET",status="200",view="healthz"}' in text
    assert "meshgate_http_request_duration_seconds_bucket" in text


@pytest.mark.django_db
def test_metrics_token_when_configured(client, settings):
    settings.MESHGATE_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


@pytest.mark.django_db
def test_ops_endpoints_answer_any_host_header(client):
    """Kubelet probes and Prometheus scrapes address pods by IP."""
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/metrics", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/v1/policies/", HTTP_HOST="10.1.2.3:8000").status_code == 400


@pytest.mark.django_db
def test_unknown_api_paths_answer_in_the_api_error_shape(client, settings):
    settings.DEBUG = False
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_local_readiness_ignores_an_unreachable_cluster(client, meshsim):
    """The web pods' readiness probe: a cluster outage must not take the portal out of service."""
    EnvironmentFactory(name="prod", api_url="http://127.0.0.1:9")
    response = client.get("/readyz?scope=local")
    body = response.json()
    assert response.status_code == 200, body
    assert body["scope"] == "local" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker"}
    assert client.get("/readyz?scope=local", HTTP_HOST="10.1.2.3:8000").status_code == 200  # kubelets use pod IPs
    assert client.get("/readyz").status_code == 503  # the full report still names the cluster
    assert client.get("/readyz?scope=everything").status_code == 400
