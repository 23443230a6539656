"""`/api/v1/policies/{id}/drift/` and its two actions, `adopt/` and `reapply/`, on a policy Meshgate
rolled out to the simulated cluster and someone then edited with kubectl."""

import pytest
from django.urls import reverse

from integrations import kubernetes as kube
from policies.choices import ChangeState
from policies.cluster import cluster_config
from policies.normalize import normalize_object
from policies.services.drafts import draft_save
from policies.services.drift import drift_detect
from portal.choices import TokenScope
from tests.api_testing import (
    TeamScopedObjectContract,
    assert_error,
    bearer_client,
    results,
    session_client,
    token_for,
)
from tests.policies.drafts.helpers import REVIEWS_V2
from tests.policies.drift.conftest import Drifted
from tests.policies.rollouts.helpers import REVIEWS_TO_V3, live, live_normalized

pytestmark = pytest.mark.django_db


def drift_url(policy_id: int, action: str = "") -> str:
    name = f"api:policy-drift-{action}" if action else "api:policy-drift"
    return reverse(name, kwargs={"pk": policy_id})


def reviews_live(org) -> dict:
    return live_normalized(org.env, "VirtualService", "bookinfo", "reviews")


def resolve_drift(env):
    kube.apply_object(cluster_config(env), normalize_object(REVIEWS_TO_V3), field_manager="kubectl-edit", force=True)
    assert drift_detect(environment=env)["resolved"] == 1


# --- the contracts: anonymous, token scope, session and token, other teams -------------------------


class _DriftActionContract(TeamScopedObjectContract):
    method = "post"
    scope = TokenScope.WRITE
    success_status = 201
    action: str

    @pytest.fixture(autouse=True)
    def _arrange(self, drifted):  # a rolled-out policy with drift, for every contract test
        self.drifted: Drifted = drifted

    def url(self, org):
        return drift_url(self.drifted.policy.pk, self.action)

    def foreign_url(self, org):
        return drift_url(org.policy_b.pk, self.action)  # shop's policy: alice is not in that team

    def missing_url(self, org):
        return drift_url(999_999, self.action)


class TestAdopt(_DriftActionContract):
    action = "adopt"

    def check_response(self, response, org):
        draft = response.json()
        assert draft["author"] == "alice" and draft["operation"] == "update"
        assert draft["content"] == reviews_live(org)
        assert draft["content"]["spec"]["http"][0]["timeout"] == "4s"
        assert draft["policy"] == self.drifted.policy.pk and draft["stale"] is False


class TestReapply(_DriftActionContract):
    action = "reapply"

    def check_response(self, response, org):
        change = response.json()
        assert change["state"] == ChangeState.DRAFT and change["stale"] is False
        (item,) = change["items"]
        assert item["content"] == self.drifted.applied.content
        assert item["content_hash"] == self.drifted.applied.content_hash
        assert item["base_revision"] == item["current_revision"] == self.drifted.applied.number


class TestDriftRead(TeamScopedObjectContract):
    @pytest.fixture(autouse=True)
    def _arrange(self, drifted):
        self.drifted: Drifted = drifted

    def url(self, org):
        return drift_url(self.drifted.policy.pk)

    def foreign_url(self, org):
        return drift_url(org.policy_b.pk)

    def missing_url(self, org):
        return drift_url(999_999)

    def check_response(self, response, org):
        drift = response.json()
        assert drift["policy"] == self.drifted.policy.pk
        assert drift["live_state"] == "present"
        assert drift["applied_revision"] == self.drifted.applied.number
        assert drift["live_content"] == reviews_live(org)
        assert (
            drift["live_resource_version"]
            == live(org.env, "VirtualService", "bookinfo", "reviews")["metadata"]["resourceVersion"]
        )
        assert drift["diff"]["changes"] == [{"path": "spec.http[0].timeout", "op": "added", "old": None, "new": "4s"}]
        assert "+    timeout: 4s" in drift["diff"]["unified"].splitlines()
        assert drift["diff"]["unified"].startswith(f"--- revision #{self.drifted.applied.number}\n+++ live\n")
        assert drift["open_changes"] == []


# --- drift in the policy's answers ------------------------------------------------------------------


def test_the_policy_list_and_detail_show_the_drift(drifted):
    client = session_client(drifted.org.author)
    (listed,) = [
        item
        for item in results(client.get(reverse("api:policy-list"), {"namespace": "bookinfo"}))
        if item["id"] == drifted.policy.pk
    ]
    assert listed["drift"]["live_state"] == "present"
    assert listed["drift"]["detected_at"]
    detail = client.get(reverse("api:policy-detail", kwargs={"pk": drifted.policy.pk})).json()
    assert detail["drift"] == listed["drift"]
    others = [item for item in results(client.get(reverse("api:policy-list"))) if item["id"] != drifted.policy.pk]
    assert others and all(item["drift"] is None for item in others)


def test_without_drift_the_drift_answers_404_and_the_policy_shows_none(drifted):
    resolve_drift(drifted.org.env)
    client = session_client(drifted.org.author)
    assert_error(
        client.get(drift_url(drifted.policy.pk)),
        404,
        code="not_found",
        message="VirtualService bookinfo/reviews has no drift",
    )
    assert client.get(reverse("api:policy-detail", kwargs={"pk": drifted.policy.pk})).json()["drift"] is None


# --- the actions: refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["adopt", "reapply"])
def test_a_user_without_a_role_gets_403_and_nothing_is_created(drifted, action):
    client = session_client(drifted.org.sec)  # security team: reads every policy, drafts in none
    details = assert_error(client.post(drift_url(drifted.policy.pk, action)), 403, code="permission_denied")
    assert details == {}
    assert results(client.get(reverse("api:draft-list"))) == []
    assert results(client.get(reverse("api:change-list"), {"state": "draft"})) == []


@pytest.mark.parametrize("action", ["adopt", "reapply"])
def test_a_token_of_a_user_without_a_role_gets_403(drifted, action):
    client = bearer_client(token_for(drifted.org.sec, scopes=[TokenScope.READ, TokenScope.WRITE]))
    assert_error(client.post(drift_url(drifted.policy.pk, action)), 403, code="permission_denied")


@pytest.mark.parametrize("action", ["adopt", "reapply"])
def test_without_drift_the_actions_answer_409_no_drift(drifted, action):
    resolve_drift(drifted.org.env)
    client = session_client(drifted.org.author)
    response = client.post(drift_url(drifted.policy.pk, action))
    details = assert_error(response, 409, code="no_drift")
    assert "VirtualService bookinfo/reviews has no drift" in response.json()["message"]
    assert details == {"policy": drifted.policy.pk}
    assert results(client.get(reverse("api:draft-list"))) == []


def test_reapply_answers_409_while_the_caller_has_a_draft_for_the_policy(drifted):
    draft = draft_save(author=drifted.org.author, environment=drifted.org.env, text=REVIEWS_V2).draft
    client = session_client(drifted.org.author)
    details = assert_error(client.post(drift_url(drifted.policy.pk, "reapply")), 409, code="conflict")
    assert details == {"draft": draft.pk}


# --- the actions: behaviour ----------------------------------------------------------------------------


def test_adopt_updates_the_callers_existing_draft(drifted):
    existing = draft_save(author=drifted.org.author, environment=drifted.org.env, text=REVIEWS_V2).draft
    client = session_client(drifted.org.author)
    response = client.post(drift_url(drifted.policy.pk, "adopt"))
    assert response.status_code == 201
    assert response.json()["id"] == existing.pk
    assert response.json()["content"] == reviews_live(drifted.org)
    assert [draft["id"] for draft in results(client.get(reverse("api:draft-list")))] == [existing.pk]


def test_reapply_is_idempotent_with_a_key(drifted):
    client = session_client(drifted.org.author)
    url = drift_url(drifted.policy.pk, "reapply")
    first = client.post(url, HTTP_IDEMPOTENCY_KEY="reapply-1")
    again = client.post(url, HTTP_IDEMPOTENCY_KEY="reapply-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert [change["id"] for change in results(client.get(reverse("api:change-list"), {"state": "draft"}))] == [
        first.json()["id"]
    ]


def test_the_reapplied_change_lists_in_the_drift(drifted):
    client = session_client(drifted.org.author)
    change = client.post(drift_url(drifted.policy.pk, "reapply")).json()
    assert client.get(drift_url(drifted.policy.pk)).json()["open_changes"] == [change["id"]]


def test_when_the_live_object_was_deleted_adopt_drafts_the_deletion_and_reapply_recreates_it(drifted):
    kube.delete_object(cluster_config(drifted.org.env), "VirtualService", "bookinfo", "reviews")
    drift_detect(environment=drifted.org.env)
    client = session_client(drifted.org.author)
    drift = client.get(drift_url(drifted.policy.pk)).json()
    assert drift["live_state"] == "absent" and drift["live_content"] is None
    assert drift["diff"]["summary"]["removed"] > 0

    change = client.post(drift_url(drifted.policy.pk, "reapply")).json()
    (item,) = change["items"]
    assert item["operation"] == "update" and item["content"] == drifted.applied.content
    assert change["stale"] is False

    draft = client.post(drift_url(drifted.policy.pk, "adopt")).json()
    assert draft["operation"] == "delete" and draft["content"] is None
