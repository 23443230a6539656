"""istioctl analyze's IST0002 Deprecated (MG0317, MG0805) and IST0175 JwksUriFetchUnrestricted (MG0612),
validated against meshsim's staging mesh as a user does: what fires, where, and what must stay quiet.

IST0175 follows Istio's BlockedCIDRsAnalyzer: once RequestAuthentications exist, a Deployment labelled
`app=istiod` whose containers set no non-empty literal BLOCKED_CIDRS_IN_JWKS_URIS is reported. The staging
seed runs such an istiod in istio-system and holds RequestAuthentication shop/shop-jwt.
"""

import textwrap

import pytest
from kubernetes.dynamic import DynamicClient

from policies.validation import Level
from tests.api_testing import session_client
from tests.fixtures.meshsim import kube_api_client
from tests.policies.drafts.helpers import cluster_org  # noqa: F401 - fixture
from tests.policies.validation.helpers import codes


def obj(kind: str, name: str, spec: str, namespace: str = "bookinfo", api: str = "networking.istio.io/v1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n"


def virtual_service(delay: str) -> str:
    return obj(
        "VirtualService",
        "reviews",
        "hosts: [reviews]\nhttp:\n"
        "- match: [{uri: {prefix: /slow}}]\n"
        f"  fault: {{delay: {{fixedDelay: 5s, {delay}}}}}\n"
        "  route: [{destination: {host: reviews}}]\n"
        "- route: [{destination: {host: reviews}}]\n",
    )


def sidecar(outbound: str) -> str:
    return obj("Sidecar", "default", f"egress: [{{hosts: ['./*']}}]\noutboundTrafficPolicy: {outbound}\n")


def request_authentication(name: str, namespace: str = "bookinfo") -> str:
    return obj(
        "RequestAuthentication",
        name,
        "selector: {matchLabels: {app: productpage}}\n"
        f"jwtRules: [{{issuer: 'https://{name}.example.com', jwksUri: 'https://{name}.example.com/jwks.json'}}]\n",
        namespace=namespace,
        api="security.istio.io/v1",
    )


def found(report, code: str):
    return [f for f in report.findings if f.code == code]


# --- IST0002 Deprecated ------------------------------------------------------------------------------


def test_a_fault_delay_percent_is_reported_as_deprecated(validate):
    report = validate(virtual_service("percent: 50"))
    [finding] = found(report, "MG0317")
    assert (finding.path, finding.level, finding.istio_code) == (
        "spec.http[0].fault.delay.percent",
        Level.WARNING,
        "IST0002",
    )
    assert finding.line == report.documents[0].line_of("spec.http[0].fault.delay.percent")
    assert "percentage" in finding.message
    assert not report.has_errors, [f.as_dict() for f in report.findings]


@pytest.mark.parametrize("delay", ["percentage: {value: 50}", "percent: 0"])
def test_a_fault_delay_percentage_or_a_zero_percent_is_not_deprecated(validate, delay):
    assert "MG0317" not in codes(validate(virtual_service(delay)))


def test_a_sidecar_egress_proxy_is_reported_as_ignored(validate):
    report = validate(sidecar("{mode: ALLOW_ANY, egressProxy: {host: example, port: {number: 9080}}}"))
    [finding] = found(report, "MG0805")
    assert (finding.path, finding.level, finding.istio_code) == (
        "spec.outboundTrafficPolicy.egressProxy",
        Level.WARNING,
        "IST0002",
    )


@pytest.mark.parametrize("outbound", ["{mode: ALLOW_ANY}", "{mode: REGISTRY_ONLY}"])
def test_a_sidecar_without_egress_proxy_is_quiet(validate, outbound):
    assert "MG0805" not in codes(validate(sidecar(outbound)))


# --- IST0175 JwksUriFetchUnrestricted --------------------------------------------------------------


def istiod(env: list[dict]) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
        "spec": {
            "selector": {"matchLabels": {"app": "istiod"}},
            "template": {
                "metadata": {"labels": {"app": "istiod"}},
                "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.28.0", "env": env}]},
            },
        },
    }


def replace_istiod(url: str, deployment: dict | None) -> None:
    """Delete the seed's istiod Deployment and, when given, create `deployment` in its place."""
    resource = DynamicClient(kube_api_client(url)).resources.get(api_version="apps/v1", kind="Deployment")
    resource.delete(name="istiod", namespace="istio-system")
    if deployment is not None:
        resource.create(body=deployment, namespace="istio-system")


def test_request_authentications_with_an_unrestricted_istiod_are_reported_once(validate):
    report = validate(request_authentication("jwt-a") + "---\n" + request_authentication("jwt-b"))
    [finding] = found(report, "MG0612")
    first = report.documents[0]
    assert first.covers(finding)
    assert (finding.path, finding.level, finding.istio_code) == ("metadata.name", Level.WARNING, "IST0175")
    assert "Deployment istio-system/istiod" in finding.message
    # Every RequestAuthentication counts: the bundle's two and the environment's shop/shop-jwt.
    assert "3 RequestAuthentication resource(s) exist (bookinfo/jwt-a, bookinfo/jwt-b, shop/shop-jwt)" in (
        finding.message
    )


def test_more_than_five_request_authentications_are_summed_up(validate):
    report = validate("---\n".join(request_authentication(f"jwt-{n}") for n in range(6)))
    [finding] = found(report, "MG0612")
    assert "7 RequestAuthentication resource(s) exist (" in finding.message
    assert "bookinfo/jwt-4, and 2 more)" in finding.message


def test_a_bundle_without_request_authentication_is_quiet(validate):
    policy = obj("AuthorizationPolicy", "viewer", "action: DENY\nrules: [{}]\n", api="security.istio.io/v1")
    assert "MG0612" not in codes(validate(policy))


def test_istiod_with_blocked_cidrs_is_quiet(meshsim, validate):
    replace_istiod(meshsim.url, istiod([{"name": "BLOCKED_CIDRS_IN_JWKS_URIS", "value": "10.0.0.0/8,192.168.0.0/16"}]))
    assert "MG0612" not in codes(validate(request_authentication("jwt-a")))


@pytest.mark.parametrize(
    "env",
    [
        [{"name": "BLOCKED_CIDRS_IN_JWKS_URIS", "value": ""}],
        [{"name": "BLOCKED_CIDRS_IN_JWKS_URIS", "valueFrom": {"configMapKeyRef": {"name": "cidrs", "key": "list"}}}],
        [{"name": "PILOT_ENABLE_ANALYSIS", "value": "true"}],
    ],
    ids=["empty", "value-from", "other-variable"],
)
def test_istiod_without_a_literal_blocked_cidrs_value_is_reported(meshsim, validate, env):
    replace_istiod(meshsim.url, istiod(env))
    assert codes(validate(request_authentication("jwt-a"))).count("MG0612") == 1


def test_no_istiod_deployment_nothing_to_report(meshsim, validate):
    replace_istiod(meshsim.url, None)
    assert "MG0612" not in codes(validate(request_authentication("jwt-a")))


def test_the_validate_endpoint_carries_the_istioctl_codes(cluster_org):
    text = request_authentication("jwt-a") + "---\n" + virtual_service("percent: 20")
    response = session_client(cluster_org.author).post(
        "/api/v1/validate", {"environment": "staging", "text": text}, format="json"
    )
    assert response.status_code == 200
    findings = {f["code"]: f for f in response.json()["findings"]}
    assert findings["MG0612"]["istio_code"] == "IST0175" and findings["MG0612"]["level"] == "warning"
    assert findings["MG0317"]["istio_code"] == "IST0002"
    assert findings["MG0317"]["path"] == "spec.http[0].fault.delay.percent"
