"""The policy page's drift panel and its two actions, on a policy Meshgate rolled out to the simulated
cluster and someone then edited with kubectl."""

import html
import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from integrations import kubernetes as kube
from policies.choices import ChangeState, RolloutState
from policies.cluster import cluster_config
from policies.models import ChangeRequest
from policies.normalize import normalize_object
from policies.services.changes import change_schedule, change_submit
from policies.services.drafts import draft_save
from policies.services.drift import drift_detect
from policies.services.reviews import review_approve
from policies.services.rollouts import rollout_start
from tests.policies.drafts.helpers import REVIEWS_V2
from tests.policies.rollouts.helpers import (
    REVIEWS_TO_V3,
    drive,
    live_normalized,
    passing,
)

pytestmark = pytest.mark.django_db

ADOPT = "Adopt live as a draft"
REAPPLY = "Re-apply approved"


def page_url(policy) -> str:
    return reverse("policies:policy-detail", args=[policy.pk])


def adopt_url(policy) -> str:
    return reverse("policies:policy-drift-adopt", args=[policy.pk])


def reapply_url(policy) -> str:
    return reverse("policies:policy-drift-reapply", args=[policy.pk])


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def panel(response) -> str | None:
    """The HTML of the page's drift panel, or None."""
    found = re.search(r'<section[^>]*id="drift-panel".*?</section>', response.content.decode(), re.S)
    return found.group(0) if found else None


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def forms_in(fragment: str) -> dict[str, str]:
    """{action: the form's HTML} of the POST forms in a fragment."""
    return dict(re.findall(r'<form method="post" action="([^"]+)">(.*?)</form>', fragment, re.S))


def inserted_lines(fragment: str) -> set[str]:
    """The lines a diff shows as added (right side)."""
    return {html.unescape(line) for line in re.findall(r'<td class="mg-diff-code mg-diff-insert">(.*?)</td>', fragment)}


def api_get(client: Client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def audit_rows(org, action: str) -> list[dict]:
    """The audit log's JSON export filtered by action, as a security-team member downloads it."""
    response = signed_in(org.sec).get(reverse("changes:audit-export", args=["json"]), {"action": action})
    assert response.status_code == 200
    return json.loads(b"".join(response.streaming_content))


def resolve_drift(env):
    """Someone puts the applied object back by hand; drift detection notices."""
    kube.apply_object(cluster_config(env), normalize_object(REVIEWS_TO_V3), field_manager="kubectl-edit", force=True)
    assert drift_detect(environment=env)["resolved"] == 1


# --- the panel --------------------------------------------------------------------------------------


def test_the_page_shows_the_drift_and_the_diff_from_the_applied_revision_to_live(drifted):
    response = signed_in(drifted.org.author).get(page_url(drifted.policy))
    assert response.status_code == 200
    drift = panel(response)
    assert drift is not None
    text = text_of(drift)
    assert "The live object differs from what Meshgate applied" in text
    assert f"Meshgate applied revision #{drifted.applied.number}" in text
    assert f"Diff revision #{drifted.applied.number} (applied) → live" in text
    assert inserted_lines(drift) == {"    timeout: 4s"}
    assert "spec.http[0].timeout" in text
    forms = forms_in(drift)
    assert set(forms) == {adopt_url(drifted.policy), reapply_url(drifted.policy)}
    for form in forms.values():
        assert 'name="csrfmiddlewaretoken"' in form
    assert ADOPT in text_of(forms[adopt_url(drifted.policy)])
    assert REAPPLY in text_of(forms[reapply_url(drifted.policy)])


def test_a_reader_without_a_role_sees_the_drift_but_no_actions(drifted):
    response = signed_in(drifted.org.sec).get(page_url(drifted.policy))  # security team: reads everything
    assert response.status_code == 200
    drift = panel(response)
    assert drift is not None and 'id="drift-diff"' in drift
    assert forms_in(drift) == {}
    assert ADOPT not in response.content.decode() and REAPPLY not in response.content.decode()


def test_a_policy_without_drift_has_no_panel(drifted):
    resolve_drift(drifted.org.env)
    response = signed_in(drifted.org.author).get(page_url(drifted.policy))
    assert response.status_code == 200
    assert panel(response) is None


# --- adopt -------------------------------------------------------------------------------------------


def test_adopt_makes_the_live_object_the_users_draft_and_opens_the_editor(drifted):
    client = signed_in(drifted.org.author)
    response = client.post(adopt_url(drifted.policy))
    assert response.status_code == 302
    draft_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    assert response["Location"] == reverse("editor:draft-edit", args=[draft_id])
    assert client.get(response["Location"]).status_code == 200

    draft = api_get(client, reverse("api:draft-detail", args=[draft_id]))
    assert draft["content"] == live_normalized(drifted.org.env, "VirtualService", "bookinfo", "reviews")
    assert draft["content"]["spec"]["http"][0]["timeout"] == "4s"
    assert draft["author"] == "alice" and draft["operation"] == "update" and not draft["stale"]
    assert draft["diff"]["changes"] == [{"path": "spec.http[0].timeout", "op": "added", "old": None, "new": "4s"}]
    (audit,) = audit_rows(drifted.org, "policy.drift_adopted")
    assert audit["actor_name"] == "alice" and audit["after"]["draft"] == draft_id


def test_adopt_updates_the_users_existing_draft(drifted):
    existing = draft_save(author=drifted.org.author, environment=drifted.org.env, text=REVIEWS_V2).draft
    client = signed_in(drifted.org.author)
    response = client.post(adopt_url(drifted.policy))
    assert response["Location"] == reverse("editor:draft-edit", args=[existing.pk])
    draft = api_get(client, reverse("api:draft-detail", args=[existing.pk]))
    assert draft["content"] == live_normalized(drifted.org.env, "VirtualService", "bookinfo", "reviews")
    assert len(api_get(client, reverse("api:draft-list"))["results"]) == 1


# --- re-apply ------------------------------------------------------------------------------------------


def test_reapply_creates_a_change_that_puts_the_applied_revision_back_and_is_not_stale(drifted):
    client = signed_in(drifted.org.author)
    response = client.post(reapply_url(drifted.policy))
    assert response.status_code == 302
    change_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    assert response["Location"] == reverse("changes:detail", args=[change_id])
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert 'id="stale-alert"' not in page.content.decode()

    change = api_get(client, reverse("api:change-detail", args=[change_id]))
    assert change["state"] == ChangeState.DRAFT and change["author"] == "alice" and change["stale"] is False
    assert change["title"] == f"Re-apply revision #{drifted.applied.number} of VirtualService bookinfo/reviews"
    (item,) = change["items"]
    revision = api_get(client, reverse("api:policy-revision-detail", args=[drifted.policy.pk, drifted.applied.number]))
    assert item["content"] == revision["content"]
    assert item["content_hash"] == revision["content_hash"]
    assert item["operation"] == "update" and item["stale"] is False
    assert item["base_revision"] == item["current_revision"] == drifted.applied.number
    (audit,) = audit_rows(drifted.org, "policy.drift_reapplied")
    assert audit["actor_name"] == "alice" and audit["after"]["change"] == change_id

    # The page lists the open change in the drift panel.
    assert f"#{change_id} Re-apply revision" in text_of(panel(client.get(page_url(drifted.policy))))


def test_the_reapplied_change_undoes_the_drift_when_it_is_approved_and_rolled_out(drifted):
    org = drifted.org
    response = signed_in(org.author).post(reapply_url(drifted.policy))
    change = ChangeRequest.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    change = change_submit(actor=org.author, change=change)
    review_approve(reviewer=org.approver, change=change)
    plan = api_get(signed_in(org.approver), reverse("api:change-detail", args=[change.pk]))["plan"]
    (plan_item,) = plan["items"]
    assert plan_item["against_live"] == {"added": 0, "removed": 1, "changed": 0}
    assert "-    timeout: 4s" in plan_item["unified"].splitlines()
    change.refresh_from_db()
    assert change.state == ChangeState.APPROVED
    change = change_schedule(actor=org.author, change=change)
    rollout = drive(rollout_start(change=change, analysis={"interval_seconds": 1}), passing)
    assert rollout.state == RolloutState.COMPLETED
    live = live_normalized(org.env, "VirtualService", "bookinfo", "reviews")
    assert live == normalize_object(drifted.applied.content)
    drift_detect(environment=org.env)
    assert panel(signed_in(org.author).get(page_url(drifted.policy))) is None


def test_reapply_is_refused_while_the_user_has_a_draft_for_the_policy(drifted):
    draft_save(author=drifted.org.author, environment=drifted.org.env, text=REVIEWS_V2)
    client = signed_in(drifted.org.author)
    response = client.post(reapply_url(drifted.policy))
    assert response.status_code == 409
    assert "you already have a draft for VirtualService bookinfo/reviews" in response.content.decode()
    assert api_get(client, reverse("api:change-list") + "?state=draft")["count"] == 0


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [adopt_url, reapply_url], ids=["adopt", "reapply"])
def test_a_user_without_a_role_gets_403_and_nothing_is_created(drifted, url):
    client = signed_in(drifted.org.sec)
    response = client.post(url(drifted.policy))
    assert response.status_code == 403
    assert api_get(client, reverse("api:change-list") + "?state=draft")["count"] == 0
    assert api_get(client, reverse("api:draft-list"))["count"] == 0


@pytest.mark.parametrize("url", [adopt_url, reapply_url], ids=["adopt", "reapply"])
def test_another_team_does_not_learn_the_policy_exists(drifted, url):
    assert signed_in(drifted.org.other).post(url(drifted.policy)).status_code == 404


@pytest.mark.parametrize("url", [adopt_url, reapply_url], ids=["adopt", "reapply"])
def test_without_drift_the_action_answers_409_with_a_message(drifted, url):
    resolve_drift(drifted.org.env)
    client = signed_in(drifted.org.author)
    response = client.post(url(drifted.policy))
    assert response.status_code == 409
    alert = re.search(r'<div class="alert alert-danger.*?</div>', response.content.decode(), re.S)
    assert "VirtualService bookinfo/reviews has no drift" in text_of(alert.group(0))
    assert panel(response) is None
    assert api_get(client, reverse("api:draft-list"))["count"] == 0


@pytest.mark.parametrize("url", [adopt_url, reapply_url], ids=["adopt", "reapply"])
def test_the_actions_take_only_post(drifted, url):
    assert signed_in(drifted.org.author).get(url(drifted.policy)).status_code == 405


@pytest.mark.parametrize("url", [adopt_url, reapply_url], ids=["adopt", "reapply"])
def test_the_actions_need_the_csrf_token(drifted, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(drifted.org.author)
    assert client.post(url(drifted.policy)).status_code == 403
