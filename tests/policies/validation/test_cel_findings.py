"""CRD validation rules (CEL) as Meshgate findings: MG0206 with the field path and the YAML line."""
import textwrap

import pytest

from policies.validation import validate_text
from tests.factories import EnvironmentFactory


@pytest.fixture
def cluster(db, meshsim):
    return EnvironmentFactory(name="staging", api_url=meshsim.url)


def check(environment, text: str):
    return validate_text(environment=environment, text=textwrap.dedent(text))


def test_a_broken_rule_is_reported_at_its_field_and_line(cluster):
    report = check(cluster, """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: [reviews]
          http:
          - route:
            - destination: {host: reviews}
            timeout: 500us
        """)
    [found] = [f for f in report.findings if f.code == "MG0206"]
    assert (found.path, found.line, found.level) == ("spec.http[0].timeout", 9, "error")
    assert found.message == ("spec.http[0].timeout: must be a valid duration greater than 1ms "
                             "(the API server would refuse it: FieldValueInvalid)")


def test_a_rule_on_a_whole_object_points_at_it(cluster):
    report = check(cluster, """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ext, namespace: bookinfo}
        spec:
          hosts: [ext.example.com]
          addresses: [10.0.0.0/24]
          resolution: DNS
          ports: [{number: 443, name: https, protocol: TLS}]
        """)
    assert [(f.code, f.path, f.line) for f in report.findings if f.layer == "schema"] == [("MG0206", "spec", 4)]


def test_the_near_miss_has_no_finding(cluster):
    report = check(cluster, """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ext, namespace: bookinfo}
        spec:
          hosts: [ext.example.com]
          addresses: [10.0.0.0/24]
          resolution: STATIC
          endpoints: [{address: 10.0.0.1}]
          ports: [{number: 443, name: https, protocol: TLS}]
        """)
    assert [f.code for f in report.findings if f.layer in ("parse", "schema")] == []
