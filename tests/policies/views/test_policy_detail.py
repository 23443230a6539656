import pytest
from django.urls import reverse

from policies.choices import RevisionSource
from policies.models import PolicyRevision
from policies.normalize import content_hash, normalize_object
from tests.factories import make_policy, virtual_service


def detail_url(policy) -> str:
    return reverse("policies:policy-detail", args=[policy.pk])


def revision_url(policy, number: int) -> str:
    return reverse("policies:revision-detail", args=[policy.pk, number])


@pytest.fixture
def second_revision(org):
    """bob authored revision 2 of reviews, moving it to another host; it is now current."""
    policy = org.policy_a
    content = normalize_object(virtual_service("reviews", "bookinfo", host="reviews-v2.bookinfo.svc"))
    revision = PolicyRevision.objects.create(
        policy=policy,
        number=2,
        content=content,
        content_hash=content_hash(content),
        parent=policy.current_revision,
        author=org.approver,
        source=RevisionSource.DRAFT,
        message="route to reviews-v2",
    )
    policy.current_revision = revision
    policy.save(update_fields=["current_revision"])
    return revision


def test_anonymous_is_sent_to_login(client, org):
    response = client.get(detail_url(org.policy_a))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_owner_sees_identity_status_and_current_yaml(client, org):
    client.force_login(org.author)
    response = client.get(detail_url(org.policy_a))
    body = response.content.decode()
    assert response.status_code == 200
    assert "staging / bookinfo / VirtualService / reviews" in body
    assert "<dd>Bookinfo</dd>" in body  # owner team
    assert "<dd>Author</dd>" in body  # alice's role
    assert "kind: VirtualService\nmetadata:\n  name: reviews\n  namespace: bookinfo\n" in body
    assert revision_url(org.policy_a, 1) in body


def test_other_team_gets_404_and_existence_does_not_leak(client, org):
    client.force_login(org.other)
    hidden = client.get(detail_url(org.policy_a))
    missing = client.get(reverse("policies:policy-detail", args=[org.policy_a.pk + 1000]))
    assert hidden.status_code == missing.status_code == 404
    assert "reviews" not in hidden.content.decode()
    assert "Page not found" in hidden.content.decode()
    assert client.get(revision_url(org.policy_a, 1)).status_code == 404


def test_security_team_member_sees_any_team_policy(client, org):
    client.force_login(org.sec)
    response = client.get(detail_url(org.policy_b))
    assert response.status_code == 200
    assert "name: payments" in response.content.decode()


def test_history_lists_every_revision_with_author_or_imported(client, org, second_revision):
    client.force_login(org.author)
    response = client.get(detail_url(org.policy_a))
    body = response.content.decode()
    assert [rev.number for rev in response.context["revisions"]] == [2, 1]
    assert "route to reviews-v2" in body
    assert ">bob<" in body
    assert ">imported<" in body
    assert second_revision.content_hash[:12] in body
    assert "reviews-v2.bookinfo.svc" in body  # the current YAML is revision 2


def test_revision_page_shows_that_revision_and_its_parent(client, org, second_revision):
    client.force_login(org.author)
    old = client.get(revision_url(org.policy_a, 1)).content.decode()
    assert "reviews-v2" not in old
    assert "none (first revision)" in old

    new = client.get(revision_url(org.policy_a, 2)).content.decode()
    assert "reviews-v2.bookinfo.svc" in new
    assert f'href="{revision_url(org.policy_a, 1)}">#1</a>' in new  # parent
    assert second_revision.content_hash in new


def test_unknown_revision_number_is_404(client, org):
    client.force_login(org.author)
    assert client.get(revision_url(org.policy_a, 7)).status_code == 404


def test_user_written_content_is_escaped_in_yaml(client, org):
    content = virtual_service("xss", "bookinfo")
    content["metadata"]["labels"] = {"note": "<script>alert(1)</script>"}
    policy = make_policy(environment=org.env, namespace="bookinfo", name="xss", content=content)
    client.force_login(org.author)
    body = client.get(detail_url(policy)).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
