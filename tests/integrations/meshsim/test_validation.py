"""Structural-schema validation: 422 Invalid with causes, unknown fields, Istio samples."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.meshsim import CRD_FILE, MeshsimProcess, kube_api_client

from .conftest import NETWORKING, SECURITY, status_body, virtual_service

SAMPLES = CRD_FILE.parent / "samples"
SAMPLE_FILES = sorted((SAMPLES / "valid").glob("*.yaml")) + sorted((SAMPLES / "valid-per-kind").glob("*.yaml"))
VS = (NETWORKING, "v1", "bookinfo", "virtualservices")


def _create_invalid(custom: client.CustomObjectsApi, body: dict[str, Any], **kwargs: Any) -> dict:
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(*VS, body, **kwargs)
    assert raised.value.status == 422
    status = status_body(raised.value)
    assert status["reason"] == "Invalid"
    return status


def test_wrong_type(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["http"][0]["timeout"] = 5
    status = _create_invalid(custom, body)
    detail = 'Invalid value: "integer": spec.http[0].timeout in body must be of type string: "integer"'
    assert status["message"] == (
        f'VirtualService.networking.istio.io "ratings" is invalid: spec.http[0].timeout: {detail}'
    )
    assert status["details"] == {
        "name": "ratings",
        "group": NETWORKING,
        "kind": "VirtualService",
        "causes": [{"reason": "FieldValueTypeInvalid", "message": detail, "field": "spec.http[0].timeout"}],
    }


def test_several_errors_are_listed(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["hosts"] = [1]
    body["spec"]["http"][0]["route"][0]["weight"] = "heavy"
    status = _create_invalid(custom, body)
    fields = [cause["field"] for cause in status["details"]["causes"]]
    assert fields == ["spec.hosts[0]", "spec.http[0].route[0].weight"]
    assert re.search(
        r"is invalid: \[spec\.hosts\[0\]: .+, spec\.http\[0\]\.route\[0\]\.weight: ",
        status["message"],
    )


def test_bad_enum(custom: client.CustomObjectsApi) -> None:
    body = {
        "apiVersion": f"{SECURITY}/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default"},
        "spec": {"mtls": {"mode": "SOMETIMES"}},
    }
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(SECURITY, "v1", "shop", "peerauthentications", body)
    assert raised.value.status == 422
    cause = status_body(raised.value)["details"]["causes"][0]
    assert cause == {
        "reason": "FieldValueNotSupported",
        "message": ('Unsupported value: "SOMETIMES": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"'),
        "field": "spec.mtls.mode",
    }


def test_required_and_minimum(custom: client.CustomObjectsApi) -> None:
    body = {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "external"},
        "spec": {"ports": [{"number": -1, "name": "http"}]},
    }
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(NETWORKING, "v1", "shop", "serviceentries", body)
    causes = status_body(raised.value)["details"]["causes"]
    assert {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.hosts",
    } in causes
    assert {
        "reason": "FieldValueInvalid",
        "message": ("Invalid value: -1: spec.ports[0].number in body should be greater than or equal to 0"),
        "field": "spec.ports[0].number",
    } in causes


def test_one_of_mutual_exclusion(custom: client.CustomObjectsApi) -> None:
    body = {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "ratings-lb"},
        "spec": {
            "host": "ratings",
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": True}}},
        },
    }
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(NETWORKING, "v1", "bookinfo", "destinationrules", body)
    cause = status_body(raised.value)["details"]["causes"][0]
    assert cause["field"] == "spec.trafficPolicy.loadBalancer"
    assert "must validate one and only one schema (oneOf)" in cause["message"]
    del body["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]
    created = custom.create_namespaced_custom_object(NETWORKING, "v1", "bookinfo", "destinationrules", body)
    assert created["spec"]["trafficPolicy"]["loadBalancer"] == {"simple": "ROUND_ROBIN"}


def test_unknown_field_strict_is_422(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["foo"] = "bar"
    status = _create_invalid(custom, body, field_validation="Strict")
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": 'unknown field "spec.foo"', "field": "spec.foo"}
    ]


def test_unknown_field_warn_is_the_default(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["foo"] = "bar"
    body["spec"]["http"][0]["bar"] = {"x": 1}
    body["metadata"]["colour"] = "blue"
    created, code, headers = custom.create_namespaced_custom_object_with_http_info(*VS, body)
    assert code == 201
    assert "foo" not in created["spec"] and "bar" not in created["spec"]["http"][0]
    assert "colour" not in created["metadata"]
    warnings = headers.getlist("Warning")
    assert sorted(warnings) == sorted(
        [
            '299 - "unknown field \\"metadata.colour\\""',
            '299 - "unknown field \\"spec.foo\\""',
            '299 - "unknown field \\"spec.http[0].bar\\""',
        ]
    )


def test_unknown_field_ignore_prunes_silently(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["foo"] = "bar"
    created, code, headers = custom.create_namespaced_custom_object_with_http_info(*VS, body, field_validation="Ignore")
    assert code == 201 and "foo" not in created["spec"]
    assert headers.getlist("Warning") == []


def test_null_of_a_non_nullable_field_is_pruned(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["gateways"] = None
    created = custom.create_namespaced_custom_object(*VS, body, field_validation="Strict")
    assert "gateways" not in created["spec"]


def test_preserve_unknown_fields_keeps_fields(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    created = custom.create_namespaced_custom_object(*VS, body)
    status = {"status": {"conditions": [{"type": "Reconciled", "status": "True"}], "custom": {"a": 1}}}
    updated = custom.patch_namespaced_custom_object_status(*VS, "ratings", status)
    assert updated["status"]["custom"] == {"a": 1}
    assert created["metadata"]["name"] == "ratings"


@pytest.mark.parametrize(
    ("name", "field"),
    [("Reviews_V2", "metadata.name"), ("-reviews", "metadata.name"), ("a" * 254, "metadata.name")],
)
def test_bad_name(custom: client.CustomObjectsApi, name: str, field: str) -> None:
    status = _create_invalid(custom, virtual_service(name, {"v1": 100}))
    cause = status["details"]["causes"][-1]
    assert cause["field"] == field and cause["reason"] == "FieldValueInvalid"
    if "_" in name:
        assert cause["message"].startswith(
            'Invalid value: "Reviews_V2": a lowercase RFC 1123 subdomain must consist of'
        )


def test_missing_name(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("x", {"v1": 100})
    body["metadata"] = {}
    status = _create_invalid(custom, body)
    assert status["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name",
    }


def test_bad_label_value(custom: client.CustomObjectsApi) -> None:
    status = _create_invalid(custom, virtual_service("ratings", {"v1": 100}, labels={"app": "not valid!"}))
    cause = status["details"]["causes"][0]
    assert cause["field"] == "metadata.labels"
    assert cause["message"].startswith('Invalid value: "not valid!": a valid label must be')


def test_patch_result_is_validated(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.patch_namespaced_custom_object(*VS, "reviews", {"spec": {"hosts": "reviews"}})
    assert raised.value.status == 422
    assert status_body(raised.value)["details"]["causes"][0]["field"] == "spec.hosts"


def _sample_documents(path: Path) -> list[dict[str, Any]]:
    """The documents as JSON would carry them (YAML integer map keys become strings)."""
    return json.loads(json.dumps([doc for doc in yaml.safe_load_all(path.read_text()) if doc]))


def _crds() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(CRD_FILE.read_text()) if doc]


PLURALS = {crd["spec"]["names"]["kind"]: crd["spec"]["names"]["plural"] for crd in _crds()}


def _namespace_for(path: Path) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{path.parent.name}-{path.stem}".lower())[:63].strip("-")


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_istio_samples_are_accepted(meshsim_empty: MeshsimProcess, path: Path) -> None:
    namespace = _namespace_for(path)
    with kube_api_client(meshsim_empty.url) as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        custom = client.CustomObjectsApi(api)
        for doc in _sample_documents(path):
            group, version = doc["apiVersion"].split("/")
            plural = PLURALS[doc["kind"]]
            body = copy.deepcopy(doc)
            body["metadata"].pop("namespace", None)
            created = custom.create_namespaced_custom_object(
                group, version, namespace, plural, body, field_validation="Strict"
            )
            assert created.get("spec") == doc.get("spec"), f"{doc['kind']} {doc['metadata']['name']}"
            assert created["metadata"].get("annotations") == doc["metadata"].get("annotations")


def test_every_kind_and_version_has_a_sample() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for path in SAMPLE_FILES for d in _sample_documents(path)}
    expected = {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
        for crd in _crds()
        for version in crd["spec"]["versions"]
    }
    assert expected <= kinds
