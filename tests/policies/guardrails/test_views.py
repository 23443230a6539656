import pytest
from django.test import Client
from django.urls import reverse

from policies.models import Guardrail
from tests.factories import UserFactory

VS_YAML = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 70
    - destination: {host: reviews, subset: v2}
      weight: 20
"""
AUTHZ_YAML = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: shop}
spec: {}
"""


@pytest.fixture
def admin_client(admin_user):
    client = Client(enforce_csrf_checks=False)
    client.force_login(admin_user)
    return client


def test_everyone_signed_in_reads_the_list(client, builtins):
    client.force_login(UserFactory())
    response = client.get(reverse("governance:guardrail-list"))
    assert response.status_code == 200
    assert b"Route weights add up to 100" in response.content
    assert b"New CEL guardrail" not in response.content


def test_non_admins_get_403_on_every_edit_page(client, builtins, staging):
    client.force_login(UserFactory())
    guardrail = Guardrail.objects.first()
    assert client.get(reverse("governance:guardrail-create")).status_code == 403
    assert client.get(reverse("governance:guardrail-edit", args=[guardrail.pk])).status_code == 403
    assert client.post(reverse("governance:guardrail-edit", args=[guardrail.pk]), {"name": "x"}).status_code == 403
    response = client.post(
        reverse("governance:guardrail-test", args=[guardrail.pk]), {"manifest": VS_YAML, "environment": staging.pk}
    )
    assert response.status_code == 403


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("governance:guardrail-list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_admin_creates_a_cel_guardrail(admin_client):
    response = admin_client.post(
        reverse("governance:guardrail-create"),
        {
            "name": "Routes have timeouts",
            "enforcement": "advisory",
            "message": "{object} lacks a timeout",
            "expression": "object.spec.http.all(r, has(r.timeout))",
            "kinds": ["VirtualService"],
            "parameters": "{}",
            "enabled": "on",
        },
    )
    guardrail = Guardrail.objects.get(name="Routes have timeouts")
    assert response.status_code == 302 and response["Location"] == reverse(
        "governance:guardrail-edit", args=[guardrail.pk]
    )
    assert guardrail.kinds == ["VirtualService"] and guardrail.enabled and not guardrail.production_only


def test_invalid_cel_is_shown_on_the_form_with_its_position(admin_client):
    response = admin_client.post(
        reverse("governance:guardrail-create"),
        {
            "name": "Broken",
            "enforcement": "advisory",
            "message": "m",
            "expression": "object.kind ==",
            "parameters": "{}",
        },
    )
    assert response.status_code == 400
    assert "invalid CEL at line 1, column 13" in response.content.decode()
    assert not Guardrail.objects.filter(name="Broken").exists()


def test_admin_edits_a_builtin(admin_client, builtins):
    guardrail = Guardrail.objects.get(builtin_key="timeouts-within-bounds")
    page = admin_client.get(reverse("governance:guardrail-edit", args=[guardrail.pk]))
    assert page.status_code == 200 and b'name="expression"' not in page.content
    response = admin_client.post(
        reverse("governance:guardrail-edit", args=[guardrail.pk]),
        {
            "name": guardrail.name,
            "enforcement": "hard_mandatory",
            "message": guardrail.message,
            "kinds": ["VirtualService"],
            "parameters": '{"max_timeout_seconds": 30, "max_retries": 2}',
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    guardrail.refresh_from_db()
    assert guardrail.enforcement == "hard_mandatory" and guardrail.parameters["max_retries"] == 2


def test_the_test_box_runs_a_builtin(admin_client, builtins, staging):
    guardrail = Guardrail.objects.get(builtin_key="weights-sum-100")
    response = admin_client.post(
        reverse("governance:guardrail-test", args=[guardrail.pk]),
        {"manifest": VS_YAML + "---\n" + AUTHZ_YAML, "environment": staging.pk},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-outcome="failed"' in html
    assert "spec.http[0].route weights add up to 90, not 100" in html
    assert "not applicable" in html  # the AuthorizationPolicy


def test_the_test_box_runs_the_expression_being_edited(admin_client, staging, no_guardrails):
    guardrail = Guardrail.objects.create(name="g", expression="true", message="{object} failed")
    url = reverse("governance:guardrail-test", args=[guardrail.pk])
    passed = admin_client.post(url, {"manifest": VS_YAML, "environment": staging.pk})
    assert 'data-outcome="passed"' in passed.content.decode()
    failed = admin_client.post(
        url, {"manifest": VS_YAML, "environment": staging.pk, "expression": 'object.spec.hosts.all(h, h != "reviews")'}
    )
    assert 'data-outcome="failed"' in failed.content.decode()
    assert "VirtualService bookinfo/reviews failed" in failed.content.decode()
    error = admin_client.post(url, {"manifest": VS_YAML, "environment": staging.pk, "expression": "object.nope"})
    assert 'data-outcome="error"' in error.content.decode()
    bad_cel = admin_client.post(url, {"manifest": VS_YAML, "environment": staging.pk, "expression": "1 +* 2"})
    assert bad_cel.status_code == 400 and "line 1, column 4" in bad_cel.content.decode()


def test_bad_yaml_answers_400_naming_the_line(admin_client, builtins, staging):
    guardrail = Guardrail.objects.get(builtin_key="weights-sum-100")
    response = admin_client.post(
        reverse("governance:guardrail-test", args=[guardrail.pk]),
        {"manifest": "kind: VirtualService\nspec:\n  hosts: [a\n  x: 1\n", "environment": staging.pk},
    )
    assert response.status_code == 400
    assert "Line " in response.content.decode()
    empty = admin_client.post(
        reverse("governance:guardrail-test", args=[guardrail.pk]), {"manifest": "", "environment": staging.pk}
    )
    assert empty.status_code == 400


def test_the_test_box_needs_csrf(admin_user, builtins, staging):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    guardrail = Guardrail.objects.get(builtin_key="weights-sum-100")
    response = client.post(
        reverse("governance:guardrail-test", args=[guardrail.pk]), {"manifest": VS_YAML, "environment": staging.pk}
    )
    assert response.status_code == 403
