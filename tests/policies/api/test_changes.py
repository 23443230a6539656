"""API of change requests: list/retrieve/create and one endpoint per transition."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policies.choices import ChangeState, Role
from policies.models import ChangeRequest, Draft, IdempotencyKey, Review, ReviewComment
from policies.services.changes import change_create
from policies.services.drafts import draft_delete_policy, draft_save
from policies.services.plans import plan_compute
from policies.services.reviews import review_approve
from portal.choices import TokenScope
from tests.api_testing import (
    EndpointContract,
    TeamScopedListContract,
    TeamScopedObjectContract,
    assert_error,
    bearer_client,
    results,
    session_client,
    token_for,
)
from tests.factories import EnvironmentFactory
from tests.policies.changes.helpers import (  # noqa: F401 - fixture
    RATINGS_NEW,
    REVIEWS_V2,
    cluster_org,
    make_change,
    submitted_change,
)

LIST = "/api/v1/changes/"


def detail_url(pk) -> str:
    return reverse("api:change-detail", kwargs={"pk": pk})


def action_url(pk, action) -> str:
    return f"/api/v1/changes/{pk}/{action}/"


def test_urls():
    assert reverse("api:change-list") == LIST
    assert reverse("api:change-approve", kwargs={"pk": 3}) == "/api/v1/changes/3/approve/"
    assert reverse("api:change-status", kwargs={"pk": 3}) == "/api/v1/changes/3/status/"


def shop_change(org) -> ChangeRequest:
    """A change of team Shop, which Bookinfo's members must not see."""
    draft = draft_delete_policy(author=org.other, policy=org.policy_b)
    return change_create(author=org.other, environment=org.env, drafts=[draft], title="Retire payments")


class ClusterContract:
    @pytest.fixture(autouse=True)
    def _arrange(self, cluster_org):
        """The contract's arrangement, once the environment points at the simulated cluster."""
        self.arrange(cluster_org)


# --- contracts --------------------------------------------------------------------------------


class TestChangeList(ClusterContract, TeamScopedListContract):
    def arrange(self, org):
        self.mine = make_change(author=org.author, environment=org.env)
        self.foreign = shop_change(org)

    def url(self, org):
        return LIST

    def hidden(self, org):
        return self.foreign.pk

    def check_response(self, response, org):
        (item,) = results(response)
        assert item == {
            "id": self.mine.pk,
            "url": f"http://testserver{detail_url(self.mine.pk)}",
            "environment": "staging",
            "title": "Tune reviews",
            "state": "draft",
            "author": "alice",
            "created_at": item["created_at"],
            "updated_at": item["updated_at"],
            "submitted_at": None,
            "approved_at": None,
            "scheduled_for": None,
            "promoted_from": None,
        }


class TestChangeRetrieve(ClusterContract, TeamScopedObjectContract):
    def arrange(self, org):
        self.change = submitted_change(org)
        plan_compute(change=self.change)

    def url(self, org):
        return detail_url(self.change.pk)

    def foreign_url(self, org):
        return detail_url(shop_change(org).pk)

    def missing_url(self, org):
        return detail_url(99999)

    def check_response(self, response, org):
        body = response.json()
        assert body["state"] == "in_review" and body["stale"] is False
        assert body["approval"] == {
            "satisfied": False,
            "approvable": False,
            "required": 1,
            "approvals": 0,
            "approved_by": [],
            "missing": ["an approver of team Bookinfo"],
            "blockers": [],
            "summary": "0 of 1 approval; missing: an approver of team Bookinfo",
        }
        (item,) = body["items"]
        assert (item["kind"], item["namespace"], item["name"], item["operation"]) == (
            "VirtualService",
            "bookinfo",
            "reviews",
            "update",
        )
        assert item["base_revision"] == item["current_revision"] == 1 and item["stale"] is False
        assert item["content"]["spec"]["http"][0]["timeout"] == "5s"
        plan = body["plan"]
        assert plan["status"] == "ok" and plan["current"] is True
        assert plan["items"][0]["live_state"] == "present"
        assert plan["items"][0]["against_live"] == {"added": 1, "removed": 4, "changed": 0}
        assert body["reviews"] == []


class TestChangeCreate(ClusterContract, EndpointContract):
    method = "post"
    scope = TokenScope.WRITE
    success_status = 201

    def arrange(self, org):
        self.draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft

    def url(self, org):
        return LIST

    def payload(self, org):
        return {"environment": "staging", "title": "Timeout for reviews", "drafts": [self.draft.pk]}

    def check_response(self, response, org):
        body = response.json()
        assert body["state"] == "draft" and body["title"] == "Timeout for reviews"
        assert [item["name"] for item in body["items"]] == ["reviews"]
        assert not Draft.objects.exists()


class TransitionContract(ClusterContract, TeamScopedObjectContract):
    method = "post"
    scope = TokenScope.WRITE
    action = ""

    def url(self, org):
        return action_url(self.change.pk, self.action)

    def foreign_url(self, org):
        return action_url(shop_change(org).pk, self.action)

    def missing_url(self, org):
        return action_url(99999, self.action)


class TestSubmit(TransitionContract):
    action = "submit"

    def arrange(self, org):
        self.change = make_change(author=org.author, environment=org.env)

    def check_response(self, response, org):
        assert response.json()["state"] == "in_review"


class TestApprove(TransitionContract):
    action = "approve"

    def arrange(self, org):
        self.change = submitted_change(org)

    def permitted_user(self, org):
        return org.approver

    def check_response(self, response, org):
        body = response.json()
        assert body["state"] == "approved"
        assert [(review["reviewer"], review["verdict"]) for review in body["reviews"]] == [("bob", "approve")]


class TestStatus(ClusterContract, TeamScopedObjectContract):
    def arrange(self, org):
        self.change = submitted_change(org)

    def url(self, org):
        return action_url(self.change.pk, "status")

    def foreign_url(self, org):
        return action_url(shop_change(org).pk, "status")

    def missing_url(self, org):
        return action_url(99999, "status")

    def check_response(self, response, org):
        body = response.json()
        assert {
            key: body[key] for key in ("id", "state", "environment", "stale", "plan_status", "plan_current", "done")
        } == {
            "id": self.change.pk,
            "state": "in_review",
            "environment": "staging",
            "stale": False,
            "plan_status": None,
            "plan_current": False,
            "done": False,
        }
        assert body["approval"]["summary"] == "0 of 1 approval; missing: an approver of team Bookinfo"


# --- rules through the API --------------------------------------------------------------------


def test_the_author_can_never_approve_by_session_or_token(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    for client in (session_client(org.author), bearer_client(token_for(org.author, [TokenScope.WRITE]))):
        assert_error(
            client.post(action_url(change.pk, "approve"), {}, format="json"),
            403,
            code="permission_denied",
            message="you cannot approve your own change",
        )
    org.author.is_superuser = True
    org.author.save()
    assert_error(session_client(org.author).post(action_url(change.pk, "approve"), {}, format="json"), 403)
    assert not Review.objects.exists()


def test_another_teams_approver_is_forbidden(cluster_org):
    org = cluster_org
    org.other.memberships.update(role=Role.APPROVER)
    org.other.memberships.create(team=org.team_a, role=Role.AUTHOR)  # may read, may not approve
    change = submitted_change(org)
    details = assert_error(
        session_client(org.other).post(action_url(change.pk, "approve"), {}, format="json"),
        403,
        code="permission_denied",
    )
    assert details == {}


def test_illegal_transitions_answer_409_with_the_state(cluster_org):
    org = cluster_org
    change = make_change(author=org.author, environment=org.env)
    details = assert_error(
        session_client(org.approver).post(action_url(change.pk, "approve"), {}, format="json"),
        409,
        code="illegal_transition",
        message="cannot approve a change that is in state draft",
    )
    assert details["state"] == "draft" and details["allowed_states"] == ["approved", "in_review"]
    details = assert_error(
        session_client(org.author).post(action_url(change.pk, "schedule"), {}, format="json"),
        409,
        code="illegal_transition",
    )
    assert details["state"] == "draft"


def test_submit_with_validation_errors_is_400_with_findings(cluster_org):
    org = cluster_org
    from tests.policies.drafts.helpers import REVIEWS_MISSING_SUBSET

    change = make_change(author=org.author, environment=org.env, texts=[REVIEWS_MISSING_SUBSET])
    details = assert_error(
        session_client(org.author).post(action_url(change.pk, "submit"), {}, format="json"), 400, code="change_invalid"
    )
    assert details["findings"][0]["code"] == "MG0302"


def test_create_from_a_bundle_text_and_files(cluster_org):
    org = cluster_org
    client = bearer_client(token_for(org.author, [TokenScope.WRITE]))
    response = client.post(
        LIST, {"environment": "staging", "title": "From CI", "text": f"{REVIEWS_V2}---\n{RATINGS_NEW}"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert sorted(item["name"] for item in response.json()["items"]) == ["ratings", "reviews"]
    upload = client.post(
        LIST,
        {"environment": "staging", "title": "Upload", "files": [SimpleUploadedFile("r.yaml", REVIEWS_V2.encode())]},
        format="multipart",
    )
    assert upload.status_code == 201, upload.content
    details = assert_error(
        client.post(LIST, {"environment": "staging", "title": "x", "text": "kind: ["}, format="json"),
        400,
        code="bundle_rejected",
    )
    assert details["findings"]
    assert_error(client.post(LIST, {"environment": "staging", "title": "x"}, format="json"), 400, code="invalid")
    assert_error(
        client.post(LIST, {"environment": "staging", "title": "x", "drafts": [424242]}, format="json"),
        400,
        code="invalid",
    )


def test_create_is_idempotent_with_a_key(cluster_org):
    org = cluster_org
    client = session_client(org.author)
    payload = {"environment": "staging", "title": "Once", "text": REVIEWS_V2}
    first = client.post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="ci-run-42")
    again = client.post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="ci-run-42")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert ChangeRequest.objects.count() == 1 and IdempotencyKey.objects.count() == 1
    assert_error(
        client.post(LIST, {**payload, "title": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="ci-run-42"),
        422,
        code="idempotency_key_reused",
    )


def test_a_pipeline_walks_the_workflow(cluster_org):
    """Create → submit → comment → request changes → resubmit → approve → schedule, by the API."""
    org = cluster_org
    alice = bearer_client(token_for(org.author, [TokenScope.READ, TokenScope.WRITE]))
    bob = bearer_client(token_for(org.approver, [TokenScope.READ, TokenScope.WRITE]))
    change = alice.post(LIST, {"environment": "staging", "title": "Pipeline", "text": REVIEWS_V2}, format="json").json()
    pk = change["id"]
    assert alice.post(action_url(pk, "submit"), format="json").json()["state"] == "in_review"
    item = change["items"][0]["id"]
    comment = bob.post(action_url(pk, "comment"), {"body": "why 5s?", "item": item, "line": 3}, format="json")
    assert comment.status_code == 201 and comment.json()["line"] == 3
    reply = alice.post(action_url(pk, "comment"), {"body": "p99", "parent": comment.json()["id"]}, format="json")
    assert reply.json()["item"] == item and reply.json()["line"] == 3
    assert_error(bob.post(action_url(pk, "request-changes"), {}, format="json"), 400, code="invalid")
    assert (
        bob.post(action_url(pk, "request-changes"), {"body": "say why"}, format="json").json()["state"]
        == "changes_requested"
    )
    assert alice.post(action_url(pk, "submit"), format="json").json()["state"] == "in_review"
    plan = alice.get(detail_url(pk)).json()["plan"]
    assert plan is None  # the worker computes it; approving computes a fresh one
    approved = bob.post(action_url(pk, "approve"), {"body": "ok"}, format="json").json()
    assert approved["state"] == "approved" and approved["plan"]["status"] == "ok"
    assert alice.post(action_url(pk, "refresh-plan"), format="json").status_code == 202
    scheduled = alice.post(action_url(pk, "schedule"), format="json").json()
    assert scheduled["state"] == "scheduled" and scheduled["scheduled_for"]
    status = alice.get(action_url(pk, "status")).json()
    assert status["state"] == "scheduled" and status["approval"]["approvable"] is True
    assert ReviewComment.objects.count() == 2


def test_approve_with_a_stale_plan_fingerprint_is_409(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    response = session_client(org.approver).post(
        action_url(change.pk, "approve"), {"plan_fingerprint": "0" * 64}, format="json"
    )
    details = assert_error(response, 409, code="conflict")
    assert details["plan_fingerprint"] and details["state"] == "in_review"


def test_reject_and_rebase_and_promote(cluster_org, meshsim_prod):
    org = cluster_org
    change = submitted_change(org)
    assert (
        session_client(org.approver)
        .post(action_url(change.pk, "reject"), {"reason": "no"}, format="json")
        .json()["state"]
        == "rejected"
    )
    other = submitted_change(org, title="second")
    assert_error(session_client(org.author).post(action_url(other.pk, "rebase"), format="json"), 409, code="conflict")
    review_approve(reviewer=org.approver, change=other)
    ChangeRequest.objects.filter(pk=other.pk).update(state=ChangeState.COMPLETED)
    assert_error(
        session_client(org.author).post(action_url(other.pk, "promote"), format="json"), 409, code="conflict"
    )  # no next environment yet
    prod = EnvironmentFactory(name="prod", order=100, is_production=True, api_url=meshsim_prod.url)
    prod.namespace_owners.create(namespace="bookinfo", team=org.team_a)
    response = session_client(org.author).post(action_url(other.pk, "promote"), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["environment"] == "prod" and body["promoted_from"] == other.pk
    assert session_client(org.author).get(detail_url(other.pk)).json()["promotions"] == [body["id"]]


def test_filters(cluster_org):
    org = cluster_org
    make_change(author=org.author, environment=org.env, title="a")
    submitted_change(org, texts=[RATINGS_NEW], title="b")
    client = session_client(org.author)
    assert [c["title"] for c in results(client.get(LIST, {"state": "in_review"}))] == ["b"]
    assert [c["title"] for c in results(client.get(LIST, {"mine": "true"}))] == ["b", "a"]
    assert results(client.get(LIST, {"environment": "prod"})) == []
    bob_client = session_client(org.approver)
    assert results(bob_client.get(LIST, {"mine": "true"})) == []
    assert len(results(bob_client.get(LIST, {"author": "alice"}))) == 2


# --- findings keep the uploaded file and line ----------------------------------------------------

TWO_ROUTES = """\
# routes of the bookinfo team
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: bookinfo
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
"""


def test_findings_of_a_change_from_a_bundle_name_the_uploaded_file_and_line(cluster_org):
    from policies.services.changes import validate_items
    from tests.policies.drafts.helpers import tar_gz

    archive = tar_gz({"mesh/bookinfo/routes.yaml": TWO_ROUTES.encode()})
    response = session_client(cluster_org.author).post(
        LIST,
        {
            "environment": "staging",
            "title": "routes",
            "files": [SimpleUploadedFile("mesh.tar.gz", archive)],
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    change = ChangeRequest.objects.get()
    items = list(change.items.order_by("name"))
    findings = validate_items(environment=change.environment, items=items)
    reviews = next(item for item in items if item.name == "reviews")
    subset = next(f for f in findings[reviews.pk] if f["code"] == "MG0302")
    assert subset["file"] == "mesh/bookinfo/routes.yaml"
    assert subset["line"] == TWO_ROUTES.splitlines().index("    - destination: {host: reviews, subset: v9}") + 1


def test_the_change_detail_schema_admits_the_empty_urls_it_returns(org):
    """A change without a ticket, repository or pull request answers "" for them: the schema says
    string, not `format: uri` (which "" would violate)."""
    from tests.api_testing import session_client

    schema = session_client(org.author).get("/api/schema/?format=json").json()
    detail = schema["components"]["schemas"]["ChangeDetail"]["properties"]
    for name in ("link", "repository", "pull_request"):
        assert detail[name]["type"] == "string" and "format" not in detail[name], (name, detail[name])
