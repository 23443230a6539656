"""A change that follows its pull request: no-op bundles, new commits, withdrawal, retry; and the plan's
truth about ownership and other controllers. Against the simulated staging cluster over HTTP."""

from __future__ import annotations

import copy

import pytest
import yaml
from django.urls import reverse

from integrations import kubernetes as kube
from policies.choices import (
    ChangeState,
    ForeignControllerPolicy,
    NotificationChannelKind,
    NotificationEvent,
    RolloutState,
)
from policies.cluster import cluster_config
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.models import (
    AuditEvent,
    ChangeRequest,
    NotificationChannel,
    NotificationDelivery,
    Review,
    Rollout,
)
from policies.normalize import normalize_object
from policies.services.change_lifecycle import (
    change_items_replace,
    change_retry,
    change_withdraw,
)
from policies.services.changes import change_schedule
from policies.services.plans import plan_compute
from policies.services.reviews import review_approve
from policies.services.rollouts import rollout_start
from portal.choices import TokenScope
from tests.api_testing import assert_error, bearer_client, session_client, token_for
from tests.policies.changes.helpers import (  # noqa: F401
    REVIEWS_V2,
    REVIEWS_V3,
    cluster_org,
    submitted_change,
)

LIST = "/api/v1/changes/"


def _live_text(org, kind: str, name: str) -> str:
    live = kube.get_object(cluster_config(org.env), kind, "bookinfo", name)
    return yaml.safe_dump(normalize_object(live), sort_keys=False)


# --- no changes --------------------------------------------------------------------------------------


def test_a_bundle_equal_to_live_is_no_changes(cluster_org):
    org = cluster_org
    text = _live_text(org, "VirtualService", "reviews") + "---\n" + _live_text(org, "DestinationRule", "reviews")
    client = bearer_client(token_for(org.author, scopes=[TokenScope.READ, TokenScope.WRITE]))
    before = ChangeRequest.objects.count()
    response = client.post(LIST, {"environment": org.env.name, "title": "same", "text": text}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["code"] == "no_changes"
    assert body["details"]["items"] == ["VirtualService bookinfo/reviews", "DestinationRule bookinfo/reviews"]
    assert ChangeRequest.objects.count() == before  # nothing stored, nothing to review
    # one object that differs makes it a change
    changed = _live_text(org, "DestinationRule", "reviews") + "---\n" + REVIEWS_V2
    response = client.post(LIST, {"environment": org.env.name, "title": "real", "text": changed}, format="json")
    assert response.status_code == 201, response.content
    assert ChangeRequest.objects.count() == before + 1


# --- withdrawal ----------------------------------------------------------------------------------------


def test_a_withdrawn_change_cannot_be_approved_or_rolled_out(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    with pytest.raises(PermissionDeniedError):
        change_withdraw(actor=org.approver, change=change)
    change = change_withdraw(actor=org.author, change=change, reason="superseded by the new PR")
    assert change.state == ChangeState.WITHDRAWN and change.withdrawn_at is not None
    with pytest.raises(ApplicationError):
        review_approve(reviewer=org.approver, change=change)
    with pytest.raises(ApplicationError):
        change_schedule(actor=org.approver, change=change)
    with pytest.raises(ApplicationError):
        rollout_start(change=change, actor=org.approver)
    assert not Rollout.objects.filter(change=change).exists()
    assert AuditEvent.objects.filter(action="change.withdrawn", object_id=str(change.pk)).exists()
    # API: approve and retry answer 409 illegal_transition
    client = bearer_client(token_for(org.approver, scopes=[TokenScope.READ, TokenScope.WRITE]))
    assert_error(client.post(f"{LIST}{change.pk}/approve/", {}, format="json"), 409, code="illegal_transition")
    # UI: no approve button, and a forged POST changes nothing
    browser = session_client(org.approver)
    page = browser.get(reverse("changes:detail", kwargs={"pk": change.pk})).content.decode()
    assert "withdrawn by its author" in page and 'id="approve-form"' not in page
    browser.post(reverse("changes:approve", kwargs={"pk": change.pk}))
    assert not Review.objects.filter(change=change, verdict="approve", voided_at__isnull=True).exists()
    change.refresh_from_db()
    assert change.state == ChangeState.WITHDRAWN


def test_withdraw_through_the_api_and_delete(cluster_org):
    org = cluster_org
    client = bearer_client(token_for(org.author, scopes=[TokenScope.READ, TokenScope.WRITE]))
    first, second = submitted_change(org), submitted_change(org, texts=[REVIEWS_V3], title="other")
    response = client.post(f"{LIST}{first.pk}/withdraw/", {"reason": "closed PR"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "withdrawn"
    response = client.delete(f"{LIST}{second.pk}/")
    assert response.status_code == 200 and response.json()["state"] == "withdrawn"
    assert_error(client.post(f"{LIST}{first.pk}/withdraw/", {}, format="json"), 409, code="illegal_transition")


# --- a new commit ------------------------------------------------------------------------------------


def test_a_new_commit_voids_approvals_recomputes_the_plan_and_tells_reviewers(cluster_org):
    org = cluster_org
    NotificationChannel.objects.create(
        name="bob mail", user=org.approver, kind=NotificationChannelKind.EMAIL, target="bob@example.com"
    )
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    item_id = change.items.get().pk
    client = bearer_client(token_for(org.author, scopes=[TokenScope.READ, TokenScope.WRITE]))
    response = client.patch(f"{LIST}{change.pk}/", {"text": REVIEWS_V3, "message": "timeout 7s"}, format="json")
    assert response.status_code == 200, response.content
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    item = change.items.get()
    assert item.pk == item_id and item.content["spec"]["http"][0]["timeout"] == "7s"
    assert not Review.objects.filter(change=change, voided_at__isnull=True, verdict="approve").exists()
    assert NotificationDelivery.objects.filter(
        event=NotificationEvent.CHANGE_REVIEW_REQUESTED, subject__startswith=f"New commit on change #{change.pk}"
    ).exists()
    assert AuditEvent.objects.filter(action="change.items_replaced", object_id=str(change.pk)).exists()
    plan = plan_compute(change=change)
    assert plan.items.get().item_content_hash == item.content_hash
    # only the author
    with pytest.raises(PermissionDeniedError):
        change_items_replace(author=org.approver, change=change, files=[("b.yaml", REVIEWS_V2.encode())])
    # a bundle with an error is refused as a whole: nothing changes
    response = client.put(f"{LIST}{change.pk}/items/", {"text": "kind: [\n"}, format="json")
    assert response.status_code == 400
    change.refresh_from_db()
    assert change.items.get().content["spec"]["http"][0]["timeout"] == "7s"


# --- retry ---------------------------------------------------------------------------------------------


def _rolled_back(org) -> ChangeRequest:
    change = submitted_change(org)
    review_approve(reviewer=org.approver, change=change)
    change = change_schedule(actor=org.approver, change=ChangeRequest.objects.get(pk=change.pk))
    rollout = rollout_start(change=change, actor=org.approver, strategy="direct")
    Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.ROLLED_BACK, rollback_reason={"summary": "x"})
    ChangeRequest.objects.filter(pk=change.pk).update(state=ChangeState.ROLLED_BACK)  # as the engine leaves it
    return ChangeRequest.objects.get(pk=change.pk)


def test_retry_when_nothing_moved_starts_a_new_attempt(cluster_org):
    org = cluster_org
    change = _rolled_back(org)
    first = Rollout.objects.get(change=change)
    with pytest.raises(PermissionDeniedError):
        change_retry(actor=org.author, change=change)  # an author is not an approver
    change = change_retry(actor=org.approver, change=change)
    assert change.state == ChangeState.ROLLING_OUT
    rollout = Rollout.objects.get(change=change)
    assert rollout.state == RolloutState.PENDING and rollout.started_at > first.started_at
    assert rollout.events.filter(step_key="start", message__contains="attempt 2").exists()
    assert AuditEvent.objects.filter(action="change.retried", object_id=str(change.pk)).exists()


def test_retry_after_live_moved_goes_back_to_review(cluster_org):
    org = cluster_org
    change = _rolled_back(org)
    cfg = cluster_config(org.env)
    live = kube.get_object(cfg, "VirtualService", "bookinfo", "reviews")
    moved = copy.deepcopy(normalize_object(live))
    moved["spec"]["http"][0]["timeout"] = "9s"
    kube.apply_object(cfg, moved, field_manager="kubectl", force=True)
    change = change_retry(actor=org.approver, change=change)
    assert change.state == ChangeState.IN_REVIEW
    assert not Review.objects.filter(change=change, voided_at__isnull=True, verdict="approve").exists()


def test_retry_api(cluster_org):
    org = cluster_org
    change = _rolled_back(org)
    client = bearer_client(token_for(org.approver, scopes=[TokenScope.READ, TokenScope.WRITE]))
    response = client.post(f"{LIST}{change.pk}/retry/", {}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "rolling_out"
    assert_error(client.post(f"{LIST}{change.pk}/retry/", {}, format="json"), 409, code="illegal_transition")


# --- the plan's truth ----------------------------------------------------------------------------------

DR_WITHOUT_TLS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
  labels:
    app: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
"""


TRAFFIC_POLICY = {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "ROUND_ROBIN"}}


def _dr_with_tls(cfg, manager: str, *, apply: bool) -> None:
    """trafficPolicy written by ``manager``: a server-side apply, or an Update (as kubectl client-side
    apply, kubectl edit and Helm write)."""
    if apply:
        live = kube.get_object(cfg, "DestinationRule", "bookinfo", "reviews")
        obj = copy.deepcopy(normalize_object(live))
        obj["spec"]["trafficPolicy"] = TRAFFIC_POLICY
        kube.apply_object(cfg, obj, field_manager=manager, force=True)
    else:
        kube.patch_object_json(
            cfg,
            "DestinationRule",
            "bookinfo",
            "reviews",
            [{"op": "add", "path": "/spec/trafficPolicy", "value": TRAFFIC_POLICY}],
            field_manager=manager,
        )


def test_a_field_another_applier_keeps_is_a_blocking_finding(cluster_org):
    org = cluster_org
    cfg = cluster_config(org.env)
    _dr_with_tls(cfg, "platform-gitops", apply=True)
    change = submitted_change(org, texts=[DR_WITHOUT_TLS], title="drop tls")
    plan = plan_compute(change=change)
    item = plan.items.get()
    assert item.after_content["spec"]["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"}
    assert [f["code"] for f in item.findings if f["code"] == "MG0905"] == ["MG0905"]
    assert item.ownership["survivors"][0]["path"] == "spec.trafficPolicy.tls"
    assert item.ownership["survivors"][0]["owners"] == ["platform-gitops"]
    # the diff approvers see is live → what the cluster would hold: tls is not shown removed
    assert not any(c["path"].startswith("spec.trafficPolicy.tls") for c in item.diff_live["changes"])
    with pytest.raises(ApplicationError, match="plan has errors"):
        review_approve(reviewer=org.approver, change=change)


def test_fields_of_kubectl_client_side_apply_are_taken_over(cluster_org):
    org = cluster_org
    cfg = cluster_config(org.env)
    _dr_with_tls(cfg, "kubectl-client-side-apply", apply=False)
    change = submitted_change(org, texts=[DR_WITHOUT_TLS], title="drop tls")
    item = plan_compute(change=change).items.get()
    assert item.status == "ok", item.findings
    assert "tls" not in item.after_content["spec"]["trafficPolicy"]
    assert item.ownership["taken_from"] == ["kubectl-client-side-apply"]
    assert any(c["path"] == "spec.trafficPolicy.tls" and c["op"] == "removed" for c in item.diff_live["changes"])


@pytest.mark.parametrize(
    ("setting", "code"), [(ForeignControllerPolicy.WARN, "MG0906"), (ForeignControllerPolicy.REFUSE, "MG0907")]
)
def test_objects_of_other_controllers_are_flagged(cluster_org, setting, code):
    org = cluster_org
    org.env.foreign_controllers = setting
    org.env.save(update_fields=["foreign_controllers"])
    cfg = cluster_config(org.env)
    live = kube.get_object(cfg, "VirtualService", "bookinfo", "reviews")
    labels = {**live["metadata"].get("labels", {}), "app.kubernetes.io/managed-by": "Helm"}
    kube.patch_object_json(
        cfg,
        "VirtualService",
        "bookinfo",
        "reviews",
        [  # Helm 3 writes with Update
            {"op": "replace", "path": "/metadata/labels", "value": labels},
            {"op": "add", "path": "/metadata/annotations/meta.helm.sh~1release-name", "value": "bookinfo"},
        ],
        field_manager="helm",
    )
    change = submitted_change(org)
    item = plan_compute(change=change).items.get()
    flagged = [f for f in item.findings if f["code"] == code]
    assert flagged and "Helm" in flagged[0]["message"] and "revert" in flagged[0]["message"]
    assert item.ownership["controller"]["name"] == "Helm"
    assert (item.status == "error") == (setting == ForeignControllerPolicy.REFUSE)


def test_the_change_page_withdraws_replaces_and_retries(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    author = session_client(org.author)
    page = author.get(reverse("changes:detail", kwargs={"pk": change.pk})).content.decode()
    assert 'id="withdraw-form"' in page and 'id="replace-form"' in page
    author.post(reverse("changes:replace-items", kwargs={"pk": change.pk}), {"text": REVIEWS_V3, "message": "7s"})
    assert change.items.get().content["spec"]["http"][0]["timeout"] == "7s"
    # an approver may neither withdraw nor replace
    approver = session_client(org.approver)
    approver.post(reverse("changes:withdraw", kwargs={"pk": change.pk}))
    change.refresh_from_db()
    assert change.state == ChangeState.IN_REVIEW
    author.post(reverse("changes:withdraw", kwargs={"pk": change.pk}), {"reason": "closed"})
    change.refresh_from_db()
    assert change.state == ChangeState.WITHDRAWN
    rolled_back = _rolled_back(org)
    page = approver.get(reverse("changes:detail", kwargs={"pk": rolled_back.pk})).content.decode()
    assert "Retry rollout" in page
    assert "Retry rollout" not in author.get(reverse("changes:detail", kwargs={"pk": rolled_back.pk})).content.decode()
    approver.post(reverse("changes:retry", kwargs={"pk": rolled_back.pk}))
    rolled_back.refresh_from_db()
    assert rolled_back.state == ChangeState.ROLLING_OUT
