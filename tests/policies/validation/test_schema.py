"""Layer 2 against the real Istio CRDs, served by meshsim and read through the Kubernetes adapter."""

import textwrap
from pathlib import Path

import pytest
import yaml

from policies.validation import Level, validate_text
from tests.factories import EnvironmentFactory
from tests.fixtures.meshsim import start_meshsim
from tests.policies.validation.helpers import CRD_FILE, ISTIO_REFERENCE, codes, only

SAMPLE_FILES = sorted((ISTIO_REFERENCE / "samples").glob("valid*/*.yaml"))


@pytest.fixture
def cluster(db, meshsim):
    return EnvironmentFactory(name="staging", api_url=meshsim.url)


def check(environment, text: str, **options):
    return validate_text(environment=environment, text=textwrap.dedent(text), **options)


def test_every_istio_sample_of_every_kind_is_accepted_and_passes_the_schema(cluster):
    assert len(SAMPLE_FILES) > 80, "the Istio samples are next to the repository"
    problems, kinds = [], set()
    for path in SAMPLE_FILES:
        report = validate_text(
            environment=cluster, text=path.read_text(), filename=path.name, default_namespace="default"
        )
        for doc in report.documents:
            found = report.for_document(doc)
            if not doc.checkable:
                problems.append(f"{path.name} {doc.label}: not accepted: {[f.message for f in found]}")
                continue
            kinds.add(doc.kind)
            errors = [f.message for f in found if f.level == Level.ERROR and f.layer in ("parse", "schema")]
            problems.extend(f"{path.name} {doc.label}: {message}" for message in errors)
    assert problems == []
    assert {"EnvoyFilter", "Telemetry", "WasmPlugin", "WorkloadEntry", "WorkloadGroup"} <= kinds


def test_a_value_of_the_wrong_type_is_reported_at_its_line(cluster):
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
            - destination: {host: reviews, subset: v1}
              weight: 90
            - destination: {host: reviews, subset: v2}
              weight: heavy
        """,
    )
    error = only(report, "MG0201")
    assert (error.layer, error.level, error.line) == ("schema", Level.ERROR, 11)
    assert error.path == "spec.http[0].route[1].weight"
    assert error.message == f"{error.path} must be of type integer, not string: write it as a whole number"


def test_a_list_written_as_a_string_says_how_to_write_a_list(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: reviews
          http:
          - route:
            - destination: {host: reviews}
        """,
    )
    error = only(report, "MG0201")
    assert (error.path, error.line) == ("spec.hosts", 5)
    assert "must be of type array, not string: write it as a list" in error.message


def test_a_value_outside_the_enum_lists_the_allowed_ones(cluster):
    report = check(
        cluster,
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: bookinfo}
        spec:
          mtls:
            mode: STRICTLY
        """,
    )
    error = only(report, "MG0201")
    assert (error.path, error.line) == ("spec.mtls.mode", 6)
    assert error.message == (
        'spec.mtls.mode has the unsupported value "STRICTLY": use one of "UNSET", "DISABLE", "PERMISSIVE", "STRICT"'
    )


def test_an_unknown_field_suggests_the_closest_declared_one(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: [reviews]
          http:
          - rout:
            - destination: {host: reviews}
        """,
    )
    error = only(report, "MG0203")
    assert (error.level, error.path, error.line, error.column) == (Level.ERROR, "spec.http[0].rout", 7, 5)
    assert error.message == "unknown field spec.http[0].rout: did you mean route?"


def test_an_unknown_field_without_a_close_match_lists_the_declared_ones(cluster):
    report = check(
        cluster,
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: bookinfo}
        spec:
          mtls:
            strict: true
        """,
    )
    error = only(report, "MG0203")
    assert error.message == (
        "unknown field spec.mtls.strict: spec.mtls declares mode; remove it or correct its indentation"
    )


def test_a_missing_required_field_points_at_its_parent(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          subsets:
          - name: v1
            labels: {version: v1}
        """,
    )
    error = only(report, "MG0202")
    assert (error.path, error.line) == ("spec.host", 4)
    assert error.message == "required field spec.host is missing: add it"


def test_fields_that_exclude_each_other_are_named(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          hosts: [reviews]
          http:
          - match:
            - uri: {exact: /a, prefix: /b}
            route:
            - destination: {host: reviews}
        """,
    )
    error = only(report, "MG0201")
    assert (error.path, error.line) == ("spec.http[0].match[0].uri", 8)
    assert error.message == "spec.http[0].match[0].uri sets exact and prefix, which exclude each other: keep only one"


def test_a_valid_object_has_no_schema_finding(cluster):
    report = check(
        cluster,
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: bookinfo}
        spec:
          host: reviews
          subsets:
          - name: v1
            labels: {version: v1}
        """,
    )
    assert codes(report, "schema") == []


def _crds_without(kind: str, directory: Path) -> Path:
    """A CRD file (in a temporary directory) lacking one kind's CRD."""
    kept = [doc for doc in yaml.safe_load_all(CRD_FILE.read_text()) if doc and doc["spec"]["names"]["kind"] != kind]
    path = directory / "crds-without-sidecar.yaml"
    path.write_text(yaml.safe_dump_all(kept))
    return path


def test_a_kind_the_cluster_does_not_serve_is_an_error(db, tmp_path):
    server = start_meshsim(tmp_path, name="old", seeds=[], crd_file=_crds_without("Sidecar", tmp_path))
    try:
        environment = EnvironmentFactory(name="old", api_url=server.url)
        report = check(
            environment,
            """\
            apiVersion: networking.istio.io/v1
            kind: Sidecar
            metadata: {name: default, namespace: shop}
            spec:
              egress:
              - hosts: ["./*"]
            """,
        )
    finally:
        server.stop()
    error = only(report, "MG0204")
    assert (error.level, error.line) == (Level.ERROR, 2)
    assert error.message.startswith("the cluster of environment old does not serve Sidecar")


def test_an_unreachable_cluster_gives_one_warning_and_no_exception(db):
    environment = EnvironmentFactory(name="offline", api_url="http://127.0.0.1:9")
    report = check(
        environment,
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews, namespace: bookinfo}
        spec: {host: reviews}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: bookinfo}
        spec: {mtls: {mode: STRICT}}
        """,
        dry_run=True,
    )
    assert sorted(codes(report)) == ["MG0205", "MG0300", "MG0903"]
    assert not report.has_errors
    assert only(report, "MG0205").message.startswith("schema could not be checked: cannot reach the Kubernetes API")
