"""The checks that read the cluster's wider state (namespace labels, pods' sidecars and Nodes,
Deployments, Secrets' metadata, the mesh config, the Kubernetes Gateway API) and those of the kinds
Meshgate now governs (EnvoyFilter, Telemetry, WorkloadEntry): each fires on a trigger and stays quiet on
a near miss, against meshsim's staging mesh with the Kubernetes objects of the case created first
through the official client."""

import textwrap
from dataclasses import dataclass, field

import pytest
from kubernetes.dynamic import DynamicClient

from integrations import kubernetes as kube
from integrations.kubernetes.client import SECRET_METADATA_ACCEPT
from policies.validation import Level, validate_text
from policies.validation.codes import CATALOGUE
from policies.validation.context import read_live_state
from tests.fixtures.meshsim import kube_api_client
from tests.policies.validation.helpers import codes

GROUPS = {
    "AuthorizationPolicy": "security.istio.io/v1",
    "Telemetry": "telemetry.istio.io/v1",
    "EnvoyFilter": "networking.istio.io/v1alpha3",
    "WasmPlugin": "extensions.istio.io/v1alpha1",
}


def obj(kind: str, name: str, namespace: str, spec: str) -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    api_version = GROUPS.get(kind, "networking.istio.io/v1")
    return (
        f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n"
    )


def telemetry(spec: str, name: str = "logs", namespace: str = "bookinfo") -> str:
    return obj("Telemetry", name, namespace, spec)


def dr(host: str) -> str:
    return obj("DestinationRule", host, "bookinfo", f"host: {host}")


def envoy_filter(apply_to: str, operation: str, extra: str = "", match: str = "context: SIDECAR_INBOUND") -> str:
    spec = (
        f"{extra}configPatches:\n- applyTo: {apply_to}\n  match: {{{match}}}\n"
        f"  patch:\n    operation: {operation}\n    value: {{name: envoy.filters.http.lua}}\n"
    )
    return obj("EnvoyFilter", "lua", "bookinfo", spec)


def gateway(server: str, name: str = "edge", namespace: str = "shop") -> str:
    return obj("Gateway", name, namespace, f"selector: {{istio: ingressgateway}}\nservers:\n- {server}")


def https(credential: str, host: str = "edge.staging.example.com", port: int = 443) -> str:
    return (
        f"port: {{number: {port}, name: https, protocol: HTTPS}}\n  hosts: [{host}]\n"
        f"  tls: {{mode: SIMPLE, credentialName: {credential}}}"
    )


def authz(selector: str, extra: str = "", namespace: str = "bookinfo") -> str:
    return obj("AuthorizationPolicy", "viewer", namespace, f"{selector}{extra}action: ALLOW\nrules:\n- {{}}\n")


def namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(name: str, ns: str, labels: dict, **extra: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, **extra},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]},
    }


def service(name: str, ports: list[dict], selector: dict | None = None, ns: str = "bookinfo") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": selector or {"app": name}, "ports": ports},
    }


def deployment(name: str, labels: dict, run_as_user: int | None = None, ns: str = "bookinfo") -> dict:
    container: dict = {"name": "app", "image": "registry.example.com/app:1"}
    if run_as_user is not None:
        container["securityContext"] = {"runAsUser": run_as_user}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def secret(name: str, type_: str = "kubernetes.io/tls", ns: str = "istio-system") -> dict:
    data = {"tls.crt": "Y2VydA==", "tls.key": "a2V5"} if type_ == "kubernetes.io/tls" else {"token": "dG9rZW4="}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": type_,
        "data": data,
    }


def k8s_gateway(name: str, ns: str = "bookinfo") -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    }


def label_namespace(name: str, **labels: str) -> dict:
    """A merge patch of a namespace's labels (applied after the objects before it)."""
    return {"patch": "namespace", "name": name, "labels": labels}


@dataclass
class Case:
    code: str
    trigger: str
    path: str
    near_miss: str
    cluster: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return self.code


EF_PRIORITY = "priority: 10\n"
PROXY_VERSION = "context: SIDECAR_INBOUND, proxy: {proxyVersion: '^1\\.2[0-9].*'}"

LIVE_CASES = [
    # --- workloads ---
    Case(
        "MG1001",
        telemetry("selector: {matchLabels: {app: legacy}}", namespace="legacy"),
        "metadata.namespace",
        telemetry("selector: {matchLabels: {app: reviews}}"),
        [namespace("legacy"), pod("legacy-1", "legacy", {"app": "legacy"})],
    ),
    Case(
        "MG1002",
        telemetry("accessLogging: [{providers: [{name: envoy}]}]", namespace="dual"),
        "metadata.namespace",
        telemetry("accessLogging: [{providers: [{name: envoy}]}]"),
        [namespace("dual", **{"istio-injection": "enabled", "istio.io/rev": "canary"})],
    ),
    Case(
        "MG1003",
        authz("selector: {matchLabels: {app: old}}\n", namespace="late"),
        "metadata.name",
        authz("selector: {matchLabels: {app: opted-out}}\n", namespace="late"),
        [
            namespace("late"),
            pod("old-1", "late", {"app": "old"}),
            pod("opted-out-1", "late", {"app": "opted-out"}, annotations={"sidecar.istio.io/inject": "false"}),
            label_namespace("late", **{"istio-injection": "enabled"}),
        ],
    ),
    Case(
        "MG1004",
        dr("legacy-api"),
        "metadata.name",
        dr("details"),
        [
            service("legacy-api", [{"name": "web", "port": 8080}]),
            service(
                "named-api", [{"name": "http-web", "port": 8080}, {"name": "db", "port": 5432, "appProtocol": "tcp"}]
            ),
        ],
    ),
    Case(
        "MG1005",
        dr("ratings"),
        "metadata.name",
        dr("details"),
        [service("ratings-udp", [{"name": "udp-stats", "port": 9080, "protocol": "UDP"}], {"app": "ratings"})],
    ),
    Case(
        "MG1006",
        dr("ratings"),
        "metadata.name",
        dr("details"),
        [service("ratings-alt", [{"name": "http", "port": 9081, "targetPort": 9080}], {"app": "ratings"})],
    ),
    Case(
        "MG1007",
        dr("uid-app"),
        "metadata.name",
        dr("other-app"),
        [
            deployment("uid-app", {"app": "uid-app"}, run_as_user=1337),
            service("uid-app", [{"name": "http", "port": 80}]),
            deployment("other-app", {"app": "other-app"}, run_as_user=1000),
            service("other-app", [{"name": "http", "port": 80}]),
        ],
    ),
    Case(
        "MG1008",
        telemetry("selector: {matchLabels: {app: reviewz}}"),
        "spec.selector.matchLabels",
        telemetry("selector: {matchLabels: {app: reviews, topology.kubernetes.io/zone: eu-west-1a}}"),
    ),
    # --- gateways ---
    Case(
        "MG1101",
        gateway(https("edge-tls")),
        "spec.servers[0].tls.credentialName",
        gateway(https("shop-tls")),
        [secret("edge-tls", "kubernetes.io/service-account-token")],
    ),
    Case(
        "MG1102",
        authz("selector: {matchLabels: {app: public-gw}}\n"),
        "spec.selector",
        authz("targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]\n"),
        [
            k8s_gateway("public"),
            pod("public-gw-1", "bookinfo", {"app": "public-gw", "gateway.networking.k8s.io/gateway-name": "public"}),
        ],
    ),
    Case(
        "MG1103",
        authz("targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: pubilc}]\n"),
        "spec.targetRefs[0].name",
        authz("targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]\n"),
        [k8s_gateway("public")],
    ),
    # --- EnvoyFilter ---
    Case(
        "MG1201",
        envoy_filter("HTTP_FILTER", "INSERT_BEFORE"),
        "spec.configPatches[0].patch.operation",
        envoy_filter("HTTP_FILTER", "INSERT_BEFORE", EF_PRIORITY),
    ),
    Case(
        "MG1202",
        envoy_filter("CLUSTER", "REPLACE", EF_PRIORITY),
        "spec.configPatches[0].patch.operation",
        envoy_filter("HTTP_FILTER", "REPLACE", EF_PRIORITY),
    ),
    Case(
        "MG1203",
        envoy_filter("HTTP_ROUTE", "ADD"),
        "spec.configPatches[0].patch.operation",
        envoy_filter("CLUSTER", "ADD"),
    ),
    Case(
        "MG1204",
        envoy_filter("ROUTE_CONFIGURATION", "REMOVE"),
        "spec.configPatches[0].patch.operation",
        envoy_filter("HTTP_FILTER", "REMOVE"),
    ),
    Case(
        "MG1205",
        envoy_filter("HTTP_FILTER", "INSERT_AFTER", match=PROXY_VERSION),
        "spec.configPatches[0].patch.operation",
        envoy_filter("HTTP_FILTER", "INSERT_AFTER", EF_PRIORITY, match=PROXY_VERSION),
    ),
    # --- Telemetry ---
    Case(
        "MG1206",
        telemetry("accessLogging: [{disabled: false}]"),
        "spec.accessLogging[0]",
        telemetry("accessLogging: [{providers: [{name: envoy}]}]"),
    ),
    Case(
        "MG1207",
        telemetry("selector: {matchLabels: {app: reviews}}\naccessLogging: [{providers: [{name: envoy}]}]")
        + "---\n"
        + telemetry("selector: {matchLabels: {version: v1}}", name="v1-traces"),
        "spec.selector",
        telemetry("selector: {matchLabels: {app: reviews}}\naccessLogging: [{providers: [{name: envoy}]}]")
        + "---\n"
        + telemetry("selector: {matchLabels: {app: ratings}}", name="ratings-traces"),
    ),
    Case(
        "MG1208",
        telemetry("accessLogging: [{providers: [{name: envoy}]}]")
        + "---\n"
        + telemetry("tracing: [{randomSamplingPercentage: 1}]", name="traces"),
        "spec",
        telemetry("accessLogging: [{providers: [{name: envoy}]}]")
        + "---\n"
        + telemetry("selector: {matchLabels: {app: reviews}}", name="traces"),
    ),
    Case(
        "MG1209",
        telemetry("tracing: [{providers: [{name: jaeger}]}]"),
        "spec.tracing[0].providers[0].name",
        telemetry("tracing: [{providers: [{name: otel-tracing}]}]"),
    ),
    # --- WorkloadEntry ---
    Case(
        "MG1301",
        obj("WorkloadEntry", "vm-1", "bookinfo", "address: 10.0.0.10\nlabels: {app: legacy-vm}"),
        "spec.labels",
        obj("WorkloadEntry", "vm-1", "bookinfo", "address: 10.0.0.10\nlabels: {app: legacy-vm}")
        + "---\n"
        + obj(
            "ServiceEntry",
            "legacy-vm",
            "bookinfo",
            "hosts: [legacy-vm.example.com]\nlocation: MESH_INTERNAL\nresolution: STATIC\n"
            "ports: [{number: 80, name: http, protocol: HTTP}]\nworkloadSelector: {labels: {app: legacy-vm}}",
        ),
    ),
]


def create_cluster_objects(url: str, objects: list[dict]) -> None:
    dynamic = DynamicClient(kube_api_client(url))
    for item in objects:
        if item.get("patch") == "namespace":
            namespaces = dynamic.resources.get(api_version="v1", kind="Namespace")
            namespaces.patch(
                name=item["name"],
                body={"metadata": {"labels": item["labels"]}},
                content_type="application/merge-patch+json",
            )
            continue
        resource = dynamic.resources.get(api_version=item["apiVersion"], kind=item["kind"])
        resource.create(body=item, namespace=item["metadata"].get("namespace"))


@pytest.fixture
def cluster_validate(staging, meshsim):
    def run(case: Case, text: str):
        create_cluster_objects(meshsim.url, case.cluster)
        return validate_text(environment=staging, text=text)

    return run


def test_every_new_check_has_a_case():
    prefixes = ("MG10", "MG11", "MG12", "MG13")
    assert {case.code for case in LIVE_CASES} == {code for code in CATALOGUE if code.startswith(prefixes)}


@pytest.mark.parametrize("case", LIVE_CASES, ids=str)
def test_the_check_fires_on_its_trigger(cluster_validate, case):
    report = cluster_validate(case, case.trigger)
    first = report.documents[0]
    found = [f for f in report.findings if f.code == case.code and first.covers(f)]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    finding, entry = found[0], CATALOGUE[case.code]
    assert (finding.layer, finding.level, finding.path) == ("semantic", entry.level, case.path)
    assert finding.line == first.line_of(case.path)
    assert finding.istio_code == entry.istio
    assert ": " in finding.message, "the message says what is wrong and then how to fix it"


@pytest.mark.parametrize("case", LIVE_CASES, ids=str)
def test_the_check_is_quiet_on_its_near_miss(cluster_validate, case):
    report = cluster_validate(case, case.near_miss)
    assert case.code not in codes(report), [f.message for f in report.findings]


def test_findings_carry_the_istioctl_code(cluster_validate):
    case = next(case for case in LIVE_CASES if case.code == "MG1201")
    finding = next(f for f in cluster_validate(case, case.trigger).findings if f.code == "MG1201")
    assert finding.istio_code == "IST0151" and finding.as_dict()["istio_code"] == "IST0151"


# --- context the checks read --------------------------------------------------------------------------


def test_a_subset_may_select_by_the_topology_labels_of_its_pods_nodes(validate):
    rule = obj(
        "DestinationRule",
        "reviews",
        "bookinfo",
        "host: reviews\nsubsets:\n- name: zone-a\n  labels: {topology.kubernetes.io/zone: eu-west-1a}\n"
        "- name: zone-z\n  labels: {topology.kubernetes.io/zone: eu-west-1z}",
    )
    report = validate(rule)
    assert [f.path for f in report.findings if f.code == "MG0403"] == ["spec.subsets[1].labels"]


def test_a_virtual_service_bound_to_a_gateway_api_gateway_finds_it(staging, meshsim):
    service = obj(
        "VirtualService",
        "public",
        "bookinfo",
        "hosts: [public.example.com]\ngateways: [bookinfo/public]\nhttp:\n- route:\n"
        "  - destination: {host: productpage}",
    )
    assert "MG0305" in codes(validate_text(environment=staging, text=service))
    create_cluster_objects(meshsim.url, [k8s_gateway("public")])
    assert "MG0305" not in codes(validate_text(environment=staging, text=service))


def test_live_state_holds_secrets_metadata_and_type_never_their_data(meshsim):
    state = read_live_state(kube.ClusterConfig(api_url=meshsim.url))
    assert [(s.namespace, s.name, s.type) for s in state.secrets] == [("istio-system", "shop-tls", "kubernetes.io/tls")]
    assert not hasattr(state.secrets[0], "data")
    assert state.mesh_config["defaultProviders"] == {"metrics": ["prometheus"]}
    assert state.node_labels["meshsim-node-2"]["topology.kubernetes.io/zone"] == "eu-west-1b"
    assert {d.name for d in state.deployments} >= {"productpage-v1", "reviews-v2", "istio-ingressgateway"}
    assert state.namespace_labels["bookinfo"]["istio-injection"] == "enabled"
    reviews = next(w for w in state.workloads if w.name.startswith("reviews-v1"))
    assert reviews.has_proxy and reviews.labels["topology.kubernetes.io/zone"] == "eu-west-1a"
    assert state.gateway_api["Gateway"] == ()


def test_the_secrets_request_answers_no_data(meshsim):
    response = kube_api_client(meshsim.url).call_api(
        "/api/v1/secrets",
        "GET",
        query_params=[("includeObject", "Metadata")],
        header_params={"Accept": SECRET_METADATA_ACCEPT},
        _preload_content=False,
        _return_http_data_only=True,
    )
    body = response.data.decode()
    # Key names show in managedFields (as on a real API server); values never do.
    assert '"kind": "Table"' in body and "shop-tls" in body and '"data"' not in body and "LS0t" not in body


def test_a_refused_optional_read_skips_only_the_checks_that_need_it(staging, meshsim):
    meshsim.admin(
        "POST", "faults", json={"match": {"path_regex": "^/api/v1/secrets$"}, "status": 403}
    ).raise_for_status()
    text = gateway(https("edge-tls"))
    report = validate_text(environment=staging, text=text)
    assert "MG1101" not in codes(report) and "MG0300" not in codes(report)
    meshsim.admin("DELETE", "faults").raise_for_status()
    assert "MG1101" in codes(validate_text(environment=staging, text=text))


NEW_KIND_SHAPES = [
    "null",
    "[]",
    "5",
    "{configPatches: 5, priority: 'x'}",
    "{configPatches: [5, {applyTo: 5, patch: 'x', match: {proxy: 5}}]}",
    "{accessLogging: 5, tracing: [5, {providers: 'x'}], metrics: [{providers: [5, {name: 7}]}],"
    " selector: {matchLabels: 'x'}, targetRefs: [5, {kind: 5}], targetRef: 'x'}",
    "{labels: 5, address: 7}",
    "{selector: [1], url: 5}",
]


def test_new_kinds_of_any_shape_give_findings_never_an_exception(validate):
    kinds = [
        "EnvoyFilter",
        "Telemetry",
        "WasmPlugin",
        "WorkloadEntry",
        "WorkloadGroup",
        "ProxyConfig",
        "TrafficExtension",
    ]
    api_versions = {
        "EnvoyFilter": "networking.istio.io/v1alpha3",
        "Telemetry": "telemetry.istio.io/v1",
        "WasmPlugin": "extensions.istio.io/v1alpha1",
        "TrafficExtension": "extensions.istio.io/v1alpha1",
        "ProxyConfig": "networking.istio.io/v1beta1",
    }
    documents = [
        f"apiVersion: {api_versions.get(kind, 'networking.istio.io/v1')}\nkind: {kind}\n"
        f"metadata: {{name: shape-{n}, namespace: bookinfo}}\nspec: {spec}\n"
        for kind in kinds
        for n, spec in enumerate(NEW_KIND_SHAPES)
    ]
    report = validate("---\n".join(documents))
    assert len(report.documents) == len(documents)
    assert all(finding.level in Level.values for finding in report.findings)
