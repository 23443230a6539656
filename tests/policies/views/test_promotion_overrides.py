"""The promotion overrides page of a policy: linked from the policy page, forms for approvers of the
owning team and platform admins only, CSRF, escaped text, clear errors that keep what was typed."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from policies.models import AuditEvent, Environment
from tests.factories import UserFactory, grant_platform_admin
from tests.policies.changes.helpers import cluster_org  # noqa: F401 - fixture

PATCH = "spec:\n  http:\n  - route:\n    - destination:\n        host: reviews\n    timeout: 3s\n"


def _page(org) -> str:
    return reverse("policies:policy-overrides", args=[org.policy_a.pk])


def _save(org) -> str:
    return reverse("policies:policy-override-save", args=[org.policy_a.pk])


def _stored(org) -> dict:
    return Environment.objects.get(pk=org.env.pk).promotion_overrides


def test_the_policy_page_links_to_its_overrides(client, org):
    client.force_login(org.author)
    body = client.get(reverse("policies:policy-detail", args=[org.policy_a.pk])).content.decode()
    assert f'href="{_page(org)}"' in body


def test_an_approver_adds_edits_and_deletes_an_override_in_the_page(client, cluster_org):
    org = cluster_org
    client.force_login(org.approver)
    body = client.get(_page(org)).content.decode()
    assert 'id="no-overrides"' in body and 'id="override-form"' in body and ">staging</option>" in body
    response = client.post(_save(org), {"mode": "create", "environment": "staging", "patch": PATCH}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The override of staging is saved" in page and "timeout: 3s" in page
    assert _stored(org)["VirtualService/bookinfo/reviews"]["spec"]["http"][0]["timeout"] == "3s"

    edited = PATCH.replace("3s", "5s")
    client.post(_save(org), {"mode": "update", "environment": "staging", "patch": edited})
    assert _stored(org)["VirtualService/bookinfo/reviews"]["spec"]["http"][0]["timeout"] == "5s"
    delete = reverse("policies:policy-override-delete", args=[org.policy_a.pk, "staging"])
    assert client.post(delete).status_code == 302
    assert _stored(org) == {}
    assert AuditEvent.objects.filter(action__startswith="promotion_override.").count() == 3


def test_an_author_sees_the_overrides_without_forms_and_may_not_post(client, cluster_org):
    org = cluster_org
    admin = grant_platform_admin(UserFactory(username="pat"))
    admin_client = Client()
    admin_client.force_login(admin)
    admin_client.post(_save(org), {"mode": "create", "environment": "staging", "patch": PATCH})
    client.force_login(org.author)
    body = client.get(_page(org)).content.decode()
    assert "timeout: 3s" in body
    assert 'id="override-form"' not in body and "Delete</button>" not in body
    assert client.post(_save(org), {"mode": "update", "environment": "staging", "patch": "{}"}).status_code == 403
    delete = reverse("policies:policy-override-delete", args=[org.policy_a.pk, "staging"])
    assert client.post(delete).status_code == 403
    assert _stored(org)["VirtualService/bookinfo/reviews"]["spec"]["http"][0]["timeout"] == "3s"
    # someone who may not read the policy learns nothing
    client.force_login(org.other)
    assert client.get(_page(org)).status_code == 404


def test_saving_needs_the_csrf_token(cluster_org):
    org = cluster_org
    client = Client(enforce_csrf_checks=True)
    client.force_login(org.approver)
    assert client.post(_save(org), {"mode": "create", "environment": "staging", "patch": PATCH}).status_code == 403
    assert _stored(org) == {}


def test_a_bad_patch_is_a_400_that_names_the_field_and_keeps_the_text_escaped(client, cluster_org):
    org = cluster_org
    client.force_login(org.approver)
    typed = "spec:\n  http: <script>alert(1)</script>\n"
    response = client.post(_save(org), {"mode": "create", "environment": "staging", "patch": typed})
    assert response.status_code == 400
    body = response.content.decode()
    assert "does not validate in staging at spec.http" in body
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert _stored(org) == {}
    unreadable = client.post(_save(org), {"mode": "create", "environment": "staging", "patch": "spec: [1\n"})
    assert unreadable.status_code == 400 and "the patch cannot be read" in unreadable.content.decode()
    assert client.post(_save(org), {"mode": "create", "environment": "mars", "patch": PATCH}).status_code == 400


def test_an_escaped_label_value_in_a_stored_override(client, cluster_org):
    org = cluster_org
    client.force_login(org.approver)
    patch = 'metadata:\n  annotations:\n    note: "<b>prod</b>"\n'
    assert client.post(_save(org), {"mode": "create", "environment": "staging", "patch": patch}).status_code == 302
    body = client.get(_page(org)).content.decode()
    assert "<b>prod</b>" not in body and "&lt;b&gt;prod&lt;/b&gt;" in body
