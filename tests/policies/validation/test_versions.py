"""Each object is checked against the schema of the version it is written in, as the cluster's CRD serves it."""

import textwrap

import pytest

from policies.validation import validate_text
from policies.validation.cache import CrdSchema, SchemaCache
from policies.validation.parse import parse_bundle
from policies.validation.schema import check_schemas
from tests.factories import EnvironmentFactory


def _schema(field: str) -> dict:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": {field: {"type": "string"}}}}}


class VersionedCluster:
    """A schema source whose v1 and v1beta1 differ, and which does not serve v1alpha3."""

    def __init__(self):
        self.keys = []

    def read(self, key: str) -> CrdSchema:
        self.keys.append(key)
        kind, _, version = key.partition("/")
        served = {"v1": _schema("new"), "v1beta1": _schema("old")}
        return CrdSchema(
            "1", {"schema": served.get(version, {}), "served": version in served, "servedVersions": ["v1", "v1beta1"]}
        )


def _document(version: str, field: str):
    text = textwrap.dedent(f"""\
        apiVersion: networking.istio.io/{version}
        kind: Sidecar
        metadata: {{name: s, namespace: bookinfo}}
        spec: {{{field}: x}}
        """)
    documents, findings = parse_bundle([("s.yaml", text.encode())])
    assert findings == []
    return documents


@pytest.mark.parametrize(
    ("version", "field", "unknown"),
    [
        ("v1", "new", []),
        ("v1", "old", ["spec.old"]),
        ("v1beta1", "old", []),
        ("v1beta1", "new", ["spec.new"]),
    ],
)
def test_the_schema_of_the_written_version_is_used(db, version, field, unknown):
    cluster = VersionedCluster()
    check = check_schemas(
        _document(version, field), schemas=SchemaCache(scope="t", read=cluster.read), environment_name="staging"
    )
    assert [f.path for f in check.findings if f.code == "MG0203"] == unknown
    assert cluster.keys == [f"Sidecar/{version}"]


def test_an_unserved_version_is_refused_with_the_served_ones(db):
    check = check_schemas(
        _document("v1alpha3", "new"),
        schemas=SchemaCache(scope="t", read=VersionedCluster().read),
        environment_name="staging",
    )
    [found] = check.findings
    assert (found.code, found.path, found.line) == ("MG0207", "apiVersion", 1)
    assert "served: v1, v1beta1" in found.message


def test_against_meshsim(db, meshsim):
    environment = EnvironmentFactory(name="staging", api_url=meshsim.url)
    text = textwrap.dedent("""\
        apiVersion: security.istio.io/v1alpha3
        kind: PeerAuthentication
        metadata: {name: default, namespace: bookinfo}
        spec: {mtls: {mode: STRICT}}
        ---
        apiVersion: networking.istio.io/v1beta1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: [reviews]
          http: [{route: [{destination: {host: reviews}}], timeout: 500us}]
        """)
    report = validate_text(environment=environment, text=text)
    found = sorted((f.code, f.object) for f in report.findings if f.layer == "schema")
    assert found == [("MG0206", "VirtualService bookinfo/reviews"), ("MG0207", "PeerAuthentication bookinfo/default")]
    [served] = [f for f in report.findings if f.code == "MG0207"]
    assert "served: v1, v1beta1" in served.message
