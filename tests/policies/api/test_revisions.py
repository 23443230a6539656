import copy

import pytest
from django.urls import reverse

from policies.choices import RevisionSource
from policies.models import PolicyRevision
from policies.normalize import content_hash
from tests.api_testing import TeamScopedObjectContract, assert_error, results, session_client


def revisions_url(policy_id) -> str:
    return reverse("api:policy-revision-list", kwargs={"policy_id": policy_id})


def revision_url(policy_id, number) -> str:
    return reverse("api:policy-revision-detail", kwargs={"policy_id": policy_id, "number": number})


def add_revision(policy, *, author, message: str, timeout: str) -> PolicyRevision:
    parent = policy.current_revision
    content = copy.deepcopy(parent.content)
    content["spec"]["http"][0]["timeout"] = timeout
    revision = PolicyRevision.objects.create(
        policy=policy,
        number=parent.number + 1,
        content=content,
        content_hash=content_hash(content),
        parent=parent,
        author=author,
        source=RevisionSource.DRAFT,
        message=message,
    )
    policy.current_revision = revision
    policy.save(update_fields=["current_revision"])
    return revision


@pytest.fixture
def history(org):
    """policy_a with three revisions: the import, then two drafts by alice."""
    add_revision(org.policy_a, author=org.author, message="5s timeout", timeout="5s")
    add_revision(org.policy_a, author=org.author, message="3s timeout", timeout="3s")
    return org


class TestRevisionList(TeamScopedObjectContract):
    def url(self, org):
        return revisions_url(org.policy_a.pk)

    def foreign_url(self, org):
        return revisions_url(org.policy_b.pk)

    def missing_url(self, org):
        return revisions_url(10**6)

    def check_response(self, response, org):
        (item,) = results(response)
        assert item["number"] == 1
        assert item["source"] == "import"
        assert item["parent"] is None


class TestRevisionDetail(TeamScopedObjectContract):
    def url(self, org):
        return revision_url(org.policy_a.pk, 1)

    def foreign_url(self, org):
        return revision_url(org.policy_b.pk, 1)

    def missing_url(self, org):
        return revision_url(org.policy_a.pk, 99)

    def check_response(self, response, org):
        body = response.json()
        assert body["content"] == org.policy_a.current_revision.content
        assert body["content_hash"] == org.policy_a.current_revision.content_hash


def test_revisions_are_listed_newest_first(history):
    items = results(session_client(history.approver).get(revisions_url(history.policy_a.pk)))
    assert [item["number"] for item in items] == [3, 2, 1]
    assert [item["parent"] for item in items] == [2, 1, None]
    assert [item["message"] for item in items] == ["3s timeout", "5s timeout", ""]
    assert "content" not in items[0]


def test_revision_detail_has_content_hash_parent_author_source_and_message(history):
    body = session_client(history.approver).get(revision_url(history.policy_a.pk, 2)).json()
    stored = PolicyRevision.objects.get(policy=history.policy_a, number=2)
    assert body == {
        "number": 2,
        "content": stored.content,
        "content_hash": stored.content_hash,
        "parent": 1,
        "author": "alice",
        "source": "draft",
        "message": "5s timeout",
        "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert body["content"]["spec"]["http"][0]["timeout"] == "5s"


def test_a_revision_number_belongs_to_its_policy(history):
    """Revision 3 exists for policy_a only: asking for it under policy_b finds nothing."""
    response = session_client(history.sec).get(revision_url(history.policy_b.pk, 3))
    assert_error(response, 404, code="not_found")


def test_malformed_revision_number_is_not_found(history):
    url = revisions_url(history.policy_a.pk) + "latest/"
    assert_error(session_client(history.author).get(url), 404, code="not_found")


def test_security_member_reads_any_policy_history(history):
    client = session_client(history.sec)
    assert [item["number"] for item in results(client.get(revisions_url(history.policy_b.pk)))] == [1]
    assert client.get(revision_url(history.policy_a.pk, 3)).status_code == 200


def test_revision_list_queries_do_not_grow(org, django_assert_max_num_queries):
    for i in range(30):
        add_revision(org.policy_a, author=org.author, message=f"step {i}", timeout=f"{i + 1}s")
    client = session_client(org.author)
    with django_assert_max_num_queries(7):
        items = results(client.get(revisions_url(org.policy_a.pk), {"limit": 100}))
    assert len(items) == 31
