"""Out-of-band changes, idempotent steps, controls and permissions, gates, the reconciler's selection, drift."""

import copy

import pytest
from django.conf import settings
from django.utils import timezone

from integrations import kubernetes as kube
from policies.choices import ChangeState, DraftOperation, RolloutState
from policies.cluster import cluster_config
from policies.exceptions import PermissionDeniedError
from policies.models import AuditEvent, PolicyDrift, Rollout, RolloutEvent
from policies.normalize import normalize_object
from policies.rollout import engine, writes
from policies.services.drift import drift_detect
from policies.services.rollouts import (
    RolloutError,
    rollout_abort,
    rollout_advance,
    rollout_confirm_gate,
    rollout_pause,
    rollout_promote_now,
    rollout_resume,
    rollout_start,
    rollouts_due,
    rollouts_start_due,
)
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    live,
    live_normalized,
    passing,
    scheduled_change,
)

pytestmark = pytest.mark.django_db


def _start(ro, **kwargs):
    return rollout_start(
        change=scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)]),
        analysis={"interval_seconds": 1, **kwargs.pop("analysis", {})},
        **kwargs,
    )


def _edit_out_of_band(ro, timeout="3s"):
    obj = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    obj["spec"]["http"][0]["timeout"] = timeout
    return kube.apply_object(cluster_config(ro.env), obj, field_manager="kubectl-edit", force=True)


def test_an_out_of_band_edit_pauses_the_rollout_and_is_never_overwritten(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.current_weight == 5 and r.step_stage == "analyze")
    edited = _edit_out_of_band(ro)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED
    assert (
        "changed outside Meshgate" in rollout.pause_reason and "VirtualService/bookinfo/reviews" in rollout.pause_reason
    )
    assert (
        live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"]
        == edited["metadata"]["resourceVersion"]
    )
    # Resuming meets the same object: it pauses again, still without writing.
    rollout_resume(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED
    # Aborting restores what Meshgate owns and leaves the out-of-band object alone.
    rollout_abort(actor=ro.approver, rollout=rollout, reason="someone edited it")
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ABORTED
    assert rollout.rollback_reason["left_out_of_band"][0]["object"] == "VirtualService/bookinfo/reviews"
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")["spec"]["http"][0]["timeout"] == "3s"
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.ABORTED


def test_an_out_of_band_change_before_the_first_write_pauses(ro):
    rollout = _start(ro)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)  # snapshot
    _edit_out_of_band(ro)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED and rollout.current_weight == 0


def _writes():
    return AuditEvent.objects.filter(action="rollout.cluster_write").count()


def test_a_step_whose_key_is_recorded_does_nothing(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.step_stage == "analyze")
    rv = live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"]
    assert _writes() == 1
    # Replay the apply step (as a duplicate task would): recorded key → no second write.
    rollout.refresh_from_db()
    rollout.step_stage, rollout.next_action_at = "apply", timezone.now()
    rollout.save()
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)
    assert _writes() == 1
    assert live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"] == rv


def test_a_step_that_wrote_but_was_not_recorded_is_adopted_not_repeated(ro):
    """A worker killed between the cluster write and the commit: the row says 'not applied', the
    cluster says 'applied'. Re-running adopts the live object (same content) without writing."""
    rollout = _start(ro)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)  # snapshot
    rollout.refresh_from_db()
    saved = copy.deepcopy(
        {
            f: getattr(rollout, f)
            for f in ("observed", "expected", "owned", "step_stage", "next_action_at", "current_weight")
        }
    )
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)  # apply:0:w5
    rv = live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"]
    # Undo the DB side, as a rolled-back transaction would.
    RolloutEvent.objects.filter(rollout=rollout, step_key="apply:0:w5").delete()
    for field, value in saved.items():
        setattr(rollout, field, value)
    rollout.save()
    writes = _writes()
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING and rollout.step_stage == "analyze"
    assert _writes() == writes
    assert live(ro.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"] == rv
    assert rollout.observed["VirtualService/bookinfo/reviews"] == rv


def test_advance_is_a_no_op_before_the_next_action_is_due(ro):
    rollout = _start(ro)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)  # apply; analysis due in 1 s
    result = rollout_advance(rollout_id=rollout.pk, analyzer=passing)
    assert not result.acted and 0 < result.next_in <= 1


def test_controls_need_an_approver_or_admin_of_the_owning_team(ro):
    rollout = _start(ro)
    for user in (ro.author, ro.other, ro.outsider):
        with pytest.raises(PermissionDeniedError):
            rollout_pause(actor=user, rollout=rollout)
    rollout_pause(actor=ro.approver, rollout=rollout, reason="lunch")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PAUSED and "lunch" in rollout.pause_reason
    assert not rollout_advance(rollout_id=rollout.pk, analyzer=passing).acted
    with pytest.raises(RolloutError):
        rollout_pause(actor=ro.approver, rollout=rollout)
    rollout_resume(actor=ro.approver, rollout=rollout)
    assert drive(rollout, passing).state == RolloutState.COMPLETED
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"rollout.paused", "rollout.resumed", "rollout.started", "rollout.completed"} <= actions


def test_promote_now_skips_to_100(ro):
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.current_weight == 5 and r.step_stage == "analyze")
    rollout_promote_now(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert not RolloutEvent.objects.filter(rollout=rollout, step_key__startswith="apply:1").exists()
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == normalize_object(REVIEWS_TO_V3)


def test_a_manual_gate_waits_for_a_person(ro):
    rollout = _start(ro, gates=[2])
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.WAITING_GATE and rollout.current_weight == 10
    assert rollouts_due(now=timezone.now() + timezone.timedelta(hours=1)) == []
    with pytest.raises(PermissionDeniedError):
        rollout_confirm_gate(actor=ro.author, rollout=rollout)
    rollout_confirm_gate(actor=ro.approver, rollout=rollout)
    assert drive(rollout, passing).state == RolloutState.COMPLETED


def test_abort_mid_rollout_restores_the_snapshot(ro):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    rollout = _start(ro)
    drive(rollout, passing, until=lambda r: r.current_weight == 25)
    rollout_abort(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ABORTED and rollout.rollback_reason["summary"].startswith("aborted by bob")
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before


def test_start_requires_a_scheduled_change_and_an_open_window(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    change.scheduled_for = timezone.now() + timezone.timedelta(hours=1)
    change.save()
    with pytest.raises(RolloutError):
        rollout_start(change=change)
    assert rollouts_start_due() == []
    change.state = ChangeState.APPROVED
    change.scheduled_for = timezone.now()
    change.save()
    with pytest.raises(RolloutError):
        rollout_start(change=change)
    change.state = ChangeState.SCHEDULED
    change.save()
    started = rollouts_start_due()
    assert len(started) == 1 and rollouts_due() == started


def test_cluster_errors_are_retried_then_roll_back(ro, monkeypatch):
    rollout = _start(ro)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)

    def broken(*args, **kwargs):
        raise kube.KubernetesError("boom", status=500)

    monkeypatch.setattr(engine.kube, "apply_object", broken)
    monkeypatch.setattr(writes, "WRITE_BACKOFF_SECONDS", 0)
    for _ in range(settings.MESHGATE_ROLLOUT_MAX_ATTEMPTS):
        rollout.refresh_from_db()
        rollout_advance(rollout_id=rollout.pk, analyzer=passing, now=rollout.next_action_at)
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ROLLING_BACK and "boom" in rollout.rollback_reason["error"]
    monkeypatch.undo()
    assert drive(rollout, passing).state == RolloutState.ROLLED_BACK


def test_an_unexpected_error_is_retried_and_leaves_no_half_written_row(ro, monkeypatch):
    rollout = _start(ro)
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)
    real = engine._write
    calls = []

    def flaky(rollout_, *args, **kwargs):
        calls.append(1)
        rollout_.current_weight = 99  # a half-written change the savepoint must undo
        rollout_.save(update_fields=["current_weight"])
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(rollout_, *args, **kwargs)

    monkeypatch.setattr(engine, "_write", flaky)
    rollout.refresh_from_db()
    rollout_advance(rollout_id=rollout.pk, analyzer=passing, now=rollout.next_action_at)
    rollout.refresh_from_db()
    assert rollout.attempts == 1 and "RuntimeError: bug" in rollout.error and rollout.current_weight == 0
    assert drive(rollout, passing).state == RolloutState.COMPLETED


def test_analysis_that_finds_no_data_pauses_for_a_person_and_never_rolls_back(ro):
    from policies.rollout import analysis as an

    rollout = _start(ro)
    rollout = drive(rollout, lambda context: an.Outcome(an.NO_DATA, "no traffic"))
    assert rollout.state == RolloutState.PAUSED and "no data" in rollout.pause_reason
    assert rollout.current_weight == 5 and rollout.rollback_reason is None
    rollout_resume(actor=ro.approver, rollout=rollout)
    assert drive(rollout, passing).state == RolloutState.COMPLETED


def test_drift_is_detected_notified_once_and_resolved(ro):
    rollout = drive(_start(ro), passing)
    assert rollout.state == RolloutState.COMPLETED
    assert drift_detect(environment=ro.env)["drifted"] == 0
    _edit_out_of_band(ro, timeout="4s")
    counts = drift_detect(environment=ro.env)
    assert counts["drifted"] == 1 and counts["new"] == 1
    drift = PolicyDrift.objects.get()
    assert drift.live_content["spec"]["http"][0]["timeout"] == "4s"
    assert drift_detect(environment=ro.env)["new"] == 0
    assert AuditEvent.objects.filter(action="policy.drift_detected").count() == 1
    obj = normalize_object(REVIEWS_TO_V3)
    kube.apply_object(cluster_config(ro.env), obj, field_manager="kubectl-edit", force=True)
    assert drift_detect(environment=ro.env)["resolved"] == 1
    assert not PolicyDrift.objects.exists()


def test_a_person_starting_a_rollout_needs_the_role_and_a_fresh_change(ro):
    from policies.models import Policy, PolicyRevision

    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    with pytest.raises(PermissionDeniedError):
        rollout_start(change=change, actor=ro.author)
    policy = Policy.objects.get(environment=ro.env, kind="VirtualService", namespace="bookinfo", name="reviews")
    current = policy.current_revision
    newer = PolicyRevision.objects.create(
        policy=policy,
        number=current.number + 1,
        content=current.content,
        content_hash=current.content_hash,
        parent=current,
        source="import",
    )
    policy.current_revision = newer
    policy.save()
    with pytest.raises(RolloutError, match="stale"):
        rollout_start(change=change, actor=ro.approver)
    policy.current_revision = current
    policy.save()
    assert rollout_start(change=change, actor=ro.approver).state == RolloutState.PENDING


def test_a_write_before_an_out_of_band_object_keeps_its_audit_row(ro):
    """DR canary, first phase: the DestinationRule is written, then the VirtualService is found changed
    by someone else. The rollout pauses; the DR write still has its audit row."""
    from tests.policies.rollouts.test_strategies import _dr_change

    _, change = _dr_change(ro)
    rollout = rollout_start(change=change, analysis={"interval_seconds": 1})
    rollout_advance(rollout_id=rollout.pk, analyzer=passing)  # snapshot (DR + the VS routing to it)
    _edit_out_of_band(ro)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED and "VirtualService/bookinfo/reviews" in rollout.pause_reason
    writes = AuditEvent.objects.filter(action="rollout.cluster_write")
    assert [w.after["object"] for w in writes] == ["DestinationRule/bookinfo/reviews"]
    # Abort: the DR (Meshgate's write) is restored; the out-of-band VS is left alone.
    rollout_abort(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ABORTED
    assert not [
        s
        for s in live(ro.env, "DestinationRule", "bookinfo", "reviews")["spec"]["subsets"]
        if s["name"].endswith("-canary")
    ]


def test_a_freeze_that_starts_mid_rollout_holds_the_next_step_until_it_ends(ro):
    from policies.choices import WindowKind
    from policies.services.windows import change_window_upsert

    rollout = _start(ro)
    rollout = drive(rollout, passing, until=lambda r: r.current_weight == 5 and r.step_stage == "analyze")
    at_five = live(ro.env, "VirtualService", "bookinfo", "reviews")
    now = timezone.now()
    freeze_end = now + timezone.timedelta(hours=2)
    change_window_upsert(
        environment=ro.env,
        name="Incident freeze",
        kind=WindowKind.FREEZE,
        starts_at=now - timezone.timedelta(minutes=1),
        ends_at=freeze_end,
    )
    rollout_advance(rollout_id=rollout.pk, analyzer=passing, now=rollout.next_action_at)  # analysis passes
    for _ in range(3):  # the next traffic step waits for the window, however often the engine looks
        rollout_advance(rollout_id=rollout.pk, analyzer=passing, now=timezone.now() + timezone.timedelta(minutes=30))
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING and rollout.current_weight == 5
    assert abs((rollout.next_action_at - freeze_end).total_seconds()) < 1
    assert live(ro.env, "VirtualService", "bookinfo", "reviews") == at_five  # nothing written meanwhile
    event = RolloutEvent.objects.filter(rollout=rollout, message__startswith="waiting for the change window").get()
    assert "Incident freeze" in event.message
    rollout = drive(rollout, passing)  # the clock reaches the end of the freeze
    assert rollout.state == RolloutState.COMPLETED


def test_a_change_creating_a_policy_that_exists_now_is_stale_at_start(ro):
    created = copy.deepcopy(REVIEWS_TO_V3)
    created["metadata"]["name"] = "reviews-next"
    change = scheduled_change(ro, [(DraftOperation.CREATE, created)])
    kube.apply_object(cluster_config(ro.env), created, field_manager="kubectl")
    from policies.services.imports import environment_import

    environment_import(environment=ro.env)
    with pytest.raises(RolloutError, match="stale") as caught:
        rollout_start(change=change)
    assert caught.value.extra["stale"] == ["VirtualService bookinfo/reviews-next"]


def test_the_reconciler_starts_a_change_with_its_rollout_plan(ro):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    change.rollout_options = {
        "steps": [20, 60, 100],
        "gates": [1],
        "analysis": {"interval_seconds": 15, "failure_limit": 2},
    }
    change.save(update_fields=["rollout_options"])
    (started,) = rollouts_start_due()
    rollout = Rollout.objects.get(pk=started)
    assert rollout.strategy == "canary" and rollout.steps == [20, 60, 100]
    assert rollout.analysis["interval_seconds"] == 15 and rollout.analysis["failure_limit"] == 2
    assert rollout.analysis["gates"] == [1]
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.WAITING_GATE and rollout.current_weight == 20


def test_the_change_s_end_is_an_event_a_pipeline_webhook_receives(ro):
    from policies.models import NotificationChannel, NotificationDelivery
    from policies.services.notifications import channel_create

    channel = channel_create(
        actor=ro.author,
        user=ro.author,
        name="pipeline",
        kind="webhook",
        target="https://ci.example.com/hooks",
        events=["change.completed", "change.rolled_back"],
    )
    rollout = _start(ro)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    delivery = NotificationDelivery.objects.get(channel=channel)
    assert delivery.event == "change.completed"
    data = delivery.payload["data"]
    assert data["change"] == rollout.change_id and data["outcome"] == "succeeded" and data["state"] == "completed"
    assert NotificationChannel.objects.count() == 1
