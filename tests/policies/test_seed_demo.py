"""The demo the run command loads: both environments imported through the client, idempotently,
and two changes rolling out on staging: one regresses and rolls back, one promotes."""

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.urls import reverse

from policies.choices import ChangeState, ReviewVerdict, RolloutState
from policies.management.commands.seed_demo import DEMO_CHANGES
from policies.models import (
    AuditEvent,
    ChangeRequest,
    Environment,
    Policy,
    PolicyRevision,
    Review,
    Rollout,
)
from policies.selectors import policy_list
from policies.services.audit import audit_verify_chain
from tests.policies.rollouts.helpers import drive, live_normalized

REGRESSING, PROMOTING = (spec.title for spec in DEMO_CHANGES)


@pytest.fixture
def seeded(db, meshsim, meshsim_prod):
    call_command("seed_demo", "--staging-url", meshsim.url, "--prod-url", meshsim_prod.url)


def test_demo_environments_teams_and_logins(seeded):
    assert list(Environment.objects.values_list("name", "is_production")) == [("staging", False), ("prod", True)]
    for username in ("alice", "bob", "carol", "dan", "sam", "ada"):
        assert authenticate(username=username, password="meshgate-demo") is not None, username


def test_demo_policies_of_both_environments_are_imported(seeded):
    for env in ("staging", "prod"):
        kinds = set(Policy.objects.filter(environment__name=env).values_list("kind", flat=True))
        assert {"VirtualService", "DestinationRule", "Gateway", "AuthorizationPolicy", "PeerAuthentication"} <= kinds
    alice = authenticate(username="alice", password="meshgate-demo")
    assert {p.namespace for p in policy_list(user=alice)} == {"bookinfo"}
    assert audit_verify_chain().ok


def test_seeding_again_changes_nothing(seeded, meshsim, meshsim_prod):
    revisions, events = PolicyRevision.objects.count(), AuditEvent.objects.count()
    call_command("seed_demo", "--staging-url", meshsim.url, "--prod-url", meshsim_prod.url)
    assert PolicyRevision.objects.count() == revisions
    assert AuditEvent.objects.count() == events
    assert ChangeRequest.objects.count() == Rollout.objects.count() == 2
    assert len(meshsim.admin("GET", "traffic/faults").json()["faults"]) == 1


def _change(title: str) -> ChangeRequest:
    return ChangeRequest.objects.select_related("author", "rollout").get(environment__name="staging", title=title)


def test_two_demo_changes_are_reviewed_and_rolling_out_with_short_intervals(seeded, meshsim):
    for title, author, approver in ((REGRESSING, "alice", "bob"), (PROMOTING, "carol", "dan")):
        change = _change(title)
        assert change.state == ChangeState.ROLLING_OUT and change.author.username == author
        reviews = Review.objects.filter(change=change, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True)
        assert [r.reviewer.username for r in reviews] == [approver]
        rollout = change.rollout
        assert (rollout.state, rollout.strategy, rollout.steps) == (RolloutState.PENDING, "canary", [10, 25, 50, 100])
        assert rollout.analysis["interval_seconds"] == 10 and rollout.next_action_at <= rollout.started_at
    (fault,) = meshsim.admin("GET", "traffic/faults").json()["faults"]
    assert (fault["service"], fault["version"], fault["status"]) == ("reviews", "v3", 503)


def test_the_demo_users_see_their_team_s_rollout(seeded, client):
    regressing, promoting = _change(REGRESSING), _change(PROMOTING)
    for username, own, other in (("alice", regressing, promoting), ("carol", promoting, regressing)):
        client.force_login(authenticate(username=username, password="meshgate-demo"))
        assert own.title in client.get(reverse("changes:list")).content.decode()
        assert own.title in client.get(reverse("policies:home")).content.decode()
        assert client.get(reverse("rollouts:detail", args=[own.rollout.pk])).status_code == 200
        assert client.get(reverse("rollouts:detail", args=[other.rollout.pk])).status_code == 404


def test_the_regressing_change_rolls_back_and_the_other_promotes(seeded, meshsim):
    """The engine's own analysis over meshsim's simulated traffic (the clock jumps a minute per interval)."""
    env = Environment.objects.get(name="staging")
    reviews_before = live_normalized(env, "VirtualService", "bookinfo", "reviews")
    regressing = drive(_change(REGRESSING).rollout)
    assert regressing.state == RolloutState.ROLLED_BACK, regressing.pause_reason
    reason = regressing.rollback_reason
    assert reason["metric"] == "request-success-rate" and reason["observed"] < 0.95 and reason["weight"] == 10
    assert live_normalized(env, "VirtualService", "bookinfo", "reviews") == reviews_before
    promoting = drive(_change(PROMOTING).rollout)
    assert promoting.state == RolloutState.COMPLETED, promoting.pause_reason or promoting.rollback_reason
    routes = live_normalized(env, "VirtualService", "shop", "payments")["spec"]["http"][0]["route"]
    assert routes == [{"destination": {"host": "payments", "subset": "v2"}}]
    assert _change(REGRESSING).state == ChangeState.ROLLED_BACK and _change(PROMOTING).state == ChangeState.COMPLETED


def test_every_demo_team_can_get_a_production_change_approved(seeded):
    """Production asks for one more approval than staging: each team has two people who may give it."""
    from policies.approval import default_rule_problems

    assert default_rule_problems() == []
