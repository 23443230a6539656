"""The editor pages: who may open them, what text they start from, and saving through draft_save."""

import pytest
import yaml
from django.urls import reverse

from policies.models import Draft
from tests.policies.drafts.helpers import REVIEWS_V2


def _new_url(**query):
    from urllib.parse import urlencode

    return f"{reverse('editor:new')}?{urlencode(query)}"


@pytest.mark.parametrize(
    "url",
    [
        "/editor/new/?environment=staging&kind=VirtualService",
        "/editor/policy/1/",
        "/editor/draft/1/",
        "/editor/schema/staging/VirtualService.json",
        "/editor/wizards/",
        "/editor/wizards/traffic-shift/?environment=staging",
    ],
)
def test_login_required(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_new_starts_from_a_skeleton_in_a_namespace_the_user_owns(client, staging, org):
    client.force_login(org.author)
    response = client.get(_new_url(environment="staging", kind="DestinationRule"))
    assert response.status_code == 200
    text = response.context["text"]
    obj = yaml.safe_load(text)
    assert obj["kind"] == "DestinationRule"
    assert obj["metadata"]["namespace"] == "bookinfo"
    assert obj["spec"]["host"]  # a live service of bookinfo
    body = response.content.decode()
    assert 'data-validate-url="/api/v1/validate"' in body
    assert 'data-schema-url="/editor/schema/staging/__KIND__.json"' in body
    assert 'data-kind="DestinationRule"' in body


def test_new_in_another_teams_namespace_is_forbidden(client, staging, org):
    client.force_login(org.author)
    response = client.get(_new_url(environment="staging", kind="VirtualService", namespace="shop"))
    assert response.status_code == 403


def test_new_without_any_owned_namespace_is_forbidden(client, staging, org):
    client.force_login(org.outsider)
    response = client.get(_new_url(environment="staging", kind="VirtualService"))
    assert response.status_code == 403


def test_new_with_unknown_environment_or_kind_is_not_found(client, staging, org):
    client.force_login(org.author)
    assert client.get(_new_url(environment="nope", kind="VirtualService")).status_code == 404
    assert client.get(_new_url(environment="staging", kind="Deployment")).status_code == 404


def test_saving_a_new_object_creates_a_draft_and_redirects_to_it(client, staging, org):
    client.force_login(org.author)
    text = REVIEWS_V2.replace("name: reviews", "name: reviews-canary")
    response = client.post(_new_url(environment="staging", kind="VirtualService"), {"text": text, "message": "canary"})
    draft = Draft.objects.get(author=org.author, name="reviews-canary")
    assert response.status_code == 302
    assert response["Location"] == reverse("policies:draft-detail", args=[draft.pk])
    assert draft.source_text == text
    assert draft.message == "canary"


def test_saving_text_that_does_not_parse_re_renders_with_findings(client, staging, org):
    client.force_login(org.author)
    response = client.post(_new_url(environment="staging", kind="VirtualService"), {"text": "kind: [", "message": "x"})
    assert response.status_code == 400
    assert response.context["findings"]
    assert response.context["text"] == "kind: ["
    assert not Draft.objects.exists()
    body = response.content.decode()
    assert "Not saved." in body
    assert 'class="mg-finding mg-finding-error"' in body


def test_saving_into_another_teams_namespace_is_forbidden(client, staging, org):
    client.force_login(org.author)
    text = REVIEWS_V2.replace("namespace: bookinfo", "namespace: shop")
    response = client.post(_new_url(environment="staging", kind="VirtualService"), {"text": text})
    assert response.status_code == 403
    assert not Draft.objects.exists()


def test_user_text_is_escaped(client, staging, org):
    client.force_login(org.author)
    evil = "</textarea><script>alert(1)</script>"
    response = client.post(_new_url(environment="staging", kind="VirtualService"), {"text": evil, "message": evil})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;/textarea&gt;&lt;script&gt;" in body


def test_policy_edit_starts_from_the_current_revision(client, staging, org):
    client.force_login(org.author)
    response = client.get(reverse("editor:policy-edit", args=[org.policy_a.pk]))
    assert response.status_code == 200
    text = response.context["text"]
    assert text.startswith("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n")
    assert yaml.safe_load(text) == org.policy_a.__class__.objects.get(pk=org.policy_a.pk).current_revision.content


def test_policy_edit_of_another_teams_policy_is_not_found(client, staging, org):
    client.force_login(org.author)
    assert client.get(reverse("editor:policy-edit", args=[org.policy_b.pk])).status_code == 404
    assert client.post(reverse("editor:policy-edit", args=[org.policy_b.pk]), {"text": "x"}).status_code == 404


def test_policy_edit_for_a_reader_without_a_role_is_forbidden(client, staging, org):
    client.force_login(org.sec)  # the security team sees every policy but authors in none
    assert client.get(reverse("editor:policy-edit", args=[org.policy_a.pk])).status_code == 403


def test_policy_edit_continues_the_users_draft_and_saves_into_it(client, staging, org):
    client.force_login(org.author)
    url = reverse("editor:policy-edit", args=[org.policy_a.pk])
    first = client.post(url, {"text": REVIEWS_V2, "message": "first"})
    assert first.status_code == 302
    draft = Draft.objects.get()
    response = client.get(url)
    assert response.context["text"] == REVIEWS_V2
    assert response.context["draft"] == draft
    assert "You have a draft of this policy" in response.content.decode()
    second = client.post(url, {"text": REVIEWS_V2.replace("5s", "7s"), "message": "second"})
    assert second.status_code == 302
    draft.refresh_from_db()
    assert "timeout: 7s" in draft.source_text
    assert draft.message == "second"
    assert Draft.objects.count() == 1


def test_draft_edit_is_for_its_author_only(client, staging, org):
    client.force_login(org.author)
    client.post(reverse("editor:policy-edit", args=[org.policy_a.pk]), {"text": REVIEWS_V2})
    draft = Draft.objects.get()
    url = reverse("editor:draft-edit", args=[draft.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert response.context["text"] == REVIEWS_V2
    client.force_login(org.approver)  # same team, not the author
    assert client.get(url).status_code == 404


def test_draft_edit_rejects_text_naming_another_object(client, staging, org):
    client.force_login(org.author)
    client.post(reverse("editor:policy-edit", args=[org.policy_a.pk]), {"text": REVIEWS_V2})
    draft = Draft.objects.get()
    response = client.post(
        reverse("editor:draft-edit", args=[draft.pk]), {"text": REVIEWS_V2.replace("name: reviews", "name: other")}
    )
    assert response.status_code == 400
    assert response.context["findings"][0]["line"] == 5
