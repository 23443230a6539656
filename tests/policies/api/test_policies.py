from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from policies.choices import LiveState, PolicyKind, RevisionSource
from policies.models import PolicyRevision
from policies.normalize import content_hash
from tests.api_testing import (
    TeamScopedListContract,
    TeamScopedObjectContract,
    assert_error,
    results,
    session_client,
)
from tests.factories import EnvironmentFactory, NamespaceOwnershipFactory, make_policy


def list_url() -> str:
    return reverse("api:policy-list")


def detail_url(policy_id) -> str:
    return reverse("api:policy-detail", kwargs={"pk": policy_id})


def names(response) -> list[str]:
    return sorted(item["name"] for item in results(response))


class TestPolicyList(TeamScopedListContract):
    def url(self, org):
        return list_url()

    def hidden(self, org):
        return org.policy_b.pk

    def check_response(self, response, org):
        (item,) = results(response)
        revision = org.policy_a.current_revision
        assert item == {
            "id": org.policy_a.pk,
            "url": f"http://testserver{detail_url(org.policy_a.pk)}",
            "environment": "staging",
            "kind": "VirtualService",
            "namespace": "bookinfo",
            "name": "reviews",
            "owner_team": "bookinfo",
            "live_state": "present",
            "live_resource_version": "",
            "live_seen_at": None,
            "current_revision": {
                "number": 1,
                "content_hash": revision.content_hash,
                "created_at": revision.created_at.isoformat().replace("+00:00", "Z"),
                "source": "import",
                "author": None,
            },
            "drift": None,
        }


class TestPolicyDetail(TeamScopedObjectContract):
    def url(self, org):
        return detail_url(org.policy_a.pk)

    def foreign_url(self, org):
        return detail_url(org.policy_b.pk)

    def missing_url(self, org):
        return detail_url(org.policy_b.pk + 1000)

    def check_response(self, response, org):
        body = response.json()
        assert body["name"] == "reviews"
        assert body["content"] == org.policy_a.current_revision.content
        assert body["content"]["spec"]["hosts"] == ["reviews"]


def test_security_team_member_sees_every_policy(org):
    client = session_client(org.sec)
    assert names(client.get(list_url())) == ["payments", "reviews"]
    assert client.get(detail_url(org.policy_b.pk)).status_code == 200


def test_superuser_sees_every_policy(org):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    assert names(session_client(admin).get(list_url())) == ["payments", "reviews"]


def test_user_in_no_team_sees_no_policy(org):
    client = session_client(org.outsider)
    assert results(client.get(list_url())) == []
    assert_error(client.get(detail_url(org.policy_a.pk)), 404, code="not_found")


def test_other_team_and_missing_policy_answer_the_same(org):
    client = session_client(org.author)
    foreign = client.get(detail_url(org.policy_b.pk))
    missing = client.get(detail_url(10**6))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_malformed_and_out_of_range_ids_are_not_found(org):
    client = session_client(org.sec)
    for bad in ("abc", str(2**70)):
        assert_error(client.get(f"{list_url()}{bad}/"), 404, code="not_found")


def test_author_of_the_current_revision_is_named(org):
    revision = PolicyRevision.objects.create(
        policy=org.policy_a,
        number=2,
        content=org.policy_a.current_revision.content,
        content_hash=org.policy_a.current_revision.content_hash,
        parent=org.policy_a.current_revision,
        author=org.author,
        source=RevisionSource.DRAFT,
    )
    org.policy_a.current_revision = revision
    org.policy_a.save(update_fields=["current_revision"])
    body = session_client(org.approver).get(detail_url(org.policy_a.pk)).json()
    assert body["current_revision"]["number"] == 2
    assert body["current_revision"]["author"] == "alice"
    assert body["current_revision"]["source"] == "draft"


def test_live_state_is_shown(org):
    seen = timezone.now()
    org.policy_a.live_state = LiveState.ABSENT
    org.policy_a.live_resource_version = "4711"
    org.policy_a.live_seen_at = seen
    org.policy_a.save()
    body = session_client(org.author).get(detail_url(org.policy_a.pk)).json()
    assert (body["live_state"], body["live_resource_version"]) == ("absent", "4711")
    assert body["live_seen_at"] == seen.isoformat().replace("+00:00", "Z")


class TestFilters:
    """The catalog's filters work the same through the API (seen by a security member: all)."""

    def setup_catalog(self, org):
        prod = EnvironmentFactory(name="prod", order=20)
        NamespaceOwnershipFactory(environment=prod, namespace="shop", team=org.team_b)
        make_policy(environment=prod, namespace="shop", name="payments")
        make_policy(environment=org.env, namespace="bookinfo", name="reviews", kind=PolicyKind.DESTINATION_RULE)
        gone = make_policy(
            environment=org.env, namespace="bookinfo", name="ratings-deny", kind=PolicyKind.AUTHORIZATION_POLICY
        )
        gone.live_state = LiveState.ABSENT
        gone.save(update_fields=["live_state"])
        return session_client(org.sec)

    def pairs(self, response) -> list[tuple[str, str, str]]:
        return sorted((item["environment"], item["kind"], item["name"]) for item in results(response))

    def test_environment(self, org):
        client = self.setup_catalog(org)
        assert self.pairs(client.get(list_url(), {"environment": "prod"})) == [("prod", "VirtualService", "payments")]

    def test_kind_takes_several_values(self, org):
        client = self.setup_catalog(org)
        response = client.get(list_url(), {"kind": ["DestinationRule", "AuthorizationPolicy"]})
        assert self.pairs(response) == [
            ("staging", "AuthorizationPolicy", "ratings-deny"),
            ("staging", "DestinationRule", "reviews"),
        ]

    def test_namespace_and_team(self, org):
        client = self.setup_catalog(org)
        assert names(client.get(list_url(), {"namespace": "shop"})) == ["payments", "payments"]
        assert names(client.get(list_url(), {"team": "bookinfo"})) == ["ratings-deny", "reviews", "reviews"]

    def test_live_state(self, org):
        client = self.setup_catalog(org)
        assert names(client.get(list_url(), {"live_state": "absent"})) == ["ratings-deny"]

    def test_search(self, org):
        client = self.setup_catalog(org)
        assert names(client.get(list_url(), {"q": "RATINGS"})) == ["ratings-deny"]

    def test_filters_do_not_widen_visibility(self, org):
        self.setup_catalog(org)
        response = session_client(org.author).get(list_url(), {"team": "shop"})
        assert results(response) == []

    def test_unknown_choice_is_a_400_naming_the_filter(self, org):
        client = self.setup_catalog(org)
        details = assert_error(client.get(list_url(), {"kind": "Deployment"}), 400, code="invalid")
        assert "kind" in details
        details = assert_error(client.get(list_url(), {"live_state": "maybe"}), 400, code="invalid")
        assert "live_state" in details


def test_list_is_paginated(org):
    for i in range(5):
        make_policy(environment=org.env, namespace="bookinfo", name=f"svc-{i}")
    body = session_client(org.author).get(list_url(), {"limit": 2, "offset": 2}).json()
    assert body["count"] == 6
    assert len(body["results"]) == 2
    assert "offset=4" in body["next"]
    assert body["previous"] is not None


def test_list_query_count_does_not_grow_with_policies(org, django_assert_max_num_queries):
    for i in range(55):
        policy = make_policy(environment=org.env, namespace="bookinfo", name=f"svc-{i}")
        revision = PolicyRevision.objects.create(
            policy=policy,
            number=2,
            content=policy.current_revision.content,
            content_hash=content_hash(policy.current_revision.content),
            parent=policy.current_revision,
            author=org.approver,
            source=RevisionSource.DRAFT,
        )
        policy.current_revision = revision
        policy.save(update_fields=["current_revision"])
    client = session_client(org.author)
    with django_assert_max_num_queries(6):
        items = results(client.get(list_url(), {"limit": 100}))
    assert len(items) == 56
    assert {item["current_revision"]["author"] for item in items} == {None, "bob"}


def test_list_leaves_content_to_the_detail(org):
    (item,) = results(session_client(org.author).get(list_url()))
    assert "content" not in item
