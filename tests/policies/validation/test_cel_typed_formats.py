"""CRD rules over format-typed strings, as kube-apiserver evaluates them: a `format: date-time` value is a
CEL timestamp, `format: duration` a CEL duration (in go-openapi's looser syntax too), `timestamp()` parses
RFC 3339. The cluster's CRD (a ServiceEntry schema grown by a `window` field with such rules, served by a
meshsim started on it) is read by Meshgate's schema layer, and meshsim's dry-run answers the same.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from policies.validation import validate_text
from tests.factories import EnvironmentFactory
from tests.fixtures.meshsim import CRD_FILE, STAGING_SEED, MeshsimProcess, kube_api_client, start_meshsim

WINDOW = {
    "type": "object",
    "properties": {
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "grace": {"type": "string", "format": "duration"},
        "notBefore": {
            "type": "string",
            "x-kubernetes-validations": [
                {"rule": "timestamp(self) >= timestamp('2020-01-01T00:00:00Z')", "message": "must be 2020 or later"}
            ],
        },
    },
    "x-kubernetes-validations": [
        {"rule": "!has(self.start) || !has(self.end) || self.end > self.start", "message": "end must be after start"},
        {
            "rule": "!has(self.grace) || self.grace <= duration('1h')",
            "message": "grace must be at most 1h",
            "fieldPath": ".grace",
        },
        {
            "rule": "!has(self.start) || self.start.getDayOfWeek() != 0",
            "messageExpression": "'no window may start on a Sunday (' + string(self.start) + ')'",
        },
    ],
}


@pytest.fixture(scope="module")
def typed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshsimProcess]:
    documents = list(yaml.safe_load_all(CRD_FILE.read_text()))
    for doc in documents:
        if doc and doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == "ServiceEntry":
            for version in doc["spec"]["versions"]:
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                spec["properties"]["window"] = copy.deepcopy(WINDOW)
    folder = tmp_path_factory.mktemp("typed-crds")
    crd_file: Path = folder / "crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(documents))
    process = start_meshsim(folder, name="typed", seeds=[STAGING_SEED], crd_file=crd_file, timeout=120)
    yield process
    process.stop()


@pytest.fixture
def cluster(db, typed_cluster):
    typed_cluster.reset()
    return EnvironmentFactory(name="staging", api_url=typed_cluster.url)


def entry(window: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: ext, namespace: bookinfo}}
        spec:
          hosts: [ext.example.com]
          location: MESH_EXTERNAL
          resolution: DNS
          ports: [{{number: 443, name: https, protocol: TLS}}]
          window: {window}
        """
    )


def rule_findings(environment, text: str) -> list[tuple[str, str]]:
    report = validate_text(environment=environment, text=text)
    return [(f.path, f.message) for f in report.findings if f.code == "MG0206"]


def dry_run_refusal(url: str, text: str) -> list[tuple[str, str]]:
    """The causes of meshsim's 422 to a dryRun=All create; [] when it accepts the object."""
    body = yaml.safe_load(text)
    custom = client.CustomObjectsApi(kube_api_client(url))
    try:
        custom.create_namespaced_custom_object(
            "networking.istio.io", "v1", "bookinfo", "serviceentries", body, dry_run="All"
        )
    except ApiException as exc:
        assert exc.status == 422, exc.body
        causes = yaml.safe_load(exc.body)["details"]["causes"]
        return [(cause["field"], cause["message"]) for cause in causes]
    return []


CASES = [
    (
        "{start: '2024-03-05T10:00:00Z', end: '2024-03-05T09:00:00Z'}",
        "spec.window",
        "end must be after start",
    ),
    # Different offsets, the same order as instants: 10:00+02:00 is 08:00Z, before 09:00Z.
    (
        "{start: '2024-03-05T10:00:00+00:00', end: '2024-03-05T11:30:00+02:00'}",
        "spec.window",
        "end must be after start",
    ),
    ("{grace: 2h}", "spec.window.grace", "grace must be at most 1h"),
    # go-openapi's duration syntax, as the API server reads `format: duration`.
    ("{grace: 3 days}", "spec.window.grace", "grace must be at most 1h"),
    ("{notBefore: '2019-12-31T23:59:59Z'}", "spec.window.notBefore", "must be 2020 or later"),
    (
        "{start: '2024-03-03T10:00:00Z'}",
        "spec.window",
        "no window may start on a Sunday (2024-03-03T10:00:00Z)",
    ),
]


@pytest.mark.parametrize(("window", "path", "message"), CASES)
def test_a_rule_over_typed_values_refuses_like_the_api_server(cluster, typed_cluster, window, path, message):
    text = entry(window)
    [(found_path, found_message)] = rule_findings(cluster, text)
    assert found_path == path
    assert found_message.startswith(f"{path}: {message} (the API server would refuse it")
    causes = dry_run_refusal(typed_cluster.url, text)
    [(field, cause)] = causes
    assert field == path and cause.startswith("Invalid value: ") and cause.endswith(f'": {message}')


NEAR_MISSES = [
    "{start: '2024-03-05T10:00:00Z', end: '2024-03-05T11:00:00Z'}",
    # 10:00+02:00 is 08:00Z, after 07:30Z: a string comparison would refuse it, the instants do not.
    "{start: '2024-03-05T07:30:00Z', end: '2024-03-05T10:00:00+02:00'}",
    "{grace: 45m}",
    "{grace: 30 minutes}",
    "{notBefore: '2020-01-01T00:00:00Z'}",
    "{start: '2024-03-04T10:00:00Z'}",
]


@pytest.mark.parametrize("window", NEAR_MISSES)
def test_a_near_miss_is_accepted_by_both(cluster, typed_cluster, window):
    text = entry(window)
    assert rule_findings(cluster, text) == []
    assert dry_run_refusal(typed_cluster.url, text) == []


def test_an_unparsable_typed_value_is_an_evaluation_error(cluster, typed_cluster):
    text = entry("{grace: soon}")
    [(path, message)] = rule_findings(cluster, text)
    assert path == "spec.window"
    assert "Invalid duration soon" in message and "evaluating rule: grace must be at most 1h" in message
    assert [field for field, _ in dry_run_refusal(typed_cluster.url, text)] == ["spec.window"]
