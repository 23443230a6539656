import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policies.choices import AuditAction
from policies.models import AuditEvent, Draft, IdempotencyKey
from policies.services.drafts import draft_delete_policy, draft_save
from portal.choices import TokenScope
from tests.api_testing import (
    EndpointContract,
    TeamScopedListContract,
    TeamScopedObjectContract,
    assert_error,
    bearer_client,
    results,
    session_client,
    stored_token,
    token_for,
)
from tests.factories import EnvironmentFactory
from tests.policies.drafts.helpers import (
    RATINGS_NEW,
    REVIEWS_MISSING_SUBSET,
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
    destination_rule,
    stored_nothing,
    zip_bytes,
)

LIST = "/api/v1/drafts/"
BUNDLE = "/api/v1/drafts/bundle/"


def detail_url(pk) -> str:
    return reverse("api:draft-detail", kwargs={"pk": pk})


def test_urls():
    assert reverse("api:draft-list") == LIST
    assert reverse("api:draft-bundle") == BUNDLE


# --- contracts --------------------------------------------------------------------------------


class ClusterContract:
    @pytest.fixture(autouse=True)
    def _cluster(self, cluster_org):
        pass


class TestDraftList(ClusterContract, TeamScopedListContract):
    def arrange(self, org):
        self.mine = draft_delete_policy(author=org.author, policy=org.policy_a, message="retire")
        self.bobs = draft_delete_policy(author=org.approver, policy=org.policy_a)

    def url(self, org):
        return LIST

    def hidden(self, org):
        return self.bobs.pk  # another user's draft, even in the same team

    def check_response(self, response, org):
        (item,) = results(response)
        assert item == {
            "id": self.mine.pk,
            "url": f"http://testserver{detail_url(self.mine.pk)}",
            "environment": "staging",
            "kind": "VirtualService",
            "namespace": "bookinfo",
            "name": "reviews",
            "operation": "delete",
            "policy": org.policy_a.pk,
            "base_revision": 1,
            "author": "alice",
            "message": "retire",
            "content_hash": "",
            "error_count": 0,
            "warning_count": 0,
            "created_at": item["created_at"],
            "updated_at": item["updated_at"],
        }


class TestDraftRetrieve(ClusterContract, TeamScopedObjectContract):
    def arrange(self, org):
        self.draft = None

    def url(self, org):
        if self.draft is None:
            self.draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_MISSING_SUBSET).draft
        return detail_url(self.draft.pk)

    def foreign_url(self, org):
        return detail_url(draft_save(author=org.approver, environment=org.env, text=REVIEWS_V2).draft.pk)

    def missing_url(self, org):
        return detail_url(999_999)

    def check_response(self, response, org):
        body = response.json()
        assert body["operation"] == "update" and body["current_revision"] == 1 and body["stale"] is False
        assert body["source_text"] == REVIEWS_MISSING_SUBSET
        assert body["content"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v9"
        assert body["valid"] is False
        assert [f["code"] for f in body["findings"] if f["level"] == "error"] == ["MG0302"]
        assert body["diff"]["summary"] == {"added": 1, "removed": 0, "changed": 0}
        assert body["diff"]["changes"] == [
            {"path": "spec.http[0].route[0].destination.subset", "op": "added", "old": None, "new": "v9"},
        ]
        assert "+        subset: v9\n" in body["diff"]["unified"]


class TestDraftCreate(ClusterContract, EndpointContract):
    method = "post"
    scope = TokenScope.WRITE
    success_status = 201

    def url(self, org):
        return LIST

    def payload(self, org):
        return {"environment": "staging", "text": RATINGS_NEW, "message": "new routing"}

    def check_response(self, response, org):
        body = response.json()
        draft = Draft.objects.get(pk=body["id"])
        assert draft.author == org.author and draft.name == "ratings"
        assert body["operation"] == "create" and body["policy"] is None and body["current_revision"] is None
        assert body["message"] == "new routing" and body["valid"] is True
        assert body["diff"]["summary"]["added"] == 4


# --- create -----------------------------------------------------------------------------------


def test_create_with_blocking_errors_is_400_with_findings_and_stores_nothing(cluster_org):
    response = session_client(cluster_org.author).post(
        LIST,
        {"environment": "staging", "text": REVIEWS_V2.replace("kind: VirtualService", "kind: Virtualservice")},
        format="json",
    )
    details = assert_error(response, 400, code="draft_rejected")
    (finding,) = details["findings"]
    assert finding["code"] == "MG0102" and finding["line"] == 3 and "did you mean VirtualService" in finding["message"]
    assert stored_nothing()


def test_create_in_another_teams_namespace_is_403(cluster_org):
    response = session_client(cluster_org.other).post(
        LIST, {"environment": "staging", "text": REVIEWS_V2}, format="json"
    )
    details = assert_error(response, 403, code="permission_denied")
    assert details["findings"][0]["path"] == "metadata.namespace"
    assert stored_nothing()


def test_read_token_cannot_create_drafts(cluster_org):
    client = bearer_client(token_for(cluster_org.author, scopes=[TokenScope.READ]))
    response = client.post(LIST, {"environment": "staging", "text": REVIEWS_V2}, format="json")
    assert_error(response, 403, code="permission_denied")
    assert stored_nothing()


def test_schema_findings_are_returned_with_the_created_draft(cluster_org):
    response = session_client(cluster_org.author).post(
        LIST, {"environment": "staging", "text": REVIEWS_MISSING_SUBSET}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["valid"] is False and body["error_count"] == 1
    assert body["findings"][0]["code"] == "MG0302"


# --- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer_without_acting_again(cluster_org):
    client = session_client(cluster_org.author)
    payload = {"environment": "staging", "text": RATINGS_NEW}
    first = client.post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    events = AuditEvent.objects.count()
    second = client.post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")

    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert AuditEvent.objects.count() == events  # nothing was done the second time
    assert Draft.objects.count() == 1


def test_idempotency_key_reused_with_a_different_body_is_422(cluster_org):
    client = session_client(cluster_org.author)
    client.post(LIST, {"environment": "staging", "text": RATINGS_NEW}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = client.post(
        LIST, {"environment": "staging", "text": REVIEWS_V2}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert_error(
        response,
        422,
        code="idempotency_key_reused",
        message="idempotency key reused with a different request: use a new key for a new request",
    )
    assert list(Draft.objects.values_list("name", flat=True)) == ["ratings"]


def test_idempotency_keys_are_per_user_and_refusals_are_not_remembered(cluster_org):
    org = cluster_org
    payload = {"environment": "staging", "text": REVIEWS_V2}
    refused = session_client(org.other).post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert refused.status_code == 403
    assert not IdempotencyKey.objects.exists()
    created = session_client(org.author).post(LIST, payload, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert created.status_code == 201
    assert Draft.objects.get().author == org.author


def test_malformed_idempotency_key_is_400(cluster_org):
    response = session_client(cluster_org.author).post(
        LIST, {"environment": "staging", "text": RATINGS_NEW}, format="json", HTTP_IDEMPOTENCY_KEY="has space"
    )
    assert "Idempotency-Key" in assert_error(response, 400, code="invalid")
    assert stored_nothing()


# --- update and discard -----------------------------------------------------------------------


def test_partial_update_of_text_and_message(cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2, message="v1").draft
    client = session_client(org.author)

    response = client.patch(detail_url(draft.pk), {"text": REVIEWS_V2.replace("5s", "8s")}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["content"]["spec"]["http"][0]["timeout"] == "8s"
    assert response.json()["message"] == "v1"

    response = client.patch(detail_url(draft.pk), {"message": "longer timeout"}, format="json")
    assert response.status_code == 200
    draft.refresh_from_db()
    assert draft.message == "longer timeout" and "8s" in draft.source_text

    assert_error(client.patch(detail_url(draft.pk), {}, format="json"), 400, code="invalid")


def test_partial_update_cannot_change_the_object(cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    response = session_client(org.author).patch(detail_url(draft.pk), {"text": RATINGS_NEW}, format="json")
    details = assert_error(response, 400, code="draft_rejected")
    assert "start a new draft" in response.json()["message"]
    assert details["findings"][0]["path"] == "metadata.name"
    draft.refresh_from_db()
    assert draft.name == "reviews"


def test_put_is_not_offered(cluster_org):
    draft = draft_delete_policy(author=cluster_org.author, policy=cluster_org.policy_a)
    response = session_client(cluster_org.author).put(detail_url(draft.pk), {"message": "x"}, format="json")
    assert_error(response, 405)


def test_delete_discards_and_others_cannot(cluster_org):
    org = cluster_org
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    assert_error(session_client(org.approver).delete(detail_url(draft.pk)), 404)  # not visible to bob
    _, read_only = stored_token(org.author, scopes=[TokenScope.READ])
    assert_error(bearer_client(read_only).delete(detail_url(draft.pk)), 403)
    assert Draft.objects.filter(pk=draft.pk).exists()

    response = bearer_client(token_for(org.author, scopes=[TokenScope.WRITE])).delete(detail_url(draft.pk))
    assert response.status_code == 204
    assert not Draft.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.DRAFT_DISCARDED).count() == 1


def test_list_filters_by_environment(cluster_org):
    org = cluster_org
    draft_delete_policy(author=org.author, policy=org.policy_a)
    EnvironmentFactory(name="prod")
    client = session_client(org.author)
    assert len(results(client.get(LIST, {"environment": "staging"}))) == 1
    assert results(client.get(LIST, {"environment": "prod"})) == []


# --- bundles ----------------------------------------------------------------------------------


def test_bundle_multipart_creates_every_draft(cluster_org):
    archive = zip_bytes({"rules/reviews.yaml": destination_rule("reviews").encode()})
    response = session_client(cluster_org.author).post(
        BUNDLE,
        {
            "environment": "staging",
            "message": "release 7",
            "files": [
                SimpleUploadedFile("routing.yaml", (REVIEWS_V2 + "---\n" + RATINGS_NEW).encode()),
                SimpleUploadedFile("rules.zip", archive),
            ],
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert [(d["kind"], d["name"], d["operation"]) for d in body] == [
        ("VirtualService", "reviews", "update"),
        ("VirtualService", "ratings", "create"),
        ("DestinationRule", "reviews", "create"),
    ]
    assert {d["message"] for d in body} == {"release 7"}
    assert Draft.objects.count() == 3


def test_bundle_json_text(cluster_org):
    response = session_client(cluster_org.author).post(
        BUNDLE, {"environment": "staging", "text": REVIEWS_V2 + "---\n" + RATINGS_NEW}, format="json"
    )
    assert response.status_code == 201
    assert sorted(d["name"] for d in response.json()) == ["ratings", "reviews"]


def test_bundle_rejection_lists_every_finding_and_stores_nothing(cluster_org):
    text = REVIEWS_V2 + "---\n" + RATINGS_NEW.replace("  namespace: bookinfo\n", "") + "---\nkind: Pod\n"
    response = session_client(cluster_org.author).post(
        BUNDLE, {"environment": "staging", "text": text, "filename": "release.yaml"}, format="json"
    )
    details = assert_error(response, 400, code="bundle_rejected")
    located = [(f["code"], f["file"], f["document"]) for f in details["findings"]]
    assert ("MG0105", "release.yaml", 1) in located
    assert ("MG0101", "release.yaml", 2) in located
    assert stored_nothing()


def test_bundle_with_read_token_is_403(cluster_org):
    client = bearer_client(token_for(cluster_org.author, scopes=[TokenScope.READ]))
    response = client.post(BUNDLE, {"environment": "staging", "text": RATINGS_NEW}, format="json")
    assert_error(response, 403, code="permission_denied")
    assert stored_nothing()


def test_bundle_idempotency_key(cluster_org):
    client = session_client(cluster_org.author)

    def send(text, key="bundle-1"):
        files = [SimpleUploadedFile("b.yaml", text.encode())]
        return client.post(
            BUNDLE, {"environment": "staging", "files": files}, format="multipart", HTTP_IDEMPOTENCY_KEY=key
        )

    first = send(RATINGS_NEW)
    events = AuditEvent.objects.count()
    again = send(RATINGS_NEW)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert AuditEvent.objects.count() == events
    assert_error(send(REVIEWS_V2), 422, code="idempotency_key_reused")
    assert Draft.objects.count() == 1


def test_bundle_over_the_size_limit_is_413_json(cluster_org):
    big = SimpleUploadedFile("big.yaml", b"# " + b"x" * (20 * 1024 * 1024))
    response = session_client(cluster_org.author).post(
        BUNDLE, {"environment": "staging", "files": [big]}, format="multipart"
    )
    assert_error(response, 413, code="request_too_large")
    assert stored_nothing()


def test_list_queries_do_not_grow_with_the_number_of_drafts(org, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import make_policy

    client = session_client(org.author)
    draft_delete_policy(author=org.author, policy=org.policy_a)
    with CaptureQueriesContext(connection) as one:
        client.get(LIST)
    for n in range(5):
        draft_delete_policy(
            author=org.author, policy=make_policy(environment=org.env, namespace="bookinfo", name=f"p{n}")
        )
    with django_assert_num_queries(len(one.captured_queries)):
        assert len(results(client.get(LIST))) == 6
