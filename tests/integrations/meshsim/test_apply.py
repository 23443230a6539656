"""Server-side apply (application/apply-patch+yaml) through the DynamicClient."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.fixtures.meshsim import MeshsimProcess

from .conftest import NETWORKING, status_body, virtual_service

APPLY = "application/apply-patch+yaml"
RATINGS_URL = "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices/ratings"


def _apply(
    dynamic: DynamicClient,
    resource: Resource,
    body: dict[str, Any],
    manager: str,
    force: bool = False,
) -> dict[str, Any]:
    return dynamic.server_side_apply(
        resource,
        body=body,
        namespace="bookinfo",
        field_manager=manager,
        force_conflicts=force or None,
    ).to_dict()


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["manager"], m["operation"]): m["fieldsV1"] for m in obj["metadata"]["managedFields"]}


def test_apply_creates_when_absent(meshsim: MeshsimProcess) -> None:
    response = requests.patch(
        meshsim.url + RATINGS_URL,
        params={"fieldManager": "meshgate"},
        headers={"Content-Type": APPLY},
        data=(
            "apiVersion: networking.istio.io/v1\n"
            "kind: VirtualService\n"
            "metadata:\n  name: ratings\n  labels:\n    app: ratings\n"
            "spec:\n  hosts: [ratings]\n"
            "  http:\n  - route:\n    - destination: {host: ratings, subset: v1}\n"
        ),
        timeout=10,
    )
    assert response.status_code == 201
    created = response.json()
    assert created["metadata"]["generation"] == 1
    assert _managers(created) == {
        ("meshgate", "Apply"): {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:hosts": {}, "f:http": {}},
        }
    }


def test_apply_updates_and_removes_fields_it_no_longer_sets(dynamic: DynamicClient, virtualservices: Resource) -> None:
    first = virtual_service("ratings", {"v1": 100}, labels={"app": "ratings", "tier": "backend"})
    _apply(dynamic, virtualservices, first, "meshgate")
    second = virtual_service("ratings", {"v1": 50, "v2": 50}, labels={"app": "ratings"})
    updated = _apply(dynamic, virtualservices, second, "meshgate")
    assert updated["metadata"]["labels"] == {"app": "ratings"}
    assert [r["weight"] for r in updated["spec"]["http"][0]["route"]] == [50, 50]
    assert updated["metadata"]["generation"] == 2


def test_reapplying_the_same_intent_is_a_no_op(dynamic: DynamicClient, virtualservices: Resource) -> None:
    intent = virtual_service("ratings", {"v1": 100})
    first = _apply(dynamic, virtualservices, intent, "meshgate")
    again = _apply(dynamic, virtualservices, intent, "meshgate")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_conflict_between_two_apply_managers_and_force(dynamic: DynamicClient, virtualservices: Resource) -> None:
    _apply(dynamic, virtualservices, virtual_service("ratings", {"v1": 100}), "team-a")
    # Same values: shared ownership, no conflict.
    shared = _apply(dynamic, virtualservices, virtual_service("ratings", {"v1": 100}), "team-b")
    assert set(_managers(shared)) == {("team-a", "Apply"), ("team-b", "Apply")}

    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, virtual_service("ratings", {"v2": 100}), "team-b")
    assert raised.value.status == 409
    body = status_body(raised.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "team-a": .spec.http'
    assert body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "team-a"',
            "field": ".spec.http",
        }
    ]

    forced = _apply(dynamic, virtualservices, virtual_service("ratings", {"v2": 100}), "team-b", force=True)
    assert forced["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    managers = _managers(forced)
    assert managers[("team-b", "Apply")]["f:spec"] == {"f:hosts": {}, "f:http": {}}
    assert managers[("team-a", "Apply")]["f:spec"] == {"f:hosts": {}}


def test_apply_conflicts_with_update_managers_of_seeded_objects(
    dynamic: DynamicClient, virtualservices: Resource
) -> None:
    intent = virtual_service("reviews", {"v1": 100})
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, intent, "meshgate")
    assert raised.value.status == 409
    cause = status_body(raised.value)["details"]["causes"][0]
    assert cause["field"] == ".spec.http"
    assert cause["message"].startswith('conflict with "kubectl-client-side-apply" using networking.istio.io/v1 at ')
    applied = _apply(dynamic, virtualservices, intent, "meshgate", force=True)
    assert applied["spec"]["http"][0]["route"] == [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 100}]
    # Labels the intent does not mention stay, owned by the seed's manager.
    assert applied["metadata"]["labels"] == {"app": "reviews", "meshgate.io/owner": "platform-team"}


def test_update_after_apply_takes_ownership(
    custom: client.CustomObjectsApi, dynamic: DynamicClient, virtualservices: Resource
) -> None:
    _apply(dynamic, virtualservices, virtual_service("ratings", {"v1": 100}), "meshgate")
    custom.patch_namespaced_custom_object(
        NETWORKING,
        "v1",
        "bookinfo",
        "virtualservices",
        "ratings",
        {"spec": {"hosts": ["ratings", "ratings.example.com"]}},
        field_manager="kubectl-edit",
    )
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, virtual_service("ratings", {"v1": 100}), "meshgate")
    assert raised.value.status == 409
    assert status_body(raised.value)["details"]["causes"][0]["field"] == ".spec.hosts"


def test_apply_requires_field_manager(meshsim: MeshsimProcess) -> None:
    response = requests.patch(
        meshsim.url + RATINGS_URL,
        headers={"Content-Type": APPLY},
        json=virtual_service("ratings", {"v1": 100}),
        timeout=10,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value: is required for apply patch",
            "field": "fieldManager",
        }
    ]


def test_force_is_forbidden_for_other_patches(meshsim: MeshsimProcess) -> None:
    response = requests.patch(
        meshsim.url + RATINGS_URL.replace("ratings", "reviews"),
        params={"force": "true"},
        headers={"Content-Type": "application/merge-patch+json"},
        json={"metadata": {"labels": {"a": "b"}}},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "force"


def test_apply_with_wrong_kind_is_400(dynamic: DynamicClient, virtualservices: Resource) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["kind"] = "DestinationRule"
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, body, "meshgate")
    assert raised.value.status == 400


def test_apply_with_managed_fields_is_400(
    custom: client.CustomObjectsApi, dynamic: DynamicClient, virtualservices: Resource
) -> None:
    live = custom.get_namespaced_custom_object(NETWORKING, "v1", "bookinfo", "virtualservices", "reviews")
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, live, "meshgate", force=True)
    assert raised.value.status == 400
    assert status_body(raised.value)["message"] == "metadata.managedFields must be nil"


def test_apply_with_stale_resource_version_is_409(dynamic: DynamicClient, virtualservices: Resource) -> None:
    body = virtual_service("reviews", {"v1": 100})
    body["metadata"]["resourceVersion"] = "1"
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, virtualservices, body, "meshgate", force=True)
    assert raised.value.status == 409
    assert "the object has been modified" in status_body(raised.value)["message"]


def test_apply_in_missing_namespace_is_404(dynamic: DynamicClient, virtualservices: Resource) -> None:
    with pytest.raises(ApiException) as raised:
        dynamic.server_side_apply(
            virtualservices,
            body=virtual_service("ratings", {"v1": 100}),
            namespace="ghost",
            field_manager="meshgate",
        )
    assert raised.value.status == 404
    assert status_body(raised.value)["message"] == 'namespaces "ghost" not found'


def test_apply_through_custom_objects_api(custom: client.CustomObjectsApi) -> None:
    """``_content_type`` needs kubernetes >= 36. Its patch method maps only 200 to a body, so
    the 201 of a create-by-apply (real kube-apiserver answers 201 too) comes back as None."""
    body = virtual_service("ratings", {"v1": 100})
    route = (NETWORKING, "v1", "bookinfo", "virtualservices", "ratings")
    options = {"field_manager": "meshgate", "_content_type": APPLY}
    created, code, _ = custom.patch_namespaced_custom_object_with_http_info(*route, body, **options)
    assert (created, code) == (None, 201)
    body["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v2"
    updated = custom.patch_namespaced_custom_object(*route, body, **options)
    assert updated["metadata"]["generation"] == 2
    assert _managers(updated).keys() == {("meshgate", "Apply")}
