"""The cross-resource checks against scenarios of `istioctl analyze`'s own analyzers.

Each scenario is a small mesh (namespaces, Services, Pods) and a bundle of Istio objects, run through the
semantic layer directly (no cluster, no database), with the findings istioctl reports for it: which objects,
which codes, and which objects must stay quiet. The scenarios follow the cases of Istio's analyzer tests
(pkg/config/analysis/analyzers/testdata), written anew for Meshgate.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

import pytest

from policies.validation.context import LiveState, Service, ValidationContext, Workload, document_object
from policies.validation.findings import Finding
from policies.validation.parse import parse_bundle
from policies.validation.semantic import check_semantics

GROUPS = {"AuthorizationPolicy": "security", "PeerAuthentication": "security", "RequestAuthentication": "security"}


def doc(kind: str, ref: str, spec: str) -> str:
    namespace, _, name = ref.partition("/")
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: {GROUPS.get(kind, 'networking')}.istio.io/v1\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n"
    )


def analyze(
    *documents: str, namespaces: Iterable[str] = (), services: Iterable[Service] = (), pods: Iterable[Workload] = ()
) -> list[Finding]:
    parsed, problems = parse_bundle([("case.yaml", "---\n".join(documents).encode())])
    assert not problems, [p.message for p in problems]
    pods = tuple(pods)
    live = LiveState(frozenset(namespaces) | {pod.namespace for pod in pods}, tuple(services), pods)
    context = ValidationContext(live=live, objects=[document_object(item) for item in parsed])
    return check_semantics(context, parsed)


def reported(findings: list[Finding], code: str) -> set[str]:
    """'namespace/name' of the objects reported with `code`."""
    return {finding.object.split(" ", 1)[1] for finding in findings if finding.code == code}


def pod(ref: str, **labels: str) -> Workload:
    namespace, _, name = ref.partition("/")
    return Workload(namespace, name, labels)


def service(ref: str, *ports: int, export_to: tuple[str, ...] = (), **selector: str) -> Service:
    namespace, _, name = ref.partition("/")
    return Service(namespace, name, ports, selector, export_to)


def route(host: str, extra: str = "") -> str:
    return f"http:\n- route:\n  - destination: {{host: {host}{extra}}}"


# --- IST0109 ConflictingMeshGatewayVirtualServiceHosts, with exportTo -----------------------------

MESH_HOSTS = [
    doc("VirtualService", "foo/productpage", "hosts: [productpage]\n" + route("productpage")),
    doc("VirtualService", "foo/bogus-productpage", "hosts: [productpage]\n" + route("reviews")),
    doc("VirtualService", "foo/reviews", "hosts: [reviews]\n" + route("reviews")),
    doc(
        "VirtualService",
        "bar/reviews",
        "hosts: [reviews.foo.svc.cluster.local]\ngateways: [istio-ingressgateway]\n" + route("reviews"),
    ),
    doc("VirtualService", "foo/ratings", "hosts: [ratings]\ngateways: [mesh]\n" + route("ratings")),
    doc(
        "VirtualService",
        "bar/ratings",
        "hosts: [ratings.foo.svc.cluster.local, google.com]\n"
        "gateways: [istio-ingressgateway, mesh]\n" + route("ratings"),
    ),
    doc("VirtualService", "team1/ratings", "hosts: [ratings]\ngateways: [mesh]\nexportTo: ['.']\n" + route("ratings")),
    doc(
        "VirtualService",
        "team2/ratings",
        "hosts: [ratings.team1.svc.cluster.local, google.com]\nexportTo: ['.']\n"
        "gateways: [istio-ingressgateway, mesh]\n" + route("ratings"),
    ),
    doc("VirtualService", "team3/ratings", "hosts: [ratings]\ngateways: [mesh]\nexportTo: ['*']\n" + route("ratings")),
    doc(
        "VirtualService",
        "team4/ratings",
        "hosts: [ratings.team3.svc.cluster.local]\ngateways: [istio-ingressgateway, mesh]\n" + route("ratings"),
    ),
]

MESH_HOSTS_EXPORT_TO = [
    doc("VirtualService", "foo/productpage", "hosts: ['*.productpage']\n" + route("productpage")),
    doc("VirtualService", "bar/productpage", "hosts: ['*.productpage']\n" + route("productpage")),
    doc("VirtualService", "foo/productpage-b", "hosts: ['*.productpage.b']\nexportTo: [foo]\n" + route("productpage")),
    doc("VirtualService", "bar/productpage-b", "hosts: ['*.productpage.b']\nexportTo: ['.']\n" + route("productpage")),
    doc("VirtualService", "foo/productpage-c", "hosts: ['*.productpage.c']\nexportTo: [foo]\n" + route("productpage")),
    doc("VirtualService", "bar/productpage-c", "hosts: ['*.productpage.c']\nexportTo: ['*']\n" + route("productpage")),
    doc("VirtualService", "foo/productpage-d", "hosts: ['*.productpage.d']\nexportTo: ['.']\n" + route("productpage")),
    doc("VirtualService", "bar/productpage-d", "hosts: ['*.d']\nexportTo: ['*']\n" + route("productpage")),
]


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        (
            MESH_HOSTS,
            {
                "team3/ratings",
                "team4/ratings",
                "foo/ratings",
                "bar/ratings",
                "foo/productpage",
                "foo/bogus-productpage",
                "team2/ratings",
            },
        ),
        (
            MESH_HOSTS_EXPORT_TO,
            {
                "foo/productpage",
                "bar/productpage",
                "foo/productpage-c",
                "bar/productpage-c",
                "foo/productpage-d",
                "bar/productpage-d",
            },
        ),
    ],
    ids=["gateways-and-exportTo", "wildcards-and-exportTo"],
)
def test_hosts_bound_twice_to_the_sidecars_only_where_both_are_visible(documents, expected):
    findings = analyze(*documents)
    assert reported(findings, "MG0309") == expected
    assert {f.istio_code for f in findings if f.code == "MG0309"} == {"IST0109"}


# --- IST0101 / IST0112 destination hosts and ports, with exportTo ---------------------------------

DESTINATIONS = [
    doc("ServiceEntry", "default/external-reviews", "hosts: [external-reviews.org]"),
    doc("ServiceEntry", "default/eu-wildcard", "hosts: ['*.eu.bookinfo.com']"),
    doc("ServiceEntry", "default-ignore/ignore", "exportTo: ['.']\nhosts: ['*']"),
    doc("ServiceEntry", "other/other", "exportTo: ['.']\nhosts: [other.bookinfo.com]"),
    doc("ServiceEntry", "other/exported", "exportTo: [default]\nhosts: [abc.bookinfo.com]"),
    doc("VirtualService", "default/reviews", route("reviews")),
    doc("VirtualService", "default/reviews-bogushost", route("reviews-bogus")),
    doc("VirtualService", "default/reviews-fqdn", route("reviews.default.svc.cluster.local")),
    doc("VirtualService", "default/reviews-external", route("external-reviews.org")),
    doc("VirtualService", "default/reviews-bookinfo-eu", route("reviews.eu.bookinfo.com")),
    doc("VirtualService", "default/reviews-bookinfo-other", route("other.bookinfo.com")),
    doc("VirtualService", "default/reviews-mirror-bogushost", route("reviews") + "\n  mirror: {host: reviews-bogus}"),
    doc("VirtualService", "default/reviews-bogusport", route("reviews", ", port: {number: 999}")),
    doc("VirtualService", "default/reviews-2port-missing", route("reviews-2port")),
    doc("VirtualService", "default/reviews-2port-present", route("reviews-2port", ", port: {number: 80}")),
    doc(
        "VirtualService",
        "istio-system/cross-namespace",
        "hosts: [reviews]\n" + route("reviews.default.svc.cluster.local"),
    ),
    doc(
        "VirtualService",
        "istio-system/cross-namespace-details",
        "hosts: [details]\n" + route("details.default.svc.cluster.local"),
    ),
    doc("VirtualService", "banana/banana-details", "hosts: [details]\n" + route("details.default.svc.cluster.local")),
    doc("VirtualService", "hello1/hello", "hosts: [hello]\n" + route("hello.hello.svc.cluster.local")),
    doc("VirtualService", "hello/hello", "hosts: [hello]\n" + route("hello.hello.svc.cluster.local")),
    doc(
        "VirtualService",
        "hello/hello-export-to-bogus",
        "hosts: [hello]\nexportTo: [bogus]\n" + route("hello.hello.svc.cluster.local"),
    ),
    doc("VirtualService", "default/vs-to-exported-serviceentry", route("abc.bookinfo.com")),
    doc("VirtualService", "default/se-ports", "hosts: [x]\ntcp:\n- route:\n  - destination: {host: db.example.com}"),
    doc(
        "ServiceEntry",
        "default/db",
        "hosts: [db.example.com]\naddresses: [10.1.1.1]\n"
        "ports: [{number: 5432, protocol: TCP, name: pg}, {number: 5433, protocol: TCP, name: pg2}]",
    ),
]
DESTINATION_SERVICES = [
    service("default/reviews", 42),
    service("default/reviews-2port", 80, 443),
    service("default/details", 9080, export_to=("banana",)),
    service("hello/hello", 9080, export_to=("hello1", "hello2", ".")),
]


def test_destinations_resolve_where_istio_sees_them():
    findings = analyze(*DESTINATIONS, services=DESTINATION_SERVICES)
    assert reported(findings, "MG0301") == {
        "default/reviews-bogushost",
        "default/reviews-bookinfo-other",
        "default/reviews-mirror-bogushost",
        "istio-system/cross-namespace-details",
        "hello/hello-export-to-bogus",
    }
    assert reported(findings, "MG0303") == {"default/reviews-bogusport"}
    assert reported(findings, "MG0304") == {"default/reviews-2port-missing", "default/se-ports"}
    assert {f.istio_code for f in findings if f.code in ("MG0301", "MG0303")} == {"IST0101"}
    assert {f.istio_code for f in findings if f.code == "MG0304"} == {"IST0112"}


def test_a_subset_of_an_unknown_host_is_reported_too():
    findings = analyze(doc("VirtualService", "default/r", route("reviews-bogus", ", subset: v1")))
    assert reported(findings, "MG0301") == reported(findings, "MG0302") == {"default/r"}


# --- IST0130 / IST0131 unreachable rules and ineffective matches ----------------------------------


def vs_http(ref: str, rules: str) -> str:
    return doc("VirtualService", ref, "hosts: [sample.baz.svc.cluster.local]\nhttp:\n" + textwrap.dedent(rules))


TO = "  route:\n  - destination: {host: sample.foo.svc.cluster.local}\n"
MATCHES = [
    vs_http(
        "default/non-method-get",
        "- match:\n  - uri: {prefix: /api/v1/product}\n  - uri: {prefix: /api/v1/products}\n"
        "    method: {exact: GET}\n" + TO,
    ),
    vs_http(
        "default/uri-with-prefix-exact",
        "- match:\n  - uri: {prefix: /}\n  - uri: {exact: /}\n    method: {exact: GET}\n" + TO,
    ),
    vs_http(
        "default/overlapping-in-single-match",
        "- match:\n  - uri: {prefix: /api/v1/product}\n    method: {exact: GET}\n"
        "  - uri: {prefix: /api/v1/products}\n    method: {exact: GET}\n" + TO,
    ),
    vs_http(
        "default/overlapping-in-two-matches",
        "- match:\n  - uri: {prefix: /api/v1/product}\n    method: {exact: GET}\n"
        + TO
        + "- match:\n  - uri: {prefix: /api/v1/products}\n    method: {exact: GET}\n"
        + TO,
    ),
    vs_http(
        "default/different-methods",
        "- match:\n  - uri: {prefix: /api/v1/prod}\n    method: {exact: GET}\n"
        + TO
        + "- match:\n  - uri: {prefix: /api/v1/product}\n    method: {exact: GET}\n"
        "  - uri: {prefix: /api/v1/products}\n    method: {exact: POST}\n" + TO,
    ),
    vs_http(
        "default/different-headers",
        "- match:\n  - uri: {prefix: /api}\n    headers: {x-a: {exact: '1'}}\n"
        + TO
        + "- match:\n  - uri: {prefix: /api/v2}\n    headers: {x-b: {exact: '1'}}\n"
        + TO,
    ),
    vs_http(
        "default/duplicate-match",
        "- match:\n  - uri: {prefix: /a}\n"
        + TO
        + "- match:\n  - uri: {prefix: /a}\n"
        + TO
        + "- match:\n  - uri: {prefix: /b}\n  - uri: {prefix: /a}\n"
        + TO,
    ),
    vs_http("default/two-catch-alls", "-" + TO[1:] + "-" + TO[1:]),
    doc(
        "VirtualService",
        "default/duplicate-tcp-match",
        "hosts: [db]\ntcp:\n"
        "- match: [{port: 5432}]\n  route: [{destination: {host: db}}]\n"
        "- match: [{port: 5432}]\n  route: [{destination: {host: db}}]\n"
        "- match: [{port: 5433}, {port: 5432}]\n  route: [{destination: {host: db}}]",
    ),
    doc(
        "VirtualService",
        "default/duplicate-empty-tcp",
        "hosts: [db]\ntcp:\n- route: [{destination: {host: db}}]\n- route: [{destination: {host: db2}}]",
    ),
    doc(
        "VirtualService",
        "none/tls-routing",
        "hosts: ['*.example.com']\ntls:\n"
        "- match: [{sniHosts: [a.example.com]}]\n  route: [{destination: {host: a}}]\n"
        "- match: [{sniHosts: [a.example.com]}]\n  route: [{destination: {host: b}}]\n"
        "- match: [{sniHosts: [b.example.com]}]\n  route: [{destination: {host: b}}]",
    ),
]


def test_unreachable_rules_and_ineffective_matches_as_istioctl_reports_them():
    findings = analyze(*MATCHES)
    assert reported(findings, "MG0312") == {
        "default/non-method-get",
        "default/overlapping-in-single-match",
        "default/overlapping-in-two-matches",
        "default/different-methods",
    }
    assert reported(findings, "MG0308") == {
        "default/duplicate-match",
        "default/duplicate-tcp-match",
        "none/tls-routing",
    }
    assert reported(findings, "MG0307") == {
        "default/duplicate-match",
        "default/two-catch-alls",
        "default/duplicate-tcp-match",
        "default/duplicate-empty-tcp",
        "none/tls-routing",
    }
    # a route whose matches are partly new stays reachable: only its repeated match is reported
    tcp = [f.path for f in findings if f.object.endswith("duplicate-tcp-match") and f.code in ("MG0307", "MG0308")]
    assert sorted(tcp) == ["spec.tcp[1]", "spec.tcp[1].match[0]", "spec.tcp[2].match[1]"]
    assert {f.istio_code for f in findings if f.code == "MG0307"} == {"IST0130"}
    assert {f.istio_code for f in findings if f.code in ("MG0308", "MG0312")} == {"IST0131"}


# --- IST0145 ConflictingGateways, by the pods selected ---------------------------------------------


def gw(ref: str, selector: str, host: str, port: int = 80) -> str:
    return doc(
        "Gateway",
        ref,
        f"selector: {{{selector}}}\nservers:\n- port: {{number: {port}, name: p, protocol: HTTP}}\n  hosts: ['{host}']",
    )


GATEWAY_PODS = [
    pod("istio-system/ingress-1", istio="ingressgateway", app="istio-ingressgateway"),
    pod("istio-system/egress-1", istio="egressgateway"),
]


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        (
            [gw("a/alpha", "istio: ingressgateway", "foo.bar"), gw("b/beta", "istio: ingressgateway", "*.bar")],
            {"a/alpha", "b/beta"},
        ),
        (
            [gw("a/alpha", "istio: ingressgateway", "foo.bar"), gw("b/beta", "app: istio-ingressgateway", "foo.bar")],
            {"a/alpha", "b/beta"},
        ),
        (
            [
                gw("a/alpha", "istio: ingressgateway", "foo.bar"),
                gw("b/beta", "istio: ingressgateway, app: x", "foo.bar"),
            ],
            {"a/alpha", "b/beta"},
        ),
        ([gw("a/alpha", "istio: ingressgateway", "foo.bar"), gw("b/beta", "istio: egressgateway", "foo.bar")], set()),
        (
            [gw("a/alpha", "istio: ingressgateway", "foo.bar"), gw("b/beta", "istio: ingressgateway", "foo.bar", 8080)],
            set(),
        ),
        ([gw("a/alpha", "istio: ingressgateway", "foo.bar"), gw("b/beta", "istio: ingressgateway", "baz.bar")], set()),
    ],
    ids=[
        "same-selector-wildcard-host",
        "other-labels-same-pod",
        "sub-selector",
        "other-pods",
        "other-port",
        "other-host",
    ],
)
def test_gateways_conflict_on_the_pods_they_select(documents, expected):
    findings = analyze(*documents, pods=GATEWAY_PODS)
    assert reported(findings, "MG0502") == expected


# --- IST0138 GatewayDuplicateCertificate ------------------------------------------------------------


def tls_gw(ref: str, selector: str, tls: str, host: str) -> str:
    return doc(
        "Gateway",
        ref,
        f"selector: {{{selector}}}\nservers:\n- port: {{number: 443, name: https, protocol: HTTPS}}\n"
        f"  hosts: [{host}]\n  tls: {{mode: SIMPLE, {tls}}}",
    )


def test_certificates_shared_by_gateways_on_the_same_pods():
    findings = analyze(
        tls_gw("istio-system/one", "istio: ingressgateway", "credentialName: shared", "a.example.com"),
        tls_gw("istio-system/two", "istio: ingressgateway", "credentialName: shared", "b.example.com"),
        tls_gw("istio-system/narrow", "istio: ingressgateway, app: x", "credentialName: shared", "c.example.com"),
        tls_gw("istio-system/files-1", "istio: ingressgateway", "serverCertificate: /c.pem, privateKey: /k.pem", "d.x"),
        tls_gw("istio-system/files-2", "istio: ingressgateway", "serverCertificate: /c.pem, privateKey: /k.pem", "e.x"),
        tls_gw("istio-system/own", "istio: ingressgateway", "credentialName: own", "f.example.com"),
        pods=GATEWAY_PODS,
    )
    # a Gateway is reported when another selects at least its labels (istioctl's subset rule)
    assert reported(findings, "MG0504") == {
        "istio-system/one",
        "istio-system/two",
        "istio-system/files-1",
        "istio-system/files-2",
    }


# --- IST0132 VirtualServiceHostNotFoundInGateway ----------------------------------------------------


def test_virtual_service_hosts_must_be_served_by_their_gateways():
    findings = analyze(
        doc(
            "Gateway",
            "istio-system/gw",
            "selector: {istio: ingressgateway}\nservers:\n"
            "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['./internal.example.com', 'default/a.example.com', "
            "'*/b.example.com', 'other/c.example.com']",
        ),
        doc("VirtualService", "default/served-a", "hosts: [a.example.com]\ngateways: [istio-system/gw]\n" + route("a")),
        doc("VirtualService", "default/served-b", "hosts: [b.example.com]\ngateways: [istio-system/gw]\n" + route("a")),
        doc(
            "VirtualService",
            "default/other-namespace",
            "hosts: [c.example.com]\ngateways: [istio-system/gw]\n" + route("a"),
        ),
        doc(
            "VirtualService",
            "default/dot-of-gateway",
            "hosts: [internal.example.com]\ngateways: [istio-system/gw]\n" + route("a"),
        ),
        doc(
            "VirtualService",
            "istio-system/dot-ok",
            "hosts: [internal.example.com]\ngateways: [gw, mesh]\n" + route("a"),
        ),
        pods=GATEWAY_PODS,
    )
    assert reported(findings, "MG0313") == {"default/other-namespace", "default/dot-of-gateway"}


# --- IST0128 / IST0129 NoServerCertificateVerification ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "codes"),
    [
        ("host: db\ntrafficPolicy: {tls: {mode: SIMPLE}}", {"MG0407"}),
        ("host: db\ntrafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}", {"MG0407"}),
        ("host: db\ntrafficPolicy: {portLevelSettings: [{port: {number: 5432}, tls: {mode: SIMPLE}}]}", {"MG0408"}),
        (
            "host: db\ntrafficPolicy:\n  tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}\n"
            "  portLevelSettings: [{port: {number: 5432}, tls: {mode: SIMPLE}}]",
            {"MG0407", "MG0408"},
        ),
        ("host: db\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: db-creds}}", {"MG0407"}),
        (
            "host: db\nworkloadSelector: {matchLabels: {app: egress}}\n"
            "trafficPolicy: {tls: {mode: SIMPLE, credentialName: db-creds}}",
            set(),
        ),
        ("host: db\ntrafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca.pem}}", set()),
        ("host: db\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}", set()),
    ],
)
def test_tls_origination_without_ca_certificates(spec, codes):
    findings = analyze(doc("DestinationRule", "default/db-tls", spec))
    assert {f.code for f in findings if f.code in ("MG0407", "MG0408")} == codes


# --- DestinationRules for one host, with exportTo -----------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "conflict"),
    [
        ("", "", True),
        ("exportTo: ['.']", "exportTo: [other]", False),
        ("exportTo: ['.']", "exportTo: ['*']", True),
        ("exportTo: [a, b]", "exportTo: [b]", True),
    ],
)
def test_destination_rules_for_one_host_conflict_where_both_are_visible(first, second, conflict):
    findings = analyze(
        doc("DestinationRule", "default/one", f"host: reviews\n{first}"),
        doc("DestinationRule", "default/two", f"host: reviews\n{second}"),
    )
    assert bool(reported(findings, "MG0404")) is conflict


# --- IST0127 NoMatchingWorkloadsFound and IST0101 namespaces of AuthorizationPolicies ------------------


def test_authorization_policies_apply_to_workloads_and_name_namespaces_that_exist():
    findings = analyze(
        doc("AuthorizationPolicy", "httpbin-empty/namespace-wide", "action: ALLOW"),
        doc("AuthorizationPolicy", "httpbin/namespace-wide", "action: ALLOW"),
        doc("AuthorizationPolicy", "istio-system/mesh-wide", "action: ALLOW"),
        doc("AuthorizationPolicy", "istio-system/mesh-wide-httpbin-v1", "selector: {matchLabels: {version: v1}}"),
        doc("AuthorizationPolicy", "httpbin/nopods", "selector: {matchLabels: {app: nope}}"),
        doc(
            "AuthorizationPolicy",
            "httpbin/patterns",
            "rules:\n- from:\n  - source:\n"
            "      namespaces: ['*', '*-system', 'http*', HTTPBIN]\n      notNamespaces: ['*-bogus', 'bogus-*', bogus]",
        ),
        namespaces=["httpbin", "httpbin-empty", "istio-system"],
        pods=[pod("httpbin/httpbin-1", app="httpbin", version="v2"), pod("istio-system/istiod-1", app="istiod")],
    )
    assert reported(findings, "MG0611") == {"httpbin-empty/namespace-wide"}
    assert reported(findings, "MG0601") == {"istio-system/mesh-wide-httpbin-v1", "httpbin/nopods"}
    bogus = [f.path for f in findings if f.code == "MG0602"]
    assert bogus == [f"spec.rules[0].from[0].source.notNamespaces[{i}]" for i in range(3)]
    assert {f.istio_code for f in findings if f.code in ("MG0601", "MG0611")} == {"IST0127"}


def test_selectors_of_authentication_policies_have_no_istio_code():
    findings = analyze(
        doc("PeerAuthentication", "httpbin/p", "selector: {matchLabels: {app: nope}}"),
        pods=[pod("httpbin/httpbin-1", app="httpbin")],
    )
    # (the namespace has no injection label: MG1001 IST0102 is reported too)
    assert [(f.code, f.istio_code) for f in findings if f.code.startswith("MG06")] == [("MG0601", "")]


# --- IST0110 / IST0111 Sidecar selectors ----------------------------------------------------------------


def test_sidecars_select_pods_once():
    findings = analyze(
        doc("Sidecar", "default/maps-to-nonexistent", "workloadSelector: {labels: {app: bogus}}"),
        doc("Sidecar", "other/maps-to-different-ns", "workloadSelector: {labels: {app: productpage}}"),
        doc("Sidecar", "default/dupe-1", "workloadSelector: {labels: {app: reviews}}"),
        doc("Sidecar", "default/dupe-2", "workloadSelector: {labels: {app: reviews}}"),
        doc("Sidecar", "default/overlap-1", "workloadSelector: {labels: {app: ratings}}"),
        doc("Sidecar", "default/overlap-2", "workloadSelector: {labels: {version: v9}}"),
        doc("Sidecar", "default/no-conflict", "workloadSelector: {labels: {app: productpage}}"),
        doc("Sidecar", "ns2/has-conflict-1", "egress: [{hosts: ['./*']}]"),
        doc("Sidecar", "ns2/has-conflict-2", "egress: [{hosts: ['./*']}]"),
        doc("Sidecar", "ns3/no-conflict", "egress: [{hosts: ['./*']}]"),
        namespaces=["other", "ns2", "ns3"],
        pods=[
            pod("default/productpage-1", app="productpage"),
            pod("default/reviews-1", app="reviews"),
            pod("default/ratings-1", app="ratings", version="v9"),
        ],
    )
    assert reported(findings, "MG0803") == {"default/maps-to-nonexistent", "other/maps-to-different-ns"}
    assert reported(findings, "MG0804") == {
        "default/dupe-1",
        "default/dupe-2",
        "default/overlap-1",
        "default/overlap-2",
    }
    assert reported(findings, "MG0801") == {"ns2/has-conflict-1", "ns2/has-conflict-2"}
    assert {f.istio_code for f in findings if f.code == "MG0801"} == {"IST0111"}
    assert {f.istio_code for f in findings if f.code == "MG0804"} == {"IST0110"}


# --- IST0134 / IST0177 ServiceEntry addresses and protocols -------------------------------------------


def test_service_entries_need_addresses_for_tcp_ports():
    findings = analyze(
        doc(
            "ServiceEntry",
            "default/test-01",
            "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]",
        ),
        doc(
            "ServiceEntry",
            "default/test-02",
            "hosts: [b.example.com]\naddresses: [10.0.0.1]\nports: [{number: 80, name: tcp, protocol: TCP}]",
        ),
        doc(
            "ServiceEntry", "default/test-03", "hosts: [c.example.com]\nports: [{number: 80, name: tcp, protocol: TCP}]"
        ),
        doc("ServiceEntry", "default/test-04", "hosts: [d.example.com]\nports: [{number: 80, name: p}]"),
        doc(
            "ServiceEntry", "default/lowercase", "hosts: [e.example.com]\nports: [{number: 80, name: t, protocol: tcp}]"
        ),
    )
    assert reported(findings, "MG0703") == {"default/test-03", "default/test-04", "default/lowercase"}


def test_service_entries_for_one_host_and_port_agree_on_the_protocol():
    findings = analyze(
        doc("ServiceEntry", "a/http", "hosts: [api.example.com]\nports: [{number: 443, name: p, protocol: HTTPS}]"),
        doc("ServiceEntry", "b/tls", "hosts: [api.example.com]\nports: [{number: 443, name: p, protocol: TLS}]"),
        doc(
            "ServiceEntry",
            "c/local",
            "exportTo: ['.']\nhosts: [api2.example.com]\nports: [{number: 443, name: p, protocol: TLS}]",
        ),
        doc(
            "ServiceEntry",
            "d/local",
            "exportTo: ['.']\nhosts: [api2.example.com]\nports: [{number: 443, name: p, protocol: HTTPS}]",
        ),
        doc("ServiceEntry", "e/same", "hosts: [api3.example.com]\nports: [{number: 443, name: p, protocol: TLS}]"),
        doc("ServiceEntry", "f/same", "hosts: [api3.example.com]\nports: [{number: 443, name: p, protocol: tls}]"),
    )
    assert reported(findings, "MG0704") == {"a/http", "b/tls"}


# --- IST0174 / IST0173 DestinationRule hosts and subsets ----------------------------------------------


def test_destination_rule_hosts_resolve_as_istioctl_resolves_them():
    findings = analyze(
        doc("DestinationRule", "default/known", "host: reviews"),
        doc("DestinationRule", "default/fake", "host: fake"),
        doc("DestinationRule", "other/hidden", "host: details.default.svc.cluster.local"),
        doc("DestinationRule", "banana/exported", "host: details.default.svc.cluster.local"),
        doc("DestinationRule", "default/wildcard-covered", "host: '*.eu.example.com'"),
        doc("DestinationRule", "default/wildcard-uncovered", "host: '*.example.org'"),
        doc("ServiceEntry", "default/eu", "hosts: ['*.example.com']"),
        services=[service("default/reviews", 9080), service("default/details", 9080, export_to=("banana",))],
    )
    assert reported(findings, "MG0401") == {"default/fake", "other/hidden", "default/wildcard-uncovered"}
    assert {f.istio_code for f in findings if f.code == "MG0401"} == {"IST0174"}


def test_a_subset_is_reported_to_istioctl_only_when_no_pod_anywhere_carries_its_labels():
    findings = analyze(
        doc(
            "DestinationRule",
            "default/reviews",
            "host: reviews\nsubsets:\n"
            "- {name: v1, labels: {version: v1}}\n- {name: v2, labels: {version: v2}}\n- {name: v9, labels: {version: v9}}",
        ),
        services=[service("default/reviews", 9080, app="reviews")],
        pods=[
            pod("default/reviews-v1", app="reviews", version="v1"),
            pod("other/ratings-v2", app="ratings", version="v2"),
        ],
    )
    subsets = {f.path: f.istio_code for f in findings if f.code == "MG0403"}
    assert subsets == {"spec.subsets[1].labels": "", "spec.subsets[2].labels": "IST0173"}


def test_a_missing_gateway_serves_none_of_the_hosts():
    findings = analyze(
        doc(
            "VirtualService",
            "default/httpbin-bogus",
            "hosts: [httpbin.example.com]\ngateways: [bogus-gateway]\n" + route("httpbin"),
        )
    )
    assert {f.code for f in findings} >= {"MG0305", "MG0313"}


def test_a_gateway_of_a_route_match_that_does_not_exist_has_no_istio_code():
    findings = analyze(
        doc(
            "VirtualService",
            "default/r",
            "hosts: [r]\nhttp:\n- match:\n  - gateways: [nope]\n  route:\n  - destination: {host: r}",
        )
    )
    assert [(f.code, f.istio_code) for f in findings if f.code == "MG0305"] == [("MG0305", "")]


def test_an_empty_address_list_is_no_address():
    findings = analyze(
        doc(
            "ServiceEntry",
            "default/db",
            "hosts: [db.example.com]\naddresses: []\nports: [{number: 5432, name: pg, protocol: TCP}]",
        )
    )
    assert reported(findings, "MG0703") == {"default/db"}


# --- IST0162 GatewayPortNotDefinedOnService -----------------------------------------------------------


@pytest.mark.parametrize(("port", "reported_"), [(80, False), (8080, False), (15021, False), (8081, True)])
def test_gateway_ports_must_be_ports_of_the_gateway_service(port, reported_):
    findings = analyze(
        gw("istio-system/edge", "istio: ingressgateway", "edge.example.com", port),
        services=[
            Service("istio-system", "istio-ingressgateway", (80, 15021), {"istio": "ingressgateway"}, (), (8080, 15021))
        ],
        pods=GATEWAY_PODS,
    )
    assert bool(reported(findings, "MG0505")) is reported_
