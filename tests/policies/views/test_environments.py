import pytest
from django.urls import reverse

from policies.choices import Role
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin

IMPORT_BUTTON = "Import from cluster"


def import_url(environment) -> str:
    return reverse("policies:environment-import", args=[environment.pk])


@pytest.fixture
def admin_user(org):
    user = UserFactory(username="ada")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return grant_platform_admin(user)


def test_anonymous_is_sent_to_login(client, org):
    response = client.get(reverse("policies:environments"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_any_user_sees_environments_without_the_import_button(client, org):
    org.env.prometheus_url = "http://prometheus.staging:9090"
    org.env.save()
    client.force_login(org.outsider)
    response = client.get(reverse("policies:environments"))
    body = response.content.decode()
    assert response.status_code == 200
    assert '<span class="text-nowrap">staging</span>' in body
    assert "http://127.0.0.1:9" in body and "http://prometheus.staging:9090" in body
    assert "not probed" in body
    assert [env.policy_count for env in response.context["environments"]] == [2]
    assert IMPORT_BUTTON not in body
    assert import_url(org.env) not in body


def test_admin_sees_the_import_button(client, org, admin_user):
    client.force_login(admin_user)
    body = client.get(reverse("policies:environments")).content.decode()
    assert IMPORT_BUTTON in body
    assert f'action="{import_url(org.env)}"' in body


def test_non_admin_post_is_forbidden_and_queues_nothing(client, org, django_capture_on_commit_callbacks):
    client.force_login(org.approver)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(import_url(org.env))
    assert response.status_code == 403
    assert "only platform admins can import" in response.content.decode().lower()
    assert callbacks == []


def test_anonymous_post_is_sent_to_login(client, org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(import_url(org.env))
    assert response.status_code == 302
    assert callbacks == []


def test_admin_post_queues_one_import_after_commit(
    client, org, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("policies.jobs.send", lambda name, args, countdown=None: sent.append((name, *args)))
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(import_url(org.env))
    assert response.status_code == 302
    assert response["Location"] == reverse("policies:environments")
    assert len(callbacks) == 1
    assert sent == []  # nothing leaves before the transaction commits
    callbacks[0]()
    assert sent == [("policies.tasks.import_environment", org.env.pk, admin_user.pk)]
    assert "Import queued for staging." in client.get(reverse("policies:environments")).content.decode()


def test_import_of_unknown_environment_is_404(client, org, admin_user):
    client.force_login(admin_user)
    assert client.post(reverse("policies:environment-import", args=[org.env.pk + 99])).status_code == 404


def test_import_needs_post(client, org, admin_user):
    client.force_login(admin_user)
    assert client.get(import_url(org.env)).status_code == 405
