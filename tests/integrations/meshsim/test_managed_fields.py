"""meshsim's managedFields against the rules of
https://kubernetes.io/docs/reference/using-api/server-side-apply/ (each test quotes the rule).

Everything goes over HTTP with the official client, as Meshgate talks to a real API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from .conftest import NETWORKING, status_body

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PLURAL = "destinationrules"


def _dr(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "ratings-owned", "namespace": "bookinfo", **metadata},
        "spec": {"host": "ratings", **spec},
    }


def _apply(dynamic: DynamicClient, body: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
    resource: Resource = dynamic.resources.get(api_version=f"{NETWORKING}/v1", kind="DestinationRule")
    return dynamic.server_side_apply(
        resource, body=body, namespace="bookinfo", field_manager=manager, force_conflicts=force or None
    ).to_dict()


def _get(custom: client.CustomObjectsApi) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(NETWORKING, "v1", "bookinfo", PLURAL, "ratings-owned")


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["manager"], m["operation"]): m["fieldsV1"] for m in obj["metadata"].get("managedFields") or []}


def _csa_create(custom: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl apply` (client-side) sends for a new object: a POST by kubectl-client-side-apply
    carrying the last-applied annotation."""
    annotated = json.loads(json.dumps(body))
    annotated["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(body) + "\n"
    return custom.create_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", PLURAL, annotated, field_manager="kubectl-client-side-apply"
    )


TLS = {"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}, "connectionPool": {"tcp": {"maxConnections": 10}}}}


def test_update_takes_ownership_of_the_fields_it_changes(custom: client.CustomObjectsApi) -> None:
    """Rule: "Update ... Changes to fields ... the manager of the request becomes the owner of the changed
    fields" ("Unlike Apply, an Update does not produce conflicts")."""
    _csa_create(custom, _dr(TLS))
    custom.patch_namespaced_custom_object(
        NETWORKING,
        "v1",
        "bookinfo",
        PLURAL,
        "ratings-owned",
        {"spec": {"trafficPolicy": {"tls": {"mode": "DISABLE"}}}},
        field_manager="kubectl-edit",
    )
    managers = _managers(_get(custom))
    assert managers[("kubectl-edit", "Update")] == {"f:spec": {"f:trafficPolicy": {"f:tls": {"f:mode": {}}}}}
    assert "f:tls" not in managers[("kubectl-client-side-apply", "Update")]["f:spec"]["f:trafficPolicy"]


def test_apply_conflicts_with_another_owner_and_force_takes_the_field(
    dynamic: DynamicClient, custom: client.CustomObjectsApi
) -> None:
    """Rule: "A conflict is a special status error that occurs when an Apply operation tries to change a
    field that another manager also claims to manage." and "If you force the conflict, ... the field
    manager ... becomes the sole owner"."""
    _csa_create(custom, _dr(TLS))
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}), "meshgate")
    assert raised.value.status == 409
    assert status_body(raised.value)["details"]["causes"][0]["field"] == ".spec.trafficPolicy.tls.mode"
    forced = _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}), "meshgate", force=True)
    csa = _managers(forced)[("kubectl-client-side-apply", "Update")]
    assert "f:tls" not in csa["f:spec"]["f:trafficPolicy"]
    assert _managers(forced)[("meshgate", "Apply")]["f:spec"]["f:trafficPolicy"] == {"f:tls": {"f:mode": {}}}


def test_applying_the_same_value_shares_ownership(dynamic: DynamicClient) -> None:
    """Rule: "Field managers can share ownership of a field if they apply the same value ... the field
    is shared (no conflict)" ("they share ownership ... when two or more appliers set a field to the
    same value")."""
    _apply(dynamic, _dr(TLS), "team-a")
    shared = _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}), "team-b")
    managers = _managers(shared)
    assert managers[("team-a", "Apply")]["f:spec"]["f:trafficPolicy"]["f:tls"] == {"f:mode": {}}
    assert managers[("team-b", "Apply")]["f:spec"]["f:trafficPolicy"]["f:tls"] == {"f:mode": {}}


def test_a_field_dropped_by_an_applier_stays_while_another_manager_owns_it(dynamic: DynamicClient) -> None:
    """Rule: "If you remove a field from a manifest and apply that manifest, Server-Side Apply checks if
    there are any other field managers that also own the field. If the field is not owned by any other
    field managers, it is either deleted from the live object or reset to its default value"."""
    _apply(dynamic, _dr(TLS), "team-a")
    _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}), "team-b")
    dropped = _apply(dynamic, _dr({"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 10}}}}), "team-a")
    assert dropped["spec"]["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"}  # team-b still owns it
    gone = _apply(dynamic, _dr({}), "team-b")
    assert "tls" not in gone["spec"]["trafficPolicy"]  # now nobody owns it
    assert gone["spec"]["trafficPolicy"]["connectionPool"] == {"tcp": {"maxConnections": 10}}


def test_apply_does_not_remove_fields_an_update_manager_owns(
    dynamic: DynamicClient, custom: client.CustomObjectsApi
) -> None:
    """Rule (the reason of the CSA upgrade): the field removal above applies only to fields the applier
    owns; "the field is not owned by any other field managers" is false for kubectl-client-side-apply's
    fields, so an applier that never set them cannot drop them, even with force."""
    _csa_create(custom, _dr(TLS))
    applied = _apply(
        dynamic, _dr({"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 10}}}}), "meshgate", force=True
    )
    assert applied["spec"]["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"}


def test_kubectl_upgrades_from_client_side_apply_without_conflicts(
    dynamic: DynamicClient, custom: client.CustomObjectsApi
) -> None:
    """Rule: "By default, field management of the object transfers from client-side apply to kubectl
    server-side apply, without encountering conflicts." ... "This behavior applies to server-side apply
    with the kubectl field manager. As an exception, you can opt-out of this behavior by specifying a
    different, non-default field manager"."""
    _csa_create(custom, _dr(TLS))
    changed = _dr({"trafficPolicy": {"tls": {"mode": "DISABLE"}}})
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, changed, "my-manager")
    assert raised.value.status == 409
    upgraded = _apply(dynamic, changed, "kubectl")
    assert upgraded["spec"]["trafficPolicy"]["tls"] == {"mode": "DISABLE"}
    # "Keep the last-applied-configuration annotation up to date": kubectl's apply rewrites it.
    assert json.loads(upgraded["metadata"]["annotations"][LAST_APPLIED])["spec"]["trafficPolicy"] == {
        "tls": {"mode": "DISABLE"}
    }


def test_fields_not_in_last_applied_still_conflict_for_kubectl(
    dynamic: DynamicClient, custom: client.CustomObjectsApi
) -> None:
    """Rule: "The annotation infers client-side apply's managed fields. Any fields not managed by
    client-side apply raise conflicts."."""
    _csa_create(custom, _dr({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}))
    custom.patch_namespaced_custom_object(
        NETWORKING,
        "v1",
        "bookinfo",
        PLURAL,
        "ratings-owned",
        {"spec": {"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 5}}}}},
        field_manager="kubectl-scale",
    )
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, _dr({"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}}), "kubectl")
    assert raised.value.status == 409
    assert "kubectl-scale" in status_body(raised.value)["message"]


def test_managed_fields_can_be_replaced_by_an_update(custom: client.CustomObjectsApi) -> None:
    """Rule: "a manager may ... transfer ownership" by writing managedFields: "It is possible to strip
    managedFields from an object by overwriting them using a patch (JSON Merge Patch, Strategic Merge
    Patch, JSON Patch) or through an update (HTTP PUT)" — an explicit managedFields list in an Update is
    stored as given (client-go csaupgrade relies on it)."""
    created = _csa_create(custom, _dr(TLS))
    entries = created["metadata"]["managedFields"]
    entries[0]["manager"], entries[0]["operation"] = "meshgate", "Apply"
    patched = custom.patch_namespaced_custom_object(
        NETWORKING,
        "v1",
        "bookinfo",
        PLURAL,
        "ratings-owned",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/metadata/managedFields", "value": entries},
        ],
        _content_type="application/json-patch+json",
    )
    assert set(_managers(patched)) == {("meshgate", "Apply")}
    # A stale resourceVersion in the test operation refuses the patch.
    with pytest.raises(ApiException) as raised:
        custom.patch_namespaced_custom_object(
            NETWORKING,
            "v1",
            "bookinfo",
            PLURAL,
            "ratings-owned",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/metadata/managedFields", "value": []},
            ],
            _content_type="application/json-patch+json",
        )
    assert raised.value.status == 422


def test_managed_fields_stripped_with_one_empty_entry(custom: client.CustomObjectsApi) -> None:
    """Rule: "This will overwrite the managedFields with a list containing a single empty entry that then
    results in the managedFields being stripped entirely from the object." and "setting the managedFields
    to an empty list will not reset the field"."""
    _csa_create(custom, _dr(TLS))
    kept = custom.patch_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", PLURAL, "ratings-owned", {"metadata": {"managedFields": []}}
    )
    assert _managers(kept)
    stripped = custom.patch_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", PLURAL, "ratings-owned", {"metadata": {"managedFields": [{}]}}
    )
    assert "managedFields" not in stripped["metadata"]


def test_first_apply_to_an_untracked_object_records_before_first_apply(
    dynamic: DynamicClient, custom: client.CustomObjectsApi
) -> None:
    """Rule (kube's skipNonAppliedManager): an object without managedFields gets them on its first apply,
    the fields it already had recorded under the Update manager "before-first-apply", so an applier that
    changes them conflicts as with any other owner."""
    _csa_create(custom, _dr(TLS))
    custom.patch_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", PLURAL, "ratings-owned", {"metadata": {"managedFields": [{}]}}
    )
    with pytest.raises(ApiException) as raised:
        _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}), "meshgate")
    assert raised.value.status == 409
    assert '"before-first-apply"' in status_body(raised.value)["message"]
    applied = _apply(dynamic, _dr({"trafficPolicy": {"tls": {"mode": "DISABLE"}}}), "meshgate", force=True)
    assert ("before-first-apply", "Update") in _managers(applied)


def test_replace_records_an_update_manager(custom: client.CustomObjectsApi) -> None:
    """Rule: "Update operations (PUT / non-apply PATCH) ... managedFields entries with operation Update"
    — the manager of a replace owns what it changed, and fields the replace leaves out are gone for every
    owner."""
    created = _csa_create(custom, _dr(TLS))
    body = _dr({"trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 20}}}})
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    replaced = custom.replace_namespaced_custom_object(
        NETWORKING, "v1", "bookinfo", PLURAL, "ratings-owned", body, field_manager="deployer"
    )
    assert "tls" not in replaced["spec"]["trafficPolicy"]
    for fields in _managers(replaced).values():
        assert "f:tls" not in json.dumps(fields)
    assert _managers(replaced)[("deployer", "Update")] == {
        "f:spec": {"f:trafficPolicy": {"f:connectionPool": {"f:tcp": {"f:maxConnections": {}}}}}
    }


def test_seeded_objects_carry_client_side_apply_state(custom: client.CustomObjectsApi) -> None:
    """The seeds are created as `kubectl apply` (client-side) creates objects: manager
    kubectl-client-side-apply, operation Update, and the last-applied annotation."""
    seeded = custom.get_namespaced_custom_object(NETWORKING, "v1", "bookinfo", "virtualservices", "reviews")
    assert ("kubectl-client-side-apply", "Update") in _managers(seeded)
    applied = json.loads(seeded["metadata"]["annotations"][LAST_APPLIED])
    assert applied["spec"] == seeded["spec"]
