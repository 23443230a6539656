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
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: [reviews]
          http:
          - route:
            - destination: {host: reviews}
            timeout: 500us
        """,
    )
    [found] = [f for f in report.findings if f.code == "MG0206"]
    assert (found.path, found.line, found.level) == ("spec.http[0].timeout", 9, "error")
    assert found.message == (
        "spec.http[0].timeout: must be a valid duration greater than 1ms "
        "(the API server would refuse it: FieldValueInvalid)"
    )


def test_a_rule_on_a_whole_object_points_at_it(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ext, namespace: bookinfo}
        spec:
          hosts: [ext.example.com]
          addresses: [10.0.0.0/24]
          resolution: DNS
          ports: [{number: 443, name: https, protocol: TLS}]
        """,
    )
    assert [(f.code, f.path, f.line) for f in report.findings if f.layer == "schema"] == [("MG0206", "spec", 4)]


def test_the_near_miss_has_no_finding(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ext, namespace: bookinfo}
        spec:
          hosts: [ext.example.com]
          addresses: [10.0.0.0/24]
          resolution: STATIC
          endpoints: [{address: 10.0.0.1}]
          ports: [{number: 443, name: https, protocol: TLS}]
        """,
    )
    assert [f.code for f in report.findings if f.layer in ("parse", "schema")] == []


def test_the_rules_of_a_bundle_share_one_cost_budget(cluster, monkeypatch):
    from policies.validation import limits

    entry = """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: ext{n}, namespace: bookinfo}}
        spec:
          hosts: [ext{n}.example.com]
          ports: [{ports}]
        """
    ports = ", ".join(f"{{number: {p}, name: p{p}, protocol: TCP}}" for p in range(1, 41))
    text = "---\n".join(textwrap.dedent(entry).format(n=n, ports=ports) for n in range(3))
    assert [f.code for f in check(cluster, text).findings if f.layer == "schema"] == []
    monkeypatch.setattr(limits, "BUNDLE_RULE_BUDGET", 20_000)
    found = [f for f in check(cluster, text).findings if f.layer == "schema"]
    assert found and all(f.code == "MG0206" and "running out of cost budget" in f.message for f in found)
    assert found[0].object != "ServiceEntry bookinfo/ext0"


def test_a_rule_on_a_map_value_points_at_its_key(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          host: reviews
          workloadSelector:
            matchLabels:
              version: v1
              app: "*"
        """,
    )
    [found] = [f for f in report.findings if f.code == "MG0206"]
    assert (found.path, found.line) == ("spec.workloadSelector.matchLabels[app]", 9)
    assert "wildcard not allowed in label value match" in found.message
