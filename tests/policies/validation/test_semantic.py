"""Layer 3 end to end: every cross-resource check fires on a trigger and stays quiet on a near miss.

The live state is meshsim's staging demo mesh, its Istio objects imported as the environment's
policies (see integrations/meshsim/seeds/staging.yaml): bookinfo (productpage, details, reviews
v1-v3, ratings on 9080; PeerAuthentication STRICT; DestinationRules with subsets; bookinfo-gateway),
shop (frontend, catalog v1-v2, cart, checkout, payments v1-v2 on 8080; PERMISSIVE; shop-gateway;
ServiceEntry api.stripe.com; a default Sidecar) and istio-system (ingress gateway pods istio=ingressgateway).
"""

import textwrap
from dataclasses import dataclass

import pytest

from policies.models import Policy
from policies.validation import Level, validate_bundle
from policies.validation.checks import REGISTRY
from policies.validation.codes import CATALOGUE
from tests.policies.validation.helpers import codes, only

GROUPS = {"AuthorizationPolicy": "security", "PeerAuthentication": "security", "RequestAuthentication": "security"}


def obj(kind: str, name: str, namespace: str, spec: str) -> str:
    group = GROUPS.get(kind, "networking")
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: {group}.istio.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"spec:\n{body}\n"
    )


def vs(spec: str, name: str = "reviews-canary", namespace: str = "bookinfo") -> str:
    return obj("VirtualService", name, namespace, spec)


def route_to(destination: str, hosts: str = "[canary.bookinfo.example.com]") -> str:
    return f"hosts: {hosts}\nhttp:\n- route:\n  - destination: {destination}\n"


def dr(spec: str, name: str = "reviews", namespace: str = "bookinfo") -> str:
    return obj("DestinationRule", name, namespace, spec)


def gateway(spec: str, name: str = "edge", namespace: str = "bookinfo") -> str:
    return obj("Gateway", name, namespace, spec)


def authz(spec: str, name: str = "reviews-viewer", namespace: str = "bookinfo") -> str:
    return obj("AuthorizationPolicy", name, namespace, spec)


def from_source(source: str) -> str:
    return f"selector: {{matchLabels: {{app: reviews}}}}\nrules:\n- from:\n  - source: {source}\n"


def peer(spec: str, name: str = "default", namespace: str = "bookinfo") -> str:
    return obj("PeerAuthentication", name, namespace, spec)


def request_auth(rule: str) -> str:
    spec = f"selector: {{matchLabels: {{app: frontend}}}}\njwtRules:\n- {rule}\n"
    return obj("RequestAuthentication", "shop-jwt", "shop", spec)


def service_entry(spec: str) -> str:
    return obj("ServiceEntry", "partner", "shop", spec)


def sidecar(spec: str, name: str = "default") -> str:
    return obj("Sidecar", name, "shop", spec)


GET_ONLY = "selector: {{matchLabels: {{app: {app}}}}}\naction: ALLOW\nrules:\n- to: [{{operation: {{methods: [GET]}}}}]"
ISSUER = "https://auth.shop.example.com"
DATABASE = "hosts: [db.internal.example.com]\nresolution: {resolution}\nports: [{{number: 5432, protocol: TCP}}]\n"
GOOGLE_APIS = "hosts: ['*.googleapis.com']\nresolution: {resolution}\nports: [{{number: 443, protocol: TLS}}]"
CLAIM_ROUTE = (
    "hosts: [bookinfo.staging.example.com]\ngateways: [bookinfo-gateway]\nhttp:\n"
    "- match:\n  - headers: {'@request.auth.claims.group': {exact: admin}}\n"
    "  route:\n  - destination: {host: productpage, port: {number: 9080}}\n"
)
SERVER = "servers:\n- port: {{number: {port}, name: p, protocol: {protocol}}}\n  hosts: [{host}]\n"


def server(host: str, port: int = 80, protocol: str = "HTTP", selector: str = "istio: ingressgateway") -> str:
    return f"selector: {{{selector}}}\n" + SERVER.format(port=port, protocol=protocol, host=host)


@dataclass(frozen=True)
class Case:
    code: str
    trigger: str
    path: str
    near_miss: str

    def __str__(self) -> str:
        return self.code


CASES = [
    # --- VirtualService ---
    Case(
        "MG0301",
        vs(route_to("{host: reviewz}")),
        "spec.http[0].route[0].destination.host",
        vs(
            "hosts: [canary.shop.example.com]\n"
            "http:\n- route:\n  - destination: {host: reviews.bookinfo.svc.cluster.local, port: {number: 9080}}\n"
            "tcp:\n- route:\n  - destination: {host: api.stripe.com, port: {number: 443}}\n",
            namespace="shop",
        ),
    ),
    Case(
        "MG0302",
        vs(route_to("{host: reviews, subset: v9}")),
        "spec.http[0].route[0].destination.subset",
        vs(route_to("{host: reviews, subset: v3}")),
    ),
    Case(
        "MG0303",
        vs(route_to("{host: reviews, port: {number: 9090}}")),
        "spec.http[0].route[0].destination.port.number",
        vs(route_to("{host: reviews, port: {number: 9080}}")),
    ),
    Case(
        "MG0304",
        vs(route_to("{host: istiod.istio-system.svc.cluster.local}")),
        "spec.http[0].route[0].destination",
        vs(route_to("{host: istiod.istio-system.svc.cluster.local, port: {number: 15010}}")),
    ),
    Case(
        "MG0305",
        vs("gateways: [bookinfo-gw]\n" + route_to("{host: productpage}")),
        "spec.gateways[0]",
        vs("gateways: [bookinfo-gateway, shop/shop-gateway, mesh]\n" + route_to("{host: productpage}")),
    ),
    Case(
        "MG0306",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- route:\n"
            "  - {destination: {host: reviews, subset: v1}, weight: 50}\n"
            "  - {destination: {host: reviews, subset: v2}, weight: 40}\n"
        ),
        "spec.http[0].route",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- route:\n"
            "  - {destination: {host: reviews, subset: v1}, weight: 90}\n"
            "  - {destination: {host: reviews, subset: v2}, weight: 10}\n"
            "- route:\n  - destination: {host: reviews, subset: v3}\n"
        ),
    ),
    Case(
        "MG0307",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- route:\n  - destination: {host: reviews}\n"
            "- route:\n  - destination: {host: ratings}\n"
        ),
        "spec.http[1]",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
            "- route:\n  - destination: {host: reviews}\n"
        ),
    ),
    Case(
        "MG0308",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
            "- match:\n  - headers: {x-beta: {exact: 'yes'}}\n  - uri: {prefix: /api}\n"
            "  route:\n  - destination: {host: reviews}\n"
        ),
        "spec.http[1].match[1]",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
            "- match:\n  - uri: {prefix: /api/v2}\n  route:\n  - destination: {host: reviews}\n"
        ),
    ),
    Case(
        "MG0309",
        vs(route_to("{host: reviews, subset: v2}", hosts="[reviews]"), name="reviews-v2"),
        "spec.hosts[0]",
        vs(route_to("{host: reviews, subset: v2}", hosts="[reviews]"), name="reviews"),
    ),
    Case(
        "MG0310",
        vs("hosts: []\nhttp:\n- route:\n  - destination: {host: reviews}\n"),
        "spec.hosts",
        vs("hosts: []\nhttp:\n- route:\n  - destination: {host: reviews}\n", name="reviews-delegate")
        + "---\n"
        + vs(
            "hosts: [canary.bookinfo.example.com]\ngateways: [bookinfo-gateway]\n"
            "http:\n- delegate: {name: reviews-delegate}\n",
            name="edge",
        ),
    ),
    Case(
        "MG0312",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
            "- match:\n  - uri: {prefix: /api/v2}\n  route:\n  - destination: {host: reviews}\n"
        ),
        "spec.http[1].match[0]",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n"
            "- match:\n  - uri: {prefix: /api/v2}\n  route:\n  - destination: {host: reviews}\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
            "- match:\n  - uri: {prefix: /api/v3}\n    method: {exact: POST}\n  route:\n  - destination: {host: reviews}\n"
        ),
    ),
    Case(
        "MG0313",
        vs("gateways: [bookinfo-gateway]\n" + route_to("{host: productpage}", hosts="[other.example.com]")),
        "spec.gateways[0]",
        vs("gateways: [bookinfo-gateway]\n" + route_to("{host: productpage}", hosts="[bookinfo.staging.example.com]")),
    ),
    Case(
        "MG0317",
        vs(route_to("{host: reviews}") + "  fault: {delay: {fixedDelay: 2s, percent: 10}}\n"),
        "spec.http[0].fault.delay.percent",
        vs(route_to("{host: reviews}") + "  fault: {delay: {fixedDelay: 2s, percentage: {value: 10}}}\n"),
    ),
    Case(
        "MG0314",
        vs(
            "gateways: [bookinfo-gateway]\n"
            + route_to("{host: reviews, port: {number: 9080}}", hosts="[bookinfo.staging.example.com]")
        ),
        "spec.http[0].route[0].destination",
        vs(
            "gateways: [bookinfo-gateway]\n"
            + route_to("{host: reviews, subset: v1, port: {number: 9080}}", hosts="[bookinfo.staging.example.com]")
        ),
    ),
    Case(
        "MG0315",
        vs(CLAIM_ROUTE),
        "spec.gateways[0]",
        vs(CLAIM_ROUTE)
        + "---\n"
        + obj(
            "RequestAuthentication",
            "ingress-jwt",
            "istio-system",
            f"selector: {{matchLabels: {{istio: ingressgateway}}}}\njwtRules:\n- {{issuer: '{ISSUER}'}}",
        ),
    ),
    Case(
        "MG0316",
        vs("gateways: [istio-system/public-istio-autogenerated-k8s-gateway-http]\n" + route_to("{host: productpage}")),
        "spec.gateways[0]",
        vs("gateways: [bookinfo-gateway]\n" + route_to("{host: productpage}", hosts="[bookinfo.staging.example.com]")),
    ),
    Case(
        "MG0311",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- match:\n  - uri: {regex: '(?=admin)/.*'}\n"
            "  route:\n  - destination: {host: reviews}\n"
        ),
        "spec.http[0].match[0].uri.regex",
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- match:\n  - uri: {regex: '^/api/v[0-9]+/.*'}\n"
            "    headers: {x-user: {regex: '[a-z]+'}}\n  route:\n  - destination: {host: reviews}\n"
        ),
    ),
    # --- DestinationRule ---
    Case(
        "MG0401",
        dr("host: reviewz", name="reviewz"),
        "spec.host",
        dr("host: api.stripe.com\ntrafficPolicy: {tls: {mode: SIMPLE}}", name="stripe", namespace="shop"),
    ),
    Case(
        "MG0402",
        dr("host: reviews\nsubsets:\n- {name: v1, labels: {version: v1}}\n- {name: v1, labels: {app: x}}"),
        "spec.subsets[1].name",
        dr("host: reviews\nsubsets:\n- {name: v1, labels: {version: v1}}\n- {name: v2, labels: {version: v2}}"),
    ),
    Case(
        "MG0403",
        dr("host: reviews\nsubsets:\n- {name: v4, labels: {version: v4}}"),
        "spec.subsets[0].labels",
        dr("host: reviews\nsubsets:\n- {name: v3, labels: {version: v3}}"),
    ),
    Case(
        "MG0404",
        dr("host: reviews\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}", name="reviews-lb"),
        "spec.host",
        dr("host: reviews\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}"),
    ),
    Case(
        "MG0405",
        dr("host: reviews\ntrafficPolicy: {tls: {mode: DISABLE}}"),
        "spec.trafficPolicy.tls.mode",
        dr("host: reviews\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}"),
    ),
    Case(
        "MG0406",
        dr("host: catalog\ntrafficPolicy: {tls: {mode: DISABLE}}", name="catalog", namespace="shop"),
        "spec.trafficPolicy.tls.mode",
        dr("host: catalog\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}", name="catalog", namespace="shop"),
    ),
    Case(
        "MG0407",
        dr("host: api.stripe.com\ntrafficPolicy: {tls: {mode: SIMPLE}}", name="stripe", namespace="shop"),
        "spec.trafficPolicy.tls",
        dr(
            "host: api.stripe.com\ntrafficPolicy: {tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem}}",
            name="stripe",
            namespace="shop",
        ),
    ),
    Case(
        "MG0408",
        dr(
            "host: api.stripe.com\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 443}\n"
            "    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}",
            name="stripe",
            namespace="shop",
        ),
        "spec.trafficPolicy.portLevelSettings[0].tls",
        dr(
            "host: api.stripe.com\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 443}\n"
            "    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
            name="stripe",
            namespace="shop",
        ),
    ),
    # --- Gateway ---
    Case(
        "MG0501",
        gateway(server("edge.example.com", selector="istio: egressgateway")),
        "spec.selector",
        gateway(server("edge.example.com")),
    ),
    Case(
        "MG0502",
        gateway(server("bookinfo.staging.example.com"), namespace="shop"),
        "spec.servers[0].hosts[0]",
        gateway(server("other.staging.example.com"), namespace="shop"),
    ),
    Case(
        "MG0503",
        gateway(server("edge.example.com") + "  tls: {mode: SIMPLE, credentialName: edge-tls}\n"),
        "spec.servers[0].tls.credentialName",
        gateway(server("edge.example.com", 443, "HTTPS") + "  tls: {mode: SIMPLE, credentialName: edge-tls}\n"),
    ),
    Case(
        "MG0505",
        gateway(server("edge.example.com", port=8081)),
        "spec.servers[0].port.number",
        gateway(server("edge.example.com", port=8080)),
    ),
    Case(
        "MG0504",
        gateway(server("edge.example.com", 443, "HTTPS") + "  tls: {mode: SIMPLE, credentialName: shop-tls}\n"),
        "spec.servers",
        gateway(server("edge.example.com", 443, "HTTPS") + "  tls: {mode: SIMPLE, credentialName: edge-tls}\n"),
    ),
    # --- security ---
    Case(
        "MG0601",
        authz(GET_ONLY.format(app="reviewz")),
        "spec.selector.matchLabels",
        authz(GET_ONLY.format(app="reviews")),
    ),
    Case(
        "MG0602",
        authz(from_source("{namespaces: [shop, nope]}")),
        "spec.rules[0].from[0].source.namespaces[1]",
        authz(from_source("{namespaces: [shop, istio-system, '*-system', 'book*'], notNamespaces: ['*']}")),
    ),
    Case(
        "MG0603",
        authz(from_source("{principals: [bookinfo/sa/reviews]}")),
        "spec.rules[0].from[0].source.principals[0]",
        authz(
            from_source(
                "{principals: [cluster.local/ns/bookinfo/sa/productpage, '*', "
                "'cluster.local/ns/shop/*', '*/sa/checkout'], notPrincipals: ['*/ns/shop/sa/cart']}"
            )
        ),
    ),
    Case(
        "MG0604",
        authz(from_source("{principals: [cluster.local/ns/nope/sa/reviews]}")),
        "spec.rules[0].from[0].source.principals[0]",
        authz(from_source("{principals: [cluster.local/ns/shop/sa/checkout]}")),
    ),
    Case(
        "MG0605",
        authz("selector: {matchLabels: {app: reviews}}\naction: ALLOW\nrules:\n- {}"),
        "spec.rules[0]",
        authz("selector: {matchLabels: {app: reviews}}\naction: ALLOW"),
    ),
    Case(
        "MG0606",
        authz("selector: {matchLabels: {app: reviews}}\naction: DENY"),
        "spec.action",
        authz("selector: {matchLabels: {app: reviews}}\naction: DENY\nrules: [{to: [{operation: {paths: [/a]}}]}]"),
    ),
    Case(
        "MG0607",
        peer("mtls: {mode: STRICT}\nportLevelMtls:\n  9080: {mode: DISABLE}"),
        "spec.portLevelMtls",
        peer(
            "selector: {matchLabels: {app: reviews}}\nmtls: {mode: STRICT}\nportLevelMtls:\n  9080: {mode: DISABLE}",
            name="reviews",
        ),
    ),
    Case("MG0608", peer("mtls: {mode: PERMISSIVE}", name="legacy"), "spec", peer("mtls: {mode: PERMISSIVE}")),
    Case(
        "MG0609",
        request_auth(f"{{issuer: '{ISSUER}', jwksUri: 'http://auth.shop.example.com/jwks'}}"),
        "spec.jwtRules[0].jwksUri",
        request_auth(f"{{issuer: '{ISSUER}', jwksUri: '{ISSUER}/jwks'}}"),
    ),
    Case(
        "MG0610",
        request_auth(f"{{jwksUri: '{ISSUER}/jwks'}}"),
        "spec.jwtRules[0].issuer",
        request_auth(f"{{issuer: '{ISSUER}', jwksUri: '{ISSUER}/jwks'}}"),
    ),
    Case(
        "MG0611",
        authz("action: ALLOW\nrules:\n- from:\n  - source: {namespaces: [shop]}", namespace="default"),
        "metadata.namespace",
        authz("action: ALLOW\nrules:\n- from:\n  - source: {namespaces: [shop]}"),
    ),
    # The staging istiod sets no BLOCKED_CIDRS_IN_JWKS_URIS (its near misses on istiod are in
    # test_istio_deprecated_and_jwks.py); without a RequestAuthentication in the bundle nothing is reported.
    Case(
        "MG0612",
        request_auth(f"{{issuer: '{ISSUER}', jwksUri: '{ISSUER}/jwks'}}"),
        "metadata.name",
        authz("action: ALLOW\nrules:\n- from:\n  - source: {namespaces: [shop]}"),
    ),
    # --- ServiceEntry ---
    Case(
        "MG0701",
        service_entry(DATABASE.format(resolution="STATIC")),
        "spec.resolution",
        service_entry(DATABASE.format(resolution="STATIC") + "endpoints: [{address: 10.0.0.5}]"),
    ),
    Case(
        "MG0702",
        service_entry(GOOGLE_APIS.format(resolution="DNS")),
        "spec.hosts[0]",
        service_entry(GOOGLE_APIS.format(resolution="NONE")),
    ),
    Case(
        "MG0703",
        service_entry(DATABASE.format(resolution="DNS")),
        "spec.ports[0]",
        service_entry(DATABASE.format(resolution="DNS") + "addresses: [10.0.0.5]"),
    ),
    Case(
        "MG0704",
        service_entry("hosts: [api.stripe.com]\nresolution: DNS\nports: [{number: 443, protocol: HTTPS}]"),
        "spec.hosts[0]",
        service_entry("hosts: [api.stripe.com]\nresolution: DNS\nports: [{number: 443, protocol: TLS}]"),
    ),
    # --- Sidecar ---
    Case(
        "MG0801",
        sidecar("egress:\n- hosts: ['./*']", name="second"),
        "spec",
        sidecar("workloadSelector: {labels: {app: frontend}}\negress:\n- hosts: ['./*']", name="frontend"),
    ),
    Case(
        "MG0802",
        sidecar("egress:\n- hosts: ['./*', istio-system]"),
        "spec.egress[0].hosts[1]",
        sidecar("egress:\n- hosts: ['./*', 'istio-system/*', '~/*', '*/api.stripe.com', 'shop/*.example.com']"),
    ),
    Case(
        "MG0803",
        sidecar("workloadSelector: {labels: {app: frontendz}}\negress:\n- hosts: ['./*']", name="frontend"),
        "spec.workloadSelector",
        sidecar("workloadSelector: {labels: {app: frontend}}\negress:\n- hosts: ['./*']", name="frontend"),
    ),
    Case(
        "MG0804",
        sidecar("workloadSelector: {labels: {app: frontend}}\negress:\n- hosts: ['./*']", name="frontend")
        + "---\n"
        + sidecar("workloadSelector: {labels: {version: v1}}\negress:\n- hosts: ['./*']", name="v1"),
        "spec.workloadSelector",
        sidecar("workloadSelector: {labels: {app: frontend}}\negress:\n- hosts: ['./*']", name="frontend")
        + "---\n"
        + sidecar("workloadSelector: {labels: {app: cart}}\negress:\n- hosts: ['./*']", name="cart"),
    ),
    Case(
        "MG0805",
        sidecar("egress:\n- hosts: ['./*']\noutboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: squid}}"),
        "spec.outboundTrafficPolicy.egressProxy",
        sidecar("egress:\n- hosts: ['./*']\noutboundTrafficPolicy: {mode: ALLOW_ANY}"),
    ),
]


def test_every_check_has_a_case():
    from tests.policies.validation.test_live_context import LIVE_CASES

    assert {case.code for case in CASES} | {case.code for case in LIVE_CASES} == {check.code for check in REGISTRY}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_check_fires_on_its_trigger(validate, case):
    report = validate(case.trigger)
    first = report.documents[0].label
    found = [f for f in report.findings if f.code == case.code and f.object == first]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    finding = found[0]
    entry = CATALOGUE[case.code]
    assert (finding.layer, finding.level, finding.path) == ("semantic", entry.level, case.path)
    assert finding.istio_code == entry.istio
    assert finding.line == report.documents[0].line_of(case.path)
    assert finding.object == report.documents[0].label
    assert ": " in finding.message, "the message says what is wrong and then how to fix it"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_check_is_quiet_on_its_near_miss(validate, case):
    report = validate(case.near_miss)
    assert case.code not in codes(report), [f.message for f in report.findings]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "reviewz",
            "'reviewz' is neither a Service in namespace bookinfo (reviewz.bookinfo.svc.cluster.local) nor a "
            "ServiceEntry host (did you mean 'reviews'?)",
        ),
        (
            "reviews.bookinfo",
            "'reviews.bookinfo' is taken as a fully qualified name, which Istio does not expand: "
            "write reviews.bookinfo.svc.cluster.local",
        ),
        ("reviews.nope.svc.cluster.local", "names namespace 'nope', which does not exist"),
        ("cart.bookinfo.svc.cluster.local", "there is no Service cart in namespace bookinfo"),
        ("api.github.com", "is outside the cluster and no ServiceEntry declares it: add a ServiceEntry"),
    ],
)
def test_an_unknown_host_is_explained(validate, host, expected):
    report = validate(vs(route_to(f"{{host: {host}}}")))
    assert expected in only(report, "MG0301").message


def test_a_strict_peer_authentication_is_told_about_the_rule_it_breaks(validate):
    report = validate(
        dr("host: catalog\ntrafficPolicy: {tls: {mode: DISABLE}}", name="catalog", namespace="shop")
        + "---\n"
        + peer("mtls: {mode: STRICT}", namespace="shop")
    )
    by_kind = {f.object.split()[0]: f for f in report.findings if f.code == "MG0405"}
    assert set(by_kind) == {"DestinationRule", "PeerAuthentication"}
    assert "STRICT mTLS breaks DestinationRule shop/catalog" in by_kind["PeerAuthentication"].message
    assert "MG0406" not in codes(report), "the bundle's STRICT policy replaces shop's PERMISSIVE one"


def test_a_gateway_host_overlapping_by_wildcard_conflicts(validate):
    report = validate(gateway(server("'*.staging.example.com'"), namespace="shop"))
    assert "Gateway bookinfo/bookinfo-gateway" in only(report, "MG0502").message


@pytest.mark.parametrize("kind", ["PeerAuthentication", "RequestAuthentication"])
def test_selectors_of_every_security_kind_are_checked(validate, kind):
    rule = "\njwtRules:\n- {issuer: 'https://x.example.com'}" if kind == "RequestAuthentication" else ""
    report = validate(obj(kind, "x", "bookinfo", "selector: {matchLabels: {app: reviewz}}" + rule))
    assert only(report, "MG0601").path == "spec.selector.matchLabels"


def test_a_selector_in_the_root_namespace_matches_workloads_everywhere(validate):
    report = validate(
        authz("selector: {matchLabels: {app: reviews}}\naction: DENY\nrules:\n- {}", namespace="istio-system")
    )
    assert "MG0601" not in codes(report)


def test_the_bundle_replaces_the_environments_objects_of_the_same_identity(validate):
    report = validate(
        dr("host: reviews\nsubsets:\n- {name: v1, labels: {version: v1}}")
        + "---\n"
        + vs(route_to("{host: reviews, subset: v2}"))
    )
    assert "subsets: v1" in only(report, "MG0302").message


def test_excluded_policies_are_left_out_of_the_context(staging):
    rule = Policy.objects.get(environment=staging, kind="DestinationRule", namespace="bookinfo", name="reviews")
    files = [("vs.yaml", vs(route_to("{host: reviews, subset: v2}")).encode())]
    assert "MG0302" not in codes(validate_bundle(environment=staging, files=files))
    report = validate_bundle(environment=staging, files=files, exclude_policy_ids=[rule.pk])
    assert "no DestinationRule exists for reviews.bookinfo.svc.cluster.local" in only(report, "MG0302").message


def test_objects_of_the_environment_are_not_reported_on(validate):
    # bookinfo/reviews (live) and the bundle's VS both bind host reviews: only the bundle's is reported.
    report = validate(vs(route_to("{host: reviews}", hosts="[reviews]"), name="reviews-v2"))
    assert [f.object for f in report.findings] == ["VirtualService bookinfo/reviews-v2"]


def test_checks_that_need_no_cluster_still_run_when_it_is_unreachable(db):
    from policies.validation import validate_text
    from tests.factories import EnvironmentFactory

    offline = EnvironmentFactory(name="offline", api_url="http://127.0.0.1:9")
    trigger = (
        next(case for case in CASES if case.code == "MG0306").trigger
        + "---\n"
        + CASES[0].trigger.replace("reviews-canary", "other")
    )
    report = validate_text(environment=offline, text=trigger)
    assert "MG0306" in codes(report) and "MG0301" not in codes(report)
    assert "MG0300" in codes(report)


WRONG_TYPES = [
    "null",
    "[]",
    "'text'",
    "5",
    "{hosts: 5, http: {a: 1}, gateways: 'x', tcp: [5, {route: 7}], tls: [{match: 'x', route: [{destination: 5}]}]}",
    "{http: [{match: [5, {uri: 7, headers: [1]}], mirror: 5, mirrors: [{destination: 'x'}], delegate: 5,"
    " route: [{destination: {host: 5, subset: [], port: 'x'}, weight: 'x'}]}]}",
    "{host: [], subsets: [5, {name: 5, labels: 'x', trafficPolicy: 5}], trafficPolicy: {tls: 5}, workloadSelector: 5}",
    "{selector: [1], servers: [5, {port: 5, hosts: 5, tls: 'x'}, {port: {number: 'x'}, hosts: [5, {}]}]}",
    "{selector: {matchLabels: 5}, action: 5, rules: [null, 5, {from: 5}, {from: [5, {source: 5}, "
    "{source: {principals: 5, namespaces: [5]}}]}]}",
    "{selector: 'x', mtls: 'x', portLevelMtls: [1], jwtRules: [5, {issuer: 5, jwksUri: 7}]}",
    "{hosts: 'x', resolution: 5, endpoints: 'x', workloadSelector: []}",
    "{workloadSelector: {labels: 5}, egress: [5, {hosts: 5}, {hosts: [5, '/', 'a/', '/b']}]}",
]


def test_objects_of_any_shape_give_findings_never_an_exception(validate):
    kinds = [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "Sidecar",
        "AuthorizationPolicy",
        "PeerAuthentication",
        "RequestAuthentication",
    ]
    documents = [
        f"apiVersion: {GROUPS.get(kind, 'networking')}.istio.io/v1\nkind: {kind}\n"
        f"metadata: {{name: shape-{n}, namespace: bookinfo}}\nspec: {spec}\n"
        for kind in kinds
        for n, spec in enumerate(WRONG_TYPES)
    ]
    report = validate("---\n".join(documents))
    assert len(report.documents) == len(documents)
    assert report.has_errors
    assert all(finding.level in Level.values for finding in report.findings)


def test_a_route_after_a_catch_all_is_reported_without_an_istio_code(validate):
    # istioctl only reports a second route without match; Meshgate also reports routes with matches after one.
    report = validate(
        vs(
            "hosts: [canary.bookinfo.example.com]\nhttp:\n- route:\n  - destination: {host: reviews}\n"
            "- match:\n  - uri: {prefix: /api}\n  route:\n  - destination: {host: ratings}\n"
        )
    )
    finding = only(report, "MG0307")
    assert (finding.path, finding.istio_code) == ("spec.http[1]", "")
    assert "spec.http[0] before it has no match" in finding.message


def test_gateways_selecting_the_same_pods_by_other_labels_conflict(validate):
    # bookinfo-gateway selects istio=ingressgateway; app=istio-ingressgateway selects the same pod.
    report = validate(gateway(server("bookinfo.staging.example.com", selector="app: istio-ingressgateway")))
    finding = only(report, "MG0502")
    assert "Gateway bookinfo/bookinfo-gateway" in finding.message and finding.istio_code == "IST0145"


def test_gateways_on_other_pods_do_not_conflict(validate):
    report = validate(gateway(server("bookinfo.staging.example.com", selector="app: istiod")))
    assert "MG0502" not in codes(report)


def test_a_host_exported_elsewhere_is_not_found(validate):
    report = validate(
        service_entry(
            "hosts: [api.partner.example.com]\nexportTo: [shop]\nresolution: DNS\nports: [{number: 443, protocol: TLS}]"
        )
        + "---\n"
        + vs(route_to("{host: api.partner.example.com, port: {number: 443}}"))
    )
    finding = only(report, "MG0301")
    assert "is not visible from namespace bookinfo (ServiceEntry shop/partner is exported to shop)" in finding.message


def test_findings_carry_their_istio_code_through_the_api_catalogue(validate):
    report = validate(vs(route_to("{host: reviewz}")))
    assert only(report, "MG0301").as_dict()["istio_code"] == "IST0101"
    assert CATALOGUE["MG0301"].istio_label == "IST0101 ReferencedResourceNotFound"


def test_a_service_exported_only_to_its_namespace_is_not_found_from_another(validate, meshsim):
    import requests

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ledger", "namespace": "shop", "annotations": {"networking.istio.io/exportTo": "."}},
        "spec": {"selector": {"app": "ledger"}, "ports": [{"name": "http", "port": 8080}]},
    }
    response = requests.post(f"{meshsim.url}/api/v1/namespaces/shop/services", json=service, timeout=10)
    assert response.status_code == 201, response.text
    destination = "{host: ledger.shop.svc.cluster.local, port: {number: 8080}}"
    report = validate(vs(route_to(destination)))
    finding = only(report, "MG0301")
    assert "not visible from namespace bookinfo (Service shop/ledger is exported to shop)" in finding.message
    assert "MG0301" not in codes(validate(vs(route_to(destination), namespace="shop")))
