"""Discovery (DynamicClient), CRDs (ApiextensionsV1Api) and core/v1 (CoreV1Api)."""

from __future__ import annotations

import json

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.fixtures.meshsim import MeshsimProcess

from .conftest import NETWORKING, status_body

ISTIO_KINDS = {
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "WorkloadEntry",
    "WorkloadGroup",
    "EnvoyFilter",
    "ProxyConfig",
    "AuthorizationPolicy",
    "PeerAuthentication",
    "RequestAuthentication",
    "Telemetry",
    "WasmPlugin",
    "TrafficExtension",
}
GATEWAY_API_KINDS = {"GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant", "BackendTLSPolicy"}


# discovery -------------------------------------------------------------------


def test_dynamic_client_discovers_virtual_services(virtualservices: Resource) -> None:
    assert virtualservices.group_version == "networking.istio.io/v1"
    assert virtualservices.name == "virtualservices"
    assert virtualservices.namespaced is True
    assert virtualservices.short_names == ["vs"]
    assert {"create", "get", "list", "patch", "update", "delete"} <= set(virtualservices.verbs)
    listed = virtualservices.get(namespace="bookinfo")
    assert [item.metadata.name for item in listed.items] == ["bookinfo", "reviews"]
    reviews = virtualservices.get(name="reviews", namespace="bookinfo")
    assert reviews.spec.http[0].route[0].weight == 90


def test_dynamic_client_every_kind_and_version(dynamic: DynamicClient) -> None:
    for version in ("v1", "v1beta1", "v1alpha3"):
        found = dynamic.resources.get(api_version=f"{NETWORKING}/{version}", kind="Gateway")
        assert found.group_version == f"{NETWORKING}/{version}"
    assert dynamic.resources.get(api_version=f"{NETWORKING}/v1alpha3", kind="EnvoyFilter").preferred is False
    kinds = {r.kind for r in dynamic.resources.search(group="networking.istio.io")}
    assert {"VirtualService", "EnvoyFilter", "ProxyConfig"} <= kinds
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    assert [p.metadata.name for p in pods.get(namespace="bookinfo", label_selector="app=ratings").items] == [
        "ratings-v1-8d7f6c9b5-w6p2j"
    ]


def test_api_group_list(meshsim: MeshsimProcess) -> None:
    body = requests.get(meshsim.url + "/apis", timeout=10).json()
    assert body["kind"] == "APIGroupList"
    groups = {group["name"]: group for group in body["groups"]}
    assert set(groups) == {
        "apiextensions.k8s.io",
        "networking.istio.io",
        "security.istio.io",
        "telemetry.istio.io",
        "extensions.istio.io",
        "apps",
        "gateway.networking.k8s.io",
    }
    networking = groups["networking.istio.io"]
    assert [v["version"] for v in networking["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    assert networking["preferredVersion"] == {
        "groupVersion": "networking.istio.io/v1",
        "version": "v1",
    }
    # Like kube, the preferred version is the highest served one, not the storage version.
    assert groups["telemetry.istio.io"]["preferredVersion"]["version"] == "v1"


def test_aggregated_discovery_request_gets_plain_group_list(meshsim: MeshsimProcess) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    response = requests.get(meshsim.url + "/apis", headers={"Accept": accept}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["kind"] == "APIGroupList"


def test_api_group_and_resource_lists(meshsim: MeshsimProcess) -> None:
    group = requests.get(meshsim.url + "/apis/security.istio.io", timeout=10).json()
    assert group["kind"] == "APIGroup" and group["preferredVersion"]["version"] == "v1"
    resources = requests.get(meshsim.url + "/apis/security.istio.io/v1", timeout=10).json()
    assert resources["kind"] == "APIResourceList"
    assert resources["groupVersion"] == "security.istio.io/v1"
    policies = next(r for r in resources["resources"] if r["name"] == "authorizationpolicies")
    assert policies["singularName"] == "authorizationpolicy"
    assert policies["kind"] == "AuthorizationPolicy"
    assert policies["shortNames"] == ["ap"]
    assert policies["categories"] == ["istio-io", "security-istio-io"]
    assert "authorizationpolicies/status" in {r["name"] for r in resources["resources"]}
    core = requests.get(meshsim.url + "/api/v1", timeout=10).json()
    assert {r["name"] for r in core["resources"] if "/" not in r["name"]} == {
        "namespaces",
        "services",
        "pods",
        "secrets",
        "configmaps",
        "nodes",
    }
    assert requests.get(meshsim.url + "/api", timeout=10).json()["versions"] == ["v1"]


def test_version(api_client: client.ApiClient) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")


# CRDs ----------------------------------------------------------------------------


def test_crd_list_and_get(api_client: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api_client)
    crds = extensions.list_custom_resource_definition()
    assert {crd.spec.names.kind for crd in crds.items} == ISTIO_KINDS | GATEWAY_API_KINDS
    vs = extensions.read_custom_resource_definition("virtualservices.networking.istio.io")
    assert vs.spec.group == "networking.istio.io"
    assert [v.name for v in vs.spec.versions] == ["v1", "v1alpha3", "v1beta1"]
    established = {c.type: c.status for c in vs.status.conditions}
    assert established == {"NamesAccepted": "True", "Established": "True"}
    assert vs.status.accepted_names.plural == "virtualservices"
    assert vs.status.stored_versions == ["v1"]
    schema = vs.spec.versions[0].schema.open_apiv3_schema
    http = schema.properties["spec"].properties["http"]
    assert http.type == "array"
    assert http.items["properties"]["timeout"]["type"] == "string"  # the client keeps items raw


def test_crd_label_selector(api_client: client.ApiClient) -> None:
    crds = client.ApiextensionsV1Api(api_client).list_custom_resource_definition(label_selector="app=istio-pilot")
    assert len(crds.items) == 15


def test_missing_crd_is_404(api_client: client.ApiClient) -> None:
    with pytest.raises(ApiException) as raised:
        client.ApiextensionsV1Api(api_client).read_custom_resource_definition("foos.example.com")
    assert raised.value.status == 404
    assert status_body(raised.value)["details"]["group"] == "apiextensions.k8s.io"


# core/v1 ---------------------------------------------------------------------------


def test_namespaces(core: client.CoreV1Api) -> None:
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert {"bookinfo", "shop", "istio-system", "default", "kube-system"} <= set(names)
    injected = core.list_namespace(label_selector="istio-injection=enabled").items
    assert sorted(ns.metadata.name for ns in injected) == ["bookinfo", "shop"]
    bookinfo = core.read_namespace("bookinfo")
    assert bookinfo.status.phase == "Active"
    assert bookinfo.metadata.labels["kubernetes.io/metadata.name"] == "bookinfo"


def test_create_and_delete_namespace_cascades(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="canary")))
    assert created.metadata.uid and created.status.phase == "Active"
    core.create_namespaced_service(
        "canary",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
        ),
    )
    # Like kube, the answer is the Namespace (the client's declared V1Status does not fit it).
    deleted = json.loads(core.delete_namespace("canary", _preload_content=False).data)
    assert deleted["kind"] == "Namespace" and deleted["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_service("web", "canary")
    assert raised.value.status == 404
    with pytest.raises(ApiException) as again:
        core.read_namespace("canary")
    assert again.value.status == 404


def test_default_namespace_cannot_be_deleted(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.delete_namespace("default")
    assert raised.value.status == 403


def test_bad_namespace_name_is_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="Bad.Name")))
    assert raised.value.status == 422
    cause = status_body(raised.value)["details"]["causes"][0]
    assert cause["field"] == "metadata.name"
    assert "RFC 1123 label" in cause["message"]


def test_services(core: client.CoreV1Api) -> None:
    services = core.list_namespaced_service("bookinfo")
    assert [s.metadata.name for s in services.items] == [
        "details",
        "productpage",
        "ratings",
        "reviews",
    ]
    reviews = core.read_namespaced_service("reviews", "bookinfo")
    assert reviews.spec.ports[0].port == 9080 and reviews.spec.ports[0].name == "http"
    assert reviews.spec.cluster_ip.startswith("10.96.")
    assert reviews.spec.selector == {"app": "reviews"}
    shop = core.list_namespaced_service("shop", label_selector="app in (cart,checkout)")
    assert [(s.metadata.name, s.spec.ports[0].port) for s in shop.items] == [
        ("cart", 8080),
        ("checkout", 8080),
    ]
    everywhere = core.list_service_for_all_namespaces()
    assert len(everywhere.items) == 11


def test_service_create_replace_delete(core: client.CoreV1Api) -> None:
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="reviews-canary", labels={"app": "reviews"}),
        spec=client.V1ServiceSpec(
            selector={"app": "reviews", "version": "v3"},
            ports=[client.V1ServicePort(name="http", port=9080)],
        ),
    )
    created = core.create_namespaced_service("bookinfo", body)
    assert created.spec.type == "ClusterIP"
    cluster_ip = created.spec.cluster_ip
    created.spec.selector = {"app": "reviews", "version": "v2"}
    replaced = core.replace_namespaced_service("reviews-canary", "bookinfo", created)
    assert replaced.spec.selector["version"] == "v2"
    assert replaced.spec.cluster_ip == cluster_ip
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    deleted = core.delete_namespaced_service("reviews-canary", "bookinfo")
    assert deleted.metadata.name == "reviews-canary"
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_service("reviews-canary", "bookinfo")
    assert raised.value.status == 404


def test_service_without_ports_is_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_service("bookinfo", {"metadata": {"name": "empty"}, "spec": {}})
    assert raised.value.status == 422
    assert status_body(raised.value)["details"]["causes"][0]["field"] == "spec.ports"


def test_pods_with_label_selectors(core: client.CoreV1Api) -> None:
    reviews = core.list_namespaced_pod("bookinfo", label_selector="app=reviews")
    assert sorted(p.metadata.labels["version"] for p in reviews.items) == ["v1", "v2", "v3"]
    canary = core.list_namespaced_pod("bookinfo", label_selector="app=reviews,version!=v1")
    assert sorted(p.metadata.labels["version"] for p in canary.items) == ["v2", "v3"]
    pod = reviews.items[0]
    assert pod.status.phase == "Running" and pod.status.pod_ip.startswith("10.244.")
    assert [c.name for c in pod.spec.containers] == ["reviews", "istio-proxy"]
    assert pod.spec.service_account_name == "bookinfo-reviews"
    gateway = core.list_pod_for_all_namespaces(label_selector="istio=ingressgateway").items
    assert [(p.metadata.namespace, [c.name for c in p.spec.containers]) for p in gateway] == [
        ("istio-system", ["istio-proxy"])
    ]
    versions = core.list_namespaced_pod("shop", label_selector="app in (catalog,payments)")
    labels = [p.metadata.labels for p in versions.items]
    assert sorted((label["app"], label["version"]) for label in labels) == [
        ("catalog", "v1"),
        ("catalog", "v2"),
        ("payments", "v1"),
        ("payments", "v2"),
    ]


def test_pod_create_gets_sidecar_in_injected_namespace(core: client.CoreV1Api) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="ratings-v2-abc12", labels={"app": "ratings", "version": "v2"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="ratings", image="ratings:v2")]),
    )
    created = core.create_namespaced_pod("bookinfo", body)
    assert [c.name for c in created.spec.containers] == ["ratings", "istio-proxy"]
    plain = core.create_namespaced_pod("default", body)
    assert [c.name for c in plain.spec.containers] == ["ratings"]
    assert core.delete_namespaced_pod("ratings-v2-abc12", "default").metadata.name == "ratings-v2-abc12"


def test_pod_without_containers_is_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod("bookinfo", {"metadata": {"name": "broken"}, "spec": {}})
    assert raised.value.status == 422
