"""Clients for the meshsim tests: the official kubernetes client against the fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.fixtures.meshsim import MeshsimProcess, kube_api_client

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"


def status_body(error: ApiException) -> dict[str, Any]:
    """The parsed ``kind: Status`` body of a failed call."""
    body = json.loads(error.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def virtual_service(name: str, weights: dict[str, int], **metadata: Any) -> dict[str, Any]:
    route = [{"destination": {"host": name, "subset": subset}, "weight": weight} for subset, weight in weights.items()]
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, **metadata},
        "spec": {"hosts": [name], "http": [{"route": route}]},
    }


@pytest.fixture
def api_client(meshsim: MeshsimProcess) -> Iterator[client.ApiClient]:
    with kube_api_client(meshsim.url) as api:
        yield api


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def dynamic(api_client: client.ApiClient, tmp_path: Path) -> DynamicClient:
    """A DynamicClient with its own discovery cache (the default cache is keyed by URL)."""
    return DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))


@pytest.fixture
def virtualservices(dynamic: DynamicClient) -> Resource:
    return dynamic.resources.get(api_version=f"{NETWORKING}/v1", kind="VirtualService")
