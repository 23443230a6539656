"""The rollouts API: list (filters), retrieve (status, weight, step, reason, analysis runs, events),
and the controls, each through one service (permission 403, illegal transition 409)."""

import pytest

from policies.choices import RolloutState
from portal.choices import TokenScope
from tests.api_testing import (
    TeamScopedListContract,
    TeamScopedObjectContract,
    assert_error,
    bearer_client,
    results,
    session_client,
    token_for,
)
from tests.policies.rollouts.test_pages import ROLLED_BACK_REASON, make_rollout

pytestmark = pytest.mark.django_db


def url(rollout_id, action: str = "") -> str:
    return f"/api/v1/rollouts/{rollout_id}/" + (f"{action}/" if action else "")


class TestRolloutList(TeamScopedListContract):
    def arrange(self, org):
        self.mine = make_rollout(org)
        self.foreign = make_rollout(org, namespace="shop", title="shop rollout")

    def url(self, org):
        return "/api/v1/rollouts/"

    def hidden(self, org):
        return self.foreign.pk

    def check_response(self, response, org):
        item = results(response)[0]
        assert item["id"] == self.mine.pk and item["state"] == "running" and item["current_weight"] == 10
        assert item["step"] == 1 and item["steps_total"] == 3 and item["environment"] == "staging"


class TestRolloutRetrieve(TeamScopedObjectContract):
    def arrange(self, org):
        self.rollout = make_rollout(org, state=RolloutState.ROLLED_BACK, rollback_reason=ROLLED_BACK_REASON)
        self.foreign = make_rollout(org, namespace="shop", title="shop rollout")

    def url(self, org):
        return url(self.rollout.pk)

    def foreign_url(self, org):
        return url(self.foreign.pk)

    def missing_url(self, org):
        return url(999999)

    def check_response(self, response, org):
        body = response.json()
        assert body["state"] == "rolled_back" and body["rollback_reason"]["metric"] == "request-success-rate"
        assert [phase["weight"] for phase in body["phases"]] == [10, 50, 100]
        assert body["phases"][0]["verdict"] == "fail" and body["phases"][1]["gate"] is True
        run = body["analysis_runs"][0]
        assert run["metrics"]["request-success-rate"]["stable"] == 0.995 and run["interval"] == 1
        assert [event["kind"] for event in body["events"]] == ["started", "apply", "analysis"]


class TestRolloutPause(TeamScopedObjectContract):
    method = "post"
    scope = TokenScope.WRITE

    def arrange(self, org):
        self.rollout = make_rollout(org)
        self.foreign = make_rollout(org, namespace="shop", title="shop rollout")

    def url(self, org):
        return url(self.rollout.pk, "pause")

    def foreign_url(self, org):
        return url(self.foreign.pk, "pause")

    def missing_url(self, org):
        return url(999999, "pause")

    def payload(self, org):
        return {"reason": "checking dashboards"}

    def permitted_user(self, org):
        return org.approver

    def check_response(self, response, org):
        assert response.json()["state"] == "paused"
        self.rollout.refresh_from_db()
        assert self.rollout.state == RolloutState.PAUSED and "checking dashboards" in self.rollout.pause_reason


class TestRolloutResume(TeamScopedObjectContract):
    method = "post"
    scope = TokenScope.WRITE

    def arrange(self, org):
        self.rollout = make_rollout(
            org, state=RolloutState.PAUSED, resume_state=RolloutState.RUNNING, pause_reason="paused by bob"
        )
        self.foreign = make_rollout(org, namespace="shop", title="shop rollout", state=RolloutState.PAUSED)

    def url(self, org):
        return url(self.rollout.pk, "resume")

    def foreign_url(self, org):
        return url(self.foreign.pk, "resume")

    def missing_url(self, org):
        return url(999999, "resume")

    def permitted_user(self, org):
        return org.approver

    def check_response(self, response, org):
        assert response.json()["state"] == "running"
        self.rollout.refresh_from_db()
        assert self.rollout.state == RolloutState.RUNNING and self.rollout.pause_reason == ""


def test_list_filters(org):
    running = make_rollout(org)
    done = make_rollout(org, state=RolloutState.COMPLETED, title="done")
    client = session_client(org.author)
    assert [r["id"] for r in results(client.get("/api/v1/rollouts/", {"state": "completed"}))] == [done.pk]
    assert [r["id"] for r in results(client.get("/api/v1/rollouts/", {"change": running.change_id}))] == [running.pk]
    assert results(client.get("/api/v1/rollouts/", {"environment": "production"})) == []
    assert {r["id"] for r in results(client.get("/api/v1/rollouts/", {"environment": "staging"}))} == {
        running.pk,
        done.pk,
    }


def test_read_token_can_get_but_not_post(org):
    rollout = make_rollout(org)
    client = bearer_client(token_for(org.approver, scopes=[TokenScope.READ]))
    assert client.get(url(rollout.pk)).status_code == 200
    for action in ("pause", "resume", "abort", "promote", "confirm-gate"):
        assert_error(client.post(url(rollout.pk, action), {}, format="json"), 403, code="permission_denied")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING


def test_a_member_who_may_not_control_gets_403(org):
    rollout = make_rollout(org)
    response = session_client(org.author).post(url(rollout.pk, "pause"), {}, format="json")
    assert_error(response, 403, code="permission_denied")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING


@pytest.mark.parametrize("action", ["resume", "confirm-gate"])
def test_illegal_transition_is_409_with_the_state(org, action):
    rollout = make_rollout(org)
    response = session_client(org.approver).post(url(rollout.pk, action), {}, format="json")
    details = assert_error(response, 409, code="rollout_illegal_state")
    assert details["state"] == "running"


def test_finished_rollout_cannot_be_aborted(org):
    rollout = make_rollout(org, state=RolloutState.COMPLETED)
    details = assert_error(session_client(org.approver).post(url(rollout.pk, "abort"), {}, format="json"), 409)
    assert details["state"] == "completed"


def test_abort_and_promote_and_confirm_gate(org):
    client = session_client(org.approver)
    gated = make_rollout(org, state=RolloutState.WAITING_GATE)
    assert client.post(url(gated.pk, "confirm-gate"), {}, format="json").json()["state"] == "running"
    assert client.post(url(gated.pk, "promote"), {}, format="json").json()["step"] == 3
    body = client.post(url(gated.pk, "abort"), {"reason": "enough"}, format="json").json()
    assert body["state"] == "rolling_back" and "enough" in body["rollback_reason"]["summary"]
