from django.urls import reverse


def test_schema_of_a_kind_with_its_properties(client, staging, org):
    client.force_login(org.author)
    response = client.get(reverse("editor:schema", args=["staging", "VirtualService"]))
    assert response.status_code == 200
    assert "private" in response["Cache-Control"] and "max-age=300" in response["Cache-Control"]
    body = response.json()
    assert body["environment"] == "staging"
    assert (body["kind"], body["apiVersion"]) == ("VirtualService", "networking.istio.io/v1")
    properties = body["schema"]["properties"]
    assert list(properties) == ["apiVersion", "kind", "metadata", "spec"]  # no status
    spec = properties["spec"]["properties"]
    assert {"hosts", "http", "gateways", "tcp", "tls"} <= set(spec)
    assert "timeout" in spec["http"]["items"]["properties"]
    assert properties["kind"]["enum"] == ["VirtualService"]


def test_schema_enums_for_peer_authentication(client, staging, org):
    client.force_login(org.author)
    body = client.get(reverse("editor:schema", args=["staging", "PeerAuthentication"])).json()
    assert "STRICT" in body["schema"]["properties"]["spec"]["properties"]["mtls"]["properties"]["mode"]["enum"]


def test_schema_of_unknown_kind_or_environment_is_not_found(client, staging, org):
    client.force_login(org.author)
    assert client.get(reverse("editor:schema", args=["staging", "Deployment"])).status_code == 404
    assert client.get(reverse("editor:schema", args=["nowhere", "VirtualService"])).status_code == 404


def test_schema_when_the_cluster_does_not_answer(client, org):
    client.force_login(org.author)  # org.env points at a closed port
    response = client.get(reverse("editor:schema", args=["staging", "VirtualService"]))
    assert response.status_code == 502
    assert response.json()["code"] == "cluster_error"
