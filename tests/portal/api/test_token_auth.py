"""Bearer tokens as pipelines use them: real `Authorization` headers through the whole stack."""

from datetime import timedelta

from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from portal.choices import TokenScope
from portal.models import ApiToken
from portal.permissions import TokenScopePermission
from portal.services import token_revoke
from tests.api_testing import (
    BEARER_CHALLENGE,
    assert_error,
    bearer_client,
    results,
    session_client,
    stored_token,
    token_for,
)


def policies_url() -> str:
    return reverse("api:policy-list")


def assert_refused(response, message: str) -> None:
    assert_error(response, 401, code="authentication_failed", message=message)
    assert response["WWW-Authenticate"] == BEARER_CHALLENGE


def test_a_valid_token_reads_what_its_user_may_read(org):
    items = results(bearer_client(token_for(org.author)).get(policies_url()))
    assert [item["name"] for item in items] == ["reviews"]


def test_plaintext_is_stored_nowhere(org):
    response = session_client(org.author).post(
        reverse("api:token-list"), {"name": "ci", "scopes": ["read"], "expires_in_days": 7}, format="json"
    )
    plaintext = response.json()["token"]
    secret = plaintext.split("_", 2)[2]
    assert bearer_client(plaintext).get(policies_url()).status_code == 200
    for model in apps.get_models():
        for row in model._base_manager.values_list():
            assert secret not in repr(row), f"the token's secret is stored in {model._meta.label}"
    assert ApiToken.objects.get(key_id=plaintext.split("_")[1]).digest != plaintext


def test_expired_token_is_refused(org):
    _, plaintext = stored_token(org.author, expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(bearer_client(plaintext).get(policies_url()), "API token has expired")


def test_revoked_token_is_refused(org):
    plaintext = token_for(org.author)
    token_revoke(token=ApiToken.objects.get(user=org.author), actor=org.author)
    assert_refused(bearer_client(plaintext).get(policies_url()), "API token is revoked")


def test_malformed_token_is_refused(org):
    for header in ("nonsense", "mgt_only-two", "xyz_abc_def"):
        assert_refused(bearer_client(header).get(policies_url()), "malformed API token")


def test_unknown_or_tampered_token_is_refused(org):
    plaintext = token_for(org.author)
    tampered = plaintext[:-2] + ("AA" if not plaintext.endswith("AA") else "BB")
    assert_refused(bearer_client(tampered).get(policies_url()), "invalid API token")
    assert_refused(
        bearer_client("mgt_000000000000_" + plaintext.split("_", 2)[2]).get(policies_url()), "invalid API token"
    )


def test_token_of_an_inactive_user_is_refused(org):
    plaintext = token_for(org.author)
    org.author.is_active = False
    org.author.save(update_fields=["is_active"])
    assert_refused(bearer_client(plaintext).get(policies_url()), "the token's user is inactive")


def test_a_bad_token_is_refused_even_alongside_a_session(org):
    client = session_client(org.author)
    client.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    assert_refused(client.get(policies_url()), "malformed API token")


def test_read_token_can_get_but_not_write(org):
    client = bearer_client(token_for(org.author, scopes=[TokenScope.READ]))
    assert client.get(reverse("api:me")).status_code == 200
    response = client.post(
        reverse("api:token-list"), {"name": "x", "scopes": ["read"], "expires_in_days": 1}, format="json"
    )
    assert_error(response, 403, code="permission_denied", message=TokenScopePermission.message)
    assert ApiToken.objects.filter(user=org.author).count() == 1


def test_last_used_at_is_recorded(org):
    plaintext = token_for(org.author)
    token = ApiToken.objects.get(user=org.author)
    assert token.last_used_at is None
    before = timezone.now()
    bearer_client(plaintext).get(policies_url())
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_at >= before
