"""Lost plan tasks: a change whose plan job never ran (a killed worker, an enqueue that failed after the
commit) is planned by the periodic reconciler once the bound has passed, once per bound, with an audit row."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from policies import jobs
from policies.choices import ChangeState, PlanStatus
from policies.models import AuditEvent, ChangeRequest, Plan
from policies.services.changes import change_submit
from policies.services.plans import plan_compute
from policies.tasks import reconcile_rollouts
from tests.policies.changes.helpers import RATINGS_NEW, make_change

BOUND = 120.0


@pytest.fixture
def sent(monkeypatch):
    """The jobs that would have been sent: recorded, never delivered (their tasks are lost)."""
    messages: list[tuple] = []
    monkeypatch.setattr(jobs, "send", lambda name, args, countdown=None: messages.append((name, *args)))
    return messages


def _asked_ago(change: ChangeRequest, seconds: float) -> None:
    """Every request for a plan of the change was made `seconds` ago (time passes for the lost task); a
    plan already stored came a second after them."""
    then = timezone.now() - dt.timedelta(seconds=seconds)
    fields = {"content_updated_at": then, "submitted_at": then}
    if ChangeRequest.objects.get(pk=change.pk).plan_requested_at is not None:
        fields["plan_requested_at"] = then
    ChangeRequest.objects.filter(pk=change.pk).update(**fields)
    Plan.objects.filter(change=change).update(computed_at=then + dt.timedelta(seconds=1))


def _plan_jobs(sent: list[tuple], change: ChangeRequest) -> int:
    return sent.count(("policies.tasks.compute_plan", change.pk))


def test_a_lost_plan_is_sent_again_past_the_bound_once_per_bound(transactional_db, cluster_org, sent, settings):
    settings.MESHGATE_PLAN_RESCUE_SECONDS = BOUND
    org = cluster_org
    lost = change_submit(actor=org.author, change=make_change(author=org.author, environment=org.env))
    planned = change_submit(
        actor=org.author, change=make_change(author=org.author, environment=org.env, texts=[RATINGS_NEW])
    )
    draft = make_change(author=org.author, environment=org.env, texts=[RATINGS_NEW], title="not submitted")
    assert _plan_jobs(sent, lost) == 1 and _plan_jobs(sent, planned) == 1  # sent at submit, never run
    plan_compute(change=planned)  # this one's job ran
    assert not Plan.objects.filter(change=lost).exists()
    assert lost.state == ChangeState.IN_REVIEW

    # Within the bound the job may still be queued: nothing is sent twice.
    _asked_ago(lost, BOUND - 5)
    assert reconcile_rollouts()["plans"] == 0
    assert _plan_jobs(sent, lost) == 1

    for change in (lost, planned, draft):
        _asked_ago(change, BOUND + 5)
    assert reconcile_rollouts()["plans"] == 1
    assert _plan_jobs(sent, lost) == 2
    assert _plan_jobs(sent, planned) == 1 and _plan_jobs(sent, draft) == 0
    (event,) = AuditEvent.objects.filter(action="change.plan_rescued")
    assert event.object_id == str(lost.pk) and event.actor is None
    assert event.after["waited_seconds"] >= BOUND

    # Single-flight: the next runs (any reconciler) send nothing until another bound has passed.
    assert reconcile_rollouts()["plans"] == 0
    assert reconcile_rollouts()["plans"] == 0
    assert _plan_jobs(sent, lost) == 2
    _asked_ago(lost, BOUND + 5)  # that job was lost too
    assert reconcile_rollouts()["plans"] == 1
    assert _plan_jobs(sent, lost) == 3

    plan_compute(change=lost)  # a job finally runs: the change is planned and left alone
    _asked_ago(lost, 10 * BOUND)
    assert reconcile_rollouts()["plans"] == 0
    assert AuditEvent.objects.filter(action="change.plan_rescued").count() == 2


def test_the_rescue_shows_on_the_change_timeline(transactional_db, cluster_org, sent, settings, client):
    settings.MESHGATE_PLAN_RESCUE_SECONDS = BOUND
    org = cluster_org
    lost = change_submit(actor=org.author, change=make_change(author=org.author, environment=org.env))
    _asked_ago(lost, BOUND + 5)
    assert reconcile_rollouts()["plans"] == 1
    client.force_login(org.author)
    body = client.get(f"/changes/{lost.pk}/").content.decode()
    assert "the plan was asked for again (its task was lost)" in body


@pytest.mark.worker
def test_a_real_worker_plans_a_change_whose_enqueue_failed_after_commit(
    celery_worker_process, cluster_org, monkeypatch, settings
):
    settings.MESHGATE_PLAN_RESCUE_SECONDS = BOUND
    org = cluster_org
    deliver = jobs.send

    def broker_down(name, args, countdown=None):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(jobs, "send", broker_down)
    change = change_submit(actor=org.author, change=make_change(author=org.author, environment=org.env))
    assert ChangeRequest.objects.get(pk=change.pk).state == ChangeState.IN_REVIEW  # the submit committed
    monkeypatch.setattr(jobs, "send", deliver)  # the broker is back; the plan's message is gone
    _asked_ago(change, BOUND + 5)

    assert reconcile_rollouts()["plans"] == 1  # this process plays beat; the worker computes the plan
    deadline = time.monotonic() + 60
    while not Plan.objects.filter(change=change).exists():
        assert time.monotonic() < deadline, "the worker stored no plan for the rescued change"
        time.sleep(0.25)
    plan = Plan.objects.get(change=change)
    assert plan.status == PlanStatus.OK, plan.error
    assert reconcile_rollouts()["plans"] == 0


def test_a_plan_lost_every_time_is_given_up_until_a_person_asks_again(
    transactional_db, cluster_org, sent, settings, client
):
    settings.MESHGATE_PLAN_RESCUE_SECONDS = BOUND
    settings.MESHGATE_PLAN_RESCUE_ATTEMPTS = 2
    org = cluster_org
    lost = change_submit(actor=org.author, change=make_change(author=org.author, environment=org.env))
    for attempt in (1, 2):
        _asked_ago(lost, BOUND + 5)
        assert reconcile_rollouts()["plans"] == 1
        assert AuditEvent.objects.filter(action="change.plan_rescued").latest("pk").after["attempt"] == attempt
    assert _plan_jobs(sent, lost) == 3  # the submit's and two rescues, all lost

    # The third time the reconciler gives up: nothing is sent, once, with an audit row; the page says so.
    for _ in range(3):
        _asked_ago(lost, BOUND + 5)
        assert reconcile_rollouts()["plans"] == 0
    assert _plan_jobs(sent, lost) == 3
    (given_up,) = AuditEvent.objects.filter(action="change.plan_given_up")
    assert given_up.object_id == str(lost.pk) and given_up.after["attempts"] == 2
    assert ChangeRequest.objects.get(pk=lost.pk).plan_given_up_at is not None
    client.force_login(org.author)
    body = client.get(f"/changes/{lost.pk}/").content.decode()
    assert "mg-plan-given-up" in body and "its task was lost 2 times in a row" in body
    assert "the plan was given up" in body
    assert "Waiting for the worker" not in body
    assert client.get(f"/api/v1/changes/{lost.pk}/").json()["plan_given_up_at"] is not None

    # A person refreshes the plan: it is sent, and if that task is lost too the rescues start over.
    response = client.post(f"/changes/{lost.pk}/refresh-plan/")
    assert response.status_code in (302, 303)
    assert _plan_jobs(sent, lost) == 4
    assert "mg-plan-given-up" not in client.get(f"/changes/{lost.pk}/").content.decode()
    assert ChangeRequest.objects.get(pk=lost.pk).plan_given_up_at is None
    _asked_ago(lost, BOUND + 5)
    assert reconcile_rollouts()["plans"] == 1
    assert AuditEvent.objects.filter(action="change.plan_rescued").latest("pk").after["attempt"] == 1
    assert _plan_jobs(sent, lost) == 5
