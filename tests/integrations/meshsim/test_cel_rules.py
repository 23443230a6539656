"""meshsim refuses what the CRDs' CEL rules refuse, on create, update, server-side apply and dryRun=All,
with the 422 Status a kube-apiserver sends (one cause per broken rule: field, message, reason)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.meshsim import MeshsimProcess

from .conftest import NETWORKING, status_body

SE = (NETWORKING, "v1", "bookinfo", "serviceentries")


def service_entry(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "bookinfo"},
        "spec": {
            "hosts": [f"{name}.example.com"],
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            **spec,
        },
    }


CIDR_WITH_DNS = {"addresses": ["10.0.0.0/24"], "resolution": "DNS"}
CIDR_MESSAGE = 'spec: Invalid value: "object": CIDR addresses are allowed only for NONE/STATIC resolution types'


def _refused(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as raised:
        call(*args, **kwargs)
    assert raised.value.status == 422
    return status_body(raised.value)


def test_dry_run_create_refuses_a_cel_invalid_object_like_an_api_server(custom: client.CustomObjectsApi) -> None:
    status = _refused(custom.create_namespaced_custom_object, *SE, service_entry("ext", **CIDR_WITH_DNS), dry_run="All")
    assert status["reason"] == "Invalid"
    assert status["message"] == f'ServiceEntry.networking.istio.io "ext" is invalid: {CIDR_MESSAGE}'
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "object": CIDR addresses are allowed only for NONE/STATIC resolution types',
            "field": "spec",
        }
    ]


def test_a_near_miss_is_accepted(custom: client.CustomObjectsApi) -> None:
    body = service_entry("ext", addresses=["10.0.0.0/24"], resolution="NONE")
    created = custom.create_namespaced_custom_object(*SE, body, dry_run="All")
    assert created["spec"]["addresses"] == ["10.0.0.0/24"]


def test_every_broken_rule_is_a_cause(custom: client.CustomObjectsApi) -> None:
    body = service_entry(
        "ext",
        hosts=["*"],
        ports=[{"number": 0, "name": "a", "protocol": "TCP"}, {"number": 0, "name": "b", "protocol": "TCP"}],
    )
    status = _refused(custom.create_namespaced_custom_object, *SE, body)
    causes = {(cause["field"], cause["message"]) for cause in status["details"]["causes"]}
    assert causes == {
        ("spec.hosts[0]", 'Invalid value: "string": hostname cannot be wildcard'),
        ("spec.ports[0].number", 'Invalid value: "integer": port must be between 1-65535'),
        ("spec.ports[1].number", 'Invalid value: "integer": port must be between 1-65535'),
        ("spec.ports", 'Invalid value: "array": port number cannot be duplicated'),
    }
    with pytest.raises(ApiException) as raised:
        custom.get_namespaced_custom_object(*SE, "ext")
    assert raised.value.status == 404


def test_replace_patch_and_server_side_apply_are_checked_too(
    custom: client.CustomObjectsApi, meshsim: MeshsimProcess
) -> None:
    custom.create_namespaced_custom_object(*SE, service_entry("ext", resolution="DNS"))
    current = custom.get_namespaced_custom_object(*SE, "ext")
    current["spec"]["addresses"] = ["10.0.0.0/24"]
    status = _refused(custom.replace_namespaced_custom_object, *SE, "ext", current)
    assert status["details"]["causes"][0]["field"] == "spec"
    _refused(custom.patch_namespaced_custom_object, *SE, "ext", {"spec": {"addresses": ["10.0.0.0/24"]}}, dry_run="All")
    applied = service_entry("ext", resolution="DNS", addresses=["10.0.0.0/24"])
    response = requests.patch(
        meshsim.url + "/apis/networking.istio.io/v1/namespaces/bookinfo/serviceentries/ext",
        params={"fieldManager": "meshgate", "dryRun": "All", "force": "true"},
        headers={"Content-Type": "application/apply-patch+yaml"},
        data=json.dumps(applied),
        timeout=10,
    )
    assert response.status_code == 422
    assert CIDR_MESSAGE in response.json()["message"]
    assert custom.get_namespaced_custom_object(*SE, "ext")["spec"].get("addresses") is None
