import re

import pytest
from django.test import Client
from django.urls import reverse

from policies.models import AuditEvent
from portal.models import ApiToken, token_digest
from portal.services import token_create

NEW_TOKEN = re.compile(r'<code[^>]*id="new-token">(mgt_[0-9a-f]{12}_[A-Za-z0-9_-]+)</code>')


def tokens_url() -> str:
    return reverse("account:tokens")


def revoke_url(token) -> str:
    return reverse("account:token-revoke", args=[token.pk])


def create(client, **overrides):
    data = {"name": "ci-staging", "scopes": ["read", "write"], "expires_in_days": "30", **overrides}
    return client.post(tokens_url(), data)


def test_anonymous_is_sent_to_login(client, org):
    response = client.get(tokens_url())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_lists_only_own_tokens_with_their_state(client, org):
    mine, _ = token_create(user=org.author, name="alice-ci", scopes=["read"], expires_in_days=5)
    revoked, _ = token_create(user=org.author, name="alice-old", scopes=["read"], expires_in_days=5)
    ApiToken.objects.filter(pk=revoked.pk).update(enabled=False)
    token_create(user=org.other, name="carol-ci", scopes=["read"], expires_in_days=5)
    client.force_login(org.author)
    body = client.get(tokens_url()).content.decode()
    assert "alice-ci" in body and "alice-old" in body
    assert "carol-ci" not in body
    assert f"mgt_{mine.key_id}_…" in body
    assert body.count(">active<") == 1 and body.count(">revoked<") == 1


def test_creation_shows_the_secret_once_and_stores_only_its_digest(client, org):
    client.force_login(org.author)
    response = create(client)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = NEW_TOKEN.search(response.content.decode()).group(1)

    token = ApiToken.objects.get(user=org.author)
    assert (token.name, token.scopes) == ("ci-staging", ["read", "write"])
    assert token.digest == token_digest(plaintext)
    stored = [str(getattr(token, field.attname)) for field in ApiToken._meta.concrete_fields]
    assert not any(plaintext in value for value in stored)
    secret = plaintext.split("_", 2)[2]  # mgt_<key id>_<secret>; the secret itself may hold "_"
    assert not AuditEvent.objects.filter(after__icontains=secret).exists()
    assert secret not in str(dict(client.session))

    again = client.get(tokens_url()).content.decode()
    assert secret not in again
    assert "ci-staging" in again


@pytest.mark.parametrize("days", ["0", "31", "-3"])
def test_expiry_outside_the_allowed_range_is_a_400_with_the_reason(client, org, settings, days):
    settings.MESHGATE_API_TOKEN_MAX_DAYS = 30
    client.force_login(org.author)
    response = create(client, expires_in_days=days)
    assert response.status_code == 400
    assert "expiry must be between 1 and 30 days" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_missing_fields_are_a_400_naming_each(client, org):
    client.force_login(org.author)
    response = client.post(tokens_url(), {"expires_in_days": "abc"})
    form = response.context["form"]
    assert response.status_code == 400
    assert set(form.errors) == {"name", "scopes", "expires_in_days"}
    assert not ApiToken.objects.exists()


def test_user_input_is_escaped(client, org):
    client.force_login(org.author)
    body = create(client, name="<img src=x onerror=alert(1)>").content.decode()
    assert "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_revoke_disables_own_token(client, org):
    token, _ = token_create(user=org.author, name="alice-ci", scopes=["read"], expires_in_days=5)
    client.force_login(org.author)
    response = client.post(revoke_url(token))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.enabled is False
    body = client.get(tokens_url()).content.decode()
    assert "Token “alice-ci” revoked." in body
    assert ">revoked<" in body


def test_revoking_another_users_token_is_404(client, org):
    token, _ = token_create(user=org.other, name="carol-ci", scopes=["read"], expires_in_days=5)
    client.force_login(org.author)
    assert client.post(revoke_url(token)).status_code == 404
    token.refresh_from_db()
    assert token.enabled is True


def test_revoke_needs_post(client, org):
    token, _ = token_create(user=org.author, name="alice-ci", scopes=["read"], expires_in_days=5)
    client.force_login(org.author)
    assert client.get(revoke_url(token)).status_code == 405


def test_forms_are_csrf_protected(org):
    client = Client(enforce_csrf_checks=True)
    client.force_login(org.author)
    assert create(client).status_code == 403
    assert not ApiToken.objects.exists()
    page = client.get(tokens_url()).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert (
        client.post(
            tokens_url(), {"csrfmiddlewaretoken": csrf, "name": "ok", "scopes": ["read"], "expires_in_days": "3"}
        ).status_code
        == 200
    )
