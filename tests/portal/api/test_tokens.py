"""Managing one's own API tokens: only from a signed-in session, plaintext shown once."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from portal.choices import TokenScope
from portal.models import ApiToken
from tests.api_testing import (
    EndpointContract,
    assert_error,
    bearer_client,
    results,
    session_client,
    token_for,
)

TOKEN_FIELDS = {"key_id", "name", "scopes", "enabled", "expires_at", "created_at", "last_used_at", "url"}


def tokens_url() -> str:
    return reverse("api:token-list")


def token_url(key_id: str) -> str:
    return reverse("api:token-detail", kwargs={"key_id": key_id})


def create(client, **overrides):
    data = {"name": "deploy pipeline", "scopes": ["read", "write"], "expires_in_days": 30} | overrides
    return client.post(tokens_url(), data, format="json")


class TestTokenList(EndpointContract):
    tokens_allowed = False

    def arrange(self, org):
        token_for(org.author)

    def url(self, org):
        return tokens_url()

    def check_response(self, response, org):
        (item,) = results(response)
        assert set(item) == TOKEN_FIELDS
        assert (item["name"], item["scopes"], item["enabled"]) == ("test token", ["read"], True)


class TestTokenCreate(EndpointContract):
    method = "post"
    scope = TokenScope.WRITE
    success_status = 201
    tokens_allowed = False

    def url(self, org):
        return tokens_url()

    def payload(self, org):
        return {"name": "deploy pipeline", "scopes": ["write"], "expires_in_days": 30}

    def check_response(self, response, org):
        body = response.json()
        assert set(body) == TOKEN_FIELDS | {"token"}
        assert body["name"] == "deploy pipeline"
        assert body["token"].startswith(f"mgt_{body['key_id']}_")
        me = bearer_client(body["token"]).get(reverse("api:me")).json()
        assert me["username"] == "alice"
        assert me["token"]["scopes"] == ["write"]


class TestTokenRevoke(EndpointContract):
    method = "delete"
    scope = TokenScope.WRITE
    success_status = 204
    tokens_allowed = False

    def arrange(self, org):
        self.key_id = token_for(org.author).split("_")[1]

    def url(self, org):
        return token_url(self.key_id)

    def check_response(self, response, org):
        assert ApiToken.objects.get(key_id=self.key_id).enabled is False


def test_list_shows_only_my_tokens_and_never_a_secret(org):
    mine = token_for(org.author)
    theirs = token_for(org.other)
    response = session_client(org.author).get(tokens_url())
    items = results(response)
    assert [item["key_id"] for item in items] == [mine.split("_")[1]]
    body = response.content.decode()
    assert mine.split("_", 2)[2] not in body and theirs.split("_")[1] not in body
    assert "digest" not in body


def test_plaintext_is_returned_once(org):
    client = session_client(org.author)
    plaintext = create(client).json()["token"]
    assert plaintext not in client.get(tokens_url()).content.decode()
    assert "token" not in client.get(token_url(plaintext.split("_")[1])).json()


def test_created_token_expires_when_asked(org):
    before = timezone.now()
    body = create(session_client(org.author), expires_in_days=7).json()
    token = ApiToken.objects.get(key_id=body["key_id"])
    assert before + timedelta(days=7) <= token.expires_at <= timezone.now() + timedelta(days=7)
    assert token.scopes == ["read", "write"]


def test_a_token_cannot_mint_tokens(org):
    response = create(bearer_client(token_for(org.author, scopes=[TokenScope.WRITE])))
    assert_error(
        response,
        403,
        code="session_required",
        message="API tokens cannot manage tokens: sign in to the portal to list, create or revoke them",
    )
    assert ApiToken.objects.filter(user=org.author).count() == 1


def test_revoked_token_stops_working(org):
    plaintext = token_for(org.author)
    client = bearer_client(plaintext)
    assert client.get(reverse("api:me")).status_code == 200
    assert session_client(org.author).delete(token_url(plaintext.split("_")[1])).status_code == 204
    assert_error(client.get(reverse("api:me")), 401, message="API token is revoked")


def test_revoking_twice_is_harmless(org):
    key_id = token_for(org.author).split("_")[1]
    client = session_client(org.author)
    assert client.delete(token_url(key_id)).status_code == 204
    assert client.delete(token_url(key_id)).status_code == 204
    assert client.get(token_url(key_id)).json()["enabled"] is False


def test_another_users_token_cannot_be_seen_or_revoked(org):
    key_id = token_for(org.other).split("_")[1]
    client = session_client(org.author)
    assert_error(client.get(token_url(key_id)), 404, code="not_found")
    assert_error(client.delete(token_url(key_id)), 404, code="not_found")
    assert ApiToken.objects.get(key_id=key_id).enabled is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", None),
        ("name", "x" * 101),
        ("scopes", []),
        ("scopes", ["admin"]),
        ("scopes", "read"),
        ("expires_in_days", 0),
        ("expires_in_days", -5),
        ("expires_in_days", settings.MESHGATE_API_TOKEN_MAX_DAYS + 1),
        ("expires_in_days", "soon"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(org, field, value):
    response = create(session_client(org.author), **{field: value})
    details = assert_error(response, 400, code="invalid")
    assert list(details) == [field]
    assert not ApiToken.objects.filter(user=org.author).exists()


@pytest.mark.parametrize("field", ["name", "scopes"])
def test_missing_fields_are_named(org, field):
    data = {"name": "ci", "scopes": ["read"], "expires_in_days": 3}
    del data[field]
    response = session_client(org.author).post(tokens_url(), data, format="json")
    assert list(assert_error(response, 400, code="invalid")) == [field]


def test_expiry_defaults_to_thirty_days(org):
    body = session_client(org.author).post(tokens_url(), {"name": "ci", "scopes": ["read"]}, format="json").json()
    expires = ApiToken.objects.get(key_id=body["key_id"]).expires_at
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)
