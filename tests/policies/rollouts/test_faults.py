"""The engine under injected API faults (meshsim over HTTP, actions driven in-process): writes are
confirmed, conflicts are classified, a rollback or a completion is recorded only once verified, and
a person can continue on another writer's edit."""

import copy

import pytest
from django.test import override_settings

from integrations import kubernetes as kube
from integrations.meshsim.faults import request_facts
from policies.choices import ChangeState, DraftOperation, RolloutAuditAction, RolloutEventKind, RolloutState
from policies.cluster import cluster_config
from policies.models import AuditEvent, RolloutEvent
from policies.normalize import normalize_object
from policies.rollout import writes
from policies.services.rollouts import (
    RolloutError,
    rollout_abort,
    rollout_continue_on_live,
    rollout_start,
)
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    failing_from,
    live,
    live_normalized,
    passing,
    scheduled_change,
)

pytestmark = pytest.mark.django_db

VS = "VirtualService/bookinfo/reviews"


@pytest.fixture(autouse=True)
def _fast_write_retries(monkeypatch):
    monkeypatch.setattr(writes, "WRITE_BACKOFF_SECONDS", 0)


def _start(ro):
    return rollout_start(
        change=scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)]),
        steps=[25, 50, 100],
        analysis={"interval_seconds": 1},
    )


def _fault(ro, **rule):
    assert ro.meshsim.admin("POST", "faults", json=rule).status_code == 201


def _out_of_band(rollout):
    return RolloutEvent.objects.filter(
        rollout=rollout, kind=RolloutEventKind.PAUSED, message__contains="outside Meshgate"
    )


def test_fault_rules_match_verbs_and_objects():
    path = "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices/reviews"
    assert request_facts("PATCH", path, {}, "application/apply-patch+yaml").verb == "apply"
    assert request_facts("PATCH", path, {}, "application/json-patch+json").verb == "patch"
    facts = request_facts("GET", path, {}, "")
    assert (facts.verb, facts.resource, facts.namespace, facts.name) == (
        "get",
        "virtualservices",
        "bookinfo",
        "reviews",
    )
    assert request_facts("GET", path.rsplit("/", 1)[0], {"watch": "true"}, "").verb == "watch"
    assert request_facts("GET", path.rsplit("/", 1)[0], {}, "").verb == "list"


def test_an_applied_write_answered_with_an_error_takes_effect(ro):
    _fault(ro, match={"verb": "apply", "name": "reviews"}, status=500, applied=True, count=1)
    obj = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    obj["spec"]["http"][0]["timeout"] = "7s"
    with pytest.raises(kube.KubernetesError) as error:
        kube.apply_object(cluster_config(ro.env), obj, force=True)
    assert error.value.status == 500
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")["spec"]["http"][0]["timeout"] == "7s"
    assert ro.meshsim.admin("GET", "faults").json() == {"faults": []}


def test_a_conflict_nobody_made_is_retried_not_taken_for_an_out_of_band_edit(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.state == RolloutState.RUNNING)
    _fault(ro, match={"verb": "apply", "resource": "virtualservices"}, status=409, count=3)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason or rollout.error
    assert not _out_of_band(rollout).exists()
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)
    retried = [
        e.after for e in AuditEvent.objects.filter(action=RolloutAuditAction.ROLLOUT_WRITE) if e.after.get("errors")
    ]
    assert retried and all("409" in message for entry in retried for message in entry["errors"])


def test_a_write_applied_but_answered_with_an_error_is_confirmed_by_reading_it_back(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.state == RolloutState.RUNNING)
    before = live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["generation"]
    _fault(ro, match={"verb": "apply", "resource": "virtualservices"}, status=503, applied=True, count=2)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason or rollout.error
    assert not _out_of_band(rollout).exists()
    # 3 phases: 3 applies, each applied exactly once (the ones answered 503 were not repeated).
    assert live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["generation"] == before + 3
    confirmed = [e.after["confirmed_by"] for e in AuditEvent.objects.filter(action=RolloutAuditAction.ROLLOUT_WRITE)]
    assert confirmed.count("read") == 2 and confirmed.count("answer") == 1


def test_a_rollback_is_reported_only_once_live_is_the_snapshot(ro):
    snapshot = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    rollout = _start(ro)
    drive(rollout, failing_from(50), until=lambda r: r.state == RolloutState.ROLLING_BACK)
    _fault(ro, match={"verb": "apply", "resource": "virtualservices"}, status=409, count=2)
    _fault(ro, match={"verb": "get", "resource": "virtualservices"}, status=500, count=1)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ROLLED_BACK, rollout.error
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == snapshot
    assert rollout.rollback_reason["restored"][0]["object"] == VS


@override_settings(MESHGATE_ROLLOUT_VERIFY_ATTEMPTS=2)
def test_a_restore_that_cannot_be_verified_ends_failed_with_the_live_state_shown(ro):
    rollout = _start(ro)
    drive(rollout, failing_from(50), until=lambda r: r.state == RolloutState.ROLLING_BACK)
    _fault(ro, match={"verb": "apply", "resource": "virtualservices"}, status=500)  # for good
    rollout = drive(rollout, passing)
    ro.meshsim.admin("DELETE", "faults")
    assert rollout.state == RolloutState.FAILED
    assert "rollback could not complete" in rollout.error
    shown = rollout.rollback_reason["live_at_failure"][VS]
    assert shown == live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    assert shown != rollout.snapshot[VS]  # the canary, as it is: not reported as rolled back
    assert not RolloutEvent.objects.filter(
        rollout=rollout, kind=RolloutEventKind.ROLLBACK, step_key="rollback"
    ).exists()
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.FAILED


def _edit(ro, mutate, manager="kubectl-edit"):
    obj = copy.deepcopy(live_normalized(ro.env, "VirtualService", "bookinfo", "reviews"))
    mutate(obj)
    return kube.apply_object(cluster_config(ro.env), obj, field_manager=manager, force=True)


def test_a_person_continues_on_another_writers_edit_and_the_rollout_keeps_it(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze" and r.current_weight == 25)
    _edit(ro, lambda o: o["spec"]["http"][0].__setitem__("timeout", "3s"))
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED and "kubectl-edit" in rollout.pause_reason
    rollout = rollout_continue_on_live(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED, rollout.pause_reason or rollout.error
    expected = normalize_object(REVIEWS_TO_V3)
    expected["spec"]["http"][0]["timeout"] = "3s"
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == expected
    continued = RolloutEvent.objects.get(rollout=rollout, kind=RolloutEventKind.RESUMED)
    assert "spec.http" in continued.message and continued.data["identity"] == VS


def test_continuing_is_refused_when_the_edit_touches_what_the_change_sets_and_abort_tells_the_truth(ro):
    snapshot = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze" and r.current_weight == 25)

    def reweigh(obj):
        obj["metadata"]["labels"]["edited"] = "yes"
        obj["spec"]["http"][0]["route"][0]["weight"] = 60
        obj["spec"]["http"][0]["route"][1]["weight"] = 40

    _edit(ro, reweigh, manager="kubectl-patch")
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED
    with pytest.raises(RolloutError, match="touches what the approved change sets"):
        rollout_continue_on_live(actor=ro.approver, rollout=rollout)
    rollout_abort(actor=ro.approver, rollout=rollout, reason="someone reweighed it")
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ABORTED
    left = rollout.rollback_reason["left_out_of_band"]
    assert [entry["object"] for entry in left] == [VS] and left[0]["managers"] == ["kubectl-patch"]
    # The timeline says what is live: not the snapshot, the other writer's weights, nothing written over.
    now_live = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    assert now_live != snapshot and [w["weight"] for w in now_live["spec"]["http"][0]["route"]][:2] == [60, 40]
    assert left[0]["live"] == now_live
    event = RolloutEvent.objects.get(rollout=rollout, kind=RolloutEventKind.ABORTED)
    assert "not restored" in event.message and "kubectl-patch" in event.message
    assert "(0 write(s))" in event.message
