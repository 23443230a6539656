"""Meshgate's write (policies.rollout.ownership) against meshsim over HTTP: it takes over the fields of
kubectl client-side apply as `kubectl apply --server-side` does, and its dry-run (every request sent
with dryRun=All) answers what the real write stores."""

from __future__ import annotations

import copy

import pytest

from integrations import kubernetes as kube
from policies.normalize import normalize_object
from policies.rollout import ownership

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture
def cfg(meshsim_prod):
    return kube.ClusterConfig(api_url=meshsim_prod.url)


def _without_tls(live: dict) -> dict:
    desired = copy.deepcopy(normalize_object(live))
    del desired["spec"]["trafficPolicy"]["tls"]
    desired["spec"]["trafficPolicy"]["connectionPool"] = {"tcp": {"maxConnections": 50}}
    return desired


def test_a_field_client_side_apply_owned_is_removed_and_the_dry_run_said_so(cfg) -> None:
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    assert ownership.takeover_managers(live) == ["kubectl-client-side-apply"]
    assert LAST_APPLIED in live["metadata"]["annotations"]
    desired = _without_tls(live)
    # Plain server-side apply (even forced) keeps tls: kubectl-client-side-apply still owns it.
    plain = kube.apply_object(cfg, {**desired, "metadata": {**desired["metadata"]}}, dry_run=True, force=True)
    assert "tls" in plain["spec"]["trafficPolicy"]

    predicted = ownership.apply_owned(cfg, desired, live=live, dry_run=True)
    assert predicted.taken_from == ["kubectl-client-side-apply"]
    assert ownership.held_differences(approved=desired, held=predicted.obj) == []
    assert (
        kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")["metadata"]["resourceVersion"]
        == live["metadata"]["resourceVersion"]
    )  # a dry run writes nothing

    written = ownership.apply_owned(cfg, desired, live=live)
    assert normalize_object(written.obj) == normalize_object(predicted.obj)
    assert ownership.held_differences(approved=desired, held=written.obj) == []
    assert LAST_APPLIED not in (written.obj["metadata"].get("annotations") or {})
    managers = {(m["manager"], m["operation"]) for m in written.obj["metadata"]["managedFields"]}
    assert managers == {("meshgate", "Apply")}


def test_the_dry_run_answer_is_the_servers_answer_to_the_takeover_patch(cfg, meshsim_prod) -> None:
    """The plan sends the write's second request (the takeover patch) as a dry-run too: when the server
    refuses it, the dry-run of the write fails instead of answering with a prediction."""
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    desired = _without_tls(live)
    fault = {"match": {"verb": "patch", "resource": "destinationrules", "name": "reviews"}, "status": 422}
    meshsim_prod.admin("POST", "faults", json=fault).raise_for_status()
    with pytest.raises(kube.KubernetesError):
        ownership.apply_owned(cfg, desired, live=live, dry_run=True)


def test_a_dry_run_of_the_write_leaves_exactly_what_the_write_leaves(cfg) -> None:
    """Field by field, labels and annotations included: kubectl's last-applied annotation and its
    label go (Meshgate takes them over and does not set them), Meshgate's own label stays."""
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"team": "reviews", "tier": "backend"}}]
    kube.patch_object_json(cfg, "DestinationRule", "bookinfo", "reviews", patch, field_manager="kubectl-edit")
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    desired = _without_tls(live)
    desired["metadata"]["labels"] = {"team": "reviews"}
    desired["metadata"].pop("annotations", None)
    predicted = ownership.apply_owned(cfg, desired, live=live, dry_run=True)
    assert kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews") == live  # nothing was written
    written = ownership.apply_owned(cfg, desired, live=live)
    held = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    assert normalize_object(predicted.obj) == normalize_object(held) == normalize_object(desired)
    assert held["metadata"]["labels"] == {"team": "reviews"}
    assert sorted(predicted.taken_from) == ["kubectl-client-side-apply", "kubectl-edit"]

    # the ownership the dry-run reports is the ownership the write recorded
    def untimed(obj: dict) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "time"} for e in obj["metadata"]["managedFields"]]

    assert untimed(predicted.obj) == untimed(held)
    assert written.obj["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"]


def test_a_field_another_applier_owns_survives_and_is_reported(cfg) -> None:
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    other = {
        "apiVersion": live["apiVersion"],
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    }
    kube.apply_object(cfg, other, field_manager="platform-gitops")  # shares tls with kubectl's value
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    desired = _without_tls(live)
    predicted = ownership.apply_owned(cfg, desired, live=live, dry_run=True)
    differences = ownership.held_differences(approved=desired, held=predicted.obj)
    assert [(d.path, str(d.op)) for d in differences] == [("spec.trafficPolicy.tls", "added")]
    assert ownership.owners_of(predicted.obj, "spec.trafficPolicy.tls") == ["platform-gitops"]
    written = ownership.apply_owned(cfg, desired, live=live)
    assert normalize_object(written.obj) == normalize_object(predicted.obj)


def test_a_moved_live_object_is_a_conflict(cfg) -> None:
    live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
    stale = copy.deepcopy(live)
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(kube.Conflict):
        ownership.apply_owned(cfg, _without_tls(live), live=stale)


@pytest.mark.parametrize(
    ("metadata", "controller"),
    [
        (
            {"labels": {"app.kubernetes.io/managed-by": "Helm"}, "annotations": {"meta.helm.sh/release-name": "bk"}},
            "Helm",
        ),
        (
            {"annotations": {"argocd.argoproj.io/tracking-id": "bookinfo:networking.istio.io/DestinationRule:b/r"}},
            "Argo CD",
        ),
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, "Flux"),
        ({"managedFields": [{"manager": "helm-controller", "operation": "Apply"}]}, "Flux"),
        ({"labels": {"app.kubernetes.io/instance": "bookinfo"}}, "Argo CD"),
    ],
)
def test_other_controllers_are_recognized(metadata, controller) -> None:
    found = ownership.foreign_controller({"metadata": metadata})
    assert found is not None and found.name == controller


def test_an_object_without_a_controller() -> None:
    assert ownership.foreign_controller({"metadata": {"labels": {"app": "reviews"}}}) is None
