"""Custom objects through the official client: CRUD, patches, metadata, concurrency, dryRun."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from tests.fixtures.meshsim import MeshsimProcess

from .conftest import NETWORKING, SECURITY, status_body, virtual_service

VS = (NETWORKING, "v1", "bookinfo", "virtualservices")
# CustomObjectsApi sends merge-patch+json unless given _content_type (kubernetes >= 36 only):
# these tests send JSON patches through the DynamicClient, which works with any version.
JSON_PATCH = "application/json-patch+json"


def _get_reviews(custom: client.CustomObjectsApi, version: str = "v1") -> dict:
    return custom.get_namespaced_custom_object(NETWORKING, version, "bookinfo", "virtualservices", "reviews")


def test_get_seeded_object(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    assert reviews["apiVersion"] == "networking.istio.io/v1"
    assert reviews["kind"] == "VirtualService"
    route = reviews["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 90), ("v2", 10)]


def test_same_object_through_every_served_version(custom: client.CustomObjectsApi) -> None:
    stored = _get_reviews(custom)
    for version in ("v1beta1", "v1alpha3"):
        seen = _get_reviews(custom, version)
        assert seen["apiVersion"] == f"networking.istio.io/{version}"
        assert seen["spec"] == stored["spec"]
        assert seen["metadata"]["uid"] == stored["metadata"]["uid"]


def test_list_and_cluster_wide_list(custom: client.CustomObjectsApi) -> None:
    listed = custom.list_namespaced_custom_object(*VS)
    assert listed["kind"] == "VirtualServiceList"
    assert listed["apiVersion"] == "networking.istio.io/v1"
    assert int(listed["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in listed["items"]] == ["bookinfo", "reviews"]
    everywhere = custom.list_cluster_custom_object(NETWORKING, "v1", "virtualservices")
    names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]}
    assert names == {
        ("bookinfo", "bookinfo"),
        ("bookinfo", "reviews"),
        ("shop", "catalog"),
        ("shop", "frontend"),
        ("shop", "payments"),
    }


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=reviews", ["reviews"]),
        ("app==reviews", ["reviews"]),
        ("app!=reviews", ["details", "productpage", "ratings"]),
        ("app in (ratings, details)", ["details", "ratings"]),
        ("app notin (ratings,details)", ["productpage", "reviews"]),
        ("app", ["details", "productpage", "ratings", "reviews"]),
        ("!app", []),
        ("app=reviews,!missing", ["reviews"]),
    ],
)
def test_label_selectors(custom: client.CustomObjectsApi, selector: str, expected: list[str]) -> None:
    listed = custom.list_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", "destinationrules", label_selector=selector
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == expected


def test_field_selectors(custom: client.CustomObjectsApi) -> None:
    by_name = custom.list_cluster_custom_object(
        SECURITY, "v1", "peerauthentications", field_selector="metadata.name=default"
    )
    assert len(by_name["items"]) == 3
    not_shop = custom.list_cluster_custom_object(
        SECURITY,
        "v1",
        "peerauthentications",
        field_selector="metadata.name=default,metadata.namespace!=shop",
    )
    assert {i["metadata"]["namespace"] for i in not_shop["items"]} == {"bookinfo", "istio-system"}
    with pytest.raises(ApiException) as raised:
        custom.list_cluster_custom_object(SECURITY, "v1", "peerauthentications", field_selector="spec.x=1")
    assert raised.value.status == 400
    assert "not a known field selector" in status_body(raised.value)["message"]


def test_bad_label_selector_is_400(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.list_namespaced_custom_object(*VS, label_selector="app in (a")
    assert raised.value.status == 400
    assert status_body(raised.value)["reason"] == "BadRequest"


def test_list_pagination(custom: client.CustomObjectsApi) -> None:
    first = custom.list_cluster_custom_object(NETWORKING, "v1", "virtualservices", limit=2)
    assert len(first["items"]) == 2 and first["metadata"]["remainingItemCount"] == 3
    rest = custom.list_cluster_custom_object(
        NETWORKING, "v1", "virtualservices", _continue=first["metadata"]["continue"]
    )
    assert len(rest["items"]) == 3 and "continue" not in rest["metadata"]


def test_create_sets_server_metadata(custom: client.CustomObjectsApi) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    created = custom.create_namespaced_custom_object(
        *VS, virtual_service("ratings", {"v1": 100}, labels={"app": "ratings"})
    )
    meta = created["metadata"]
    assert str(uuid.UUID(meta["uid"])) == meta["uid"]
    assert meta["generation"] == 1
    assert meta["namespace"] == "bookinfo"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    created_at = datetime.strptime(meta["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert created_at.replace(tzinfo=UTC) >= before - timedelta(seconds=1)
    listed = custom.list_namespaced_custom_object(*VS)
    assert int(meta["resourceVersion"]) == int(listed["metadata"]["resourceVersion"])
    fetched = custom.get_namespaced_custom_object(*VS, "ratings")
    assert fetched == created


def test_create_with_generate_name(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ignored", {"v1": 100})
    body["metadata"] = {"generateName": "canary-"}
    created = custom.create_namespaced_custom_object(*VS, body)
    assert re.fullmatch(r"canary-[a-z0-9]{5}", created["metadata"]["name"])


def test_resource_version_is_global_and_monotonic(custom: client.CustomObjectsApi) -> None:
    one = custom.create_namespaced_custom_object(*VS, virtual_service("one", {"v1": 100}))
    two = custom.create_namespaced_custom_object(
        NETWORKING, "v1", "shop", "virtualservices", virtual_service("two", {"v1": 100})
    )
    patched = custom.patch_namespaced_custom_object(*VS, "one", {"metadata": {"labels": {"a": "b"}}})
    rvs = [int(obj["metadata"]["resourceVersion"]) for obj in (one, two, patched)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_replace_bumps_generation_and_resource_version(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    reviews["spec"]["http"][0]["route"][0]["weight"] = 50
    reviews["spec"]["http"][0]["route"][1]["weight"] = 50
    replaced = custom.replace_namespaced_custom_object(*VS, "reviews", reviews)
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(reviews["metadata"]["resourceVersion"])
    assert replaced["metadata"]["uid"] == reviews["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == reviews["metadata"]["creationTimestamp"]
    assert [r["weight"] for r in _get_reviews(custom)["spec"]["http"][0]["route"]] == [50, 50]


def test_label_change_does_not_bump_generation(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    patched = custom.patch_namespaced_custom_object(*VS, "reviews", {"metadata": {"labels": {"release": "2024-10"}}})
    assert patched["metadata"]["generation"] == 1
    assert patched["metadata"]["labels"]["release"] == "2024-10"
    assert int(patched["metadata"]["resourceVersion"]) > int(reviews["metadata"]["resourceVersion"])


def test_no_op_replace_keeps_resource_version(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    replaced = custom.replace_namespaced_custom_object(*VS, "reviews", reviews)
    assert replaced["metadata"]["resourceVersion"] == reviews["metadata"]["resourceVersion"]


def test_merge_patch(custom: client.CustomObjectsApi) -> None:
    patched = custom.patch_namespaced_custom_object(
        *VS,
        "reviews",
        {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]}},
    )
    assert patched["spec"]["http"] == [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]
    assert patched["spec"]["hosts"] == ["reviews"]
    assert patched["metadata"]["generation"] == 2
    removed = custom.patch_namespaced_custom_object(
        *VS, "reviews", {"metadata": {"labels": {"meshgate.io/owner": None}}}
    )
    assert removed["metadata"]["labels"] == {"app": "reviews"}


def test_json_patch(virtualservices: Resource) -> None:
    operations = [
        {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 90},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 80},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 20},
        {"op": "add", "path": "/spec/http/0/timeout", "value": "3s"},
    ]
    patched = virtualservices.patch(
        body=operations, name="reviews", namespace="bookinfo", content_type=JSON_PATCH
    ).to_dict()
    route = patched["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [80, 20]
    assert patched["spec"]["http"][0]["timeout"] == "3s"


def test_json_patch_failed_test_is_422_and_changes_nothing(
    custom: client.CustomObjectsApi, virtualservices: Resource
) -> None:
    before = _get_reviews(custom)
    operations = [
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 1},
        {"op": "test", "path": "/spec/hosts/0", "value": "ratings"},
    ]
    with pytest.raises(ApiException) as raised:
        virtualservices.patch(body=operations, name="reviews", namespace="bookinfo", content_type=JSON_PATCH)
    assert raised.value.status == 422
    assert "test failed" in status_body(raised.value)["message"]
    assert _get_reviews(custom) == before


def test_strategic_merge_patch_is_415_for_custom_objects(api_client: client.ApiClient) -> None:
    with pytest.raises(ApiException) as raised:
        api_client.call_api(
            "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices/reviews",
            "PATCH",
            header_params={"Content-Type": "application/strategic-merge-patch+json"},
            body={"metadata": {"labels": {"a": "b"}}},
            _preload_content=False,
        )
    assert raised.value.status == 415
    assert status_body(raised.value)["reason"] == "UnsupportedMediaType"


def test_delete_returns_object_then_404(custom: client.CustomObjectsApi) -> None:
    deleted = custom.delete_namespaced_custom_object(*VS, "reviews")
    assert deleted["metadata"]["name"] == "reviews"
    assert deleted["kind"] == "VirtualService"
    with pytest.raises(ApiException) as raised:
        _get_reviews(custom)
    assert raised.value.status == 404
    with pytest.raises(ApiException) as again:
        custom.delete_namespaced_custom_object(*VS, "reviews")
    assert again.value.status == 404


def test_delete_precondition(custom: client.CustomObjectsApi) -> None:
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    with pytest.raises(ApiException) as raised:
        custom.delete_namespaced_custom_object(*VS, "reviews", body=stale)
    assert raised.value.status == 409
    assert "Precondition failed" in status_body(raised.value)["message"]
    current = _get_reviews(custom)["metadata"]["resourceVersion"]
    fresh = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=current))
    custom.delete_namespaced_custom_object(*VS, "reviews", body=fresh)


def test_not_found_status(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.get_namespaced_custom_object(*VS, "nope")
    assert raised.value.status == 404
    body = status_body(raised.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'virtualservices.networking.istio.io "nope" not found'
    assert body["details"] == {"name": "nope", "group": NETWORKING, "kind": "virtualservices"}


def test_create_in_missing_namespace_is_404(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(
            NETWORKING, "v1", "ghost", "virtualservices", virtual_service("x", {"v1": 100})
        )
    assert raised.value.status == 404
    body = status_body(raised.value)
    assert body["message"] == 'namespaces "ghost" not found'
    assert body["details"] == {"name": "ghost", "kind": "namespaces"}


def test_create_existing_is_409_already_exists(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(*VS, virtual_service("reviews", {"v1": 100}))
    assert raised.value.status == 409
    body = status_body(raised.value)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'virtualservices.networking.istio.io "reviews" already exists'


def test_stale_resource_version_is_409_conflict(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    custom.patch_namespaced_custom_object(*VS, "reviews", {"metadata": {"labels": {"x": "1"}}})
    reviews["spec"]["hosts"] = ["reviews", "reviews.bookinfo.svc.cluster.local"]
    for attempt in (
        lambda: custom.replace_namespaced_custom_object(*VS, "reviews", reviews),
        lambda: custom.patch_namespaced_custom_object(
            *VS,
            "reviews",
            {"metadata": {"resourceVersion": reviews["metadata"]["resourceVersion"]}},
        ),
    ):
        with pytest.raises(ApiException) as raised:
            attempt()
        assert raised.value.status == 409
        body = status_body(raised.value)
        assert body["reason"] == "Conflict"
        assert body["message"] == (
            'Operation cannot be fulfilled on virtualservices.networking.istio.io "reviews": '
            "the object has been modified; please apply your changes to the latest version "
            "and try again"
        )
        assert body["details"]["kind"] == "virtualservices"


def test_replace_without_resource_version_is_422(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    del reviews["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as raised:
        custom.replace_namespaced_custom_object(*VS, "reviews", reviews)
    assert raised.value.status == 422
    assert status_body(raised.value)["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_replace_name_mismatch_is_400(custom: client.CustomObjectsApi) -> None:
    reviews = _get_reviews(custom)
    with pytest.raises(ApiException) as raised:
        custom.replace_namespaced_custom_object(*VS, "ratings", reviews)
    assert raised.value.status == 404  # ratings does not exist: NotFound comes first
    custom.create_namespaced_custom_object(*VS, virtual_service("ratings", {"v1": 100}))
    with pytest.raises(ApiException) as mismatch:
        custom.replace_namespaced_custom_object(*VS, "ratings", reviews)
    assert mismatch.value.status == 400
    assert "does not match the name on the URL" in status_body(mismatch.value)["message"]


def test_status_is_ignored_on_main_resource_and_set_through_subresource(
    custom: client.CustomObjectsApi,
) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["status"] = {"observedGeneration": 7}
    created = custom.create_namespaced_custom_object(*VS, body)
    assert "status" not in created
    status = {"status": {"observedGeneration": 1, "validationMessages": []}}
    updated = custom.patch_namespaced_custom_object_status(*VS, "ratings", status)
    assert updated["status"] == {"observedGeneration": 1, "validationMessages": []}
    assert updated["metadata"]["generation"] == 1
    managers = {(m["manager"], m.get("subresource", "")) for m in updated["metadata"]["managedFields"]}
    assert ("OpenAPI-Generator", "status") in managers


# dryRun -------------------------------------------------------------------


def _revision(custom: client.CustomObjectsApi) -> str:
    return custom.list_namespaced_custom_object(*VS)["metadata"]["resourceVersion"]


def test_dry_run_create(custom: client.CustomObjectsApi) -> None:
    revision = _revision(custom)
    created = custom.create_namespaced_custom_object(*VS, virtual_service("ratings", {"v1": 100}), dry_run="All")
    assert created["metadata"]["name"] == "ratings" and created["metadata"]["uid"]
    assert "resourceVersion" not in created["metadata"]
    with pytest.raises(ApiException) as raised:
        custom.get_namespaced_custom_object(*VS, "ratings")
    assert raised.value.status == 404
    assert _revision(custom) == revision


def test_dry_run_create_still_validates(custom: client.CustomObjectsApi) -> None:
    body = virtual_service("ratings", {"v1": 100})
    body["spec"]["hosts"] = "ratings"
    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(*VS, body, dry_run="All")
    assert raised.value.status == 422


def test_dry_run_replace_patch_apply_delete(
    custom: client.CustomObjectsApi, dynamic: DynamicClient, virtualservices: Resource
) -> None:
    reviews = _get_reviews(custom)
    revision = _revision(custom)
    changed = dict(
        reviews,
        spec={"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
    )
    replaced = custom.replace_namespaced_custom_object(*VS, "reviews", changed, dry_run="All")
    assert replaced["metadata"]["generation"] == 2
    merged = custom.patch_namespaced_custom_object(*VS, "reviews", {"spec": {"hosts": ["x"]}}, dry_run="All")
    assert merged["spec"]["hosts"] == ["x"]
    json_patched = virtualservices.patch(
        body=[{"op": "remove", "path": "/spec/http"}],
        name="reviews",
        namespace="bookinfo",
        content_type=JSON_PATCH,
        dry_run="All",
    )
    assert "http" not in json_patched.spec
    applied = dynamic.server_side_apply(
        virtualservices,
        body=virtual_service("reviews", {"v3": 100}),
        namespace="bookinfo",
        field_manager="meshgate",
        force_conflicts=True,
        dry_run="All",
    )
    assert applied.spec.http[0].route[0].destination.subset == "v3"
    deleted = custom.delete_namespaced_custom_object(*VS, "reviews", dry_run="All")
    assert deleted["metadata"]["name"] == "reviews"
    assert _get_reviews(custom) == reviews
    assert _revision(custom) == revision


def _stored_shape(obj: dict) -> dict:
    """An answer without what only a real write assigns: the new resourceVersion and the write time."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in meta.get("managedFields", [])]
    return {**obj, "metadata": meta}


@pytest.mark.parametrize("verb", ["replace", "merge patch", "json patch", "json patch of managedFields", "apply"])
def test_a_dry_run_answers_what_the_same_write_then_stores(custom: client.CustomObjectsApi, verb: str) -> None:
    """Kubernetes API concepts, dry-run: "the request is processed as usual ... the response body is what
    would have been stored, without persisting it". Field ownership (managedFields) included."""
    reviews = _get_reviews(custom)
    route = [{"destination": {"host": "reviews", "subset": "v2"}}]
    supplied = [
        {"manager": "meshgate", "operation": "Apply", "apiVersion": f"{NETWORKING}/v1", "fieldsType": "FieldsV1"}
        | {"fieldsV1": {"f:spec": {"f:hosts": {}, "f:http": {}}}}
    ]

    def write(dry_run: str | None) -> dict:
        options = {"dry_run": dry_run} if dry_run else {}
        if verb == "replace":
            body = dict(reviews, spec={"hosts": ["reviews"], "http": [{"route": route}]})
            return custom.replace_namespaced_custom_object(*VS, "reviews", body, **options)
        if verb == "merge patch":
            return custom.patch_namespaced_custom_object(*VS, "reviews", {"spec": {"hosts": ["x"]}}, **options)
        if verb.startswith("json patch"):
            ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": reviews["metadata"]["resourceVersion"]}]
            ops.append({"op": "add", "path": "/spec/http", "value": [{"route": route}]})
            if verb.endswith("managedFields"):
                ops.append({"op": "add", "path": "/metadata/managedFields", "value": supplied})
            return custom.patch_namespaced_custom_object(
                *VS, "reviews", ops, field_manager="editor", _content_type=JSON_PATCH, **options
            )
        body = virtual_service("reviews", {"v3": 100})
        return custom.patch_namespaced_custom_object(
            *VS,
            "reviews",
            body,
            field_manager="meshgate",
            force=True,
            _content_type="application/apply-patch+yaml",
            **options,
        )

    answered = write("All")
    assert _get_reviews(custom) == reviews  # nothing stored
    stored = write(None)
    assert _get_reviews(custom) == stored
    assert _stored_shape(answered) == _stored_shape(stored)
    assert answered["metadata"]["resourceVersion"] == reviews["metadata"]["resourceVersion"]


def test_unsupported_dry_run_value_is_400(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as raised:
        custom.delete_namespaced_custom_object(*VS, "reviews", dry_run="Some")
    assert raised.value.status == 400


def test_watch_without_resource_version_starts_with_the_objects_and_ends_on_its_timeout(
    custom: client.CustomObjectsApi,
) -> None:
    listed = custom.list_namespaced_custom_object(*VS)
    response = custom.list_namespaced_custom_object(
        *VS, watch=True, timeout_seconds=1, allow_watch_bookmarks=True, _preload_content=False
    )
    events = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    added = [event["object"]["metadata"]["name"] for event in events if event["type"] == "ADDED"]
    assert added == [item["metadata"]["name"] for item in listed["items"]]
    assert all(event["object"]["kind"] == "VirtualService" for event in events if event["type"] == "ADDED")
    assert {event["type"] for event in events} <= {"ADDED", "BOOKMARK"}


def test_watch_with_a_resource_version_that_is_not_a_number_is_an_error_event(
    custom: client.CustomObjectsApi,
) -> None:
    response = custom.list_namespaced_custom_object(
        *VS, watch=True, resource_version="abc", timeout_seconds=1, _preload_content=False
    )
    (event,) = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    assert event["type"] == "ERROR" and event["object"]["code"] == 400


def test_unknown_resource_path_is_404(api_client: client.ApiClient) -> None:
    with pytest.raises(ApiException) as raised:
        api_client.call_api("/apis/networking.istio.io/v9/virtualservices", "GET", _preload_content=False)
    assert raised.value.status == 404
    assert status_body(raised.value)["message"] == "the server could not find the requested resource"


def test_crds_are_read_only(custom: client.CustomObjectsApi, api_client: client.ApiClient) -> None:
    with pytest.raises(ApiException) as raised:
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition("virtualservices.networking.istio.io")
    assert raised.value.status == 405


# raw HTTP errors -----------------------------------------------------------------------

COLLECTION = "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices"


@pytest.mark.parametrize(
    ("method", "path", "content_type", "data", "code", "reason"),
    [
        ("POST", COLLECTION, "application/json", "{not json", 400, "BadRequest"),
        ("POST", COLLECTION, "text/plain", "x", 415, "UnsupportedMediaType"),
        ("PATCH", COLLECTION + "/reviews", "application/merge-patch+json", "{", 400, "BadRequest"),
        ("PATCH", COLLECTION + "/reviews", "text/plain", "{}", 415, "UnsupportedMediaType"),
        ("PUT", COLLECTION, "application/json", "{}", 405, "MethodNotAllowed"),
        ("POST", COLLECTION + "/reviews", "application/json", "{}", 405, "MethodNotAllowed"),
        ("POST", "/apis/networking.istio.io/v1/virtualservices", "application/json", "{}", 405, "MethodNotAllowed"),
        ("DELETE", COLLECTION + "/reviews/status", "application/json", "", 405, "MethodNotAllowed"),
        ("GET", COLLECTION + "/reviews/scale", "application/json", "", 404, "NotFound"),
        ("GET", "/openapi/v2", "application/json", "", 404, "NotFound"),
    ],
)
def test_http_errors(
    meshsim: MeshsimProcess,
    method: str,
    path: str,
    content_type: str,
    data: str,
    code: int,
    reason: str,
) -> None:
    response = requests.request(
        method, meshsim.url + path, data=data, headers={"Content-Type": content_type}, timeout=10
    )
    assert response.status_code == code
    body = response.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        reason,
        code,
    )


def test_yaml_body_is_accepted(meshsim: MeshsimProcess) -> None:
    response = requests.post(
        meshsim.url + COLLECTION,
        data="apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: ratings}\nspec: {hosts: [ratings]}\n",
        headers={"Content-Type": "application/yaml"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.json()["spec"] == {"hosts": ["ratings"]}
