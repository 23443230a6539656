"""Rollout webhooks at each phase, called over HTTP on a real receiver: a failing gate holds the
rollout (pre-rollout, promotion), fails the interval (step) or is only recorded (rollback)."""

import json

import pytest

from policies.choices import ChangeState, DraftOperation, RolloutEventKind, RolloutState
from policies.exceptions import ApplicationError
from policies.models import Rollout, RolloutEvent
from policies.services.rollouts import rollout_resume, rollout_start
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    failing_from,
    live_normalized,
    passing,
    scheduled_change,
)

pytestmark = pytest.mark.django_db


def _start(ro, hooks, **analysis):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    return rollout_start(
        change=change, steps=[50, 100], analysis={"interval_seconds": 1, "webhooks": hooks, **analysis}
    )


def _bodies(receiver):
    return [json.loads(seen.body) for seen in receiver.requests]


def test_every_phase_calls_its_webhooks_with_the_rollout_in_the_payload(ro, receiver_factory):
    pre, step, promotion = receiver_factory(), receiver_factory(), receiver_factory()
    rollout = _start(
        ro,
        [
            {"name": "smoke", "phase": "pre-rollout", "url": pre.url, "metadata": {"suite": "smoke"}},
            {"name": "load", "phase": "step", "url": step.url},
            {"name": "release-notes", "phase": "promotion", "url": promotion.url},
        ],
    )
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    (first,) = _bodies(pre)
    assert first["phase"] == "pre-rollout" and first["webhook"] == "smoke" and first["metadata"] == {"suite": "smoke"}
    assert first["rollout"] == rollout.pk and first["change"] == rollout.change_id
    assert first["url"].endswith(f"/rollouts/{rollout.pk}/")
    assert [b["weight"] for b in _bodies(step)] == [50, 100]  # one call per analysis interval
    assert len(promotion.requests) == 1
    assert pre.requests[0].headers["X-Meshgate-Phase"] == "pre-rollout"
    kinds = list(
        RolloutEvent.objects.filter(rollout=rollout, kind=RolloutEventKind.WEBHOOK).values_list("message", flat=True)
    )
    assert len(kinds) == 4 and all("answered: HTTP 200" in k for k in kinds)


def test_a_failing_pre_rollout_webhook_writes_nothing_and_pauses_after_its_attempts(ro, receiver_factory):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    pre = receiver_factory(default=503)
    rollout = _start(ro, [{"name": "smoke", "phase": "pre-rollout", "url": pre.url}], webhook_attempts=2)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.PAUSED
    assert "pre-rollout webhook “smoke” failed: HTTP 503" in rollout.pause_reason
    assert "2 time(s) in a row" in rollout.pause_reason
    assert len(pre.requests) == 2
    assert rollout.snapshot == {} and live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before
    # The receiver recovers; a person resumes and the rollout goes through.
    pre.default = 200
    rollout_resume(actor=ro.approver, rollout=rollout)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")["spec"] == REVIEWS_TO_V3["spec"]


def test_a_failing_step_webhook_fails_the_interval_and_rolls_back_with_its_answer(ro, receiver_factory):
    before = live_normalized(ro.env, "VirtualService", "bookinfo", "reviews")
    step = receiver_factory(default=500)
    rollout = _start(ro, [{"name": "acceptance", "phase": "step", "url": step.url}])
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ROLLED_BACK
    reason = rollout.rollback_reason
    assert reason["metric"] == "webhook acceptance" and reason["observed"] == 500 and reason["threshold"] == "2xx"
    assert "step webhook “acceptance” failed: HTTP 500 (receiver says no)" in reason["summary"]
    assert live_normalized(ro.env, "VirtualService", "bookinfo", "reviews") == before
    rollout.change.refresh_from_db()
    assert rollout.change.state == ChangeState.ROLLED_BACK


def test_a_non_gating_webhook_failure_is_recorded_but_does_not_stop_the_rollout(ro, receiver_factory):
    step = receiver_factory(default=500)
    rollout = _start(ro, [{"name": "dashboard", "phase": "step", "url": step.url, "gate": False}])
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert (
        RolloutEvent.objects.filter(
            rollout=rollout, kind=RolloutEventKind.WEBHOOK, message__contains="failed: HTTP 500"
        ).count()
        == 2
    )


def test_a_failing_promotion_webhook_holds_the_promotion(ro, receiver_factory):
    promotion = receiver_factory(script=[500], default=200)
    rollout = _start(ro, [{"name": "change-board", "phase": "promotion", "url": promotion.url}])
    rollout = drive(rollout, passing, until=lambda r: r.state == RolloutState.PROMOTING and len(promotion.requests))
    assert rollout.state == RolloutState.PROMOTING  # held, called again after an interval
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED and len(promotion.requests) == 2


def test_rollback_webhooks_hear_of_the_rollback_and_its_reason(ro, receiver_factory):
    hook = receiver_factory(default=500)  # a failing rollback webhook never blocks the rollback
    rollout = _start(ro, [{"name": "pager", "phase": "rollback", "url": hook.url}])
    rollout = drive(rollout, failing_from(50))
    assert rollout.state == RolloutState.ROLLED_BACK
    (body,) = _bodies(hook)
    assert body["phase"] == "rollback" and body["state"] == RolloutState.ROLLED_BACK
    assert body["reason"]["metric"] == "request-success-rate"


def test_an_unreachable_webhook_is_a_failure_naming_the_error(ro):
    rollout = _start(ro, [{"name": "gone", "phase": "step", "url": "http://127.0.0.1:9/hook", "timeout_seconds": 1}])
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.ROLLED_BACK
    summary = rollout.rollback_reason["summary"]
    assert "step webhook “gone” failed: cannot reach 127.0.0.1: ConnectionRefusedError" in summary


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ([{"name": "a", "phase": "later", "url": "http://x/"}], "analysis.webhooks[0].phase: must be one of"),
        ([{"name": "a", "phase": "step", "url": "ftp://x/"}], "analysis.webhooks[0].url: must be an http"),
        ([{"name": "a", "phase": "step", "url": "http://u:p@x/"}], "analysis.webhooks[0].url: must not carry"),
        (
            [{"name": "a", "phase": "step", "url": "http://x/"}, {"name": "a", "phase": "step", "url": "http://y/"}],
            "analysis.webhooks[1].name: “a” is used twice",
        ),
        (
            [{"name": "a", "phase": "step", "url": "http://x/", "timeout_seconds": 0}],
            "analysis.webhooks[0].timeout_seconds",
        ),
        ([{"name": "a", "phase": "step", "url": "http://x/", "secret": "s"}], "analysis.webhooks[0].secret: unknown"),
        ({"name": "a"}, "analysis.webhooks: must be a list"),
    ],
)
def test_malformed_webhooks_are_refused_with_their_path_and_nothing_starts(ro, hooks, message):
    change = scheduled_change(ro, [(DraftOperation.UPDATE, REVIEWS_TO_V3)])
    with pytest.raises(ApplicationError) as caught:
        rollout_start(change=change, analysis={"interval_seconds": 1, "webhooks": hooks})
    assert message in caught.value.message and caught.value.status == 400
    change.refresh_from_db()
    assert change.state == ChangeState.SCHEDULED and not Rollout.objects.filter(change=change).exists()


def test_a_webhook_that_answered_is_not_called_again_when_the_action_fails_after_it(ro, receiver_factory, monkeypatch):
    from integrations.kubernetes.exceptions import KubernetesError
    from policies.rollout import engine as svc

    pre = receiver_factory()
    rollout = _start(ro, [{"name": "smoke", "phase": "pre-rollout", "url": pre.url}])
    real_get, calls = svc.kube.get_object, []

    def flaky(*args, **kwargs):  # the snapshot read fails once, after the webhook answered
        calls.append(args)
        if len(calls) == 1:
            raise KubernetesError("apiserver restarting", status=503)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(svc.kube, "get_object", flaky)
    rollout = drive(rollout, passing)
    assert rollout.state == RolloutState.COMPLETED
    assert len(pre.requests) == 1
    assert RolloutEvent.objects.filter(
        rollout=rollout, kind=RolloutEventKind.ERROR, message__contains="apiserver restarting"
    ).exists()


def test_a_receiver_that_trickles_its_answer_is_given_up_on_after_the_timeout():
    import socket
    import threading
    import time

    from policies.rollout import webhooks

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    sent = []

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        for _ in range(40):  # one byte every 0.3 s: each read is quick, the whole answer is not
            time.sleep(0.3)
            try:
                conn.sendall(b"x")
            except OSError:
                break
            sent.append(1)
        conn.close()

    receiver = threading.Thread(target=trickle, daemon=True)
    receiver.start()
    hook = webhooks.Webhook(
        name="slow", phase="step", url=f"http://127.0.0.1:{server.getsockname()[1]}/", timeout_seconds=1
    )
    (result,) = webhooks.call_all([hook], {"rollout": 1})
    assert not result.ok and "no complete answer within 1 s" in result.detail
    receiver.join(60)  # the receiver sees the hang-up at its next byte
    assert not receiver.is_alive() and len(sent) < 40, "the call waited for the whole answer"
    server.close()


def test_webhook_hosts_can_be_limited_and_urls_are_shown_without_their_query(settings):
    from policies.rollout import webhooks

    settings.MESHGATE_ROLLOUT_WEBHOOK_HOSTS = ["tests.example.com", "*.loadtest.svc"]
    ok = webhooks.parse_webhooks(
        [
            {"name": "a", "phase": "step", "url": "http://runner.loadtest.svc/go"},
            {"name": "b", "phase": "step", "url": "https://tests.example.com/x?token=s3cret"},
        ]
    )
    assert [hook.name for hook in ok] == ["a", "b"]
    with pytest.raises(webhooks.WebhookConfigError, match=r"webhooks\[0\].url: host public.example.org is not among"):
        webhooks.parse_webhooks([{"name": "a", "phase": "step", "url": "http://public.example.org/latest"}])
    # The egress policy applies whatever the host list says: the metadata address is refused.
    settings.MESHGATE_ROLLOUT_WEBHOOK_HOSTS = []
    with pytest.raises(
        webhooks.WebhookConfigError,
        match=r"webhooks\[0\].url: 169.254.169.254 is not an allowed "
        r"destination: 169.254.169.254 is a link-local address",
    ):
        webhooks.parse_webhooks([{"name": "a", "phase": "step", "url": "http://169.254.169.254/latest"}])
    shown = webhooks.WebhookResult(ok[1], True, 200, "", 5).as_dict()["url"]
    assert shown == "https://tests.example.com/x?…" and "s3cret" not in shown


def test_a_huge_webhook_answer_is_read_only_up_to_its_cap():
    """A 300 MiB answer: at most 64 KiB is read, the worker's memory stays flat, the detail is trimmed."""
    import socket
    import threading
    import tracemalloc

    from policies.rollout import webhooks

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    sent_all = []

    def huge():
        conn, _ = server.accept()
        conn.recv(65536)
        try:
            conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 314572800\r\n\r\n")
            chunk = b"<html>" + b"A" * 65530
            for _ in range(300 * 16):
                conn.sendall(chunk)
            sent_all.append(True)
        except OSError:
            pass
        conn.close()

    receiver = threading.Thread(target=huge, daemon=True)
    receiver.start()
    hook = webhooks.Webhook(
        name="huge", phase="step", url=f"http://127.0.0.1:{server.getsockname()[1]}/", timeout_seconds=10
    )
    tracemalloc.start()
    try:
        result = webhooks.call(hook, {"rollout": 1})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.ok and result.status == 500 and len(result.detail) <= 300
    receiver.join(60)  # the receiver sees the hang-up
    assert not receiver.is_alive() and not sent_all, "the call read on past its cap"
    assert peak < 8 * 1024 * 1024
    server.close()
